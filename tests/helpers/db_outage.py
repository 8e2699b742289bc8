"""A real database made unavailable and available again, for outage tests.

SQLite: another connection holds `BEGIN EXCLUSIVE` (writers wait out their busy timeout, then
fail with "database is locked"). PostgreSQL: the tracker reaches the real server through a TCP
relay on a port of its own; taking the relay down closes every connection and refuses new
ones, as a server that went away does.
"""

from __future__ import annotations

import socket
import sqlite3
import threading
from pathlib import Path

from sqlalchemy.engine import make_url


class TcpRelay:
    """Forwards a local port to host:port; `down()` cuts every connection and refuses new ones."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()

    def up(self) -> None:
        if self._listener is not None:  # already up
            return
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread (close alone does not)
            except OSError:
                pass
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class Outage:
    """`url` is what the tracker uses; `begin()` makes that database unavailable, `end()` ends it."""

    def __init__(self, db_url: str) -> None:
        self.direct_url = db_url
        parsed = make_url(db_url)
        self.sqlite = parsed.get_backend_name() == "sqlite"
        self._holder: sqlite3.Connection | None = None
        self._relay: TcpRelay | None = None
        if self.sqlite:
            self.path = Path(parsed.database or "")
            self.url = db_url
        else:
            self._relay = TcpRelay(parsed.host or "127.0.0.1", parsed.port or 5432)
            self._relay.up()
            self.url = parsed.set(host="127.0.0.1", port=self._relay.port).render_as_string(hide_password=False)

    def begin(self) -> None:
        if self.sqlite:
            self._holder = sqlite3.connect(self.path, isolation_level=None, timeout=30, check_same_thread=False)
            self._holder.execute("BEGIN EXCLUSIVE")
        else:
            assert self._relay is not None
            self._relay.down()

    def end(self) -> None:
        if self.sqlite:
            if self._holder is not None:
                self._holder.rollback()
                self._holder.close()
                self._holder = None
        else:
            assert self._relay is not None
            self._relay.up()

    def close(self) -> None:
        if self.sqlite:
            self.end()
        elif self._relay is not None:
            self._relay.down()
