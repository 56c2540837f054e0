"""Shared fixtures. Each support module registers its own fixtures as a pytest plugin."""

from pathlib import Path

import pytest

pytest_plugins: list[str] = [
    "tests.support.fake_kube",
    "tests.support.moto_ecr",
    "tests.support.fake_ecr",
    "tests.support.snapshots",
    "tests.support.hostile",
    "tests.support.redis_server",
    "tests.support.image",
]

E2E = Path(__file__).resolve().parent / "e2e"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The folder is the marker: everything under tests/e2e/ is `e2e`, so `-m "not e2e"` runs
    the unit tests alone. A test that needs the built image is also `image`: `-m "not image"`
    leaves out building it (tests/support/image.py)."""
    for item in items:
        if E2E in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.e2e)
        if "tagpin_image" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.image)


@pytest.fixture(autouse=True)
def _private_cache_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No test reads or writes the machine's real tagpin cache (digests, compiled templates);
    tests that need a particular cache directory set their own."""
    monkeypatch.setenv("TAGPIN_CACHE_DIR", str(tmp_path_factory.mktemp("tagpin-cache")))
