"""Which registry a request asks (cmp/services.py registry_for): one rule for an app's
tagpin.lock and for the file `tagpin pin --lock` names, so pin and render cannot drift."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cmp.errors import LockError, SourceError
from cmp.registry.pushes import PushFloors
from cmp.request import ManifestStream
from cmp.services import Services, lock_only_source, registry_for
from cmp.settings import CacheMode, LockMode, Settings
from tests.support.apptree import make_request
from tests.support.ecr_repos import ecr_repository
from tests.support.static_registry import StaticRegistry

REPO = ecr_repository("shop/web")
LOCKED = "sha256:" + "1" * 64
NOW = "sha256:" + "2" * 64
LOCK = (
    "apiVersion: tagpin.dev/v1\nkind: ImageLock\nimages:\n"
    f"- image: {REPO.uri}:v1\n  digest: {LOCKED}\n"
)


class Ecr:
    """ECR as it is now, remembering the settings each build of it was asked with."""

    def __init__(self) -> None:
        self.asked: list[Settings] = []

    def __call__(self, settings: Settings, pushes: Any, warnings: list[str]) -> StaticRegistry:
        self.asked.append(settings)
        return StaticRegistry.of_digests({REPO: {"v1": NOW, "v2": NOW}})


def requests(tmp_path: Path, lock: LockMode) -> dict[str, Any]:
    """The same lock, once as an app's tagpin.lock and once as `tagpin pin --lock`'s file."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "tagpin.lock").write_text(LOCK)
    settings_env = {"TAGPIN_LOCK": lock.value}
    rendered = make_request(app, settings_env=settings_env)
    piped = make_request(tmp_path, settings_env=settings_env)._replace(
        stream=ManifestStream((), lock=app / "tagpin.lock")
    )
    return {"render": rendered, "pin": piped}


def asked(request: Any, ecr: Ecr, tag: str) -> str:
    registry = registry_for(request, Services(ecr=ecr), PushFloors(), [])()
    return registry.describe_tags(REPO, [tag]).found[tag].digest


@pytest.mark.parametrize("kind", ["render", "pin"])
def test_a_lock_answers_first_and_ecr_fills_its_gaps(tmp_path: Path, kind: str) -> None:
    request = requests(tmp_path, LockMode.USE)[kind]
    assert asked(request, Ecr(), "v1") == LOCKED
    assert asked(request, Ecr(), "v2") == NOW


@pytest.mark.parametrize("kind", ["render", "pin"])
def test_verify_checks_the_lock_against_ecr_itself_never_a_warm_cache(
    tmp_path: Path, kind: str
) -> None:
    ecr = Ecr()
    with pytest.raises(LockError, match=LOCKED):
        asked(requests(tmp_path, LockMode.VERIFY)[kind], ecr, "v1")
    assert [settings.cache for settings in ecr.asked] == [CacheMode.REFRESH]


@pytest.mark.parametrize("kind", ["render", "pin"])
def test_strict_never_asks_ecr_and_names_the_lock_as_the_only_source(
    tmp_path: Path, kind: str
) -> None:
    request = requests(tmp_path, LockMode.STRICT)[kind]
    ecr = Ecr()
    with pytest.raises(LockError, match="v2"):
        asked(request, ecr, "v2")
    assert ecr.asked == []
    shown = "tagpin.lock" if kind == "render" else str(request.stream.lock)
    assert lock_only_source(request) == f"{shown} (TAGPIN_LOCK=strict)"


def test_a_stream_without_a_lock_asks_ecr_even_under_strict(tmp_path: Path) -> None:
    request = make_request(tmp_path, settings_env={"TAGPIN_LOCK": "strict"})._replace(
        stream=ManifestStream(())
    )
    assert asked(request, Ecr(), "v2") == NOW
    assert lock_only_source(request) is None


def test_a_lock_named_on_the_command_line_must_exist(tmp_path: Path) -> None:
    request = make_request(tmp_path)._replace(
        stream=ManifestStream((), lock=tmp_path / "missing.lock")
    )
    with pytest.raises(SourceError, match="--lock .*missing.lock: no such file"):
        registry_for(request, Services(ecr=Ecr()), PushFloors(), [])


def test_digests_answer_alone_whatever_the_lock_says(tmp_path: Path) -> None:
    digests = tmp_path / "digests.lock"
    digests.write_text(LOCK.replace(LOCKED, "sha256:" + "3" * 64))
    for request in requests(tmp_path, LockMode.USE).values():
        with_digests = request._replace(digests=digests)
        ecr = Ecr()
        assert asked(with_digests, ecr, "v1") == "sha256:" + "3" * 64
        with pytest.raises(LockError):
            asked(with_digests, ecr, "v2")
        assert ecr.asked == []
        assert lock_only_source(with_digests) == f"--digests {digests}"
