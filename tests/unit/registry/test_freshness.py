"""The one freshness rule every cached answer passes, in memory, on disk and in Redis (the
layers' own tests check that each applies it: test_cache.py, test_pushes.py,
test_shared_cache.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cmp.registry.base import Fetched
from cmp.registry.freshness import freshness
from cmp.registry.pushes import Push, PushFloors, PushRecord
from tests.support.ecr_repos import ecr_repository as repo

if TYPE_CHECKING:
    from cmp.registry.freshness import Freshness

T0 = 1_800_000_000.0
REGISTRY = Path(__file__).resolve().parents[3] / "cmp" / "registry"


def pushed_at(at: float) -> PushFloors:
    floors = PushFloors(skew=2.0)
    floors.announce(PushRecord({repo().uri: Push("main", None, at)}))
    return floors


@pytest.mark.parametrize(
    ("fetched", "pushes", "expected"),
    [
        pytest.param(Fetched(T0 - 299), PushFloors(), "fresh", id="within-the-ttl"),
        pytest.param(Fetched(T0 - 300), PushFloors(), "expired", id="at-the-ttl"),
        pytest.param(Fetched(T0 - 10), pushed_at(T0 - 5), "pushed", id="fetched-before-a-push"),
        pytest.param(Fetched(T0 - 4), pushed_at(T0 - 5), "pushed", id="within-the-skew"),
        pytest.param(Fetched(T0 - 3), pushed_at(T0 - 5), "fresh", id="after-push-and-skew"),
        pytest.param(
            Fetched(T0 - 6, seen=T0 - 5), pushed_at(T0 - 5), "fresh", id="by-a-render-that-knew-it"
        ),
        # Too old anyway: the push did not decide it (what a layer reports as the outcome).
        pytest.param(Fetched(T0 - 400), pushed_at(T0 - 5), "expired", id="expired-and-pushed"),
    ],
)
def test_an_answer_may_answer_while_young_and_not_older_than_an_announced_push(
    fetched: Fetched, pushes: PushFloors, expected: Freshness
) -> None:
    assert freshness(repo(), fetched, now=T0, max_age=300, pushes=pushes) == expected


def test_every_caching_layer_judges_with_the_one_rule_and_nothing_else() -> None:
    """Greps the package: the push floor is consulted in one place, and every layer that keeps
    answers (memory and disk, Redis) goes through it."""
    sources = {path.name: path.read_text() for path in REGISTRY.glob("*.py")}
    consulting = sorted(name for name, text in sources.items() if ".admits(" in text)
    assert consulting == ["freshness.py"]
    for layer in ("cache.py", "shared.py"):
        assert "freshness(" in sources[layer], layer


def test_no_layer_finds_another_layers_methods_by_name() -> None:
    """The Registry protocol declares every method the layers call on each other (mypy
    --strict checks them); `getattr`/`hasattr` are left for the SDK client (boto3)."""
    for path in sorted(REGISTRY.glob("*.py")):
        for match in re.finditer(r"\b(getattr|hasattr)\((\w+)", path.read_text()):
            assert match.group(2) == "client", f"{path.name}: {match.group(0)}"
