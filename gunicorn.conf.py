"""gunicorn settings: threaded workers, per-worker resources, graceful shutdown.

The app is built in each worker after the fork (``preload_app`` stays off). So the
database pool, the WUZAPI client and the background threads all belong to one worker
process, and ``worker_exit`` stops and closes them.
"""

import os
import shutil
import tempfile
from pathlib import Path

from stabilizer import logs
from stabilizer.config import ConfigError, load_settings

logs.configure_early()  # so that lines logged while loading the settings are formatted too
try:
    _settings = load_settings()
except ConfigError as error:
    raise SystemExit(f"stabilizer: {error}") from None

# prometheus_client's multiprocess mode: every worker writes its metrics to files in one
# directory, and /metrics and /health read the sum. It must be set before any import of
# prometheus_client, so it is set here, in the master, before the workers are forked.
# A directory created here is removed when gunicorn exits; the marker survives SIGHUP
# reloads, which run this file again.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="stabilizer-metrics-")
    os.environ["STABILIZER_OWNS_METRICS_DIR"] = "1"

bind = [part.strip() for part in _settings.bind.split(",")]
worker_class = "stabilizer.worker.StoppingThreadWorker"  # gthread, closing its listeners when it stops
workers = _settings.web_concurrency
threads = _settings.gunicorn_threads
preload_app = False
timeout = 60
graceful_timeout = 30
keepalive = 5
# Several instances may run on one host; a shared default control socket path would collide.
control_socket_disable = True
# Stabilizer writes its own access line per request; gunicorn's would duplicate it.
accesslog = None
errorlog = "-"
loglevel = _settings.log_level
logger_class = "stabilizer.logs.GunicornLogger"


def on_starting(server):
    """Start from empty metrics: files left by an earlier run would be summed in."""
    for leftover in Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).glob("*.db"):
        leftover.unlink()


def on_exit(server):
    """Remove the metrics directory this file created."""
    if os.environ.get("STABILIZER_OWNS_METRICS_DIR") == "1":
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def child_exit(server, worker):
    """Drop the live gauges of a worker that exited; its counters stay in the sums."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    """Leave Ctrl+C to the master.

    A worker that also handled the terminal's SIGINT could re-enter gunicorn's gthread
    shutdown and hang until the master killed it.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def worker_exit(server, worker):
    """Stop the worker's background threads and close its pools, then write its queued log lines.

    The log flush waits at most a few seconds, less when the reader of stderr has stalled.
    """
    import sys

    from stabilizer import logs

    wsgi = sys.modules.get("wsgi")
    app = getattr(wsgi, "app", None)
    if app is not None:
        app.extensions["stabilizer"].close()
        server.log.info("worker %s stopped its background threads and closed its pools", worker.pid)
    logs.flush()
