"""Issue #22's attack on the render slots, through the cmp-server emulator: one Application
renders a template that spins for hours, twice at once and again as each render fails (as with
hard refreshes), with two more queued, while 20 renders of other Applications from other
repositories arrive. Shared by tests/e2e/test_render_slots.py (what must hold) and
`python -m bench.slot_fairness` (how long the others wait).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from cmp.limits.slots import Claim, occupancy
from tests.support.cmpserver import AppSpec, CmpServer, GenerateResult
from tests.support.hostile import LOCKED_APP, OFFLINE, committed_repo

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SPIN = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}\n"
ATTACKER = "spinner"
WAIT = 120.0  # seconds for a state to be reached on a loaded machine


@dataclass
class Victim:
    result: GenerateResult
    submitted: float  # monotonic seconds, as the slot records'
    ended: float
    # From the slots' records, when a sample saw them: when the render first asked for a slot
    # (its ticket), and when it got one.
    asked: float | None = None
    admitted: float | None = None

    @property
    def wait(self) -> float | None:
        """Seconds from asking to getting a slot; 0 for a render seen holding one but never
        waiting (it got one at once)."""
        if self.admitted is None:
            return None
        return self.admitted - self.asked if self.asked is not None else 0.0


@dataclass
class Outcome:
    victims: list[Victim]
    attacks: list[GenerateResult]
    # Samples in which the attacker held both slots, the second taken while a victim waited
    # (had asked before it, got its slot after): what fair share forbids.
    doubled: list[list[Claim]] = field(default_factory=list)


def shared_repo(root: Path) -> Path:
    """Every tenant's app in one repository (the emulator only copies it): a locked web app,
    and the attacker's app whose template spins for hours."""
    return committed_repo(
        root,
        {**LOCKED_APP, "apps/spin/tagpin.yaml": "{}\n", "apps/spin/templates/spin.yaml.j2": SPIN},
    )


def sidecar(workdir: Path, cache: Path, settings: dict[str, str]) -> CmpServer:
    workdir.mkdir(parents=True, exist_ok=True)
    return CmpServer.from_plugin_yaml(
        REPO / "plugin.yaml",
        workdir=workdir,
        timeout=60,
        sidecar_env={
            "PATH": f"{BIN}{os.pathsep}/usr/bin:/bin",
            "HOME": str(workdir),
            "TAGPIN_APP_LOOKUP": "off",
            "TAGPIN_CACHE_DIR": str(cache),
            **OFFLINE,
            **settings,
        },
    )


def run(cmp: CmpServer, repo: Path, cache: Path, victims: int = 20, attack: bool = True) -> Outcome:
    """The attack (unless not `attack`: the victims alone, for comparison)."""
    spin = AppSpec(
        name=ATTACKER, source_path="apps/spin", repo_url="https://git.example.com/evil/x"
    )
    stop = threading.Event()
    samples: list[tuple[list[Claim], list[Claim]]] = []

    def attack_loop() -> list[GenerateResult]:
        results = [cmp.generate(repo, spin, exclude=[".git"])]
        while not stop.is_set():
            results.append(cmp.generate(repo, spin, exclude=[".git"]))
        return results

    def victim(number: int) -> Victim:
        app = AppSpec(
            name=f"web-{number}",
            source_path="apps/web",
            repo_url=f"https://git.example.com/team-{number}/deploy.git",
        )
        submitted = time.monotonic()
        result = cmp.generate(repo, app, exclude=[".git"])
        return Victim(result, submitted, time.monotonic())

    def sample() -> None:  # a render holds its slot a while: 5 ms misses no attacker
        while not stop.is_set():
            samples.append(occupancy(cache))
            time.sleep(0.005)

    def attackers_holding() -> int:
        return sum(1 for claim in occupancy(cache)[0] if claim.app == ATTACKER)

    with ThreadPoolExecutor(max_workers=victims + 8) as pool:
        attackers, queued = [], []
        if attack:
            attackers = [pool.submit(attack_loop) for _ in range(2)]
            _wait_for(lambda: attackers_holding() == 2, "the attacker to hold both slots")
            queued = [pool.submit(cmp.generate, repo, spin, exclude=[".git"]) for _ in "12"]
            _wait_for(lambda: len(occupancy(cache)[1]) >= 2, "the attacker's next renders to queue")
        sampler = pool.submit(sample)
        outcome = Outcome(list(pool.map(victim, range(victims))), [])
        stop.set()
        sampler.result()
        outcome.attacks = [r for future in attackers for r in future.result()]
        outcome.attacks += [future.result() for future in queued]
    admitted = {c.app: c.since for held, _ in samples for c in held}
    asked = {c.app: c.since for _, waiting in samples for c in waiting}
    for number, one in enumerate(outcome.victims):
        one.admitted, one.asked = admitted.get(f"web-{number}"), asked.get(f"web-{number}")
    waited = [(v.asked, v.admitted) for v in outcome.victims if v.asked and v.admitted]
    outcome.doubled = [
        held
        for held, _ in samples
        if [c.app for c in held] == [ATTACKER, ATTACKER]
        and any(start < max(c.since for c in held) < end for start, end in waited)
    ]
    return outcome


def _wait_for(condition: object, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
