"""A TCP proxy between a client and RabbitMQ that a test or a lab can cut and restore.

Cutting it is what a lost broker looks like to a client: its connection drops and new
ones are refused, while the broker itself (shared by others) runs on untouched.

`cut()` drops every open connection and refuses new ones (they are accepted and closed
at once, like a broker that went away); `restore()` lets traffic through again.
`pause()` keeps the connections open but holds every byte (a broker that stalls);
`held` counts the bytes held back, and `resume()` lets them through.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self._cut = threading.Event()
        self._closed = threading.Event()
        self._flowing = threading.Event()
        self._flowing.set()
        self.held = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        self._cut.set()
        with self._lock:
            for connection in self._connections:
                _close(connection)
            self._connections.clear()

    def restore(self) -> None:
        self._cut.clear()

    def pause(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        self._closed.set()
        self.resume()
        self.cut()
        _close(self._listener)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._cut.is_set():
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._connections += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        waiting: list[bytes] = []  # what came in while paused, in order
        try:
            while True:
                if waiting and self._flowing.is_set():
                    sink.sendall(b"".join(waiting))
                    waiting.clear()
                readable, _, _ = select.select([source], [], [], 0.05)
                if not readable:
                    continue
                data = source.recv(65536)
                if not data:
                    return
                if self._flowing.is_set() and not waiting:
                    sink.sendall(data)
                    continue
                waiting.append(data)
                with self._lock:
                    self.held += len(data)
        except (OSError, ValueError):  # ValueError: select() on a socket closed by cut()
            pass
        finally:
            _close(source)
            _close(sink)


def _close(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)
    connection.close()
