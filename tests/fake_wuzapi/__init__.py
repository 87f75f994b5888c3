"""A fake WUZAPI server for tests and demos; see FakeWuzapi and `python -m tests.fake_wuzapi --help`."""

from .server import FakeWuzapi
from .state import PairingError

__all__ = ["FakeWuzapi", "PairingError"]
