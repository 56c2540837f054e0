"""A push on a fleet that shares one Redis (#13 and #14 together), end to end with real parts.

Four sidecar replicas (the cmp-server emulator running `tagpin generate`, each with its own cache
directory) share one real redis-server; moto's ECR server counts the calls; the Kubernetes API
stand-in holds the Applications; the `tagpin webhook` process is configured with the same Redis
(or, in the degraded case, with a Redis it cannot reach). Every replica is warm before the push.
What is checked is what Argo CD would apply after the webhook's patch, and what ECR was asked.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cmp.registry.shared import generation_key, listing_key, repository_id, tags_key
from tests.e2e.test_push_freshness import API, SECRET, WEB, Fleet, replica
from tests.support.fake_kube import FakeKube
from tests.support.moto_ecr import ACCOUNT, REGION, MotoEcr
from tests.support.push_fleet import (
    add_applications,
    manifest,
    running_webhook,
    wait_until,
    write_gitops,
)
from tests.support.redis_server import PASSWORD, RedisServer, free_port

REPLICAS = ("a", "b", "c", "d")
SIGNING_KEY = "fleet-push-signing-key-" + "3c" * 16


@dataclass
class RedisFleet(Fleet):
    webhook_reaches_redis: bool = True  # else the generation is never bumped


@pytest.fixture(params=["webhook-reaches-redis", "webhook-cannot-reach-redis"])
def fleet(
    request: pytest.FixtureRequest,
    moto_ecr: MotoEcr,
    fake_kube: FakeKube,
    kubeconfig: Path,
    redis_server: RedisServer,
    tmp_path: Path,
) -> Iterator[RedisFleet]:
    add_applications(fake_kube, WEB, "pr-42-0001", API)
    (tmp_path / "redis-auth").write_text(PASSWORD + "\n")
    shared = {
        "TAGPIN_REDIS_URL": redis_server.url,
        "TAGPIN_REDIS_PASSWORD_FILE": str(tmp_path / "redis-auth"),
        "TAGPIN_REDIS_SIGNING_KEY": SIGNING_KEY,
    }
    replicas = {}
    for name in REPLICAS:
        replicas[name] = replica(tmp_path, name, kubeconfig)
        replicas[name].sidecar_env.update(shared)
    reachable = request.param == "webhook-reaches-redis"
    redis_url = redis_server.url if reachable else f"redis://127.0.0.1:{free_port()}/0"
    # Told about a Redis by TAGPIN_REDIS_URL as the deploy's Redis component does (no signing
    # key: the webhook writes no digests).
    redis_env = {"TAGPIN_REDIS_URL": redis_url, "TAGPIN_REDIS_PASSWORD": PASSWORD}
    with running_webhook(kubeconfig, tmp_path, SECRET, redis_env) as webhook:
        images = {"web-staging": f"{WEB}:pr-42-0001", "api": f"{API}:main"}
        gitops = write_gitops(tmp_path / "gitops", images)
        yield RedisFleet(moto_ecr, fake_kube, webhook, gitops, replicas, reachable)


def generation(redis: RedisServer, repository: str) -> int:
    client: Any = redis.client()
    value = client.get(generation_key(repository_id(ACCOUNT, REGION, repository)))
    return int(value or 0)


def render_everywhere(fleet: Fleet, app: str, *, at_once: bool = False) -> tuple[set[str], int]:
    """The images Argo CD would apply for `app` on each replica (each replica's first render
    of it), and the DescribeImages calls the whole fleet made for them. `at_once`: the four
    renders overlap, as in a hard-refresh storm, on an ECR slow enough that they must."""
    fleet.ecr.reset_calls()
    if at_once:
        fleet.ecr.counter.delay = 0.5
        try:
            with ThreadPoolExecutor(len(REPLICAS)) as pool:
                images = set(pool.map(lambda name: fleet.render(name, app), REPLICAS))
        finally:
            fleet.ecr.counter.delay = 0.0
    else:
        images = {fleet.render(name, app) for name in REPLICAS}
    assert set(fleet.ecr.counts()) <= {"DescribeImages"}, fleet.ecr.counts()
    return images, fleet.ecr.calls("DescribeImages")


def warm_then_push(fleet: RedisFleet) -> tuple[str, str]:
    """Every replica warm on pr-42-0001 and main; then pr-42-0002 and main moved, announced to
    the webhook, patched. The new digests (pr-42-0002, main)."""
    ecr = fleet.ecr
    pr1 = ecr.push("shop/web", "pr-42-0001", manifest("pr-42 first build"))
    main1 = ecr.push("shop/api", "main", manifest("api main, first"))
    for _ in range(2):
        render_everywhere(fleet, "api")
        render_everywhere(fleet, "web-staging")
    assert render_everywhere(fleet, "api") == ({f"{API}:main@{main1}"}, 0)
    assert render_everywhere(fleet, "web-staging") == ({f"{WEB}:pr-42-0001@{pr1}"}, 0)
    pr2 = ecr.push("shop/web", "pr-42-0002", manifest("pr-42 second build"))
    main2 = ecr.push("shop/api", "main", manifest("api main, second"))
    assert fleet.webhook.eventbridge("shop/web", "pr-42-0002", pr2) == ["argocd/web-staging"]
    assert fleet.webhook.eventbridge("shop/api", "main", main2) == ["argocd/api"]
    fleet.webhook.wait_for_pushes(2)
    return pr2, main2


def test_every_warm_replica_renders_the_push_first_time_with_the_ecr_calls_the_design_gives(
    fleet: RedisFleet, redis_server: RedisServer
) -> None:
    ecr = fleet.ecr
    pr1 = ecr.push("shop/web", "pr-42-0001", manifest("pr-42 first build"))
    main1 = ecr.push("shop/api", "main", manifest("api main, first"))
    # Cold: the digest of `main` and the tag list are each asked once for the fleet.
    assert render_everywhere(fleet, "api") == ({f"{API}:main@{main1}"}, 1)
    assert render_everywhere(fleet, "web-staging") == ({f"{WEB}:pr-42-0001@{pr1}"}, 1)
    # Warm: every replica answers both apps from its own caches.
    assert render_everywhere(fleet, "api") == ({f"{API}:main@{main1}"}, 0)
    assert render_everywhere(fleet, "web-staging") == ({f"{WEB}:pr-42-0001@{pr1}"}, 0)

    # A newer branch build (only the tag list shows it) and `main` moved (only its digest).
    pr2 = ecr.push("shop/web", "pr-42-0002", manifest("pr-42 second build"))
    main2 = ecr.push("shop/api", "main", manifest("api main, second"))
    assert fleet.webhook.eventbridge("shop/web", "pr-42-0002", pr2) == ["argocd/web-staging"]
    assert fleet.webhook.generic("shop/api", "main", main2) == ["argocd/api"]
    fleet.webhook.wait_for_pushes(2)  # both patches (with their push records) are done
    assert fleet.record("web-staging") == {WEB: ("pr-42-0002", pr2)}
    assert fleet.record("api") == {API: ("main", main2)}

    told = [r for r in fleet.webhook.records() if r["msg"] == "shared cache not told"]
    bumped = (generation(redis_server, "shop/web"), generation(redis_server, "shop/api"))
    if fleet.webhook_reaches_redis:
        assert (bumped, told) == ((1, 1), [])
    else:  # the push record on the Application is all the replicas learn
        assert bumped == (0, 0) and len(told) == 2, told

    # `main`: one replica asks ECR for the whole fleet, with or without the generation bump:
    # its answer is shared stamped with a fetch after the announced push, which the others
    # accept; the entry from before the push is refused by every replica.
    assert render_everywhere(fleet, "api") == ({f"{API}:main@{main2}"}, 1)
    # `pr-42-*`: the same for the tag list. With the bump, the listing shared before the push
    # is of an older generation; without it, it was fetched before the announced push. Either
    # way every replica refuses it, one lists the repository and the others take its listing.
    assert render_everywhere(fleet, "web-staging") == ({f"{WEB}:pr-42-0002@{pr2}"}, 1)
    # ...and the renders after them come from the caches again.
    assert render_everywhere(fleet, "api") == ({f"{API}:main@{main2}"}, 0)
    assert render_everywhere(fleet, "web-staging") == ({f"{WEB}:pr-42-0002@{pr2}"}, 0)


def test_a_refresh_storm_after_the_push_asks_ecr_once_per_moved_tag(fleet: RedisFleet) -> None:
    pr2, main2 = warm_then_push(fleet)

    # Single flight across the fleet: one replica asks, the others wait for its answer.
    assert render_everywhere(fleet, "api", at_once=True) == ({f"{API}:main@{main2}"}, 1)
    # Tag lists too: one replica lists the repository for the fleet, with or without the bump.
    assert render_everywhere(fleet, "web-staging", at_once=True) == ({f"{WEB}:pr-42-0002@{pr2}"}, 1)


def render_during_push(
    fleet: RedisFleet, app: str, push: Callable[[], str]
) -> tuple[list[str], str]:
    """Replica a renders `app` with its DescribeImages held until `push` (which pushes and
    announces, returning the new digest) is done and the webhook has patched: the image that
    render answered (empty if it failed), and the pushed digest."""
    ecr = fleet.ecr
    ecr.reset_calls()
    ecr.counter.hold("DescribeImages")
    in_flight: list[str] = []
    thread = threading.Thread(target=lambda: in_flight.append(fleet.render("a", app)))
    thread.start()
    try:
        wait_until(lambda: ecr.counter.held() == 1)
        digest = push()
        fleet.webhook.wait_for_pushes(1)
    finally:
        ecr.counter.release()
        thread.join(timeout=60)
    return in_flight, digest


def test_an_answer_shared_by_a_render_in_flight_during_the_push_is_not_used(
    fleet: RedisFleet, redis_server: RedisServer
) -> None:
    """Replica a asks ECR before the push and writes Redis after the webhook's patch (and after
    the generation bump, when there is one). No replica may deploy what it wrote."""
    ecr = fleet.ecr
    main1 = ecr.push("shop/api", "main", manifest("api main, first"))
    for name in REPLICAS[1:]:  # b, c, d warm; a has never rendered the app
        assert fleet.render(name, "api") == f"{API}:main@{main1}"
    client: Any = redis_server.client()
    client.delete(tags_key(repository_id(ACCOUNT, REGION, "shop/api")))  # its Redis TTL ran out

    def push() -> str:
        main2 = ecr.push("shop/api", "main", manifest("api main, second"))
        assert fleet.webhook.generic("shop/api", "main", main2) == ["argocd/api"]
        return main2

    in_flight, main2 = render_during_push(fleet, "api", push)
    assert in_flight == [f"{API}:main@{main1}"]  # answered before the push: Argo CD replaces it
    assert client.hlen(tags_key(repository_id(ACCOUNT, REGION, "shop/api"))) == 1  # shared

    assert render_everywhere(fleet, "api") == ({f"{API}:main@{main2}"}, 1)


def test_a_listing_shared_by_a_render_in_flight_during_the_push_is_not_used(
    fleet: RedisFleet, redis_server: RedisServer
) -> None:
    """The same for a branch build: replica a lists the repository before pr-42-0002 is pushed
    and shares its listing after the webhook's patch. No replica may pick from that listing."""
    ecr = fleet.ecr
    pr1 = ecr.push("shop/web", "pr-42-0001", manifest("pr-42 first build"))
    for name in REPLICAS[1:]:  # b, c, d warm; a has never rendered the app
        assert fleet.render(name, "web-staging") == f"{WEB}:pr-42-0001@{pr1}"
    client: Any = redis_server.client()
    shared_listing = listing_key(repository_id(ACCOUNT, REGION, "shop/web"))
    client.delete(shared_listing)  # its Redis TTL ran out

    def push() -> str:
        pr2 = ecr.push("shop/web", "pr-42-0002", manifest("pr-42 second build"))
        assert fleet.webhook.eventbridge("shop/web", "pr-42-0002", pr2) == ["argocd/web-staging"]
        return pr2

    in_flight, pr2 = render_during_push(fleet, "web-staging", push)
    assert in_flight == [f"{WEB}:pr-42-0001@{pr1}"]  # listed before the push
    assert client.exists(shared_listing)  # and shared

    assert render_everywhere(fleet, "web-staging") == ({f"{WEB}:pr-42-0002@{pr2}"}, 1)
