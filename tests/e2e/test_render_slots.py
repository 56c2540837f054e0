"""Fair render slots (cmp/limits/slots.py, docs/reliability.md "Fair render slots"): one
tenant's slow renders cannot make the other tenants' renders fail.

The attack (issue #22): one Application renders a template that spins for hours, twice at once,
again and again; before, it held both slots and every other render waited 40 s and failed with
a misleading "invalid configuration". Now a render keeps its slot for TAGPIN_MAX_RENDER_SECONDS
at most, a freed slot goes to the tenant holding the fewest, first come first served among
equals, and a render that still finds every slot busy says who holds them.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cmp.errors import ExitStatus
from cmp.limits.slots import KILL_AFTER_SECONDS, Tenant, occupancy, repository_key
from cmp.settings import DEFAULT_SETTINGS
from tests.support import slot_attack, slot_holder
from tests.support.apptree import clean_env
from tests.support.cmpserver import GenerateResult
from tests.support.hostile import committed_repo

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WAIT = 60.0  # seconds for a state to be reached on a loaded machine
SPIN = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}\n"


def wait_for(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# --- the attack -------------------------------------------------------------------------------


def test_one_app_spinning_in_two_renders_does_not_fail_twenty_other_apps_renders(
    tmp_path: Path, render_mode: dict[str, str]
) -> None:
    """The attacker keeps two spinning renders running (re-submitting each as it fails, as
    with hard refreshes) and two more queued before the victims arrive. All 20 renders of 20
    other Applications from 20 other repositories succeed; while any of them waits, the
    attacker is never given a second slot; its renders fail with exit 5 naming
    TAGPIN_MAX_RENDER_SECONDS. (Before: the two spins held both slots for their whole CPU
    budget and every victim failed after 40 s with exit 3.)"""
    cache = tmp_path / "cache"
    cmp = slot_attack.sidecar(
        tmp_path / "cmp-tmp",
        cache,
        {
            "TAGPIN_MAX_PARALLEL_RENDERS": "2",
            "TAGPIN_MAX_CPU_SECONDS": "60",  # the old default: the lease must end the spin
            "TAGPIN_MAX_RENDER_SECONDS": "4",
            "TAGPIN_SLOT_WAIT_SECONDS": "50",  # room for a loaded machine: this is no race
            **render_mode,
        },
    )
    outcome = slot_attack.run(cmp, slot_attack.shared_repo(tmp_path / "repo"), cache)
    assert [(v.result.exit_code, v.result.error) for v in outcome.victims if not v.result.ok] == []
    assert {v.result.objects[0]["metadata"]["name"] for v in outcome.victims} == {"web"}
    assert outcome.doubled == []  # no second slot for the attacker while a victim waited
    for result in outcome.attacks:
        assert result.exit_code == ExitStatus.TEMPLATE, result.error
        assert "more than 4 s (TAGPIN_MAX_RENDER_SECONDS)" in (result.error or "")


# --- who goes next ----------------------------------------------------------------------------


class Holders:
    """Slot holders in their own processes, admitted by the real code; the test ends each."""

    def __init__(self, tmp_path: Path, **settings: str) -> None:
        self.cache = tmp_path / "cache"
        self.log = tmp_path / "admitted.log"
        self.release = tmp_path / "release"
        self.release.mkdir()
        self.settings = {"TAGPIN_CACHE_DIR": str(self.cache), **settings}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def arrive(self, name: str, app: str, repo: str) -> subprocess.Popen[bytes]:
        """A render of Application `app` from repository `repo` asks for a slot; returns once
        it holds one or waits in line."""
        held, waiting = occupancy(self.cache)
        env = clean_env(
            {**self.settings, "ARGOCD_APP_NAME": app, "ARGOCD_APP_SOURCE_REPO_URL": repo}
        )
        process = slot_holder.start(name, self.log, self.release, env)
        self.processes[name] = process
        wait_for(
            lambda: name in self.admitted() or len(occupancy(self.cache)[1]) > len(waiting),
            f"{name} to get a slot or a place in line",
        )
        return process

    def admitted(self) -> list[str]:
        return self.log.read_text().split() if self.log.exists() else []

    def end(self, name: str) -> None:
        (self.release / name).touch()
        self.processes[name].wait(timeout=WAIT)

    def stop_all(self) -> None:
        for name in self.processes:
            (self.release / name).touch()
        for process in self.processes.values():
            process.kill()
            process.wait(timeout=WAIT)


@pytest.fixture
def holders(tmp_path: Path) -> Iterator[Holders]:
    started = Holders(tmp_path, TAGPIN_MAX_PARALLEL_RENDERS="2")
    yield started
    started.stop_all()


def test_a_freed_slot_goes_to_the_tenant_holding_fewest_then_first_come(holders: Holders) -> None:
    """Application `spin` holds both slots and queued one more render first; then come a
    render of another Application of spin's repository, and renders of repositories b and c.
    Each freed slot goes to the waiter whose repository holds the fewest slots, then whose
    Application does, the earliest among equals."""
    evil = "https://git.example.com/evil/apps"
    holders.arrive("spin-1", "spin", evil)
    holders.arrive("spin-2", "spin", evil)
    holders.arrive("spin-3", "spin", evil)
    holders.arrive("sibling", "sibling", evil + ".git")  # the same repository, spelt otherwise
    holders.arrive("b-1", "b", "git@git.example.com:team/b")
    holders.arrive("c-1", "c", "https://git.example.com/team/c")
    holders.arrive("b-2", "b", "https://git.example.com/team/b")
    assert holders.admitted() == ["spin-1", "spin-2"]
    # Each step: the holder that ends, then who gets its slot, and why.
    steps = [
        ("spin-1", "b-1"),  # evil holds 1 (spin-2); b and c none: b-1 came first
        ("b-1", "c-1"),  # evil holds 1; c and b none: c-1 came before b-2
        ("c-1", "b-2"),  # evil holds 1; b none
        ("b-2", "sibling"),  # only evil waits: its Application `spin` holds 1, `sibling` none
        ("sibling", "spin-3"),
    ]
    for ending, admitted in steps:
        holders.end(ending)
        wait_for(
            lambda: admitted in holders.admitted(),  # noqa: B023 - used within the iteration
            f"{admitted} to get the slot of {ending}",
        )
    assert holders.admitted() == ["spin-1", "spin-2", "b-1", "c-1", "b-2", "sibling", "spin-3"]


def test_a_render_that_finds_every_slot_busy_too_long_says_which_apps_hold_them(
    holders: Holders, tmp_path: Path
) -> None:
    """Was: exit 3 "invalid configuration" naming only the setting. Now exit 75 (the sidecar
    is busy: retry), naming the Applications that hold the slots and for how long."""
    holders.arrive("spin-1", "shop_spin", "https://git.example.com/evil/apps")
    holders.arrive("spin-2", "shop_spin", "https://git.example.com/evil/apps")
    app = tmp_path / "app"
    (app / "templates").mkdir(parents=True)
    (app / "tagpin.yaml").write_text("{}\n")
    (app / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n"
    )
    done = subprocess.run(
        [str(BIN / "tagpin"), "generate"],
        cwd=app,
        env=clean_env(
            {**holders.settings, "TAGPIN_SLOT_WAIT_SECONDS": "1", "ARGOCD_APP_NAME": "web"}
        ),
        capture_output=True,
        check=False,
    )
    assert (done.returncode, done.stdout) == (ExitStatus.BUSY, b"")
    stderr = done.stderr.decode()
    assert "the sidecar is busy, nothing is wrong with the app; retry (exit 75)" in stderr
    assert "no render slot came free in 1 s (TAGPIN_SLOT_WAIT_SECONDS)" in stderr
    assert stderr.count("Application 'shop_spin' (for ") == 2
    assert "invalid configuration" not in stderr


def test_renders_beyond_the_parallel_limit_wait_for_a_slot(holders: Holders) -> None:
    holders.arrive("first", "a", "a")
    holders.arrive("second", "b", "b")
    third = holders.arrive("third", "c", "c")
    assert holders.admitted() == ["first", "second"]
    assert third.poll() is None  # waiting, not failed
    holders.end("second")
    wait_for(lambda: "third" in holders.admitted(), "the waiting render to get the freed slot")


def test_a_sigkilled_render_or_waiter_leaks_no_slot_and_no_ticket(holders: Holders) -> None:
    holders.arrive("holder", "a", "a")
    holders.arrive("other", "b", "b")
    dead_waiter = holders.arrive("doomed", "c", "c")
    holders.arrive("patient", "d", "d")
    dead_waiter.kill()  # its ticket stays behind, unlocked
    dead_waiter.wait()
    holders.processes["holder"].kill()  # SIGKILLed holding a slot
    holders.processes["holder"].wait()
    wait_for(lambda: "patient" in holders.admitted(), "the freed slot to skip the dead waiter")
    assert "doomed" not in holders.admitted()
    assert not [p for p in (holders.cache / "render-slots").iterdir() if p.name.startswith("wait-")]


def test_a_render_that_cannot_stop_at_the_end_of_its_lease_is_killed_by_one_waiting(
    tmp_path: Path,
) -> None:
    """A render stuck where its own alarm cannot run (stopped here; C code holding the GIL in
    life) is SIGKILLed by a render waiting for its slot, KILL_AFTER_SECONDS past its lease."""
    holders = Holders(tmp_path, TAGPIN_MAX_PARALLEL_RENDERS="1", TAGPIN_MAX_RENDER_SECONDS="1")
    try:
        stuck = holders.arrive("stuck", "a", "a")
        stuck.send_signal(signal.SIGSTOP)
        holders.arrive("next", "b", "b")
        wait_for(lambda: "next" in holders.admitted(), "the waiting render to take the slot")
        assert stuck.wait(timeout=WAIT) == -signal.SIGKILL
    finally:
        holders.stop_all()


# --- a render's lease, in both modes ----------------------------------------------------------


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        (
            {"TAGPIN_MAX_CPU_SECONDS": "2", "TAGPIN_MAX_RENDER_SECONDS": "0"},
            "the render used more than 2 s of CPU (TAGPIN_MAX_CPU_SECONDS)",
        ),
        (
            {"TAGPIN_MAX_CPU_SECONDS": "0", "TAGPIN_MAX_RENDER_SECONDS": "2"},
            "the render ran for more than 2 s (TAGPIN_MAX_RENDER_SECONDS)",
        ),
    ],
    ids=["cpu", "lease"],
)
def test_a_render_past_its_budget_stops_with_templates_left_to_render(
    tmp_path: Path,
    cmp_sidecar: Callable[..., GenerateResult],
    render_mode: dict[str, str],
    budget: dict[str, str],
    message: str,
) -> None:
    """Was: the budget's error, raised inside the first template, was reported as that
    template's failure and the next template rendered on, until a SIGKILL without a word.
    Now the render stops there, with exit 5 naming the setting."""
    repo = committed_repo(
        tmp_path / "repo",
        {
            "apps/web/tagpin.yaml": "{}\n",
            "apps/web/templates/a.yaml.j2": SPIN,
            "apps/web/templates/b.yaml.j2": SPIN,
        },
    )
    result = cmp_sidecar(repo, {**render_mode, **budget})
    assert (result.exit_code, result.stdout) == (ExitStatus.TEMPLATE, "")
    assert message in (result.error or "")
    assert "templates/" not in (result.error or "")  # the render's budget, not a template's error


# --- tenants and budgets ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling",
    [
        "https://github.com/Org/Repo.git",
        "https://github.com/org/repo/",
        "git@github.com:org/repo.git",
        "ssh://git@github.com:22/org/repo",
        "https://user:token@github.com/org/repo",
    ],
)
def test_one_repository_is_one_tenant_however_its_url_is_spelt(spelling: str) -> None:
    assert repository_key(spelling) == "github.com/org/repo"
    same = Tenant.from_environ({"ARGOCD_APP_NAME": "x", "ARGOCD_APP_SOURCE_REPO_URL": spelling})
    assert (
        same.repo == Tenant.from_environ({"ARGOCD_APP_SOURCE_REPO_URL": "github.com/org/repo"}).repo
    )


def test_an_application_is_named_as_argo_cd_names_it_not_by_its_destination() -> None:
    """ARGOCD_APP_NAME is `<namespace>_<name>` outside Argo CD's namespace: unique; the
    destination namespace (ARGOCD_APP_NAMESPACE) is shared by many tenants."""
    one = Tenant.from_environ({"ARGOCD_APP_NAME": "team-a_web", "ARGOCD_APP_NAMESPACE": "prod"})
    two = Tenant.from_environ({"ARGOCD_APP_NAME": "team-b_web", "ARGOCD_APP_NAMESPACE": "prod"})
    assert one.app != two.app and one.repo != two.repo  # no repository: each app its own


def test_the_default_budgets_fit_argo_cds_deadline() -> None:
    """docs/reliability.md's arithmetic: a render may wait longer than another may hold its
    slot (so waiting behind a slow render does not fail), and wait plus run leave Argo CD's
    60 s deadline at least 10 s for git, the tarball and process start; every step inside a
    render (CPU, kustomize, ECR) ends before the lease does, with its own message."""
    s = DEFAULT_SETTINGS
    assert s.slot_wait_seconds > s.max_render_seconds
    assert s.slot_wait_seconds + s.max_render_seconds <= 60 - 10
    assert s.max_cpu_seconds < s.max_render_seconds
    assert s.kustomize_timeout < s.max_render_seconds
    assert s.ecr_deadline + s.ecr_read_timeout < s.max_render_seconds
    assert s.slot_wait_seconds - s.max_render_seconds > KILL_AFTER_SECONDS
