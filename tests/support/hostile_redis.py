"""Redis endpoints that misbehave, on 127.0.0.1, for the protocol attacks on the fleet cache's
client (tests/unit/registry/test_shared_cache_attacks.py): a server answering anything with one
hostile reply, and a proxy in front of a real redis-server that slows its replies down."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

Answer = Callable[[list[bytes]], bytes]


class HostileRedis:
    """Answers each command a client sends (RESP arrays of bulk strings) with `answer(command)`;
    after the first answer, keeps sending `stream` (if any) until the client hangs up or
    `stream_limit` bytes have gone. Counts what it sent; `hung_up` is set once the client has
    closed the connection."""

    def __init__(
        self, answer: Answer | bytes, stream: bytes = b"", stream_limit: int = 64 << 20
    ) -> None:
        self._answer = answer if callable(answer) else (lambda _command, reply=answer: reply)
        self._stream, self._limit = stream, stream_limit
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.sent = 0
        self.hung_up = threading.Event()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while not self._closed:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        pending = b""
        with connection, contextlib.suppress(OSError):
            while data := connection.recv(65536):
                pending += data
                commands, pending = _commands(pending)
                for command in commands:
                    self._send(connection, self._answer(command))
                    while self._stream and self.sent < self._limit:
                        self._send(connection, self._stream)
        self.hung_up.set()

    def _send(self, connection: socket.socket, data: bytes) -> None:
        connection.sendall(data)
        self.sent += len(data)

    def close(self) -> None:
        self._closed = True
        self._listener.close()


def _commands(data: bytes) -> tuple[list[list[bytes]], bytes]:
    """The complete commands at the start of `data` (RESP arrays of bulk strings), and the rest."""
    commands: list[list[bytes]] = []
    while True:
        position, command = 0, []
        header_end = data.find(b"\r\n")
        if header_end < 0 or data[:1] != b"*":
            return commands, data
        count, position = int(data[1:header_end]), header_end + 2
        for _ in range(count):
            length_end = data.find(b"\r\n", position)
            if length_end < 0:
                return commands, data
            length = int(data[position + 1 : length_end])
            start = length_end + 2
            if len(data) < start + length + 2:
                return commands, data
            command.append(data[start : start + length])
            position = start + length + 2
        commands.append(command)
        data = data[position:]


class SlowRedis:
    """A real redis-server behind a proxy that passes requests at once and holds every reply
    back: `delay` seconds before each chunk, and then one byte every `byte_interval` seconds
    (a trickle) if that is set. Counts the chunks of replies it passed on."""

    def __init__(self, backend_port: int, delay: float = 0.0, byte_interval: float = 0.0) -> None:
        self._backend = backend_port
        self._delay, self._interval = delay, byte_interval
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.replies = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while not self._closed:
            try:
                front, _ = self._listener.accept()
            except OSError:
                return
            back = socket.create_connection(("127.0.0.1", self._backend))
            threading.Thread(target=self._requests, args=(front, back), daemon=True).start()
            threading.Thread(target=self._replies, args=(back, front), daemon=True).start()

    def _requests(self, front: socket.socket, back: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := front.recv(65536):
                back.sendall(data)
        _shut(front, back)

    def _replies(self, back: socket.socket, front: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := back.recv(65536):
                self.replies += 1
                time.sleep(self._delay)
                for piece in _pieces(data, 1 if self._interval else len(data)):
                    front.sendall(piece)
                    time.sleep(self._interval)
        _shut(front, back)

    def close(self) -> None:
        self._closed = True
        self._listener.close()


def _pieces(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _shut(*ends: socket.socket) -> None:
    for end in ends:
        with contextlib.suppress(OSError):
            end.shutdown(socket.SHUT_RDWR)
