"""Start/stop plumbing shared by the fake platform servers: 127.0.0.1, a free port, a thread."""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self


class QuietHTTPServer(ThreadingHTTPServer):
    """Daemon threads; a client that gave up (timeout and reset tests) is not worth a traceback."""

    daemon_threads = True
    fake: Any
    closing = False
    """Set when the fake stops: a request still in flight then may fail, quietly."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not self.closing and not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class LocalServer:
    """A fake platform served from a daemon thread; use as a context manager.

    Subclasses name their request handler in `handler_class`; the handler reaches the fake as
    `self.fake` or `self.server.fake`.
    """

    thread_name: ClassVar[str] = "fake-platform"
    _httpd: QuietHTTPServer | None = None
    _thread: threading.Thread | None = None

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def start(self) -> Self:
        """Bind 127.0.0.1 on a free port and serve in a daemon thread (again: no-op)."""
        if self._httpd is None:
            bound = type("_BoundHandler", (self.handler_class(),), {"fake": self})
            self._httpd = QuietHTTPServer(("127.0.0.1", 0), bound)
            self._httpd.fake = self
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.05},  # quick shutdown: tests start many servers
                name=self.thread_name,
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.closing = True
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:PORT: what the client library is given as its base URL."""
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"
