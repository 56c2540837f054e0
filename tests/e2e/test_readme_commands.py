"""CI proves the README: `.ci/run` runs exactly the README's test command, line for line."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _readme_test_command() -> list[str]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("Install everything and run the tests", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None, "the README lost its test command"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_ci_runs_the_readmes_test_command() -> None:
    script = (REPO / ".ci/run").read_text(encoding="utf-8").splitlines()
    commands = [
        line for line in script if line.strip() and not line.startswith(("#", "set ", "cd "))
    ]
    assert commands == _readme_test_command()
    assert len(commands) == 1, "one command installs what the tests need and runs them"


def test_the_readmes_ten_line_app_renders_with_its_image_pinned(tmp_path: Path) -> None:
    """The front door's example app, built from the README's own text, renders as it says."""
    import subprocess
    import sys

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## A ten-line app", 1)[1].split("\n## ", 1)[0]
    listing, template = re.findall(r"```(?:text|yaml)\n(.*?)```", section, re.DOTALL)
    files = {}
    for line in listing.splitlines():
        path, _, content = line.partition(" ")
        files[path] = content.strip()
    files["apps/web/templates/deployment.yaml.j2"] = template
    for path, content in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(content + "\n" if content else "", encoding="utf-8")
    (tmp_path / ".git").mkdir()
    lock = REPO / "examples" / "web" / "tagpin.lock"  # holds shop/web:v1.4.2's digest
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("tagpin")),
            "render",
            "apps/web",
            "--app-name",
            "web",
            "--digests",
            str(lock),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (
        "image: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/web:v1.4.2@sha256:"
        "46d7abc2e40307ab3c266e2400902da852e831378ff3de71a93db2ffc309ae1d\n"
    ) in done.stdout
    assert "kind: Deployment\nmetadata:\n  name: web\n" in done.stdout
