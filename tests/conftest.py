"""Shared fixtures. Each support module registers its own fixtures as a pytest plugin."""

import pytest

pytest_plugins: list[str] = [
    "tests.support.fake_kube",
    "tests.support.moto_ecr",
    "tests.support.fake_ecr",
    "tests.support.snapshots",
    "tests.support.hostile",
    "tests.support.redis_server",
]


@pytest.fixture(autouse=True)
def _private_cache_dir(tmp_path_factory: pytest.TempPathFactory,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the machine's real tagpin cache (digests, compiled templates);
    tests that need a particular cache directory set their own."""
    monkeypatch.setenv("TAGPIN_CACHE_DIR", str(tmp_path_factory.mktemp("tagpin-cache")))
