"""The render server (TAGPIN_RENDER_SERVER, docs/server.md): import once, fork a warm worker per
render.

The server itself never renders: it imports tagpin, Jinja2, PyYAML and boto3, renders a tiny
built-in app once so first-call work is done too, then for every connection forks a worker.
A worker takes the client's working directory and environment, runs exactly what
`tagpin generate` runs, sends its stdout and stderr back and exits, so nothing of one render
(values, AWS credentials, a template's state) outlives it or reaches another. Workers run in
parallel, each with its own TAGPIN_MAX_MEMORY_MB and TAGPIN_MAX_CPU_SECONDS caps.

Argo CD's deadline signals the client's process group, which the worker is not in; so the
server watches each client's connection and, when a client hangs up before its answer, kills
that worker's whole process group. The server does it, not a thread in the worker: a worker
stuck in C code holding the GIL runs none of its own threads. A stopping server kills every
worker it still has, so no render outlives it.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import resource
import select
import signal
import socket
import stat
import sys
import time
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from cmp.errors import ConfigError, ExitStatus
from cmp.eventlog import EventLog
from cmp.server.client import RESULT, STARTED, decode_request, read_exact, same_user

if TYPE_CHECKING:
    from cmp.observe import RenderObserver
    from cmp.server.metrics import RenderServerMetrics
    from cmp.server.tally import Report

STOP_GRACE_SECONDS = 2.0  # for workers that have answered to exit when the server stops
MAX_REQUEST_BYTES = 8 * 1024 * 1024  # cwd + environment; Linux caps an environment far lower
REQUEST_TIMEOUT = 10.0  # seconds for a connected client to send its request
# A hang-up or error on the client's connection; no POLLIN: the request itself is for the worker.
_CLIENT_GONE = select.POLLRDHUP | select.POLLHUP | select.POLLERR


@dataclass
class _Worker:
    """What the server keeps of a worker: the client's connection (to see it hang up, and to
    answer for a worker that died) and a pipe the worker writes to once it has answered (a
    hang-up after that is just goodbye)."""

    connection: socket.socket
    answered_pipe: int  # read end of the worker's "answered" pipe
    began: float
    abandoned: bool = False
    answered: bool = False

    def has_answered(self) -> bool:
        if not self.answered:
            with contextlib.suppress(BlockingIOError):  # nothing written yet
                self.answered = bool(os.read(self.answered_pipe, 1))
        return self.answered

    def report(self) -> bytes:
        """What the worker wrote after its answer's mark (cmp/server/tally.py): read once it
        has ended, so the pipe holds all of it; at most what a report may be, and one more."""
        from cmp.server.tally import MAX_REPORT_BYTES

        if not self.has_answered():
            return b""
        chunks: list[bytes] = []
        size = 0
        with contextlib.suppress(BlockingIOError):
            while size <= MAX_REPORT_BYTES and (chunk := os.read(self.answered_pipe, 65536)):
                chunks.append(chunk)
                size += len(chunk)
        return b"".join(chunks)


def serve(
    path: str, log: IO[str], *, log_renders: bool = False, profile_dir: str | None = None
) -> int:
    """Serve renders on the Unix socket `path` until SIGTERM/SIGINT; 0 if another server owns
    it already (several clients may have started one at once). With `profile_dir`, every
    worker runs its render under cProfile and writes `worker-<pid>.prof` there."""
    _check_directory(os.path.dirname(path) or ".")
    if profile_dir is not None:
        profile_dir = os.path.abspath(profile_dir)  # a worker renders in its client's cwd
        _check_directory(profile_dir, holds="profile")
    from cmp.services import default_cache_dir
    from cmp.settings import LogFormat, Settings

    # The sidecar's own settings (a render brings its environment to its worker): the server's
    # port and log format, and the cache directory whose render slots it shows.
    settings = Settings.from_environ(os.environ)
    events = EventLog(log, "render-server", json_lines=settings.log_format is LogFormat.JSON)
    lock = open(path + ".lock", "a")  # noqa: SIM115 - held for the server's whole life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        events.write("already served", socket=path, text=f"another server already serves {path}")
        return 0
    started = time.monotonic()
    warm_up()
    metrics = None
    if settings.metrics_port:
        metrics = _serve_metrics(
            settings.metrics_port, default_cache_dir(settings, os.environ), events
        )
    server = _Server(path, lock, events, log_renders, profile_dir, metrics)
    ready = time.monotonic() - started
    server.events.write(
        "serving",
        socket=path,
        pid=os.getpid(),
        ready_seconds=round(ready, 3),
        metrics_port=settings.metrics_port if metrics else None,
        text=f"serving {path} (pid {os.getpid()}, ready in {ready:.2f} s)",
    )
    try:
        server.run()
    finally:
        server.stop()
    return 0


def _serve_metrics(
    port: int, cache_dir: os.PathLike[str], events: EventLog
) -> tuple[RenderServerMetrics, socket.socket] | None:
    """The metrics and their listening socket; None, said in the log, when the port cannot be
    had: renders go on (Prometheus sees the target down)."""
    from pathlib import Path

    from cmp.server.metrics import RenderServerMetrics

    metrics = RenderServerMetrics(Path(cache_dir))
    try:
        return metrics, metrics.serve(port)
    except OSError as exc:
        events.write(
            "cannot serve metrics",
            level="error",
            port=port,
            problem=str(exc),
            text=f"cannot serve metrics on port {port} ({exc}); renders go on without them",
        )
        return None


class _Server:
    """The listening socket and the workers it forked, each watched through its client's
    connection. Signal handlers only note what happened; the wakeup pipe ends the poll() in
    `run`, which does the work (nothing is raised in the middle of a fork or a log write)."""

    def __init__(
        self,
        path: str,
        lock: IO[str],
        events: EventLog,
        log_renders: bool,
        profile_dir: str | None = None,
        metrics: tuple[RenderServerMetrics, socket.socket] | None = None,
    ) -> None:
        self.path, self.lock, self.events, self.log_renders = path, lock, events, log_renders
        self.profile_dir = profile_dir
        self.metrics: RenderServerMetrics | None = metrics[0] if metrics else None
        self.metrics_socket: socket.socket | None = metrics[1] if metrics else None
        # Workers report what they counted when there are metrics, or a JSON log to name apps in.
        self.reports = self.metrics is not None or events.json_lines
        self.listener = _listen(path)
        self.bound = os.stat(path).st_ino
        self.workers: dict[int, _Worker] = {}
        self.stopping: list[int] = []
        self.poller = select.poll()
        self.wake_read, self.wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wake_write)
        signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda signum, _frame: self.stopping.append(signum))
        self.listener.setblocking(False)
        self.poller.register(self.listener, select.POLLIN)
        self.poller.register(self.wake_read, select.POLLIN)

    def run(self) -> None:
        """Until SIGTERM or SIGINT: end the workers whose clients left, reap the ones that
        ended, and fork one per new connection."""
        while not self.stopping:
            events = dict(self.poller.poll())
            if self.wake_read in events:
                with contextlib.suppress(BlockingIOError):
                    os.read(self.wake_read, 4096)
            for fd, mask in events.items():
                if fd not in (self.wake_read, self.listener.fileno()) and mask & _CLIENT_GONE:
                    self.end_abandoned(fd)
            self.reap()
            if self.listener.fileno() in events and not self.stopping:
                self.accept()

    def accept(self) -> None:
        try:
            connection, _ = self.listener.accept()
        except (BlockingIOError, ConnectionAbortedError):
            return
        except OSError as exc:  # out of file descriptors, say: clients render in-process
            self.events.write(
                "cannot accept", level="error", problem=str(exc), text=f"cannot accept: {exc}"
            )
            time.sleep(0.1)
            return
        connection.setblocking(True)
        if not same_user(connection):
            connection.close()
            return
        pipe: tuple[int, ...] = ()
        try:
            pipe = answered_read, answered_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            pid = os.fork()
        except OSError as exc:  # out of descriptors, processes or memory: the client renders
            self.events.write(
                "cannot start a worker",
                level="error",
                problem=str(exc),
                text=f"cannot start a worker: {exc}",
            )
            for fd in pipe:
                os.close(fd)
            connection.close()
            return
        if pid == 0:
            os.close(answered_read)
            _worker(
                connection,
                answered_write,
                close_in_child=(
                    self.listener,
                    self.lock,
                    self.wake_read,
                    self.wake_write,
                    *(w.connection for w in self.workers.values()),
                    *(w.answered_pipe for w in self.workers.values()),
                    *((self.metrics_socket,) if self.metrics_socket else ()),
                ),
                log=self.events if self.log_renders else None,
                profile_dir=self.profile_dir,
                report=self.reports,
            )
        os.close(answered_write)
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)  # also done in the child: whichever runs first
        self.workers[pid] = _Worker(connection, answered_read, time.monotonic())
        self.poller.register(connection, _CLIENT_GONE)
        if self.metrics is not None:
            self.metrics.worker_started(len(self.workers))

    def ended(self, pid: int, status: int, usage: resource.struct_rusage) -> None:
        """Log a worker that ended and, if its client still waits for an answer the worker
        never sent, answer for it: so the client does not render again what killed it."""
        worker = self.workers.pop(pid, None)
        if worker is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            self.poller.unregister(worker.connection)
        code = os.waitstatus_to_exitcode(status)
        took = time.monotonic() - worker.began
        cpu = usage.ru_utime + usage.ru_stime
        killed = None
        if worker.abandoned:
            how, killed = "stopped: its client left", "client_left"
        elif code < 0 and self.stopping:
            how, killed = "stopped with the server", "server_stopped"
        else:
            how = f"killed by signal {-code}" if code < 0 else f"exit {code}"
            killed = "signal" if code < 0 else None
        answered = worker.has_answered()
        status = code if code >= 0 else 128 - code
        if code < 0 and not worker.abandoned and not answered:
            status, message = _death_notice(-code, took, cpu, bool(self.stopping))
            _answer_for(worker.connection, status, message)
        report = self.read_report(worker) if self.reports else None
        if self.log_renders or code < 0:
            self.events.write(
                "render",
                level="info" if code == 0 else "error" if code < 0 else "warning",
                app=report.app if report else None,
                worker=pid,
                exit_code=status,
                duration_seconds=round(took, 4),
                cpu_seconds=round(cpu, 4),
                peak_rss_mib=round(usage.ru_maxrss / 1024, 1),
                ended=how,
                text=f"worker {pid} {how} after {took * 1000:.1f} ms (CPU {cpu * 1000:.1f} ms), "
                f"peak RSS {usage.ru_maxrss / 1024:.1f} MiB",
            )
        if self.metrics is not None:
            killed = killed if code < 0 and not (answered and killed == "signal") else None
            self.metrics.worker_ended(status, killed, took, report, len(self.workers))
        worker.connection.close()
        os.close(worker.answered_pipe)

    def read_report(self, worker: _Worker) -> Report | None:
        """The ended worker's report; None when it wrote none (it was killed, or it failed
        before answering), or an unreadable one, which is counted and logged."""
        from cmp.server.tally import BadReport, decode

        data = worker.report()
        if not data:
            return None
        try:
            return decode(data)
        except BadReport as error:
            if self.metrics is not None:
                self.metrics.report_unreadable()
            self.events.write(
                "unreadable report",
                level="error",
                problem=str(error),
                text=f"a worker's report is unreadable ({error}); its counts are lost",
            )
            return None

    def reap(self) -> None:
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.ended(pid, status, usage)

    def end_abandoned(self, fd: int) -> None:
        for pid, worker in self.workers.items():
            if worker.connection.fileno() != fd:
                continue
            self.poller.unregister(fd)  # one look per hang-up; ended() closes it
            if not worker.has_answered():
                worker.abandoned = True
                _kill_group(pid)
            return

    def stop(self) -> None:
        """A stopping server leaves no render behind. A worker that has answered is only
        exiting: let it, so its log lines are complete."""
        self.stopping.append(0)  # also when the loop ended by an error
        grace = time.monotonic() + STOP_GRACE_SECONDS
        for pid, worker in list(self.workers.items()):
            if not worker.has_answered():
                _kill_group(pid)
        while self.workers and time.monotonic() < grace:
            self.reap()
            time.sleep(0.01)
        for pid in list(self.workers):
            _kill_group(pid)
            with contextlib.suppress(ChildProcessError):
                _, status, usage = os.wait4(pid, 0)
                self.ended(pid, status, usage)
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self.bound:
                os.unlink(self.path)  # ours still: a newer server may have replaced it
        self.listener.close()
        self.events.write("stopped")
        self.lock.close()


def _death_notice(signum: int, took: float, cpu: float, stopping: bool) -> tuple[int, str]:
    """The exit status and message a client gets for a worker that died before answering."""
    if stopping:
        return int(ExitStatus.BUSY), (
            f"tagpin: the render server stopped {took:.1f} s into this render (exit "
            f"{int(ExitStatus.BUSY)}); nothing is wrong with the app: retry\n"
        )
    name = signal.Signals(signum).name if signum in signal.valid_signals() else str(signum)
    return 128 + signum, (
        f"tagpin: the render was killed by {name} after {took:.1f} s ({cpu:.1f} s of CPU): "
        "past the hard end of TAGPIN_MAX_CPU_SECONDS or TAGPIN_MAX_RENDER_SECONDS, or out of "
        "memory; is a template looping or building something huge?\n"
    )


def _answer_for(connection: socket.socket, status: int, message: str) -> None:
    """Send a client the answer its worker could not: an exit status and stderr, no output."""
    errors = message.encode()
    frame = RESULT + status.to_bytes(4, "big") + (0).to_bytes(8, "big")
    frame += len(errors).to_bytes(8, "big") + errors
    with contextlib.suppress(OSError):
        connection.settimeout(1.0)  # small enough for the socket's buffer: never waits
        connection.sendall(frame)


def _kill_group(pid: int) -> None:
    """SIGKILL the worker's process group: the worker and anything it started (git, kubectl).
    Never a recycled pid: the worker is not reaped yet, so its pid is still ours."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:  # not its own group yet: it has not run setpgid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _check_directory(directory: str, holds: str = "socket") -> None:
    """Only a directory this user alone can write may hold the socket: anyone who can replace
    it could answer renders with their own YAML (or, for profiles, plant a symlink to write
    through)."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    info = os.stat(directory)
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise ConfigError(
            f"{directory}: the render server's {holds} directory must belong to this user "
            "and be writable by no one else"
        )


def _listen(path: str) -> socket.socket:
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)  # left by a server that died: we hold the lock now
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # the socket is born 0600: no window for another user
    try:
        listener.bind(path)
    finally:
        os.umask(old_umask)
    listener.listen(128)
    return listener


def warm_up() -> None:
    """Import what any render may need and render a tiny app, so workers start warm: Jinja2's
    lexer, PyYAML's resolvers, tagpin's tables and, for cold renders, boto3."""
    import concurrent.futures.thread  # noqa: F401  # the registry's pool: every lookup not cached
    import encodings.idna  # noqa: F401  # getaddrinfo's first call (Redis, ECR, the Kubernetes API)
    import gc
    import tempfile
    from pathlib import Path

    # ~100 ms that every cold render (a tag not in the cache yet) would pay.
    import boto3.session  # type: ignore[import-untyped,unused-ignore]  # noqa: F401
    import re2  # type: ignore[import-untyped,unused-ignore]  # noqa: F401  # allow-tags, ignore-tags

    from cmp import generate  # noqa: F401
    from cmp.argocd import (
        kube,  # noqa: F401
        lookup,  # noqa: F401
    )
    from cmp.images import (
        lockfile,  # noqa: F401
        pin,  # noqa: F401
    )
    from cmp.imageupdater import annotations as overrides  # noqa: F401
    from cmp.imageupdater import plan as branch_deploy  # noqa: F401
    from cmp.imageupdater import semver  # noqa: F401
    from cmp.limits import (  # what generate() imports around the render (the warm-up skips it)
        cpu,  # noqa: F401
        memory,  # noqa: F401
        slots,  # noqa: F401
    )
    from cmp.pipeline import run
    from cmp.registry import (  # noqa: F401
        build,
        cache,
        ecr,
        lock,
        resp,  # the fleet cache's client: `auto` starts the server with a scrubbed environment,
        shared,  # and TAGPIN_REDIS_URL comes with each render's request
    )
    from cmp.request import from_argocd_environment
    from cmp.services import Services
    from cmp.settings import DEFAULT_SETTINGS, AppLookup, CacheMode, LockMode
    from cmp.source import cachedir  # noqa: F401

    # ECR's models and endpoint rules (~50 ms a cold render would pay); credentials are not
    # kept: each worker's session reads its own, from the environment its request brings.
    ecr.preload_models()

    with tempfile.TemporaryDirectory() as root:
        app = Path(root, "app")
        (app / "templates").mkdir(parents=True)
        (app / "tagpin.yaml").write_text("{}\n")
        (app / "values.yaml").write_text("name: warm-up\nports: [80]\n")
        (app / "templates" / "config.yaml.j2").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ values.name | quote }}\n"
            "data:\n{% for port in values.ports %}  port{{ loop.index }}: '{{ port }}'\n"
            "{% endfor %}  yaml: {{ values | to_yaml | quote }}\n"
        )
        argocd_env = {"ARGOCD_APP_NAME": "warm-up", "ARGOCD_APP_SOURCE_PATH": "app"}
        settings = DEFAULT_SETTINGS._replace(
            cache=CacheMode.OFF, app_lookup=AppLookup.OFF, lock=LockMode.OFF
        )

        def no_registry(*_: object) -> ecr.EcrRegistryClient:
            raise AssertionError("the warm-up app has no images")

        run(from_argocd_environment(argocd_env, app, settings), Services(ecr=no_registry))
    tempfile.tempdir = None  # computed from this process's TMPDIR; a worker has its own
    gc.collect()
    gc.freeze()  # workers then never touch these objects' pages: fork shares them for good


def _worker(
    connection: socket.socket,
    answered: int,
    close_in_child: tuple[socket.socket | IO[str] | int, ...],
    log: EventLog | None = None,
    profile_dir: str | None = None,
    report: bool = False,
) -> None:
    """Runs in the forked child; never returns. With `log`, it notes its private memory (what
    it added to the server's shared pages) once it has answered; with `profile_dir`, it
    renders under cProfile and writes the profile there once it has answered; with `report`,
    it counts what it does and writes that after its answer's mark (cmp/server/tally.py)."""
    from cmp.observe import SILENT

    observer: RenderObserver = SILENT
    if report:
        from cmp.server.tally import Tally

        observer = tally = Tally()
    status = int(ExitStatus.INTERNAL)
    try:
        os.setpgid(0, 0)  # its own group, which the server kills when the client is gone
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_DFL)
        for inherited in close_in_child:
            # The lock must die with the server, not with its last worker.
            os.close(inherited) if isinstance(inherited, int) else inherited.close()
        cwd, umask, environ = _read_request(connection)
        connection.sendall(STARTED)
        if profile_dir is None:
            status, output, errors = _render(cwd, umask, environ, observer)
        else:
            import cProfile  # only a profiling server's workers pay for it

            profiler = cProfile.Profile()
            status, output, errors = profiler.runcall(_render, cwd, umask, environ, observer)
        # Said before the answer goes out: a client that hangs up once it has read it must not
        # look like one that gave up. Only sending is left, which ends if the client is gone.
        os.write(answered, b".")
        connection.sendall(
            RESULT
            + status.to_bytes(4, "big")
            + len(output).to_bytes(8, "big")
            + len(errors).to_bytes(8, "big")
            + output
            + errors
        )
        if report:  # after the answer: the client does not wait for it
            with contextlib.suppress(OSError):
                os.write(answered, tally.encode(os.environ.get("ARGOCD_APP_NAME", "")))
        if log is not None:
            private = _private_kib() / 1024
            log.write(
                "private memory",
                worker=os.getpid(),
                private_mib=round(private, 1),
                text=f"worker {os.getpid()} private memory {private:.1f} MiB",
            )
        if profile_dir is not None:
            written = os.path.join(profile_dir, f"worker-{os.getpid()}.prof")
            profiler.dump_stats(written)
            if log is not None:
                log.write(
                    "profile written",
                    worker=os.getpid(),
                    path=written,
                    text=f"worker {os.getpid()} wrote its profile to {written}",
                )
    except BaseException:  # noqa: BLE001 - the client renders itself when no result comes
        status = int(ExitStatus.INTERNAL)
    finally:
        os._exit(status)


def _private_kib() -> int:
    """Memory only this process holds (Private_Clean + Private_Dirty), in KiB; 0 if unknown."""
    total = 0
    with contextlib.suppress(OSError), open("/proc/self/smaps_rollup", encoding="ascii") as rollup:
        for line in rollup:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total


def _read_request(connection: socket.socket) -> tuple[str, int, dict[bytes, bytes]]:
    connection.settimeout(REQUEST_TIMEOUT)
    size = int.from_bytes(read_exact(connection, 4), "big")
    if size > MAX_REQUEST_BYTES:
        raise ValueError("request too large")
    payload = read_exact(connection, size)
    connection.settimeout(None)
    return decode_request(payload)


def _render(
    cwd: str, umask: int, environ: dict[bytes, bytes], observer: RenderObserver
) -> tuple[int, bytes, bytes]:
    """Become the client's `tagpin generate` (its cwd, umask and environment) and run it,
    keeping stdout and stderr to send back."""
    from pathlib import Path

    from cmp.generate import generate

    os.chdir(cwd)
    os.umask(umask)  # the cache files it writes get the modes they would in-process
    os.environb.clear()
    os.environb.update(environ)
    sys.argv = ["tagpin", "generate"]
    output, errors = io.BytesIO(), io.BytesIO()
    # Encoded as the client's own streams would be: the server runs with the sidecar's locale,
    # and a client's PYTHONIOENCODING ("encoding[:errors]") wins, as it would in-process.
    chosen, _, handler = os.environ.get("PYTHONIOENCODING", "").partition(":")
    sys.stdout = io.TextIOWrapper(
        output,
        encoding=chosen or sys.stdout.encoding,
        errors=handler or sys.stdout.errors,
        write_through=True,
    )
    sys.stderr = io.TextIOWrapper(
        errors,
        encoding=chosen or sys.stderr.encoding,
        errors=handler or sys.stderr.errors,
        write_through=True,
    )
    status = generate(os.environ, Path(cwd), observer=observer)
    return int(status), output.getvalue(), errors.getvalue()


def main(argv: list[str] | None = None) -> int:
    """`python -m cmp.server.listener --socket PATH [--log FILE]`: how a render starts a server."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m cmp.server.listener")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--log", help="append to this file instead of stderr")
    parser.add_argument("--log-renders", action="store_true")
    parser.add_argument("--profile-dir", help="each worker writes its render's cProfile here")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        log = (
            stack.enter_context(
                open(
                    args.log,
                    "a",
                    encoding="utf-8",
                    opener=lambda name, flags: os.open(name, flags, 0o600),  # tracebacks name paths
                )
            )
            if args.log
            else sys.stderr
        )
        try:
            return serve(
                args.socket, log, log_renders=args.log_renders, profile_dir=args.profile_dir
            )
        except ConfigError as exc:
            log.write(f"tagpin render-server: cannot serve: {exc}\n")
            return int(exc.exit_status)
        except Exception:  # started detached: this log is the only place anyone can look
            import traceback

            log.write(
                "tagpin render-server: cannot serve (renders run in-process):\n"
                + traceback.format_exc()
            )
            return int(ExitStatus.INTERNAL)


if __name__ == "__main__":
    sys.exit(main())
