"""A sick registry and a broken cache, end to end: every `tagpin generate` either prints the right
pins or fails with a clear error before Argo CD's deadline, and never trusts a torn cache entry.

ECR is moto's server or a scripted endpoint on 127.0.0.1; cache faults the kernel will not make
for root (read-only, full) come from a wrapper that fails the cache directory's system calls.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

import pytest

from cmp.errors import ExitStatus
from cmp.registry.base import Lookup, RegistryUnavailable, TagInfo
from cmp.registry.cache import CachingRegistry, DiskCache
from cmp.registry.names import EcrRepository
from tests.support.fake_ecr import FakeEcr, Reply, access_denied, server_error, throttling
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
    repository,
    warnings_in,
    write_app,
)

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference.md"
WRONG = "sha256:" + "e" * 64  # a digest ECR never had: it must never be pinned


def shop_app(root: Path, names: list[str], tag: str = "v1") -> Path:
    images = {name.replace("/", "-"): f"{HOST}/{name}:{tag}" for name in names}
    return write_app(root / "app", images)


def fails_clearly(done: subprocess.CompletedProcess[str], status: ExitStatus) -> None:
    assert done.returncode == status, done.stderr
    assert done.stdout == ""  # Argo CD reads empty output as "no resources": never on failure
    assert done.stderr.startswith(f"tagpin: cannot reach the registry (exit {int(status)}):")
    assert "Traceback" not in done.stderr
    assert_no_credentials(done.stdout, done.stderr)


# -- a sick registry --------------------------------------------------------------------------


def test_a_throttling_storm_ends_after_bounded_retries_naming_every_repository(
    tmp_path: Path, fake_ecr: FakeEcr
) -> None:
    names = [f"shop/svc-{n}" for n in range(5)]
    fake_ecr.script(otherwise=throttling())
    env = generate_env(None, TAGPIN_ECR_MAX_ATTEMPTS="3")

    done = generate(shop_app(tmp_path, names), env)

    fails_clearly(done, ExitStatus.REGISTRY)
    assert fake_ecr.operations() == ["DescribeImages"] * 15  # 3 attempts x 5 repositories
    for name in names:
        assert f"ECR throttled DescribeImages on {HOST}/{name} after 3 attempts" in done.stderr
    assert "TAGPIN_ECR_CONCURRENCY" in done.stderr  # says what to do


def test_server_errors_end_after_bounded_retries(tmp_path: Path, fake_ecr: FakeEcr) -> None:
    fake_ecr.script(otherwise=server_error())
    env = generate_env(None, TAGPIN_ECR_MAX_ATTEMPTS="2")

    done = generate(shop_app(tmp_path, ["shop/web"]), env)

    fails_clearly(done, ExitStatus.REGISTRY)
    assert fake_ecr.operations() == ["DescribeImages"] * 2
    assert f"ECR failed DescribeImages on {HOST}/shop/web with a server error (HTTP 500)" in (
        done.stderr
    )


def test_a_storm_longer_than_the_deadline_stops_retrying_at_the_deadline(
    tmp_path: Path, fake_ecr: FakeEcr
) -> None:
    """Many attempts allowed, but no attempt starts after TAGPIN_ECR_DEADLINE."""
    fake_ecr.script(otherwise=throttling())
    env = generate_env(None, TAGPIN_ECR_MAX_ATTEMPTS="50", TAGPIN_ECR_DEADLINE="2")

    done = generate(shop_app(tmp_path, ["shop/web", "shop/api"]), env)

    fails_clearly(done, ExitStatus.REGISTRY)
    assert "did not finish within 2 s" in done.stderr
    assert "TAGPIN_ECR_DEADLINE" in done.stderr
    assert len(fake_ecr.operations()) < 2 * 50


def test_a_hung_ecr_ends_at_the_deadline_however_many_repositories(
    tmp_path: Path, hung_ecr_url: str
) -> None:
    names = [f"shop/svc-{n:02d}" for n in range(12)]  # more than TAGPIN_ECR_CONCURRENCY
    env = generate_env(
        None, TAGPIN_ECR_READ_TIMEOUT="1", TAGPIN_ECR_MAX_ATTEMPTS="2", TAGPIN_ECR_DEADLINE="2"
    )

    done = generate(shop_app(tmp_path, names), env)  # raises TimeoutExpired past 60 s

    fails_clearly(done, ExitStatus.REGISTRY)
    assert "timed out" in done.stderr or "did not finish within 2 s" in done.stderr


# -- ECR unreachable: the cache answers, or a clear error --------------------------------------


def test_unreachable_ecr_with_a_warm_cache_renders_from_the_cache(
    tmp_path: Path, moto_ecr: MotoEcr, unreachable_ecr_url: str
) -> None:
    digests = {name: moto_ecr.push(name, "v1") for name in ("shop/web", "shop/api")}
    app, cache = shop_app(tmp_path, list(digests)), tmp_path / "cache"
    warm = generate(app, generate_env(cache, AWS_ENDPOINT_URL_ECR=moto_ecr.url))
    assert warm.returncode == 0, warm.stderr

    down = generate(app, generate_env(cache, AWS_ENDPOINT_URL_ECR=unreachable_ecr_url))

    assert down.returncode == 0, down.stderr
    assert down.stdout == warm.stdout
    assert sorted(images_in(down.stdout)) == sorted(
        f"{HOST}/{name}:v1@{digest}" for name, digest in digests.items()
    )
    assert warnings_in(down.stderr) == []


def test_unreachable_ecr_with_a_cold_cache_is_a_clear_error(
    tmp_path: Path, unreachable_ecr_url: str
) -> None:
    env = generate_env(tmp_path / "cache", TAGPIN_ECR_MAX_ATTEMPTS="2")

    done = generate(shop_app(tmp_path, ["shop/web"]), env)

    fails_clearly(done, ExitStatus.REGISTRY)
    assert f"cannot reach ECR at {unreachable_ecr_url}" in done.stderr
    assert f"while resolving {HOST}/shop/web" in done.stderr
    assert cache_files(tmp_path / "cache") == {}  # nothing cached for a failed lookup


# -- serving stale digests while ECR is down (opt-in) ------------------------------------------


def seed(cache: Path, name: str, tag: str, digest: str, hours_ago: float) -> None:
    """A cache entry fetched `hours_ago`, as an earlier render would have left it."""
    store, repo = DiskCache(cache), repository(name)
    with store.locked(repo):
        store.merge(repo, {tag: TagInfo(tag, digest)}, time.time() - hours_ago * 3600)


STALE_WEB = "sha256:" + "5" * 64
STALE_API = "sha256:" + "6" * 64


def test_a_stale_cache_is_not_used_unless_asked_for(
    tmp_path: Path, unreachable_ecr_url: str
) -> None:
    cache = tmp_path / "cache"
    seed(cache, "shop/web", "v1", STALE_WEB, hours_ago=2)
    app = shop_app(tmp_path, ["shop/web"])

    done = generate(app, generate_env(cache, TAGPIN_ECR_MAX_ATTEMPTS="1"))

    fails_clearly(done, ExitStatus.REGISTRY)
    assert "cannot reach ECR" in done.stderr


def test_serve_stale_answers_from_entries_younger_than_the_limit_with_a_warning(
    tmp_path: Path, unreachable_ecr_url: str
) -> None:
    cache = tmp_path / "cache"
    seed(cache, "shop/web", "v1", STALE_WEB, hours_ago=2)
    seed(cache, "shop/api", "v1", STALE_API, hours_ago=0.5)
    env = generate_env(cache, TAGPIN_ECR_MAX_ATTEMPTS="1", TAGPIN_SERVE_STALE_HOURS="3")

    done = generate(shop_app(tmp_path, ["shop/web", "shop/api"]), env)

    assert done.returncode == 0, done.stderr
    assert sorted(images_in(done.stdout)) == [
        f"{HOST}/shop/api:v1@{STALE_API}",
        f"{HOST}/shop/web:v1@{STALE_WEB}",
    ]
    warnings = warnings_in(done.stderr)
    assert len(warnings) == 2  # one per repository, each naming its images and their age
    assert any(f"{HOST}/shop/web:v1 (cached 2.0 h ago)" in warning for warning in warnings)
    assert any(f"{HOST}/shop/api:v1 (cached 30 min ago)" in warning for warning in warnings)
    assert all("ECR is unavailable" in w and "may be out of date" in w for w in warnings)
    assert_no_credentials(done.stdout, done.stderr)


@pytest.mark.parametrize(
    ("tags", "cached_hours_ago"),
    [
        (["v1"], 4.0),  # older than TAGPIN_SERVE_STALE_HOURS
        (["v1", "v2"], 1.0),  # v2 was never cached
    ],
    ids=["too-old", "not-cached"],
)
def test_serve_stale_never_answers_with_what_it_does_not_have(
    tmp_path: Path, unreachable_ecr_url: str, tags: list[str], cached_hours_ago: float
) -> None:
    cache = tmp_path / "cache"
    seed(cache, "shop/web", "v1", STALE_WEB, hours_ago=cached_hours_ago)
    app = write_app(tmp_path / "app", {tag: f"{HOST}/shop/web:{tag}" for tag in tags})
    env = generate_env(cache, TAGPIN_ECR_MAX_ATTEMPTS="1", TAGPIN_SERVE_STALE_HOURS="3")

    done = generate(app, env)

    fails_clearly(done, ExitStatus.REGISTRY)
    assert "cannot reach ECR" in done.stderr


@pytest.mark.parametrize(
    ("fault", "served"),
    [
        (throttling, True),
        (server_error, True),
        (access_denied, False),  # a permission problem is not an outage: fix the role
    ],
)
def test_serve_stale_covers_outages_not_permission_problems(
    tmp_path: Path, fake_ecr: FakeEcr, fault: Callable[[], Reply], served: bool
) -> None:
    cache = tmp_path / "cache"
    seed(cache, "shop/web", "v1", STALE_WEB, hours_ago=2)
    fake_ecr.script(otherwise=fault())
    env = generate_env(cache, TAGPIN_ECR_MAX_ATTEMPTS="1", TAGPIN_SERVE_STALE_HOURS="3")

    done = generate(shop_app(tmp_path, ["shop/web"]), env)

    if served:
        assert done.returncode == 0, done.stderr
        assert images_in(done.stdout) == [f"{HOST}/shop/web:v1@{STALE_WEB}"]
        assert len(warnings_in(done.stderr)) == 1
    else:
        fails_clearly(done, ExitStatus.REGISTRY)
        assert "missing permission ecr:DescribeImages" in done.stderr


class DownRegistry:
    """A registry in an outage: every question fails as an unreachable ECR does."""

    def describe_tags(self, repo: EcrRepository, tags: Collection[str]) -> Lookup:
        raise RegistryUnavailable(f"cannot reach ECR while resolving {repo.name}")

    def list_tags(self, repo: EcrRepository) -> Lookup:
        raise RegistryUnavailable(f"cannot reach ECR while listing {repo.name}")

    def describe_cached(self, repo: EcrRepository, tags: Collection[str]) -> Lookup | None:
        return None

    def prefetch(
        self, requests: Mapping[EcrRepository, Collection[str]]
    ) -> Collection[EcrRepository]:
        return ()


def test_serve_stale_also_answers_tag_listings_for_branch_deploys(tmp_path: Path) -> None:
    store, repo = DiskCache(tmp_path), repository("shop/web")
    infos = {tag: TagInfo(tag, STALE_WEB) for tag in ("main-1", "main-2")}
    with store.locked(repo):
        store.merge(repo, infos, time.time() - 2 * 3600, tag_list=True)
    warnings: list[str] = []

    served = CachingRegistry(
        DownRegistry(), DiskCache(tmp_path), stale_for=3 * 3600, warnings=warnings
    ).list_tags(repo)

    assert served.found == infos
    assert len(warnings) == 1 and "listing cached 2.0 h ago" in warnings[0]
    with pytest.raises(RegistryUnavailable):
        CachingRegistry(DownRegistry(), DiskCache(tmp_path)).list_tags(repo)  # off by default


# -- a broken cache directory ------------------------------------------------------------------

# Runs `tagpin generate` with the cache directory's system calls failing as a read-only or full
# file system would (root ignores permission bits, and mounting needs privileges tests lack).
FAULTY_CACHE = """
import errno, os, sys
root = os.path.realpath(os.environ["TAGPIN_CACHE_DIR"])
code = getattr(errno, os.environ["CACHE_FAULT"])
writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT

def in_cache(path):
    real = os.path.realpath(os.fsdecode(path))
    return real == root or real.startswith(root + os.sep)

def fail():
    raise OSError(code, os.strerror(code))

real_open, real_write, real_mkdir = os.open, os.write, os.mkdir

def open_(path, flags, mode=0o777, *, dir_fd=None):
    if code == errno.EROFS and flags & writing and in_cache(path):
        fail()
    return real_open(path, flags, mode, dir_fd=dir_fd)

def write(fd, data):
    if code == errno.ENOSPC and in_cache(os.readlink(f"/proc/self/fd/{fd}")):
        fail()
    return real_write(fd, data)

def mkdir(path, mode=0o777, *, dir_fd=None):
    if code == errno.EROFS and in_cache(path):
        if os.path.isdir(path):
            raise FileExistsError(errno.EEXIST, "File exists", path)
        fail()
    return real_mkdir(path, mode, dir_fd=dir_fd)

os.open, os.write, os.mkdir = open_, write, mkdir
from cmp.cli import main
main(["generate"])
"""


def corrupt(path: Path) -> None:
    path.write_text(path.read_text().replace('"digest": "sha256:', '"digest": "sha256:0', 1))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def replace_with_directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


def replace_with_fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)  # reading it would block for ever


@pytest.mark.parametrize(
    ("damage", "warning"),
    [
        (corrupt, "ignored a corrupt image cache file"),
        (truncate, "ignored a corrupt image cache file"),
        (replace_with_directory, "cannot read the image cache"),
        (replace_with_fifo, "cannot read the image cache"),
    ],
    ids=["corrupt", "truncated", "directory", "fifo"],
)
def test_a_damaged_cache_file_still_renders_with_one_warning(
    tmp_path: Path, moto_ecr: MotoEcr, damage: Callable[[Path], None], warning: str
) -> None:
    names = ["shop/web", "shop/api", "shop/worker"]
    for name in names:
        moto_ecr.push(name, "v1")
    app, cache = shop_app(tmp_path, names), tmp_path / "cache"
    reference = generate(app, generate_env(cache))
    assert reference.returncode == 0, reference.stderr
    for path in cache_files(cache):
        damage(path)
    moto_ecr.reset_calls()

    done = generate(app, generate_env(cache))

    assert done.returncode == 0, done.stderr
    assert done.stdout == reference.stdout
    assert len(warnings_in(done.stderr)) == 1
    assert warning in done.stderr
    assert moto_ecr.calls("DescribeImages") == len(names)  # asked again, not trusted


@pytest.mark.parametrize(
    ("fault", "warning"),
    [
        ("EROFS", "Read-only file system"),
        ("ENOSPC", "No space left on device"),
    ],
    ids=["read-only", "full"],
)
def test_a_read_only_or_full_cache_directory_still_renders_with_one_warning(
    tmp_path: Path, moto_ecr: MotoEcr, fault: str, warning: str
) -> None:
    names = [f"shop/svc-{n}" for n in range(4)]
    for name in names:
        moto_ecr.push(name, "v1")
    app, cache = shop_app(tmp_path, names), tmp_path / "cache"
    cache.mkdir()
    reference = generate(app, generate_env(None))

    done = generate(app, generate_env(cache, CACHE_FAULT=fault), probe=FAULTY_CACHE)

    assert done.returncode == 0, done.stderr
    assert done.stdout == reference.stdout
    warnings = warnings_in(done.stderr)
    assert len(warnings) == 1
    assert "new digests will not be cached" in warnings[0] and warning in warnings[0]
    assert cache_files(cache) == {}
    assert leftover_temp_files(cache) == []


def test_a_cache_directory_that_is_a_file_still_renders_with_one_warning(
    tmp_path: Path, moto_ecr: MotoEcr
) -> None:
    moto_ecr.push("shop/web", "v1")
    app, blocker = shop_app(tmp_path, ["shop/web"]), tmp_path / "not-a-directory"
    blocker.write_text("")

    done = generate(app, generate_env(blocker / "cache"))

    assert done.returncode == 0, done.stderr
    assert len(images_in(done.stdout)) == 1
    assert len(warnings_in(done.stderr)) == 1
    assert "cannot use the image cache directory" in done.stderr


# -- a writer killed mid-write -----------------------------------------------------------------

# Writes a cache entry with a wrong digest and stops for good at `stage`, to be SIGKILLed there.
KILLED_WRITER = """
import os, sys, time
from pathlib import Path
from cmp.registry.names import EcrRepository
from cmp.registry.base import Lookup, TagInfo
from cmp.registry.cache import CachingRegistry, DiskCache
from cmp.registry.base import RegistryUnavailable
from tests.support.renders import repository

stage, ready, wrong = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
real_write = os.write

def stop_here():
    ready.write_text("stopped")
    time.sleep(600)

def half_a_write(fd, data):
    real_write(fd, bytes(data[: len(data) // 2]))
    stop_here()

if stage == "mid-write":
    os.write = half_a_write
else:
    os.replace = lambda source, target: stop_here()
store, repo = DiskCache(Path(os.environ["TAGPIN_CACHE_DIR"])), repository("shop/web")
with store.locked(repo):
    store.merge(repo, {"v1": TagInfo("v1", wrong)}, time.time())
"""


@pytest.mark.parametrize("stage", ["mid-write", "before-rename"])
def test_a_writer_killed_mid_write_leaves_nothing_a_later_render_trusts(
    tmp_path: Path, moto_ecr: MotoEcr, stage: str
) -> None:
    digest = moto_ecr.push("shop/web", "v1")
    app, cache, ready = shop_app(tmp_path, ["shop/web"]), tmp_path / "cache", tmp_path / "ready"
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, stage, str(ready), WRONG],
        env=generate_env(cache),
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and writer.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ready.exists(), "the writer never reached the point where it is killed"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
    leftovers = leftover_temp_files(cache)
    assert len(leftovers) == 1 and WRONG[:20] in leftovers[0].read_text()
    assert cache_files(cache) == {}  # the entry never reached its real name
    moto_ecr.reset_calls()

    done = generate(app, generate_env(cache))

    assert done.returncode == 0, done.stderr
    assert images_in(done.stdout) == [f"{HOST}/shop/web:v1@{digest}"]
    assert WRONG not in done.stdout
    assert moto_ecr.calls("DescribeImages") == 1
    entry = cached(cache, "shop/web")
    assert entry is not None and entry.tags["v1"].info.digest == digest


# -- a tag that moves between renders ----------------------------------------------------------


def build(number: int) -> bytes:
    """The manifest of a distinct image (as a CI rebuild pushes under the same tag)."""
    return (
        b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",'
        b'"build":%d}' % number
    )


def test_a_moved_tag_is_pinned_anew_after_the_ttl_or_on_refresh(
    tmp_path: Path, moto_ecr: MotoEcr
) -> None:
    first = moto_ecr.push("shop/web", "v1", build(1))
    app, cache = shop_app(tmp_path, ["shop/web"]), tmp_path / "cache"

    def pinned(**settings: str) -> str:
        done = generate(app, generate_env(cache, **settings))
        assert done.returncode == 0, done.stderr
        [image] = images_in(done.stdout)
        return image.rsplit("@", 1)[1]

    assert pinned() == first
    second = moto_ecr.push("shop/web", "v1", build(2))  # tag moves
    assert pinned() == first  # within TAGPIN_CACHE_TTL the cached answer stands
    assert pinned(TAGPIN_CACHE="refresh") == second  # ask ECR now, and cache its answer
    assert pinned() == second

    third = moto_ecr.push("shop/web", "v1", build(3))
    time.sleep(1.1)  # older than a one-second TTL
    assert pinned(TAGPIN_CACHE_TTL="1") == third


# -- exit codes --------------------------------------------------------------------------------


def documented_exit_codes() -> dict[int, tuple[str, str]]:
    section = REFERENCE.read_text().split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split(" | ") for line in section.splitlines()]
    return {
        int(cells[0].strip()): (cells[1].strip(), cells[2].strip())
        for cells in rows
        if len(cells) == 3 and cells[0].strip().isdigit()
    }


def test_the_reference_documents_every_exit_code_and_no_other() -> None:
    documented = documented_exit_codes()
    assert sorted(documented) == sorted(int(status) for status in ExitStatus)
    for code, (cause, todo) in documented.items():
        assert cause.strip(), f"exit {code} has no cause in docs/reference.md"
        assert todo.strip() or code == 0, f"exit {code} does not say what to do"
