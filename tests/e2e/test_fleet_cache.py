"""A fleet of repo-server replicas sharing one Redis: real `tagpin generate` processes, each with
its own cache directory, against moto's ECR and a real redis-server on 127.0.0.1.

What a user sees: the digests Argo CD would apply, the warnings on stderr, the ECR calls made.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cmp.argocd.kube import Connection, KubeApi
from cmp.registry.shared import RedisSettings, tags_key
from cmp.webhook.server import WebhookConfig, WebhookServer
from tests.support.fake_kube import TOKEN, FakeKube, make_pki
from tests.support.hostile_redis import HostileRedis
from tests.support.moto_ecr import ACCOUNT, REGION, MotoEcr
from tests.support.push_fleet import ecr_push_event, render_server
from tests.support.redis_server import PASSWORD, RedisServer, TlsFront, free_port
from tests.support.renders import (
    HOST,
    generate,
    generate_env,
    images_in,
    start_generate,
    warnings_in,
    write_app,
)

REPOSITORIES = ("team/web", "team/api", "team/worker")
TAGS = ("v1", "v2", "v3", "v4")  # 3 repositories x 4 tags: the 12-image app
SIGNING_KEY = "fleet-signing-key-" + "5f" * 16
WEBHOOK_SECRET = "fleet-webhook-secret-0123456789"


class Fleet:
    def __init__(self, moto: MotoEcr, redis: RedisServer, root: Path) -> None:
        self.moto, self.redis, self.root = moto, redis, root
        self.expected: set[str] = set()
        images: dict[str, str] = {}
        for repository in REPOSITORIES:
            for tag in TAGS:
                reference = f"{HOST}/{repository}:{tag}"
                images[f"{repository.split('/')[1]}-{tag}"] = reference
                self.expected.add(f"{reference}@{moto.push(repository, tag)}")
        self.app = write_app(root / "app", images)
        (root / "redis-auth").write_text(PASSWORD + "\n")  # as the Secret argocd-redis mounts
        self._replicas = 0
        moto.reset_calls()

    def env(self, cache_dir: Path | None = None, /, **extra: str) -> dict[str, str]:
        """A new replica (its own, empty cache directory) pointed at the fleet's Redis."""
        if cache_dir is None:
            self._replicas += 1
            cache_dir = self.root / f"replica-{self._replicas}"
        settings = {
            "TAGPIN_REDIS_URL": self.redis.url,
            "TAGPIN_REDIS_PASSWORD_FILE": str(self.root / "redis-auth"),
            "TAGPIN_REDIS_SIGNING_KEY": SIGNING_KEY,
        }
        settings.update(extra)
        return generate_env(cache_dir, **{k: v for k, v in settings.items() if v})

    def describe_calls(self) -> int:
        return self.moto.calls("DescribeImages")


@pytest.fixture
def fleet(moto_ecr: MotoEcr, redis_server: RedisServer, tmp_path: Path) -> Fleet:
    return Fleet(moto_ecr, redis_server, tmp_path)


def rendered(result: Any) -> str:
    assert result.returncode == 0, result.stderr
    return str(result.stdout)


def test_four_replicas_one_after_another_make_one_call_per_repository(fleet: Fleet) -> None:
    outputs = [rendered(generate(fleet.app, fleet.env())) for _ in range(4)]

    assert fleet.describe_calls() == len(REPOSITORIES)
    assert len(set(outputs)) == 1  # identical bytes on every replica
    assert set(images_in(outputs[0])) == fleet.expected


def test_four_replicas_at_once_make_one_call_per_repository(fleet: Fleet) -> None:
    fleet.moto.counter.delay = 0.5  # a slow ECR: the four cold renders overlap for sure
    renders = [start_generate(fleet.app, fleet.env()) for _ in range(4)]
    results = [render.communicate(timeout=60) for render in renders]

    assert [render.returncode for render in renders] == [0] * 4, results
    assert fleet.describe_calls() == len(REPOSITORIES)
    assert len({out for out, _ in results}) == 1
    assert set(images_in(results[0][0])) == fleet.expected
    assert [warnings_in(err) for _, err in results] == [[]] * 4

    fleet.moto.reset_calls()  # the same storm without Redis: every replica asks for itself
    alone = [start_generate(fleet.app, fleet.env(TAGPIN_REDIS_URL="")) for _ in range(4)]
    for render in alone:
        render.communicate(timeout=60)
    assert fleet.describe_calls() == 4 * len(REPOSITORIES)


def test_a_tampered_entry_is_ignored_and_the_true_digest_deployed(fleet: Fleet) -> None:
    rendered(generate(fleet.app, fleet.env()))
    client: Any = fleet.redis.client()
    key = tags_key(f"{ACCOUNT}:{REGION}:team/web")
    signed = client.hget(key, "v1")  # `<hex HMAC><JSON body>`
    entry = json.loads(signed[64:])
    api = json.loads(client.hget(tags_key(f"{ACCOUNT}:{REGION}:team/api"), "v1")[64:])
    entry["digest"] = api["digest"]  # a real digest, of the attacker's choice
    client.hset(key, "v1", signed[:64] + json.dumps(entry).encode())
    fleet.moto.reset_calls()

    result = generate(fleet.app, fleet.env())

    assert set(images_in(rendered(result))) == fleet.expected
    assert fleet.describe_calls() == 1  # only the repository whose entry was refused
    [warning] = warnings_in(result.stderr)
    assert f"{HOST}/team/web:v1" in warning and "TAGPIN_REDIS_SIGNING_KEY" in warning


def test_redis_killed_mid_render_and_restarted(fleet: Fleet) -> None:
    fleet.moto.counter.delay = 0.5
    render = start_generate(fleet.app, fleet.env())
    deadline = time.monotonic() + 30
    while fleet.describe_calls() == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    fleet.redis.stop()  # while the render waits for ECR, before it shares the answers
    out, err = render.communicate(timeout=60)

    assert render.returncode == 0, err
    assert set(images_in(out)) == fleet.expected
    [warning] = warnings_in(err)
    assert "shared digest cache at redis://127.0.0.1" in warning

    fleet.redis.start()  # empty again: no persistence, like a restarted argocd-redis
    fleet.moto.counter.delay = 0.0
    fleet.moto.reset_calls()
    after = [generate(fleet.app, fleet.env()) for _ in range(2)]
    assert [warnings_in(result.stderr) for result in after] == [[], []]
    assert fleet.describe_calls() == len(REPOSITORIES)  # refilled once, then shared


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        pytest.param(
            {"TAGPIN_REDIS_PASSWORD_FILE": "", "TAGPIN_REDIS_PASSWORD": "wrong"},
            "invalid username-password pair",
            id="wrong-password",
        ),
        pytest.param(
            {"TAGPIN_REDIS_URL": "redis://127.0.0.1:{free}/0"},
            "Connection refused",
            id="down-from-the-start",
        ),
    ],
)
def test_redis_trouble_never_fails_a_render(
    fleet: Fleet, settings: dict[str, str], problem: str
) -> None:
    settings = {k: v.format(free=free_port()) for k, v in settings.items()}

    result = generate(fleet.app, fleet.env(**settings))

    assert set(images_in(rendered(result))) == fleet.expected
    [warning] = warnings_in(result.stderr)
    assert problem in warning and "resolving with the local cache and ECR" in warning
    assert PASSWORD not in result.stderr


def test_a_hung_redis_costs_one_timeout_then_the_render_goes_on(fleet: Fleet) -> None:
    rendered(generate(fleet.app, fleet.env()))
    fleet.redis.pause()  # accepts connections, answers nothing
    try:
        result = generate(fleet.app, fleet.env(TAGPIN_REDIS_TIMEOUT_MS="300"))
    finally:
        fleet.redis.resume()

    assert set(images_in(rendered(result))) == fleet.expected
    [warning] = warnings_in(result.stderr)
    assert "timed out: no complete answer within 300 ms (TAGPIN_REDIS_TIMEOUT_MS)" in warning
    assert "resolving with the local cache and ECR" in warning


def test_nested_json_planted_in_redis_without_a_signing_key_never_fails_a_render(
    fleet: Fleet,
) -> None:
    """Issue #22 hole 3. Was: RecursionError, exit 70 on every replica whose local caches miss,
    for as long as the planted keys (no expiry) stayed."""
    client: Any = fleet.redis.client()
    nested = "[" * 1000 + "]" * 1000
    for repository in REPOSITORIES:
        for tag in TAGS:
            client.hset(tags_key(f"{ACCOUNT}:{REGION}:{repository}"), tag, nested)

    first = generate(fleet.app, fleet.env())
    fleet.moto.reset_calls()
    second = generate(fleet.app, fleet.env())

    assert set(images_in(rendered(first))) == fleet.expected
    [warning] = warnings_in(first.stderr)
    assert "not signed with TAGPIN_REDIS_SIGNING_KEY" in warning
    # The first render's answers replaced the planted entries: the next replica reads them.
    assert rendered(second) == first.stdout and warnings_in(second.stderr) == []
    assert fleet.describe_calls() == 0


def test_a_redis_endpoint_replying_100000_nested_arrays_never_fails_a_render(
    fleet: Fleet,
) -> None:
    """Issue #22 hole 5. Was: RecursionError in the Redis client's parser, exit 70."""
    hostile = HostileRedis(b"*1\r\n" * 100_000 + b":1\r\n")
    try:
        result = generate(fleet.app, fleet.env(TAGPIN_REDIS_URL=hostile.url))
    finally:
        hostile.close()

    assert set(images_in(rendered(result))) == fleet.expected
    [warning] = warnings_in(result.stderr)
    assert "protocol error: a reply nested deeper than 1 level" in warning


def test_a_redis_url_with_a_tls_option_on_plain_redis_is_a_configuration_error(
    fleet: Fleet,
) -> None:
    """Issue #22, lower finding. Was: TypeError, exit 70 on every cold render."""
    url = f"{fleet.redis.url}?ssl_ca_certs=/etc/ssl/certs/ca-certificates.crt"

    result = generate(fleet.app, fleet.env(TAGPIN_REDIS_URL=url))

    assert (result.returncode, result.stdout) == (3, "")
    assert "TAGPIN_REDIS_URL: ssl_ca_certs needs rediss:// (TLS), not redis://" in result.stderr
    assert fleet.describe_calls() == 0


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "TAGPIN_REDIS_URL is set but TAGPIN_REDIS_SIGNING_KEY"),
        ("too-short", "TAGPIN_REDIS_SIGNING_KEY is 9 bytes long"),
    ],
)
def test_a_missing_or_short_signing_key_fails_as_a_configuration_error(
    fleet: Fleet, key: str, message: str
) -> None:
    env = fleet.env()
    env.pop("TAGPIN_REDIS_SIGNING_KEY")
    if key:
        env["TAGPIN_REDIS_SIGNING_KEY"] = key

    result = generate(fleet.app, env)

    assert result.returncode == 3
    assert result.stdout == ""
    assert message in result.stderr
    assert fleet.describe_calls() == 0


def test_a_warm_render_never_imports_the_redis_client(fleet: Fleet) -> None:
    cache = fleet.root / "warm-replica"
    rendered(generate(fleet.app, fleet.env(cache)))
    fleet.redis.stop()  # a warm render must not even notice

    warm = generate(fleet.app, {**fleet.env(cache), "PYTHONPROFILEIMPORTTIME": "1"})

    assert warm.returncode == 0, warm.stderr
    imported = [
        line.rsplit("|", 1)[-1].strip()
        for line in warm.stderr.splitlines()
        if line.startswith("import time:")
    ]
    assert "cmp.registry.shared" in imported  # the settings were checked…
    assert "cmp.registry.resp" not in imported  # …the client not even imported
    assert warnings_in(warm.stderr) == []


# -- pushes: the webhook bumps the repository's generation ------------------------------------


@pytest.fixture
def webhook(fake_kube: FakeKube, fleet: Fleet) -> Iterator[WebhookServer]:
    """The real webhook server, told about the fleet's Redis; no AWS access, no signing key."""
    redis = RedisSettings(url=fleet.redis.url, password=PASSWORD, signing_key=None)
    config = WebhookConfig(
        secret=WEBHOOK_SECRET,
        namespaces=("argocd",),
        port=0,
        coalesce_seconds=0.0,
        shared_cache=redis,
    )
    kube = KubeApi(Connection(server=fake_kube.url, source="test", token=TOKEN))
    server = WebhookServer(config, kube, io.StringIO())
    server.start()
    yield server
    server.stop()


def announce_push(webhook: WebhookServer, repository: str, tag: str) -> int:
    event = ecr_push_event(repository, tag)
    request = urllib.request.Request(
        f"{webhook.url}/events/ecr",
        data=json.dumps(event).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "X-Tagpin-Secret": WEBHOOK_SECRET},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        status: int = response.status
        return status


def test_a_push_announced_to_the_webhook_reaches_every_replica_with_one_ecr_call(
    fleet: Fleet, webhook: WebhookServer
) -> None:
    rendered(generate(fleet.app, fleet.env()))
    rebuilt = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "size": 7,
            "digest": "sha256:" + "7" * 64,
        },
        "layers": [],
    }
    moved = fleet.moto.push("team/web", "v1", json.dumps(rebuilt).encode())
    new_pin = f"{HOST}/team/web:v1@{moved}"
    before = set(images_in(rendered(generate(fleet.app, fleet.env()))))
    assert new_pin not in before  # unannounced: Redis answers as ECR did (up to the TTL)

    assert announce_push(webhook, "team/web", "v1") == 202
    fleet.moto.reset_calls()
    outputs = [rendered(generate(fleet.app, fleet.env())) for _ in range(3)]

    assert all(new_pin in images_in(output) for output in outputs)
    assert fleet.describe_calls() == 1  # one replica asked ECR for team/web, for the fleet
    assert len(set(outputs)) == 1


def test_replicas_rendering_through_their_render_servers_share_one_call_per_repository(
    fleet: Fleet,
) -> None:
    """As in the sidecar image: each replica's renders run in its render server's workers."""
    envs = []
    with contextlib.ExitStack() as stack:
        for _ in range(2):
            scratch = Path(  # in /tmp: a socket path must be short
                stack.enter_context(tempfile.TemporaryDirectory(prefix="tp-", dir="/tmp"))
            )
            env = fleet.env(scratch / "cache")
            # render_server checks, on leaving, that its workers served renders: both do
            socket_path = stack.enter_context(render_server(scratch, env))
            envs.append(
                {
                    **env,
                    "TAGPIN_RENDER_SERVER": "on",
                    "TAGPIN_RENDER_SERVER_SOCKET": str(socket_path),
                }
            )

        outputs = [rendered(generate(fleet.app, env)) for env in envs * 2]

        assert fleet.describe_calls() == len(REPOSITORIES)
        assert len(set(outputs)) == 1 and set(images_in(outputs[0])) == fleet.expected


def test_rediss_shares_over_tls_and_refuses_a_server_it_does_not_trust(
    fleet: Fleet, tmp_path: Path
) -> None:
    pki = make_pki(tmp_path)
    front = TlsFront(fleet.redis.port, pki.server_cert, pki.server_key)
    try:
        tls = f"rediss://127.0.0.1:{front.port}/0"
        trusted = f"{tls}?ssl_ca_certs={pki.ca_cert}"
        outputs = [
            rendered(generate(fleet.app, fleet.env(TAGPIN_REDIS_URL=trusted))) for _ in range(2)
        ]
        untrusted = generate(fleet.app, fleet.env(TAGPIN_REDIS_URL=tls))
    finally:
        front.close()

    assert fleet.describe_calls() == 2 * len(REPOSITORIES)  # the second trusted replica: none
    assert outputs[0] == outputs[1] == untrusted.stdout
    [warning] = warnings_in(untrusted.stderr)
    assert "certificate verify failed" in warning
