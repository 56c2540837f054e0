"""Locks checked against moto's ECR server. `tagpin lock --check`: exit 11 when the lock lacks
a tag a render uses or locks a digest ECR has moved away from; never writes the lock.
TAGPIN_LOCK=verify: asks ECR for every locked tag, whatever the digest cache remembers."""

from __future__ import annotations

from pathlib import Path

from cmp.errors import ExitStatus
from tests.e2e.registry.test_lock import HOST, ecr_env, rebuilt, run, values, write_app  # noqa: F401


def test_check_passes_fails_and_never_writes(
    tmp_path: Path,
    moto_ecr,
    ecr_env: dict[str, str],  # noqa: F811
) -> None:
    web = moto_ecr.push("shop/web", "v1")
    moto_ecr.push("shop/worker", "v1")
    moto_ecr.push("shop/worker", "v2")
    app = write_app(tmp_path, values())

    absent = run("lock", "--check", str(app), env=ecr_env)
    assert absent.returncode == ExitStatus.LOCK == 11
    assert f"{HOST}/shop/web:v1: a render uses this tag but" in absent.stderr
    assert not (app / "tagpin.lock").exists()

    assert run("lock", str(app), env=ecr_env).returncode == 0
    written = (app / "tagpin.lock").read_text()
    fine = run("lock", "--check", str(app), env=ecr_env)
    assert fine.returncode == 0, fine.stderr
    assert fine.stdout == ""
    assert "up to date (2 image(s) checked against ECR)" in fine.stderr

    (app / "values.yaml").write_text(values(worker="v2"))  # a values change the lock missed
    lacking = run("lock", "--check", str(app), env=ecr_env)
    assert lacking.returncode == ExitStatus.LOCK
    assert f"{HOST}/shop/worker:v2: a render uses this tag but " in (lacking.stderr)
    assert "shop/web:v1" not in lacking.stderr and "app/tagpin.lock lacks it" in lacking.stderr

    (app / "values.yaml").write_text(values())
    moved = moto_ecr.push("shop/web", "v1", rebuilt("moved"))
    # A warm digest cache must not hide the move: the check asks ECR.
    disagreeing = run("lock", "--check", str(app), env=ecr_env)
    assert disagreeing.returncode == ExitStatus.LOCK
    assert f"tagpin.lock locks {web}, but ECR now has {moved}" in (disagreeing.stderr)
    assert (app / "tagpin.lock").read_text() == written
    assert sorted(p.name for p in app.iterdir()) == sorted(
        ["tagpin.yaml", "values.yaml", "templates", "tagpin.lock"]
    )


def test_verify_asks_ecr_even_when_the_digest_cache_is_warm(
    tmp_path: Path,
    moto_ecr,
    ecr_env: dict[str, str],  # noqa: F811
) -> None:
    locked = moto_ecr.push("shop/web", "v1")
    moto_ecr.push("shop/worker", "v1")
    app = write_app(tmp_path, values())
    assert run("lock", str(app), env=ecr_env).returncode == 0  # also warms the disk cache
    verify_env = dict(ecr_env, TAGPIN_LOCK="verify")  # the cache on, as in the sidecar
    assert run("render", str(app), env=verify_env).returncode == 0
    moved = moto_ecr.push("shop/web", "v1", rebuilt("moved"))

    moto_ecr.reset_calls()
    done = run("render", str(app), env=verify_env)
    assert done.returncode == ExitStatus.LOCK, done.stderr
    assert done.stdout == ""
    assert f"{HOST}/shop/web:v1: tagpin.lock locks {locked}, but ECR now has {moved}" in (
        done.stderr
    )
    assert moto_ecr.calls("DescribeImages") == 2  # every locked tag, both repositories
    # The default mode (and a render without a lock) may still answer from the cache.
    moto_ecr.reset_calls()
    assert run("render", str(app), env=ecr_env).returncode == 0
    assert sum(moto_ecr.counts().values()) == 0
