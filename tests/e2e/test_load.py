"""Many renders at once and one large render, end to end against moto's ECR server.

Argo CD starts one `tagpin generate` per render, many at the same time. They share one cache
directory; the per-repository lock makes one process ask ECR while the others wait and reuse the
answer, so a burst of renders costs one DescribeImages per repository, not one per render.
Figures (time, memory) belong to `python -m tests.support.large_app`, not to assertions here.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.large_app import OBJECTS, REPOSITORIES, push_images, write_large_app
from tests.support.moto_ecr import MotoEcr
from tests.support.renders import (
    HOST,
    assert_no_credentials,
    cache_files,
    cached,
    generate,
    generate_env,
    images_in,
    leftover_temp_files,
    start_generate,
    warnings_in,
    write_app,
)

APPS = 4
RENDERS_PER_APP = 4  # 16 processes at once
SHARED_REPOSITORIES = [f"shop/service-{n}" for n in range(8)]
TAGS = ("v1", "v2")


def apps_sharing_repositories(root: Path) -> dict[Path, list[str]]:
    """App k uses repositories k..k+4 (mod 8), every tag of each: neighbours share three."""
    apps: dict[Path, list[str]] = {}
    for number in range(APPS):
        names = [SHARED_REPOSITORIES[(number + k) % len(SHARED_REPOSITORIES)] for k in range(5)]
        images = {
            f"{name.rsplit('/', 1)[1]}-{tag}": f"{HOST}/{name}:{tag}"
            for name in names
            for tag in TAGS
        }
        apps[write_app(root / f"app-{number}", images, replicas=3)] = names
    return apps


def test_sixteen_concurrent_renders_on_a_cold_cache_match_a_serial_run_with_one_call_per_repo(
    tmp_path: Path, moto_ecr: MotoEcr
) -> None:
    digests = {
        (name, tag): moto_ecr.push(name, tag) for name in SHARED_REPOSITORIES for tag in TAGS
    }
    apps = apps_sharing_repositories(tmp_path)
    serial = {}
    for app, names in apps.items():
        done = generate(app, generate_env(None, ARGOCD_APP_NAME=app.name))
        assert done.returncode == 0, done.stderr
        assert sorted(set(images_in(done.stdout))) == sorted(
            f"{HOST}/{name}:{tag}@{digests[(name, tag)]}" for name in names for tag in TAGS
        )
        serial[app] = done.stdout
    moto_ecr.reset_calls()
    cache = tmp_path / "shared-cache"

    renders = [
        (app, start_generate(app, generate_env(cache, ARGOCD_APP_NAME=app.name)))
        for _ in range(RENDERS_PER_APP)
        for app in apps
    ]
    results = [
        (app, *process.communicate(timeout=120), process.returncode) for app, process in renders
    ]

    assert len(results) == 16
    for app, stdout, stderr, status in results:
        assert status == 0, stderr
        assert stdout == serial[app]  # byte for byte
        assert warnings_in(stderr) == []  # nobody gave up waiting for a lock
        assert_no_credentials(stdout, stderr)
    # No thundering herd: one process per repository asked; the other 15 reused its answer.
    assert moto_ecr.counts() == {"DescribeImages": len(SHARED_REPOSITORIES)}
    files = cache_files(cache)  # every file parses as JSON
    assert len(files) == len(SHARED_REPOSITORIES)
    for name in SHARED_REPOSITORIES:
        entry = cached(cache, name)  # checksum, repository and digests all valid
        assert entry is not None
        assert {tag: e.info.digest for tag, e in entry.tags.items()} == {
            tag: digests[(name, tag)] for tag in TAGS
        }
    assert leftover_temp_files(cache) == []


def test_a_large_app_renders_correctly_with_a_cold_cache(tmp_path: Path, moto_ecr: MotoEcr) -> None:
    pinned = push_images(moto_ecr.push)
    app = write_large_app(tmp_path / "app", list(pinned))
    moto_ecr.reset_calls()

    done = generate(app, generate_env(tmp_path / "cache"))

    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n---\n") + done.stdout.startswith("---\n") == OBJECTS
    images = images_in(done.stdout)
    assert len(images) == OBJECTS
    ordered = sorted(pinned)
    assert images == [pinned[ordered[n % len(ordered)]] for n in range(OBJECTS)]
    assert moto_ecr.counts() == {"DescribeImages": REPOSITORIES}
    assert len(cache_files(tmp_path / "cache")) == REPOSITORIES
