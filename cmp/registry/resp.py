"""A small Redis client for the fleet cache: RESP2 over TCP or TLS, bounded in time and size.

Whoever can reach Redis, or answer in its place, may be slow or hostile. So connecting (TCP,
TLS, AUTH, SELECT) has one deadline, and so does each round trip (a batch of commands and all
their replies). CLIENT SETNAME goes with AUTH and SELECT, or, when there are none to wait for,
with the first commands: naming the connection is no reason for a round trip of its own. A
reply trickled a byte at a time ends at the deadline, not at the first silence.
Replies are read iteratively under explicit bounds (a line, a bulk string, an array's length,
the nesting, the bytes of one round trip), so none can make the client recurse, allocate without
limit or wait past its deadline. Every failure is a RedisProblem; an error reply ends the round
trip and the connection with it.

The commands tagpin sends (EVAL of its scripts, EXISTS, AUTH, SELECT, CLIENT SETNAME) answer
integers, bulk strings, status lines and flat arrays, so an array inside an array is refused.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Sequence
from typing import TypeAlias

from cmp.registry.redis_url import RedisAddress

MAX_LINE_BYTES = 4096  # a status, error, integer or length line
MAX_BULK_BYTES = 2 << 20  # above any value tagpin reads (a listing: 1 MiB + 1, cmp.registry.shared)
MAX_ARRAY_LENGTH = 100_000  # one element per tag of one repository asked at once, and one more
MAX_DEPTH = 1  # flat arrays only
MAX_ROUND_TRIP_BYTES = 16 << 20
_RECEIVE_BYTES = 1 << 16

Reply: TypeAlias = bytes | int | None | list["Reply"]
Argument: TypeAlias = bytes | str | int
Command: TypeAlias = Sequence[Argument]


class RedisProblem(Exception):
    """Redis could not answer as asked; the message says why, for the warning."""


class RedisTimeout(RedisProblem):
    """The deadline of a connection or round trip passed."""


class RespClient:
    """Connections to one server, reused one at a time by each thread that asks."""

    def __init__(
        self, address: RedisAddress, password: str | None, timeout: float, name: str
    ) -> None:
        self._address = address
        self._password = password if password is not None else address.password
        self._timeout = timeout
        self._name = name
        self._idle: list[_Connection] = []
        self._guard = threading.Lock()

    def execute(self, commands: Sequence[Command], until: float | None = None) -> list[Reply]:
        """Send `commands` at once and read their replies within one timeout (and before
        `until`, a time.monotonic() value, if given); connecting first gets a timeout of its own."""
        with self._guard:
            connection = self._idle.pop() if self._idle else None
        if connection is not None and connection.stale():
            connection.close()
            connection = None
        try:
            if connection is None:
                connection = self._connect(self._deadline(until))
            replies = connection.round_trip(commands, self._deadline(until))
        except BaseException:
            if connection is not None:
                connection.close()
            raise
        with self._guard:
            self._idle.append(connection)
        return replies

    def close(self) -> None:
        with self._guard:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def _deadline(self, until: float | None) -> float:
        deadline = time.monotonic() + self._timeout
        return deadline if until is None else min(deadline, until)

    def _connect(self, deadline: float) -> _Connection:
        address = self._address
        sock = _open_socket(address.host, address.port, deadline)
        try:
            if address.tls:
                sock = _wrap_tls(sock, address, deadline)
            connection = _Connection(sock, self._timeout)
            hello: list[Command] = []
            if self._password is not None:
                user = [address.username] if address.username else []
                hello.append(("AUTH", *user, self._password))
            if address.db:
                hello.append(("SELECT", address.db))
            naming = ("CLIENT", "SETNAME", self._name)
            if hello:  # answered before any command: none may run unauthenticated or on db 0
                connection.round_trip([*hello, naming], deadline)
            else:
                connection.greeting = [naming]
        except BaseException:
            sock.close()
            raise
        return connection


def _remaining(deadline: float, timeout: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise RedisTimeout(f"timed out: no complete answer within {timeout * 1000:g} ms")
    return left


def _open_socket(host: str, port: int, deadline: float) -> socket.socket:
    # The resolver has its own timeouts (resolv.conf); the connection attempts share the deadline.
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    failure: OSError | None = None
    for family, kind, proto, _, where in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            sock.connect(where)
        except OSError as error:
            sock.close()
            failure = error
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise failure if failure is not None else RedisProblem(f"cannot resolve {host}")


def _wrap_tls(sock: socket.socket, address: RedisAddress, deadline: float) -> socket.socket:
    import ssl  # only for rediss://

    context = ssl.create_default_context(cafile=address.ca_certs)
    if not address.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif not address.check_hostname:
        context.check_hostname = False
    if address.certfile is not None:
        context.load_cert_chain(address.certfile, address.keyfile)
    wrapped = context.wrap_socket(sock, server_hostname=address.host, do_handshake_on_connect=False)
    wrapped.settimeout(max(deadline - time.monotonic(), 0.001))
    wrapped.do_handshake()  # one timeout for the whole handshake (CPython keeps a deadline)
    return wrapped


def encode(commands: Sequence[Command]) -> bytes:
    """RESP2 arrays of bulk strings, one per command."""
    out = bytearray()
    for command in commands:
        out += b"*%d\r\n" % len(command)
        for argument in command:
            if isinstance(argument, str):
                data = argument.encode()
            elif isinstance(argument, int):
                data = b"%d" % argument
            else:
                data = argument
            out += b"$%d\r\n%s\r\n" % (len(data), data)
    return bytes(out)


class _Connection:
    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self._sock = sock
        self._timeout = timeout
        self._buffer = bytearray()
        self._received = 0
        self._deadline = 0.0
        self.greeting: list[Command] = []  # sent ahead of the first round trip's commands

    def close(self) -> None:
        self._sock.close()

    def stale(self) -> bool:
        """Readable while idle: closed by the server or a proxy's idle timeout (haproxy in
        front of Argo CD's HA Redis), or sending what nobody asked for. Not to be reused."""
        try:
            readable, _, _ = select.select([self._sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def round_trip(self, commands: Sequence[Command], deadline: float) -> list[Reply]:
        """`commands`' replies; an error reply to the greeting fails the round trip too."""
        self._deadline = deadline
        self._received = 0
        greeting, self.greeting = self.greeting, []
        sent = [*greeting, *commands]
        self._sock.settimeout(_remaining(deadline, self._timeout))
        try:
            self._sock.sendall(encode(sent))  # CPython: one timeout for all of it
        except TimeoutError:
            raise RedisTimeout(
                f"timed out: could not send within {self._timeout * 1000:g} ms"
            ) from None
        replies = [self._reply() for _ in sent]
        if self._buffer:
            raise RedisProblem("protocol error: the server sent more replies than asked for")
        return replies[len(greeting) :]

    def _reply(self) -> Reply:
        """One reply, arrays included, without recursion: `open_arrays` holds the arrays being
        filled and how many elements each still needs."""
        open_arrays: list[tuple[list[Reply], int]] = []
        while True:
            value: Reply
            line = self._line()
            kind, rest = line[:1], line[1:]
            if kind == b"+":
                value = rest
            elif kind == b"-":
                raise RedisProblem(rest.decode("utf-8", "replace")[:200])
            elif kind == b":":
                value = _integer(rest)
            elif kind == b"$":
                length = _length(rest, MAX_BULK_BYTES, "a bulk string")
                value = None if length < 0 else self._bulk(length)
            elif kind == b"*":
                length = _length(rest, MAX_ARRAY_LENGTH, "an array")
                if length > 0:
                    if len(open_arrays) >= MAX_DEPTH:
                        raise RedisProblem(
                            f"protocol error: a reply nested deeper than {MAX_DEPTH} level"
                        )
                    open_arrays.append(([], length))
                    continue
                value = None if length < 0 else []
            else:
                raise RedisProblem(f"protocol error: not a RESP2 reply ({bytes(line[:20])!r})")
            while open_arrays:
                items, wanted = open_arrays[-1]
                items.append(value)
                if len(items) < wanted:
                    break
                open_arrays.pop()
                value = items
            else:
                return value

    def _line(self) -> bytes:
        start = 0
        while (end := self._buffer.find(b"\r\n", start)) < 0:
            if len(self._buffer) > MAX_LINE_BYTES:
                raise RedisProblem(f"protocol error: a reply line longer than {MAX_LINE_BYTES}")
            start = max(len(self._buffer) - 1, 0)
            self._receive()
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        return line

    def _bulk(self, length: int) -> bytes:
        while len(self._buffer) < length + 2:
            self._receive()
        if self._buffer[length : length + 2] != b"\r\n":
            raise RedisProblem("protocol error: a bulk string longer than announced")
        data = bytes(self._buffer[:length])
        del self._buffer[: length + 2]
        return data

    def _receive(self) -> None:
        self._sock.settimeout(_remaining(self._deadline, self._timeout))
        try:
            chunk = self._sock.recv(_RECEIVE_BYTES)
        except TimeoutError:
            raise RedisTimeout(
                f"timed out: no complete answer within {self._timeout * 1000:g} ms"
            ) from None
        if not chunk:
            raise RedisProblem("the server closed the connection")
        self._received += len(chunk)
        if self._received > MAX_ROUND_TRIP_BYTES:
            raise RedisProblem(f"replies larger than {MAX_ROUND_TRIP_BYTES >> 20} MiB in all")
        self._buffer += chunk


def _integer(text: bytes) -> int:
    digits = text[1:] if text[:1] == b"-" else text
    if not (0 < len(digits) <= 19 and digits.isdigit()):
        raise RedisProblem(f"protocol error: not an integer ({text[:20]!r})")
    return int(text)


def _length(text: bytes, limit: int, what: str) -> int:
    length = _integer(text)
    if length < -1:
        raise RedisProblem(f"protocol error: {what} of length {length}")
    if length > limit:
        raise RedisProblem(f"{what} of {length} (more than {limit}) in a reply")
    return length
