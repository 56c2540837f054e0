"""A process that waits for a render slot with the real admission code (cmp/limits/slots.py),
notes when it got one, and holds it until the test releases it: renders whose length the test
decides, for the slot protocol's tests (tests/e2e/test_render_slots.py).

    python -m tests.support.slot_holder NAME LOG RELEASE_DIR

Settings, the cache directory and the tenant come from the environment, as for `tagpin
generate` (TAGPIN_*, ARGOCD_APP_NAME, ARGOCD_APP_SOURCE_REPO_URL). It appends `NAME` to LOG
once admitted and holds the slot until RELEASE_DIR/NAME exists; exit 75 if it got none.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from cmp.errors import BusyError
from cmp.limits.slots import Tenant, render_slot
from cmp.settings import Settings


def main(argv: list[str]) -> int:
    name, log, release = argv
    settings = Settings.from_environ(os.environ)
    try:
        with render_slot(
            settings, Path(os.environ["TAGPIN_CACHE_DIR"]), Tenant.from_environ(os.environ)
        ):
            with open(log, "a", encoding="utf-8") as admitted:
                admitted.write(name + "\n")
            while not Path(release, name).exists():
                time.sleep(0.02)
    except BusyError as error:
        sys.stderr.write(f"{error}\n")
        return int(error.exit_status)
    return 0


def start(name: str, log: Path, release: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """A holder in its own process group, as Argo CD starts renders."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.slot_holder", name, str(log), str(release)],
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        process_group=0,
        cwd=Path(__file__).resolve().parents[2],
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
