"""Loopback HTTP listeners that record every connection, for the tests proving kustomize
reaches no network: a target on 127.0.0.1 and on [::1] (answering with a page a tenant must
never see, like the repo-server's metrics naming other tenants' repositories), and a
redirector on 127.0.0.1 that sends every request on to the target."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SECRET_PAGE = "tagpin_renders_total{repo='git@example.com:tenant-b/payroll.git'} 7\n"


class _RecordingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], recorder: Recorder, family: int) -> None:
        self.address_family = family
        self.recorder = recorder
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Counted at accept: a connection that never sends a request is a hit too.
        host, port = self.server_address[:2]
        self.recorder.record(f"{host!s}:{port}")
        super().process_request(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _RecordingServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", self.server.recorder.url("127.0.0.1", "/after-redirect"))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = SECRET_PAGE.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        pass


class Recorder:
    """Where the listeners are, and every connection they accepted."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self._lock = threading.Lock()
        self.port = 0
        self.redirect_port = 0

    def record(self, listener: str) -> None:
        with self._lock:
            self.hits.append(listener)

    def url(self, host: str, path: str = "/metrics") -> str:
        """`http://HOST:PORT/PATH` to the target; HOST in any spelling (`[::1]`, `0x7f.1`)."""
        return f"http://{host}:{self.port}{path}"

    def redirect_url(self) -> str:
        return f"http://127.0.0.1:{self.redirect_port}/redirect"


def _dual_stack(recorder: Recorder) -> tuple[_RecordingServer, _RecordingServer]:
    """The target on 127.0.0.1 and [::1] with one port, so one URL serves every spelling."""
    for _ in range(20):
        target = _RecordingServer(("127.0.0.1", 0), recorder, socket.AF_INET)
        try:
            return target, _RecordingServer(
                ("::1", target.server_address[1]), recorder, socket.AF_INET6
            )
        except OSError:  # that port is taken on [::1]: try another
            target.server_close()
    raise OSError("no port free on both 127.0.0.1 and [::1]")


@contextmanager
def recording_listeners() -> Iterator[Recorder]:
    recorder = Recorder()
    with ExitStack() as stack:
        target, target6 = _dual_stack(recorder)
        stack.callback(target.server_close)
        stack.callback(target6.server_close)
        recorder.port = target.server_address[1]
        redirector = _RecordingServer(("127.0.0.1", 0), recorder, socket.AF_INET)
        stack.callback(redirector.server_close)
        recorder.redirect_port = redirector.server_address[1]
        for server in (target, target6, redirector):
            thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
            thread.start()
            stack.callback(thread.join, 5)
            stack.callback(server.shutdown)
        yield recorder
