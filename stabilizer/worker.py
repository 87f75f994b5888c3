"""The gunicorn worker class: gthread, refusing new connections as soon as it stops.

gunicorn's threaded worker keeps its copy of the listening sockets open until the last
in-flight request has finished. Meanwhile the kernel still completes handshakes into the
listen queue, and those connections are reset seconds later, when the worker exits.
This worker closes its copies when the graceful stop begins. Once the master and every
worker have closed theirs, a new connection is refused at once, and a load balancer or
client can go to another instance.
"""

from __future__ import annotations

from gunicorn.workers.gthread import ThreadWorker


class StoppingThreadWorker(ThreadWorker):
    """gunicorn's gthread worker that closes its listening sockets when it stops accepting to exit."""

    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled)
        if not enabled and not self.alive:
            # Only this process's descriptors: the master and the other workers hold their own.
            for listener in self.sockets:
                listener.close()
