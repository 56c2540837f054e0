"""A push reaches the deploy at once, on every replica: end to end with real parts.

moto's ECR server; the `tagpin webhook` process; the Kubernetes API stand-in holding the
Applications; and two sidecar replicas, each the cmp-server emulator running `tagpin generate`
with its own cache directory, both warm before the push. What is checked is what Argo CD would
apply: the image (tag and digest) in the first render after the webhook's patch.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from cmp.registry.pushes import MAX_REPOSITORIES, PUSHES_ANNOTATION, parse_record
from tests.support import push_fleet
from tests.support.cmpserver import AppSpec, CmpServer
from tests.support.fake_kube import FakeKube
from tests.support.moto_ecr import MotoEcr
from tests.support.push_fleet import (
    BIN,
    HOST,
    Webhook,
    add_applications,
    manifest,
    render_server,
    running_webhook,
    wait_until,
    write_gitops,
)

WEB = f"{HOST}/shop/web"
API = f"{HOST}/shop/api"
SECRET = "push-freshness-secret-0123456789"


# --- the parts -------------------------------------------------------------------------------


@pytest.fixture
def webhook(fake_kube: FakeKube, kubeconfig: Path, tmp_path: Path) -> Iterator[Webhook]:
    """The `tagpin webhook` command in its own process, as deploy/webhook runs it."""
    with running_webhook(kubeconfig, tmp_path, SECRET) as webhook:
        yield webhook


@pytest.fixture
def gitops(tmp_path: Path) -> Path:
    """The GitOps repository: a branch deploy following pr-42 builds, an app on `main`."""
    return write_gitops(
        tmp_path / "gitops", {"web-staging": f"{WEB}:pr-42-0001", "api": f"{API}:main"}
    )


AWS_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_EC2_METADATA_DISABLED",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_ENDPOINT_URL_ECR",
)


def replica(
    tmp_path: Path, name: str, kubeconfig: Path, render_server: Path | None = None
) -> CmpServer:
    """One repo-server pod's tagpin sidecar, reaching moto's ECR as the moto_ecr fixture set up."""
    aws_env = {k: os.environ[k] for k in AWS_ENV}
    return push_fleet.replica(tmp_path, name, kubeconfig, aws_env, render_server)


@dataclass
class Fleet:
    ecr: MotoEcr
    kube: FakeKube
    webhook: Webhook
    gitops: Path
    replicas: dict[str, CmpServer]

    def render(self, replica: str, app: str) -> str:
        """The image Argo CD would apply for `app`, rendered by `replica`."""
        spec = AppSpec(name=app, source_path=f"apps/{app}", plugin={"name": "tagpin"})
        result = self.replicas[replica].generate(self.gitops, spec)
        assert result.ok, (result.error or "") + result.stderr
        [deployment] = result.objects
        image: str = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        return image

    def render_counting(self, replica: str, apps: list[str]) -> tuple[list[str], dict[str, int]]:
        """The images of `apps` rendered by `replica`, and the ECR calls those renders made."""
        self.ecr.reset_calls()
        images = [self.render(replica, app) for app in apps]
        return images, dict(self.ecr.counts())

    def record(self, app: str) -> dict[str, tuple[str, str | None]]:
        annotations = self.kube.applications[("argocd", app)]["metadata"]["annotations"]
        if PUSHES_ANNOTATION not in annotations:
            return {}
        record = parse_record(annotations[PUSHES_ANNOTATION])
        return {repository: (p.tag, p.digest) for repository, p in record.pushes.items()}

    def wait_for_record(self, app: str, repository: str, tag: str) -> None:
        deadline = time.monotonic() + 15
        while self.record(app).get(repository, ("", None))[0] != tag:
            assert time.monotonic() < deadline, f"{app} never recorded {repository}:{tag}"
            time.sleep(0.01)

    def patches(self, app: str) -> int:
        return sum(1 for r in self.kube.requests if r.method == "PATCH" and r.path.endswith(app))


@pytest.fixture
def fleet(
    request: pytest.FixtureRequest,
    moto_ecr: MotoEcr,
    fake_kube: FakeKube,
    kubeconfig: Path,
    webhook: Webhook,
    gitops: Path,
    tmp_path: Path,
) -> Iterator[Fleet]:
    add_applications(fake_kube, WEB, "pr-42-0001", API)
    with contextlib.ExitStack() as stack:
        sockets: dict[str, Path | None] = {"a": None, "b": None}
        if getattr(request, "param", "in-process") == "served":
            for name in sockets:
                # Short and private: a socket path must fit in 100 bytes.
                directory = Path(stack.enter_context(tempfile.TemporaryDirectory(dir="/tmp")))
                sockets[name] = stack.enter_context(render_server(directory))
        replicas = {n: replica(tmp_path, n, kubeconfig, sockets[n]) for n in sockets}
        yield Fleet(moto_ecr, fake_kube, webhook, gitops, replicas)


def warm(fleet: Fleet, expected: Mapping[str, str]) -> None:
    """Both replicas render both apps, then render them again from their caches alone."""
    for _ in range(2):
        fleet.ecr.reset_calls()
        for name in fleet.replicas:
            for app, image in expected.items():
                assert fleet.render(name, app) == image
    assert sum(fleet.ecr.counts().values()) == 0  # the second round: caches only


# --- the tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("fleet", ["in-process", "served"], indirect=True)
def test_both_replicas_render_a_push_on_the_first_render_after_the_patch(fleet: Fleet) -> None:
    ecr = fleet.ecr
    pr1 = ecr.push("shop/web", "pr-42-0001", manifest("pr-42 first build"))
    main1 = ecr.push("shop/api", "main", manifest("api main, first"))
    warm(fleet, {"web-staging": f"{WEB}:pr-42-0001@{pr1}", "api": f"{API}:main@{main1}"})

    # A newer branch build (only the tag list shows it) and `main` moved (only its digest).
    pr2 = ecr.push("shop/web", "pr-42-0002", manifest("pr-42 second build"))
    main2 = ecr.push("shop/api", "main", manifest("api main, second"))
    # Before the webhook speaks, the caches still answer: the pushes are not announced yet.
    assert fleet.render("a", "web-staging") == f"{WEB}:pr-42-0001@{pr1}"
    assert fleet.render("a", "api") == f"{API}:main@{main1}"

    assert fleet.webhook.eventbridge("shop/web", "pr-42-0002", pr2) == ["argocd/web-staging"]
    assert fleet.webhook.generic("shop/api", "main", main2) == ["argocd/api"]
    fleet.wait_for_record("web-staging", WEB, "pr-42-0002")
    fleet.wait_for_record("api", API, "main")
    assert fleet.record("api") == {API: ("main", main2)}

    first = {name: fleet.render_counting(name, ["web-staging", "api"]) for name in fleet.replicas}
    assert first == {
        name: ([f"{WEB}:pr-42-0002@{pr2}", f"{API}:main@{main2}"], {"DescribeImages": 2})
        for name in fleet.replicas
    }  # one ECR call per pushed repository per replica: shop/web's tags, shop/api:main
    # ... and the renders after them come from the caches again.
    ecr.reset_calls()
    for name in fleet.replicas:
        fleet.render(name, "web-staging")
        fleet.render(name, "api")
    assert sum(ecr.counts().values()) == 0


def test_a_push_the_policy_rejects_changes_nothing(fleet: Fleet) -> None:
    pr1 = fleet.ecr.push("shop/web", "pr-42-0001", manifest("pr-42 first build"))
    fleet.ecr.push("shop/api", "main", manifest("api main"))
    warm(fleet, {"web-staging": f"{WEB}:pr-42-0001@{pr1}"})
    pr77 = fleet.ecr.push("shop/web", "pr-77-0001", manifest("another branch"))

    assert fleet.webhook.eventbridge("shop/web", "pr-77-0001", pr77) == []
    assert fleet.webhook.generic("shop/web", "pr-77-0001", pr77) == []
    fleet.ecr.reset_calls()
    for name in fleet.replicas:
        assert fleet.render(name, "web-staging") == f"{WEB}:pr-42-0001@{pr1}"
    assert fleet.patches("web-staging") == 0 and fleet.record("web-staging") == {}
    assert sum(fleet.ecr.counts().values()) == 0  # the caches still answer


def test_a_render_in_flight_during_the_push_does_not_hide_it(fleet: Fleet) -> None:
    """The render reads the Application and gets ECR's answer before the push, but writes its
    cache after the webhook's patch. Its own output is superseded by the render the patch
    causes, which must show the push."""
    ecr = fleet.ecr
    main1 = ecr.push("shop/api", "main", manifest("api main, first"))
    ecr.counter.hold("DescribeImages")
    in_flight: list[str] = []
    thread = threading.Thread(target=lambda: in_flight.append(fleet.render("a", "api")))
    thread.start()
    try:
        wait_until(lambda: ecr.counter.held() == 1)
        main2 = ecr.push("shop/api", "main", manifest("api main, second"))
        fleet.webhook.generic("shop/api", "main", main2)
        fleet.wait_for_record("api", API, "main")
    finally:
        ecr.counter.release()
        thread.join(timeout=60)
    assert in_flight == [f"{API}:main@{main1}"]  # answered before the push: Argo CD replaces it
    assert fleet.render("a", "api") == f"{API}:main@{main2}"


def test_a_second_push_after_a_render_that_saw_the_first(fleet: Fleet) -> None:
    """Replica a renders between two pushes of `main`, so its cache holds an answer fetched
    after the first announcement; the second announcement must still beat it."""
    main1 = fleet.ecr.push("shop/api", "main", manifest("api main, first"))
    warm(fleet, {"api": f"{API}:main@{main1}"})
    main2 = fleet.ecr.push("shop/api", "main", manifest("api main, second"))
    fleet.webhook.generic("shop/api", "main", main2)
    fleet.wait_for_record("api", API, "main")
    assert fleet.render("a", "api") == f"{API}:main@{main2}"
    main3 = fleet.ecr.push("shop/api", "main", manifest("api main, third"))
    fleet.webhook.eventbridge("shop/api", "main", main3)
    wait_until(lambda: fleet.record("api")[API] == ("main", main3))
    for name in fleet.replicas:
        assert fleet.render(name, "api") == f"{API}:main@{main3}"


def test_the_record_stays_bounded_with_many_repositories(fleet: Fleet) -> None:
    names = [f"shop/svc-{n:02d}" for n in range(MAX_REPOSITORIES + 8)]
    many = fleet.kube.add("argocd", "many")
    many["status"] = {"summary": {"images": [f"{HOST}/{name}:main" for name in names]}}
    for name in names:
        assert fleet.webhook.generic(name, "main", "sha256:" + "0" * 64) == ["argocd/many"]
    fleet.webhook.wait_for_pushes(len(names))  # every patch done
    text = fleet.kube.applications[("argocd", "many")]["metadata"]["annotations"][PUSHES_ANNOTATION]
    record = parse_record(text)
    assert len(record.pushes) == MAX_REPOSITORIES and record.older is not None
    assert len(text) < 8 * 1024
    # Folded pushes are not lost: `older` (their newest time) covers every unlisted repository.
    # Which ones are folded depends on the order the patches landed (they run in parallel).
    assert record.older < min(p.at for p in record.pushes.values())
    assert set(record.pushes) < {f"{HOST}/{name}" for name in names}


# --- on a laptop ---------------------------------------------------------------------------


def laptop_render(gitops: Path, env: Mapping[str, str], *args: str) -> str:
    done = subprocess.run(
        [str(BIN / "tagpin"), "render", str(gitops / "apps" / "api"), *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [line] = [line for line in done.stdout.splitlines() if "image:" in line]
    return line.split("image:", 1)[1].strip()


def test_a_laptop_render_shows_a_push_made_a_moment_ago(
    moto_ecr: MotoEcr,
    fake_kube: FakeKube,
    kubeconfig: Path,
    webhook: Webhook,
    gitops: Path,
    tmp_path: Path,
) -> None:
    laptop = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TAGPIN_", "ARGOCD_"))},
        "TAGPIN_CACHE_DIR": str(tmp_path / "laptop-cache"),
        "KUBECONFIG": str(tmp_path / "no-cluster"),  # a laptop without cluster access
    }
    main1 = moto_ecr.push("shop/api", "main", manifest("api main, first"))
    assert laptop_render(gitops, laptop) == f"{API}:main@{main1}"
    main2 = moto_ecr.push("shop/api", "main", manifest("api main, second"))
    # Unannounced, the cached answer stands for up to TAGPIN_CACHE_TTL...
    assert laptop_render(gitops, laptop) == f"{API}:main@{main1}"
    # ...unless the render is told to ask ECR now, which also updates the cache.
    assert laptop_render(gitops, laptop, "--refresh") == f"{API}:main@{main2}"
    assert laptop_render(gitops, laptop) == f"{API}:main@{main2}"

    # With access to the cluster, naming the Application reads the webhook's push record.
    app = fake_kube.add("argocd", "api")
    app["status"] = {"summary": {"images": [f"{API}:main"]}}
    main3 = moto_ecr.push("shop/api", "main", manifest("api main, third"))
    webhook.generic("shop/api", "main", main3)
    wait_until(lambda: PUSHES_ANNOTATION in app_annotations(fake_kube, "api"))
    in_cluster = {**laptop, "KUBECONFIG": str(kubeconfig), "ARGOCD_NAMESPACE": "argocd"}
    assert laptop_render(gitops, in_cluster, "--app-name", "api") == f"{API}:main@{main3}"


def app_annotations(fake: FakeKube, name: str) -> dict[str, str]:
    annotations: dict[str, str] = fake.applications[("argocd", name)]["metadata"]["annotations"]
    return annotations


def test_the_push_to_render_benchmark_runs() -> None:
    from bench.push_freshness import main

    assert main(["--pushes", "2"]) == 0
