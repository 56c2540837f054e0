"""A misspelt TAGPIN_* variable is ignored by what it meant to set, so every command says so,
naming the closest setting: in-process, served by a render server's worker, and in the CLI."""

from __future__ import annotations

import shutil
import signal
import tempfile
import time
from pathlib import Path

from tests.support.apptree import build_tree, clean_env, run_cli
from tests.support.listener import start_listener

REPO = Path(__file__).resolve().parents[2]
WARNING = (
    b"tagpin: warning: TAGPIN_CAHCE is not a tagpin setting and is ignored; "
    b"did you mean TAGPIN_CACHE?\n"
)


def wait_for_log(log: Path, text: str) -> None:
    deadline = time.monotonic() + 30
    while not (log.exists() and text in log.read_text()):
        assert time.monotonic() < deadline, f"the render server never logged {text!r}"
        time.sleep(0.05)


def web_app(root: Path) -> Path:
    shutil.copytree(REPO / "examples" / "web", root / "apps" / "web")
    shutil.copytree(REPO / "examples" / "lib", root / "examples" / "lib")
    (root / ".git").mkdir()
    return root / "apps" / "web"


ARGOCD = {
    "ARGOCD_APP_NAME": "web",
    "ARGOCD_APP_NAMESPACE": "shop",
    "ARGOCD_APP_SOURCE_PATH": "apps/web",
}


def test_generate_warns_in_process_and_served_alike(tmp_path: Path) -> None:
    app = web_app(tmp_path / "repo")
    alone = run_cli(["generate"], cwd=app, env={**ARGOCD, "TAGPIN_CAHCE": "off"})
    assert alone.returncode == 0, alone.stderr.decode()
    assert alone.stderr == WARNING and alone.stdout.startswith(b"---\n")

    directory = Path(tempfile.mkdtemp(prefix="tp-", dir="/tmp"))  # a socket path is short
    socket, log = directory / "render.sock", directory / "server.log"
    server = start_listener(socket, log, clean_env())
    try:
        wait_for_log(log, "serving")
        served = {"TAGPIN_RENDER_SERVER": "on", "TAGPIN_RENDER_SERVER_SOCKET": str(socket)}
        answered = run_cli(["generate"], cwd=app, env={**ARGOCD, **served, "TAGPIN_CAHCE": "off"})
        assert (answered.returncode, answered.stdout, answered.stderr) == (
            0,
            alone.stdout,
            alone.stderr,
        )
        wait_for_log(log, " worker ")  # a worker answered, not an in-process fallback
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        shutil.rmtree(directory, ignore_errors=True)


def test_a_failing_render_still_names_the_misspelt_setting(tmp_path: Path) -> None:
    app = web_app(tmp_path / "repo")
    build_tree(app, {"templates/broken.yaml.j2": "{{ values.nope }}\n"})
    done = run_cli(["render", str(app), "--app-name", "web"], env={"TAGPIN_CAHCE": "off"})
    assert done.returncode == 5 and done.stdout == b""
    assert done.stderr.startswith(WARNING)
