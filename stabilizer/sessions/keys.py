"""Keys derived from SESSION_SECRET: the cookie signer and the WUZAPI-token cipher.

The current secret signs and encrypts; each secret in SESSION_SECRET_FALLBACKS still
verifies and decrypts, so the secret can be rotated without logging everyone out.
"""

from __future__ import annotations

import base64
import hashlib
import secrets

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from itsdangerous import BadSignature, Signer

SESSION_ID_BYTES = 32  # 256-bit ids


def new_session_id() -> str:
    return secrets.token_urlsafe(SESSION_ID_BYTES)


def hash_session_id(sid: str) -> str:
    """Return the SHA-256 hex digest stored in place of the raw id."""
    return hashlib.sha256(sid.encode("ascii", "replace")).hexdigest()


def _fernet_key(secret: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"stabilizer",
                info=b"wuzapi token encryption")
    return base64.urlsafe_b64encode(hkdf.derive(secret.encode("utf-8")))


class SessionSecrets:
    """Sign session cookies and encrypt WUZAPI tokens. Immutable, safe to share between threads."""

    def __init__(self, secret: str, fallbacks: tuple[str, ...] = ()):
        ordered = [*fallbacks, secret]  # itsdangerous signs with the last key
        self._signer = Signer(ordered, salt="stabilizer.session", key_derivation="hmac")
        self._cipher = MultiFernet([Fernet(_fernet_key(key)) for key in (secret, *fallbacks)])

    def sign(self, sid: str) -> str:
        return self._signer.sign(sid.encode("ascii")).decode("ascii")

    def unsign(self, value: str) -> str | None:
        """Return the session id inside a cookie value, or None when the signature is bad."""
        try:
            return self._signer.unsign(value.encode("ascii")).decode("ascii")
        except (BadSignature, UnicodeError):
            return None

    def encrypt(self, token: str) -> str:
        return self._cipher.encrypt(token.encode("utf-8")).decode("ascii")

    def decrypt(self, ciphertext: str) -> str | None:
        """Return the token, or None when no current or previous key opens it."""
        try:
            return self._cipher.decrypt(ciphertext.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError, AttributeError):
            return None
