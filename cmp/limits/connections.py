"""An HTTP front under load and attack, for the webhook and the render server's /metrics:
bounded concurrency, a total deadline per request, room for authenticated pushes whatever
unauthenticated clients do, and a shutdown that fits in the pod's grace period.

http.server gives one thread per connection and a socket timeout per read, so a client that
trickles a byte every few seconds is never cut off, any number of such clients each hold a
thread, and one of them can hold a graceful shutdown for as long as it likes. Here:

- a connection whose request has not been read and authenticated yet is *pending*: at most
  `PENDING_PER_SLOT × max_connections` of them; when one more arrives, the oldest pending one
  is dropped. A real sender writes its request at once, so it is never the oldest for long:
  however many slow or idle unauthenticated sockets are open, a push gets in;
- only an authenticated request takes one of `max_connections` slots (`admit`), for the work
  that costs: listing Applications, patching. Past that, 503 with Retry-After (EventBridge
  retries);
- every connection has one deadline, `request_timeout` after it was accepted, whatever it is
  doing (reading, or being answered): a watchdog thread shuts the socket down at that moment,
  so the handler's next read or write fails and its thread ends;
- stopping moves every deadline to at most `STOP_DRAIN_SECONDS` from now and waits for the
  handlers only until the shutdown budget runs out.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

STOP_DRAIN_SECONDS = 1.0  # what a request still being read gets once the server stops
PENDING_PER_SLOT = 4  # unauthenticated connections kept per request slot before dropping


class Deadlines:
    """Shuts down each registered socket at its deadline, from one watchdog thread."""

    def __init__(self, on_expired: Callable[[], None]) -> None:
        self._on_expired = on_expired
        self._condition = threading.Condition()
        self._due: dict[socket.socket, float] = {}
        self._heap: list[tuple[float, int, socket.socket]] = []
        self._order = itertools.count()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="deadlines", daemon=True)
        self._thread.start()

    def add(self, connection: socket.socket, due: float) -> None:
        with self._condition:
            self._due[connection] = due
            heapq.heappush(self._heap, (due, next(self._order), connection))
            self._condition.notify()

    def remove(self, connection: socket.socket) -> None:
        with self._condition:
            self._due.pop(connection, None)

    def bring_forward(self, due: float) -> None:
        """No connection lives past `due` (stopping)."""
        with self._condition:
            for connection, current in list(self._due.items()):
                if current > due:
                    self._due[connection] = due
                    heapq.heappush(self._heap, (due, next(self._order), connection))
            self._condition.notify()

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify()

    def _run(self) -> None:
        with self._condition:
            while not self._closed:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    due, _, connection = heapq.heappop(self._heap)
                    if self._due.get(connection) == due:  # not answered or moved meanwhile
                        del self._due[connection]
                        with contextlib.suppress(OSError):
                            connection.shutdown(socket.SHUT_RDWR)
                        self._on_expired()
                wait = self._heap[0][0] - now if self._heap else None
                self._condition.wait(wait)


class BoundedHTTPServer(HTTPServer):
    """HTTPServer with a thread per connection: at most `PENDING_PER_SLOT × max_connections`
    still being read (the oldest dropped for a new one), at most `max_connections` admitted
    after authentication, each connection cut off `request_timeout` seconds after it was
    accepted."""

    request_queue_size = 128  # bursts of connections queue instead of being refused

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        *,
        max_connections: int,
        request_timeout: float,
        on_evicted: Callable[[], None],
        on_deadline: Callable[[], None],
    ) -> None:
        self._slots = threading.BoundedSemaphore(max_connections)
        self._max_pending = PENDING_PER_SLOT * max_connections
        self._request_timeout = request_timeout
        self._on_evicted = on_evicted
        self._lock = threading.Lock()
        self._pending: dict[socket.socket, None] = {}  # oldest first
        self._admitted: set[socket.socket] = set()
        self._active: set[threading.Thread] = set()
        self._active_changed = threading.Condition()
        self.deadlines = Deadlines(on_deadline)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            if len(self._pending) >= self._max_pending:
                oldest = next(iter(self._pending))
                del self._pending[oldest]
                with contextlib.suppress(OSError):
                    oldest.shutdown(socket.SHUT_RDWR)  # its handler's next read ends it
                self._on_evicted()
            self._pending[request] = None
        self.deadlines.add(request, time.monotonic() + self._request_timeout)
        thread = threading.Thread(
            target=self._serve, args=(request, client_address), name="request", daemon=True
        )
        with self._active_changed:
            self._active.add(thread)
        thread.start()

    def admit(self, request: socket.socket) -> bool:
        """Give an authenticated request one of the `max_connections` slots; False when every
        slot is taken (or the connection was already dropped)."""
        with self._lock:
            if request not in self._pending:
                return request in self._admitted
            if not self._slots.acquire(blocking=False):
                return False
            del self._pending[request]
            self._admitted.add(request)
            return True

    def _serve(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - socketserver's own policy: report, carry on
            self.handle_error(request, client_address)
        finally:
            self.deadlines.remove(request)
            self.shutdown_request(request)
            with self._lock:
                self._pending.pop(request, None)
                if request in self._admitted:
                    self._admitted.discard(request)
                    self._slots.release()
            with self._active_changed:
                self._active.discard(threading.current_thread())
                self._active_changed.notify_all()

    def server_close(self) -> None:
        super().server_close()
        self.deadlines.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the handler logs its own errors; a cut-off client is not one

    def drain(self, budget_ends: float) -> int:
        """After shutdown(): cut off whoever is still talking within STOP_DRAIN_SECONDS, wait for
        the handlers until `budget_ends`; the number still running then."""
        self.deadlines.bring_forward(min(time.monotonic() + STOP_DRAIN_SECONDS, budget_ends))
        with self._active_changed:
            while self._active:
                left = budget_ends - time.monotonic()
                if left <= 0:
                    break
                self._active_changed.wait(left)
            return len(self._active)
