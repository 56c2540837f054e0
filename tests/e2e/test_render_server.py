"""The render server (TAGPIN_RENDER_SERVER): `tagpin generate` answered by a warm forked worker.

What users rely on: the same bytes, exit status and messages as an in-process render; nothing
of one render reaching another; Argo CD's deadline still ending a render; and a missing, dead
or stuck server never failing or hanging a render (it just runs in-process).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from cmp import __version__
from cmp.cli import write_launcher
from cmp.errors import ExitStatus
from cmp.server.client import START_TIMEOUT
from tests.support.apptree import build_tree, clean_env, run_cli
from tests.support.cmpserver import AppSpec, CmpServer
from tests.support.fake_kube import write_kubeconfig
from tests.support.listener import start_listener
from tests.support.moto_ecr import ACCOUNT, REGION

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WAIT = 30.0  # seconds for a server to come up on a loaded CI machine
# A template that renders for hours (10^10 empty iterations): only a signal ends it.
SPIN = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}\n"


class Server:
    """A `tagpin render-server` process, as an operator would run it."""

    def __init__(self, socket: Path, log: Path, env: dict[str, str] | None = None) -> None:
        self.socket, self.log = socket, log
        self.process = start_listener(socket, log, clean_env(env))
        wait_for(lambda: "serving" in self.log_text(), "the render server to start")

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def worker_lines(self) -> list[str]:
        """One line per render, written when the server reaps its worker."""
        return [
            line
            for line in self.log_text().splitlines()
            if " worker " in line and "private memory" not in line
        ]

    def private_lines(self) -> list[str]:
        return [line for line in self.log_text().splitlines() if "private memory" in line]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            self.process.wait(timeout=WAIT)


def wait_for(condition: object, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # Short and private: a socket path must fit in 100 bytes, unlike pytest's tmp paths.
    directory = Path(tempfile.mkdtemp(prefix="tp-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def server(socket_dir: Path) -> Iterator[Server]:
    started = Server(
        socket_dir / "render.sock",
        socket_dir / "server.log",
        env={"ARGOCD_ENV_TEAM": "from-the-server", "SERVER_ONLY": "secret"},
    )
    yield started
    started.stop()


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """examples/web (digests from its tagpin.lock: no ECR) plus a template showing env.TEAM."""
    root = tmp_path / "repo"
    shutil.copytree(REPO / "examples" / "web", root / "apps" / "web")
    shutil.copytree(REPO / "examples" / "lib", root / "examples" / "lib")
    (root / ".git").mkdir()
    build_tree(
        root / "apps" / "web",
        {
            "templates/team.yaml.j2": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: team}\n"
            "data:\n  team: {{ env.TEAM | quote }}\n",
        },
    )
    return root / "apps" / "web"


def argocd_env(app: Path, **extra: str) -> dict[str, str]:
    return {
        "ARGOCD_APP_NAME": "web",
        "ARGOCD_APP_NAMESPACE": "shop",
        "ARGOCD_APP_SOURCE_PATH": "apps/web",
        "ARGOCD_APP_REVISION": "0" * 40,
        "ARGOCD_ENV_TEAM": "payments",
        **extra,
    }


def served(server: Server, **extra: str) -> dict[str, str]:
    return {
        "TAGPIN_RENDER_SERVER": "on",
        "TAGPIN_RENDER_SERVER_SOCKET": str(server.socket),
        **extra,
    }


def test_a_served_render_is_the_in_process_render(server: Server, app: Path) -> None:
    env = argocd_env(app, ARGOCD_ENV_TEAM="zürich-支払い")  # the worker encodes like the client
    alone = run_cli(["generate"], cwd=app, env=env)
    answered = run_cli(["generate"], cwd=app, env={**env, **served(server)})
    assert alone.returncode == 0, alone.stderr.decode()
    assert (answered.returncode, answered.stdout, answered.stderr) == (0, alone.stdout, b"")
    assert "team: zürich-支払い".encode() in answered.stdout
    wait_for(lambda: server.worker_lines(), "the worker's log line")
    assert len(server.worker_lines()) == 1 and "exit 0" in server.worker_lines()[0]
    # --log-renders also says what the worker added to the server's shared pages.
    (private,) = server.private_lines()
    peak = float(server.worker_lines()[0].split("peak RSS ")[1].split()[0])
    assert 0 < float(private.split("private memory ")[1].split()[0]) < peak


def test_the_images_launcher_sends_a_served_render_importing_only_the_client(
    server: Server, app: Path, tmp_path: Path
) -> None:
    """The image replaces pip's console script (which imports `re` first) with cmp.cli's
    LAUNCHER (Dockerfile): it must render as `tagpin` does and import only the client. Run
    without `site` (-S), so this venv's editable-install hook cannot import anything first."""
    launcher = tmp_path / "tagpin"
    write_launcher(str(launcher))
    env = {**argocd_env(app), **served(server)}
    alone = run_cli(["generate"], cwd=app, env=argocd_env(app))
    done = subprocess.run(
        [sys.executable, "-S", "-X", "importtime", str(launcher), "generate"],
        cwd=app,
        env=clean_env({**env, "PYTHONPATH": str(REPO)}),
        capture_output=True,
        timeout=120,
    )
    assert (done.returncode, done.stdout) == (0, alone.stdout), done.stderr.decode()
    imported = {
        line.split("|")[-1].strip()
        for line in done.stderr.decode().splitlines()
        if line.startswith("import time:") and "self [us]" not in line
    }
    assert {"cmp.cli", "cmp.server.client"} <= imported
    assert not imported & {"re", "typing", "socket", "yaml", "jinja2", "cmp.settings"}


def test_a_served_render_encodes_its_output_as_the_client_asked(server: Server, app: Path) -> None:
    env = argocd_env(app, ARGOCD_ENV_TEAM="zürich", PYTHONIOENCODING="latin-1")
    alone = run_cli(["generate"], cwd=app, env=env)
    answered = run_cli(["generate"], cwd=app, env={**env, **served(server)})
    assert "team: zürich".encode("latin-1") in alone.stdout
    assert (answered.returncode, answered.stdout) == (0, alone.stdout)


def test_a_served_failure_fails_the_same_way(server: Server, app: Path) -> None:
    (app / "templates" / "service.yaml").write_text("apiVersion: v1\nkind: Service\n")
    alone = run_cli(["generate"], cwd=app, env=argocd_env(app))
    answered = run_cli(["generate"], cwd=app, env={**argocd_env(app), **served(server)})
    assert alone.returncode == 6 and b"service.yaml:1: Service lacks metadata" in alone.stderr
    assert (answered.returncode, answered.stdout, answered.stderr) == (6, b"", alone.stderr)
    wait_for(lambda: any("exit 6" in line for line in server.worker_lines()), "the worker's log")


def test_json_logs_say_each_render_as_one_object_and_nothing_secret(
    socket_dir: Path, app: Path
) -> None:
    """TAGPIN_LOG_FORMAT=json: a line per render a log pipeline reads as is (time, level, app,
    exit code, duration), and no credential of the request's environment."""
    json_server = Server(
        socket_dir / "render.sock", socket_dir / "server.log", env={"TAGPIN_LOG_FORMAT": "json"}
    )
    try:
        secret = "client-secret-0123456789"
        env = {**argocd_env(app), **served(json_server), "AWS_SECRET_ACCESS_KEY": secret}
        assert run_cli(["generate"], cwd=app, env=env).returncode == 0
        (app / "templates" / "service.yaml").write_text("apiVersion: v1\nkind: Service\n")
        assert run_cli(["generate"], cwd=app, env=env).returncode == 6
        wait_for(
            lambda: json_server.log_text().count('"msg": "render"') == 2, "both renders' lines"
        )
    finally:
        json_server.stop()
    text = json_server.log_text()
    records = [json.loads(line) for line in text.splitlines()]  # every line, one object
    assert [r["msg"] for r in records if r["msg"] != "private memory"] == [
        "serving",
        "render",
        "render",
        "stopped",
    ]
    renders = [r for r in records if r["msg"] == "render"]
    assert [(r["level"], r["app"], r["exit_code"]) for r in renders] == [
        ("info", "web", 0),
        ("warning", "web", 6),
    ]
    assert all(r["duration_seconds"] > 0 and r["time"].endswith("+00:00") for r in renders)
    assert secret not in text and "payments" not in text  # neither credentials nor env values


def test_each_render_sees_only_its_own_environment(server: Server, app: Path) -> None:
    """The server was started with ARGOCD_ENV_TEAM set: no render may see it, or anything
    else of the server's or of an earlier render's environment."""
    first = run_cli(["generate"], cwd=app, env={**argocd_env(app), **served(server)})
    env = {k: v for k, v in argocd_env(app).items() if k != "ARGOCD_ENV_TEAM"}
    second = run_cli(["generate"], cwd=app, env={**env, **served(server)})
    assert first.returncode == 0 and b"team: payments" in first.stdout
    assert second.returncode == 5, second.stderr.decode()
    assert b"team.yaml.j2:5: env.TEAM is not defined" in second.stderr
    alone = run_cli(["generate"], cwd=app, env=env)
    assert (second.returncode, second.stderr) == (alone.returncode, alone.stderr)
    assert b"from-the-server" not in first.stdout + second.stdout + second.stderr


def test_concurrent_served_renders_match_serial_ones(server: Server, app: Path) -> None:
    teams = [f"team-{i}" for i in range(12)]

    def render(team: str) -> bytes:
        done = run_cli(
            ["generate"], cwd=app, env={**argocd_env(app, ARGOCD_ENV_TEAM=team), **served(server)}
        )
        assert done.returncode == 0, done.stderr.decode()
        return done.stdout

    with ThreadPoolExecutor(max_workers=6) as pool:
        parallel = list(pool.map(render, teams))
    assert parallel == [render(team) for team in teams]
    assert all(f"team: {team}".encode() in out for team, out in zip(teams, parallel, strict=True))
    wait_for(lambda: len(server.worker_lines()) == 2 * len(teams), "a log line per render")


def workers_of(server: Server) -> list[int]:
    """The server's live child processes: its workers."""
    pid = server.process.pid
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def gone(pid: int) -> bool:
    """No process is left in the group `pid` (a worker's own group, with anything it started)."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


def left_workers(server: Server) -> list[int]:
    return [
        int(line.split(" worker ", 1)[1].split()[0])
        for line in server.worker_lines()
        if "stopped: its client left" in line
    ]


def spinning_client(
    server: Server, app: Path, *, sigint: Any = signal.SIG_DFL, **extra: str
) -> subprocess.Popen[bytes]:
    """A served render that spins for hours. SIGINT's disposition is set here, whatever the
    test run inherited (`nohup`, `&` in a script ignore it): Python only turns SIGINT into
    KeyboardInterrupt when it starts with the default."""
    (app / "templates" / "spin.yaml.j2").write_text(SPIN)
    return subprocess.Popen(
        [str(BIN / "tagpin"), "generate"],
        cwd=app,
        env=clean_env({**argocd_env(app), **served(server), **extra}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, sigint),
    )


@contextlib.contextmanager
def ended_at_exit(client: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    """A failed test leaves no spinning client behind."""
    try:
        yield client
    finally:
        if client.poll() is None:
            client.kill()
        client.communicate(timeout=WAIT)


def test_argo_cds_deadline_ends_the_worker_too(server: Server, app: Path, tmp_path: Path) -> None:
    """The worker is not in the render's process group, which is all Argo CD signals; the
    server sees the client hang up and kills the worker's group: nothing of the render remains."""
    (app / "templates" / "spin.yaml.j2").write_text(SPIN)
    cmp = CmpServer.from_plugin_yaml(
        REPO / "plugin.yaml",
        workdir=tmp_path / "cmp-tmp",
        timeout=3,
        sidecar_env={
            "PATH": f"{BIN}{os.pathsep}/usr/bin:/bin",
            "HOME": str(tmp_path),
            "TAGPIN_APP_LOOKUP": "off",
            "TAGPIN_CACHE_DIR": str(tmp_path / "cache"),  # its render slots: not the machine's
            **served(server),
        },
    )
    (tmp_path / "cmp-tmp").mkdir()
    result = cmp.generate(
        app.parents[1], AppSpec(name="web", source_path="apps/web"), exclude=[".git"]
    )
    assert not result.ok
    wait_for(lambda: left_workers(server), "the worker to end once its client was killed")
    assert all(gone(pid) for pid in left_workers(server))
    assert workers_of(server) == []


def test_a_worker_stuck_holding_the_gil_is_ended_by_the_server(server: Server, app: Path) -> None:
    """The attack: a worker burning CPU in C code (a backtracking regexp) never ran its own
    "client left" thread and outlived Argo CD's deadline. A stopped worker runs no code at all,
    so only the server can end it."""
    client = spinning_client(server, app)
    try:
        wait_for(lambda: workers_of(server), "a worker to start")
        (worker,) = workers_of(server)
        os.kill(worker, signal.SIGSTOP)
        client.kill()  # as Argo CD's deadline does
        client.wait(timeout=WAIT)
        wait_for(lambda: gone(worker), "the server to end the stopped worker")
        wait_for(lambda: left_workers(server) == [worker], "the server to log it")
    finally:
        client.kill()
        client.communicate(timeout=WAIT)


def test_a_stopping_server_leaves_no_worker_behind(server: Server, app: Path) -> None:
    """Its client is told (exit 75: retry) instead of rendering again in its own process, and
    the worker has its line in the log like every other."""
    with ended_at_exit(spinning_client(server, app)) as client:
        wait_for(lambda: workers_of(server), "a worker to start")
        (worker,) = workers_of(server)
        server.stop()
        assert gone(worker)
        assert "stopped" in server.log_text().splitlines()[-1]
        assert f"worker {worker} stopped with the server after" in server.log_text()
        stdout, stderr = client.communicate(timeout=WAIT)
    assert (client.returncode, stdout) == (ExitStatus.BUSY, b"")
    assert b"the render server stopped" in stderr and b"retry" in stderr


def test_a_worker_the_stop_catches_has_its_line_in_the_log(server: Server, app: Path) -> None:
    """The cause of a flaky check (`" worker " in` the log after a served render): a server
    stopped before it had reaped a worker killed that worker without a word. Every worker now
    has its line, however the server stops."""
    with ended_at_exit(spinning_client(server, app)):
        wait_for(lambda: workers_of(server), "a worker to start")
        (worker,) = workers_of(server)
        os.kill(worker, signal.SIGSTOP)  # not even its own alarm runs
        server.stop()
    assert f"worker {worker} stopped with the server" in server.log_text()


def test_a_served_client_that_ignores_sigint_ends_with_its_worker(
    server: Server, app: Path
) -> None:
    """Started with SIGINT ignored (`nohup`), a client cannot be interrupted; when its worker
    is killed it ends too, with the reason, instead of spinning again in its own process."""
    with ended_at_exit(spinning_client(server, app, sigint=signal.SIG_IGN)) as client:
        wait_for(lambda: workers_of(server), "a worker to start")
        (worker,) = workers_of(server)
        client.send_signal(signal.SIGINT)  # ignored
        os.kill(worker, signal.SIGKILL)
        stdout, stderr = client.communicate(timeout=WAIT)
    assert (client.returncode, stdout) == (128 + signal.SIGKILL, b"")
    assert b"the render was killed by SIGKILL after" in stderr


def test_a_worker_past_its_cpu_budget_fails_with_a_clear_error(server: Server, app: Path) -> None:
    with ended_at_exit(spinning_client(server, app, TAGPIN_MAX_CPU_SECONDS="2")) as client:
        stdout, stderr = client.communicate(timeout=WAIT)
    assert (client.returncode, stdout) == (ExitStatus.TEMPLATE, b"")
    assert b"more than 2 s of CPU (TAGPIN_MAX_CPU_SECONDS)" in stderr
    wait_for(
        lambda: any("exit 5" in line for line in server.worker_lines()),
        "the worker's line in the log: it was served, not rendered in-process",
    )


def test_limit_hits_busy_slots_and_killed_workers_are_counted(socket_dir: Path, app: Path) -> None:
    """With TAGPIN_METRICS_PORT: a render stopped by its CPU budget counts as a cpu limit hit
    and a failed render (exit 5); a render in progress holds a slot; a worker whose client left
    counts as killed, client_left, and its slot is free again."""
    from prometheus_client.parser import text_string_to_metric_families

    from tests.support.redis_server import free_port

    port = free_port()
    cache = str(socket_dir / "cache")  # the slots the server shows are this cache's
    counting = Server(
        socket_dir / "render.sock",
        socket_dir / "server.log",
        env={"TAGPIN_METRICS_PORT": str(port), "TAGPIN_CACHE_DIR": cache},
    )

    def scraped() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    try:
        with ended_at_exit(spinning_client(counting, app, TAGPIN_MAX_CPU_SECONDS="1")) as client:
            client.communicate(timeout=WAIT)
        assert client.returncode == ExitStatus.TEMPLATE
        wait_for(lambda: scraped().get(("tagpin_renders_total", ERROR_5)) == 1, "the count")
        assert scraped()[("tagpin_render_limit_hits_total", (("limit", "cpu"),))] == 1

        with ended_at_exit(spinning_client(counting, app, TAGPIN_CACHE_DIR=cache)) as client:
            wait_for(
                lambda: scraped().get(("tagpin_render_slots_busy", ())) == 1,
                "the spinning render to hold a slot",
            )
            assert scraped()[("tagpin_render_workers_running", ())] == 1
            client.kill()  # as Argo CD's deadline does
        wait_for(
            lambda: scraped().get(("tagpin_render_workers_killed_total", CLIENT_LEFT)) == 1,
            "the killed worker's count",
        )
        after = scraped()
        assert after[("tagpin_render_workers_started_total", ())] == 2
        assert after[("tagpin_render_workers_running", ())] == 0
        assert after[("tagpin_render_slots_busy", ())] == 0
        assert after[("tagpin_render_limit_hits_total", (("limit", "cpu"),))] == 1
    finally:
        counting.stop()


def test_a_metrics_port_in_use_is_said_and_renders_go_on(socket_dir: Path, app: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))  # the metrics server binds every interface: not this one
        taken.listen(1)
        port = taken.getsockname()[1]
        blocked = Server(
            socket_dir / "render.sock",
            socket_dir / "server.log",
            env={"TAGPIN_METRICS_PORT": str(port)},
        )
        try:
            env = {**argocd_env(app), **served(blocked)}
            assert run_cli(["generate"], cwd=app, env=env).returncode == 0
            wait_for(lambda: blocked.worker_lines(), "the render to be served")
        finally:
            blocked.stop()
    assert f"cannot serve metrics on port {port}" in blocked.log_text()
    assert "renders go on without them" in blocked.log_text()


def test_idle_connections_to_the_metrics_port_cannot_lock_out_scrapes_or_pile_up_threads(
    socket_dir: Path, app: Path
) -> None:
    """The metrics port is open to the pod network. 100 connections that send half a request
    line and wait (as a slowloris does) neither stop a scrape nor give the render server a
    thread each, and a render is still served meanwhile."""
    import socket

    from cmp.limits.connections import PENDING_PER_SLOT
    from cmp.server.metrics import SCRAPES_AT_ONCE
    from tests.support.redis_server import free_port

    port = free_port()
    counting = Server(
        socket_dir / "render.sock",
        socket_dir / "server.log",
        env={"TAGPIN_METRICS_PORT": str(port), "TAGPIN_CACHE_DIR": str(socket_dir / "cache")},
    )
    idle: list[socket.socket] = []
    try:
        for _ in range(100):
            connection = socket.create_connection(("127.0.0.1", port), timeout=10)
            connection.sendall(b"GET /metr")
            idle.append(connection)
        time.sleep(0.5)  # the server has accepted them all by now; most were dropped again
        threads = int(
            re.search(  # type: ignore[union-attr]
                r"^Threads:\s+(\d+)$",
                Path(f"/proc/{counting.process.pid}/status").read_text(),
                re.MULTILINE,
            ).group(1)
        )
        # One thread per connection still being read, at most; plus the server's own few.
        assert threads <= PENDING_PER_SLOT * SCRAPES_AT_ONCE + 6, threads
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
            assert b"tagpin_renders_total" in response.read()
        env = {**argocd_env(app), **served(counting)}
        assert run_cli(["generate"], cwd=app, env=env).returncode == 0
        wait_for(lambda: counting.worker_lines(), "the render to be served")
    finally:
        for connection in idle:
            connection.close()
        counting.stop()


ERROR_5 = (("exit_code", "5"), ("result", "error"))
CLIENT_LEFT = (("reason", "client_left"),)


def test_an_in_process_render_past_its_cpu_budget_fails_with_a_clear_error(app: Path) -> None:
    (app / "templates" / "spin.yaml.j2").write_text(SPIN)
    done = run_cli(["generate"], cwd=app, env={**argocd_env(app), "TAGPIN_MAX_CPU_SECONDS": "2"})
    assert (done.returncode, done.stdout) == (ExitStatus.TEMPLATE, b"")
    assert b"more than 2 s of CPU (TAGPIN_MAX_CPU_SECONDS)" in done.stderr


def test_ctrl_c_on_a_served_render_stops_it_quietly(server: Server, app: Path) -> None:
    with ended_at_exit(spinning_client(server, app)) as client:
        wait_for(lambda: workers_of(server), "the render to be under way")
        client.send_signal(signal.SIGINT)
        stdout, stderr = client.communicate(timeout=WAIT)
    assert (client.returncode, stdout) == (130, b"")
    assert b"Traceback" not in stderr
    wait_for(lambda: left_workers(server), "the worker to end with its client")


def test_a_served_render_writes_the_cache_with_the_clients_umask(
    server: Server, tmp_path: Path, moto_ecr: Any
) -> None:
    """The digest cache's directories get the modes an in-process render gives them."""
    moto_ecr.push("shop/web", "v1")
    app = tmp_path / "repo" / "app"
    build_tree(
        app,
        {
            "tagpin.yaml": "{}\n",
            "templates/web.yaml": (
                "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n"
                f"  - name: web\n    image: {ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/shop/web:v1\n"
            ),
        },
    )
    cache = tmp_path / "cache"
    env = {
        **os.environ,
        **served(server),
        "TAGPIN_CACHE_DIR": str(cache),
        "TAGPIN_APP_LOOKUP": "off",
        "ARGOCD_APP_NAME": "web",
        "ARGOCD_APP_SOURCE_PATH": "app",
    }
    done = subprocess.run(
        [str(BIN / "tagpin"), "generate"],
        cwd=app,
        env=env,
        capture_output=True,
        preexec_fn=lambda: os.umask(0o077),
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert b"@sha256:" in done.stdout
    wait_for(lambda: server.worker_lines(), "the render to be served")
    made = [path for path in cache.rglob("*") if path.is_dir()]
    assert made and all(path.stat().st_mode & 0o077 == 0 for path in made), [
        (str(path), oct(path.stat().st_mode)) for path in made
    ]


def test_a_dead_server_means_an_in_process_render(server: Server, app: Path) -> None:
    server.process.kill()  # SIGKILL: the socket file stays behind
    server.process.wait(timeout=WAIT)
    assert server.socket.exists()
    done = run_cli(["generate"], cwd=app, env={**argocd_env(app), **served(server)})
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == run_cli(["generate"], cwd=app, env=argocd_env(app)).stdout


def test_a_stuck_server_does_not_hang_renders(server: Server, app: Path) -> None:
    server.process.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        done = run_cli(["generate"], cwd=app, env={**argocd_env(app), **served(server)})
        took = time.monotonic() - started
    finally:
        server.process.send_signal(signal.SIGCONT)
    assert done.returncode == 0, done.stderr.decode()
    assert b"team: payments" in done.stdout
    assert START_TIMEOUT <= took < START_TIMEOUT + 20


def test_auto_starts_a_server_for_later_renders(app: Path, tmp_path: Path) -> None:
    """Through the cmp-server harness, which waits for the render's pipes to close: a server
    started by a render must not hold them (Argo CD would wait for it forever)."""
    scratch = Path(tempfile.mkdtemp(prefix="tp-", dir="/tmp"))
    cache = scratch / "cache"  # a fresh sidecar: not there until the first render
    sock = cache / f"render-server-{__version__}.sock"
    (tmp_path / "cmp-tmp").mkdir()
    cmp = CmpServer.from_plugin_yaml(
        REPO / "plugin.yaml",
        workdir=tmp_path / "cmp-tmp",
        timeout=60,
        sidecar_env={
            "PATH": f"{BIN}{os.pathsep}/usr/bin:/bin",
            "HOME": str(tmp_path),
            "TAGPIN_APP_LOOKUP": "off",
            "TAGPIN_CACHE_DIR": str(cache),
            "TAGPIN_RENDER_SERVER": "auto",
        },
    )
    spec = AppSpec(
        name="web",
        source_path="apps/web",
        plugin={"name": "tagpin", "env": [{"name": "TEAM", "value": "search"}]},
    )
    log = Path(f"{sock}.log")
    try:
        first = cmp.generate(app.parents[1], spec, exclude=[".git"])
        assert first.ok, first.error
        wait_for(
            lambda: "serving" in (log.read_text() if log.exists() else ""),
            "a render server started by the first render",
        )
        second = cmp.generate(app.parents[1], spec, exclude=[".git"])
        assert second.ok, second.error
        assert second.stdout == first.stdout
        assert "team: search" in second.stdout
    finally:
        pid = re.search(r"\(pid (\d+),", log.read_text() if log.exists() else "")
        if pid:
            os.kill(int(pid.group(1)), signal.SIGTERM)
            wait_for(lambda: "stopped" in log.read_text(), "the server to stop")
        shutil.rmtree(scratch, ignore_errors=True)


def test_a_server_that_cannot_start_is_tried_once_per_backoff(app: Path) -> None:
    """A shared (group-writable) cache directory cannot hold the socket: renders still work,
    and do not each pay for starting a server that refuses to run."""
    cache = Path(tempfile.mkdtemp(prefix="tp-", dir="/tmp"))
    cache.chmod(0o777)
    sock = cache / f"render-server-{__version__}.sock"
    log, lock = Path(f"{sock}.log"), Path(f"{sock}.lock")
    env = {**argocd_env(app), "TAGPIN_RENDER_SERVER": "auto", "TAGPIN_CACHE_DIR": str(cache)}
    try:
        first = run_cli(["generate"], cwd=app, env=env)
        assert first.returncode == 0, first.stderr.decode()
        wait_for(
            lambda: "cannot serve" in (log.read_text() if log.exists() else ""),
            "the server's refusal",
        )
        assert "writable by no one else" in log.read_text()
        started_at = lock.stat().st_mtime_ns
        second = run_cli(["generate"], cwd=app, env=env)
        assert (second.returncode, second.stdout) == (0, first.stdout)
        assert lock.stat().st_mtime_ns == started_at  # no second start within the backoff
        assert log.read_text().count("cannot serve") == 1
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def test_a_second_server_on_the_same_socket_leaves(server: Server) -> None:
    again = run_cli(["render-server", "--socket", str(server.socket)])
    assert again.returncode == 0
    assert b"another server already serves" in again.stderr
    assert server.process.poll() is None


def test_a_socket_directory_others_can_write_is_refused(socket_dir: Path) -> None:
    shared = socket_dir / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    done = run_cli(["render-server", "--socket", str(shared / "render.sock")])
    assert done.returncode == 2
    assert b"writable by no one else" in done.stderr
    assert not (shared / "render.sock").exists()


def test_a_profiling_server_writes_the_profile_of_the_worker_that_rendered(
    socket_dir: Path, app: Path
) -> None:
    """`tagpin render-server --profile-dir`: how to see where a served render spends its time
    (docs/performance.md); the thin client's own process would show only the forwarding."""
    import pstats

    sock, log, profiles = socket_dir / "render.sock", socket_dir / "server.log", socket_dir / "p"
    command = [str(BIN / "tagpin"), "render-server", "--socket", str(sock), "--log-renders"]
    with log.open("w") as log_file:
        process = subprocess.Popen(
            [*command, "--profile-dir", str(profiles)],
            env=clean_env(None),
            stdin=subprocess.DEVNULL,
            stderr=log_file,
            start_new_session=True,
        )
    try:
        wait_for(lambda: "serving" in log.read_text(), "the render server to start")
        env = {**argocd_env(app), "TAGPIN_RENDER_SERVER": "on"}
        done = run_cli(["generate"], cwd=app, env={**env, "TAGPIN_RENDER_SERVER_SOCKET": str(sock)})
        assert done.returncode == 0, done.stderr.decode()
        wait_for(lambda: "wrote its profile to" in log.read_text(), "the worker's profile")
    finally:
        process.terminate()
        process.wait(timeout=WAIT)
    (written,) = profiles.iterdir()
    assert written.name.startswith("worker-") and str(written) in log.read_text()
    profiled = pstats.Stats(str(written)).stats  # type: ignore[attr-defined]  # (file, line, name)
    functions = {(Path(path).name, name) for path, _, name in profiled}
    assert ("listener.py", "_render") in functions  # the worker's render...
    assert ("emit.py", "emit_stream") in functions
    assert ("cli.py", "main") not in functions  # ...not the client's forwarding


def test_a_profile_directory_others_can_write_is_refused(socket_dir: Path) -> None:
    shared = socket_dir / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    done = run_cli(
        ["render-server", "--socket", str(socket_dir / "s.sock"), "--profile-dir", str(shared)]
    )
    assert done.returncode == 2
    assert b"profile directory must belong to this user" in done.stderr


def test_a_mistyped_mode_is_an_error_not_a_silent_default(app: Path) -> None:
    done = run_cli(["generate"], cwd=app, env={**argocd_env(app), "TAGPIN_RENDER_SERVER": "yes"})
    assert done.returncode != 0 and done.stdout == b""
    assert b"TAGPIN_RENDER_SERVER='yes' must be one of off, on, auto" in done.stderr


def test_exponential_allow_tags_through_the_render_server_pins_in_linear_time(
    server: Server, tmp_path: Path, moto_ecr: Any
) -> None:
    """The attack: `allow-tags: regexp:^(a+)+$` with the 41-character tag `aaaa…ab` in the
    repository never finished on a backtracking engine, and the worker burned CPU past Argo
    CD's deadline. Through the cmp-server emulator with its deadline, served by a worker."""
    web = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/shop/web"
    digests = {tag: moto_ecr.push("shop/web", tag) for tag in ("a" * 40 + "b", "aaaa", "main")}
    root = tmp_path / "repo"
    build_tree(
        root / "apps" / "web",
        {
            "tagpin.yaml": "{}\n",
            "templates/web.yaml": "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n"
            "spec:\n  template:\n    spec:\n      containers:\n"
            f"      - {{name: web, image: '{web}:main'}}\n",
        },
    )
    (root / ".git").mkdir()
    (tmp_path / "cmp-tmp").mkdir()
    aws = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    cmp = CmpServer.from_plugin_yaml(
        REPO / "plugin.yaml",
        workdir=tmp_path / "cmp-tmp",
        timeout=WAIT,
        sidecar_env={
            "PATH": f"{BIN}{os.pathsep}/usr/bin:/bin",
            "HOME": str(tmp_path),
            "TAGPIN_APP_LOOKUP": "off",
            "TAGPIN_CACHE_DIR": str(tmp_path / "cache"),
            **aws,
            **served(server),
        },
    )
    policy = {
        "image-list": f"web={web}",
        "web.update-strategy": "alphabetical",
        "web.allow-tags": "regexp:^(a+)+$",
    }
    spec = AppSpec(
        name="web",
        source_path="apps/web",
        plugin={"name": "tagpin", "parameters": [{"name": "image-updater", "map": policy}]},
    )
    result = cmp.generate(root, spec, exclude=[".git"])
    assert result.ok, result.error
    [deployment] = result.objects
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{web}:aaaa@{digests['aaaa']}"
    wait_for(
        lambda: any("exit 0" in line for line in server.worker_lines()),
        "the worker's line in the log: it was served, not rendered in-process",
    )


def test_nothing_a_worker_started_outlives_its_client(
    server: Server, app: Path, tmp_path: Path
) -> None:
    """A worker waiting on a helper process (here a kubeconfig credential plugin that hangs)
    when Argo CD kills its client: the server kills the worker's process group, helper too."""
    kubeconfig = write_kubeconfig(
        tmp_path / "kubeconfig",
        "https://127.0.0.1:1",
        {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1beta1",
                "command": "sleep",
                "args": ["600"],
                "interactiveMode": "Never",
            }
        },
    )
    client = subprocess.Popen(
        [str(BIN / "tagpin"), "generate"],
        cwd=app,
        env=clean_env(
            {
                **argocd_env(app),
                **served(server),
                "TAGPIN_APP_LOOKUP": "on",
                "KUBECONFIG": str(kubeconfig),
                "ARGOCD_NAMESPACE": "argocd",
            }
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: workers_of(server), "a worker to start")
        (worker,) = workers_of(server)
        helpers: list[int] = []

        def helper_started() -> bool:
            helpers[:] = [
                int(p) for p in Path(f"/proc/{worker}/task/{worker}/children").read_text().split()
            ]
            return bool(helpers)

        wait_for(helper_started, "the worker to start the credential plugin")
        assert os.getpgid(helpers[0]) == worker  # in the worker's own group
        client.kill()  # as Argo CD's deadline does
        client.wait(timeout=WAIT)
        wait_for(lambda: gone(worker), "the server to end the worker's whole group")
        stat = Path(f"/proc/{helpers[0]}/stat")
        assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
    finally:
        client.kill()
        client.communicate(timeout=WAIT)
