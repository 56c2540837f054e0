"""The ECR adapter against moto's ECR server, and a scripted endpoint for what moto cannot do."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmp.errors import RegistryError
from cmp.registry.base import Lookup, describe_many
from cmp.registry.ecr import (
    EcrClients,
    EcrRegistryClient,
    EcrSettings,
    new_session,
    preload_models,
)
from cmp.registry.names import EcrRegistry, EcrRepository
from tests.support.fake_ecr import FakeEcr, Reply, access_denied, ok, server_error, throttling
from tests.support.moto_ecr import OCI_INDEX, OCI_MANIFEST, MotoEcr

FAST = EcrSettings(max_attempts=3, connect_timeout=0.5, read_timeout=0.5, deadline=30)


def test_each_tag_resolves_to_the_digest_of_the_image_carrying_it(moto_ecr: MotoEcr) -> None:
    v1 = moto_ecr.push("team/web", "v1")
    v2 = moto_ecr.push("team/web", "v2")
    moto_ecr.push("team/web", "stable", _manifest_of(moto_ecr, "team/web", "v2"))
    moto_ecr.reset_calls()

    lookup = EcrRegistryClient(FAST).describe_tags(
        moto_ecr.repository("team/web"), ["v1", "v2", "stable"]
    )

    assert {tag: info.digest for tag, info in lookup.found.items()} == {
        "v1": v1,
        "v2": v2,
        "stable": v2,
    }
    assert lookup.missing == frozenset()
    assert lookup.found["v1"].media_type == OCI_MANIFEST
    assert moto_ecr.counts() == {"DescribeImages": 1}


def test_tags_are_asked_in_chunks_of_100(moto_ecr: MotoEcr) -> None:
    tags = [f"build-{n:03d}" for n in range(250)]
    digests = {tag: moto_ecr.push("team/web", tag) for tag in tags}
    moto_ecr.reset_calls()

    lookup = EcrRegistryClient(FAST).describe_tags(moto_ecr.repository("team/web"), tags)

    assert {tag: info.digest for tag, info in lookup.found.items()} == digests
    assert moto_ecr.calls("DescribeImages") == 3


def test_a_cross_account_registry_is_asked_with_its_own_registry_id(moto_ecr: MotoEcr) -> None:
    digest = moto_ecr.push("shared/base", "v1", account="111122223333")

    other_account = EcrRegistryClient(FAST).describe_tags(
        moto_ecr.repository("shared/base", account="111122223333"), ["v1"]
    )
    own_account = EcrRegistryClient(FAST).describe_tags(moto_ecr.repository("shared/base"), ["v1"])

    assert other_account.found["v1"].digest == digest
    assert own_account.repository_missing


def test_every_missing_tag_and_repository_is_reported(moto_ecr: MotoEcr) -> None:
    present = moto_ecr.push("team/web", "v1")
    web, gone = moto_ecr.repository("team/web"), moto_ecr.repository("team/gone")

    results = describe_many(
        EcrRegistryClient(FAST), {web: ["v1", "v7", "nightly"], gone: ["v1"]}, max_workers=2
    )

    assert results[web].found["v1"].digest == present
    assert results[web].missing == {"v7", "nightly"}
    assert not results[web].repository_missing
    assert results[gone] == Lookup(found={}, missing=frozenset({"v1"}), repository_missing=True)


def test_many_missing_tags_are_found_with_one_listing_not_one_call_each(
    moto_ecr: MotoEcr,
) -> None:
    present = moto_ecr.push("team/web", "v1")
    absent = [f"pr-{n}" for n in range(20)]
    moto_ecr.reset_calls()

    lookup = EcrRegistryClient(FAST).describe_tags(moto_ecr.repository("team/web"), ["v1", *absent])

    assert lookup.found["v1"].digest == present
    assert lookup.missing == frozenset(absent)
    assert moto_ecr.calls("ListImages") == 1
    assert moto_ecr.calls("DescribeImages") <= 5


def test_an_unparseable_image_not_found_falls_back_to_listing(fake_ecr: FakeEcr) -> None:
    digest = "sha256:" + "a" * 64
    fake_ecr.script(
        Reply(400, {"__type": "ImageNotFoundException", "message": "Requested image not found"}),
        ok({"imageIds": [{"imageTag": "v1", "imageDigest": digest}]}),
        ok({"imageDetails": [_detail(digest, ["v1", "latest"])]}),
    )

    lookup = EcrRegistryClient(FAST).describe_tags(_repo(), ["v1", "v2"])

    assert lookup.found["v1"].digest == digest
    assert lookup.missing == {"v2"}
    assert fake_ecr.operations() == ["DescribeImages", "ListImages", "DescribeImages"]
    assert fake_ecr.requests[2][1]["imageIds"] == [{"imageTag": "v1"}]


def test_a_multi_arch_image_pins_its_index_digest(moto_ecr: MotoEcr) -> None:
    index = moto_ecr.push("team/web", "v1", index=True)

    lookup = EcrRegistryClient(FAST).describe_tags(moto_ecr.repository("team/web"), ["v1"])

    assert lookup.found["v1"].digest == index
    assert lookup.found["v1"].media_type == OCI_INDEX


def test_list_tags_gives_one_entry_per_tag_with_utc_push_time(moto_ecr: MotoEcr) -> None:
    v1 = moto_ecr.push("team/web", "v1")
    moto_ecr.push("team/web", "latest", _manifest_of(moto_ecr, "team/web", "v1"))
    v2 = moto_ecr.push("team/web", "v2", index=True)
    raw = moto_ecr.client().describe_images(
        repositoryName="team/web", imageIds=[{"imageTag": "v1"}]
    )
    pushed = raw["imageDetails"][0]["imagePushedAt"].timestamp()

    lookup = EcrRegistryClient(FAST).list_tags(moto_ecr.repository("team/web"))

    assert {tag: info.digest for tag, info in lookup.found.items()} == {
        "v1": v1,
        "latest": v1,
        "v2": v2,
    }
    assert lookup.found["latest"].pushed_at == pushed
    assert lookup.found["v2"].media_type == OCI_INDEX


def test_list_tags_follows_pages_of_tagged_images(fake_ecr: FakeEcr) -> None:
    first, second = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    fake_ecr.script(
        ok({"imageDetails": [_detail(first, ["v1"])], "nextToken": "page-2"}),
        ok({"imageDetails": [_detail(second, ["v2", "latest"])]}),
    )

    lookup = EcrRegistryClient(FAST).list_tags(_repo())

    assert {tag: info.digest for tag, info in lookup.found.items()} == {
        "v1": first,
        "v2": second,
        "latest": second,
    }
    (_, page_one), (_, page_two) = fake_ecr.requests
    assert page_one["filter"] == {"tagStatus": "TAGGED"}
    assert page_one["maxResults"] == 1000
    assert page_one["registryId"] == "123456789012"
    assert page_two["nextToken"] == "page-2"


def test_list_tags_of_a_missing_repository(moto_ecr: MotoEcr) -> None:
    lookup = EcrRegistryClient(FAST).list_tags(moto_ecr.repository("team/gone"))

    assert lookup.repository_missing
    assert lookup.found == {}


def test_a_pull_through_image_not_cached_yet_is_pulled_from_upstream(fake_ecr: FakeEcr) -> None:
    digest = "sha256:" + "c" * 64
    fake_ecr.script(
        Reply(400, {"__type": "RepositoryNotFoundException", "message": "no such repository"}),
        ok(
            {
                "images": [
                    {
                        "imageId": {"imageTag": "1.27", "imageDigest": digest},
                        "imageManifestMediaType": OCI_INDEX,
                    }
                ],
                "failures": [
                    {
                        "imageId": {"imageTag": "0.0-nope"},
                        "failureCode": "ImageNotFound",
                        "failureReason": "Requested image not found",
                    }
                ],
            }
        ),
    )

    lookup = EcrRegistryClient(FAST).describe_tags(
        _repo("docker-hub/library/nginx"), ["1.27", "0.0-nope"]
    )

    assert lookup.found["1.27"].digest == digest
    assert lookup.missing == {"0.0-nope"}
    assert not lookup.repository_missing
    assert fake_ecr.operations() == ["DescribeImages", "BatchGetImage"]
    assert OCI_INDEX in fake_ecr.requests[1][1]["acceptedMediaTypes"]


def test_a_pull_through_tag_missing_upstream_too_is_missing(moto_ecr: MotoEcr) -> None:
    moto_ecr.push("docker-hub/library/nginx", "1.27")
    moto_ecr.reset_calls()

    lookup = EcrRegistryClient(FAST).describe_tags(
        moto_ecr.repository("docker-hub/library/nginx"), ["1.27", "0.0-nope"]
    )

    assert set(lookup.found) == {"1.27"}
    assert lookup.missing == {"0.0-nope"}
    assert moto_ecr.calls("BatchGetImage") == 1


@pytest.mark.parametrize(
    ("replies", "attempts", "expected"),
    [
        pytest.param(
            [],
            2,
            "ECR throttled DescribeImages on 123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/web"
            " after 2 attempts",
            id="throttled",
        ),
        pytest.param(
            [access_denied()],
            1,
            "missing permission ecr:DescribeImages on "
            "arn:aws:ecr:eu-west-1:123456789012:repository/team/web: grant it to the sidecar's "
            "role (AWS said: User: arn:aws:sts::123456789012:assumed-role/argocd-repo-server/",
            id="access-denied",
        ),
        pytest.param(
            [server_error(), server_error()],
            2,
            "ECR failed DescribeImages on 123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/web "
            "with a server error (HTTP 500) after 2 attempts",
            id="server-error",
        ),
    ],
)
def test_registry_failures_end_in_one_clear_error_after_bounded_attempts(
    fake_ecr: FakeEcr, replies: list[Reply], attempts: int, expected: str
) -> None:
    fake_ecr.script(*replies, otherwise=throttling())
    client = EcrRegistryClient(EcrSettings(max_attempts=2, read_timeout=2, connect_timeout=2))

    with pytest.raises(RegistryError) as raised:
        client.describe_tags(_repo(), ["v1"])

    assert expected in str(raised.value)
    assert len(fake_ecr.requests) == attempts


def test_throttling_that_stops_is_retried_transparently(fake_ecr: FakeEcr) -> None:
    digest = "sha256:" + "d" * 64
    fake_ecr.script(throttling(), ok({"imageDetails": [_detail(digest, ["v1"])]}))

    lookup = EcrRegistryClient(EcrSettings(max_attempts=3)).describe_tags(_repo(), ["v1"])

    assert lookup.found["v1"].digest == digest
    assert len(fake_ecr.requests) == 2


def test_an_unreachable_endpoint_is_named(unreachable_ecr_url: str) -> None:
    with pytest.raises(RegistryError) as raised:
        EcrRegistryClient(FAST).describe_tags(_repo(), ["v1"])

    assert f"cannot reach ECR at {unreachable_ecr_url} in eu-west-1" in str(raised.value)


def test_a_hung_endpoint_times_out(hung_ecr_url: str) -> None:
    settings = EcrSettings(max_attempts=2, connect_timeout=0.3, read_timeout=0.3)

    with pytest.raises(RegistryError) as raised:
        EcrRegistryClient(settings).describe_tags(_repo(), ["v1"])

    assert f"cannot reach ECR at {hung_ecr_url} in eu-west-1 (timed out" in str(raised.value)


def test_missing_credentials_say_how_to_configure_them(
    fake_ecr: FakeEcr, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")

    with pytest.raises(RegistryError) as raised:
        EcrRegistryClient(FAST).describe_tags(_repo(), ["v1"])

    assert "no AWS credentials found" in str(raised.value)
    assert "IRSA" in str(raised.value)
    assert fake_ecr.requests == []


def test_errors_never_show_credentials(fake_ecr: FakeEcr, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEYID0001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t/EXAMPLE+secret+key")
    fake_ecr.script(access_denied())

    with pytest.raises(RegistryError) as raised:
        EcrRegistryClient(FAST).describe_tags(_repo(), ["v1"])

    assert "AKIAEXAMPLEKEYID0001" not in str(raised.value)
    assert "s3cr3t" not in str(raised.value)


def test_no_call_starts_after_the_deadline(fake_ecr: FakeEcr) -> None:
    readings = iter([0.0, 31.0])
    client = EcrRegistryClient(EcrSettings(deadline=30), monotonic=lambda: next(readings))

    with pytest.raises(RegistryError) as raised:
        client.describe_tags(_repo(), ["v1"])

    assert "did not finish within 30 s" in str(raised.value)
    assert fake_ecr.requests == []


def test_no_retry_starts_after_the_deadline(fake_ecr: FakeEcr) -> None:
    fake_ecr.script(otherwise=server_error())
    readings = iter([0.0, 1.0, 2.0, 31.0])
    client = EcrRegistryClient(
        EcrSettings(deadline=30, max_attempts=5), monotonic=lambda: next(readings)
    )

    with pytest.raises(RegistryError) as raised:
        client.describe_tags(_repo(), ["v1"])

    assert "did not finish within 30 s" in str(raised.value)
    assert len(fake_ecr.requests) == 1


def test_clients_kept_between_renders_stop_each_render_at_its_own_deadline(
    fake_ecr: FakeEcr,
) -> None:
    """A process rendering many times may keep its ECR clients (EcrClients): the deadline
    of a render that ran out of time must not stop the next render's calls on them."""
    digest = "sha256:" + "e" * 64
    settings = EcrSettings(deadline=30, max_attempts=5)
    kept = EcrClients(settings)
    fake_ecr.script(otherwise=server_error())
    readings = iter([0.0, 1.0, 2.0, 31.0])
    late = EcrRegistryClient(settings, clients=kept, monotonic=lambda: next(readings))
    with pytest.raises(RegistryError, match="did not finish within 30 s"):
        late.describe_tags(_repo(), ["v1"])
    fake_ecr.script(server_error(), ok({"imageDetails": [_detail(digest, ["v1"])]}))

    lookup = EcrRegistryClient(settings, clients=kept).describe_tags(_repo(), ["v1"])

    assert lookup.found["v1"].digest == digest
    assert len(fake_ecr.requests) == 3  # one for the late render, two (a retry) for the next


def test_renders_share_ecrs_models_but_read_their_own_credentials(
    moto_ecr: MotoEcr, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a process keeps between renders is botocore's parsed models (read once, by
    preload_models in a render server), never a session: a render after the credentials file
    changed signs with the new key, and the models are read from the same loader."""
    digest = moto_ecr.push("team/web", "v1")
    credentials = tmp_path / "credentials"
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    preload_models()
    emitters, loaders = [], []
    moto_ecr.reset_calls()
    for key in ("AKIAFIRSTKEY", "AKIASECONDKEY"):
        credentials.write_text(f"[default]\naws_access_key_id = {key}\naws_secret_access_key = s\n")
        clients = EcrClients(FAST)  # as each render makes its own
        lookup = EcrRegistryClient(FAST, clients=clients).describe_tags(
            moto_ecr.repository("team/web"), ["v1"]
        )
        assert lookup.found["v1"].digest == digest
        assert moto_ecr.counter.access_keys()[-1] == key
        client = clients.client(moto_ecr.repository("team/web").registry)
        emitters.append(client.meta.events)  # each render's client has its own hooks
        loaders.append(new_session()._session.get_component("data_loader"))
    assert emitters[0] is not emitters[1] and loaders[0] is loaders[1]
    assert len(set(loaders[0].search_paths)) == len(loaders[0].search_paths)  # no growth


def test_problems_of_every_repository_are_reported_together(fake_ecr: FakeEcr) -> None:
    fake_ecr.script(otherwise=access_denied())

    with pytest.raises(RegistryError) as raised:
        describe_many(
            EcrRegistryClient(FAST), {_repo("team/web"): ["v1"], _repo("team/api"): ["v1"]}
        )

    assert len(raised.value.problems) == 2


@pytest.mark.parametrize(
    ("fips", "dualstack", "endpoint"),
    [
        (False, False, "https://api.ecr.us-east-1.amazonaws.com"),
        (True, False, "https://ecr-fips.us-east-1.amazonaws.com"),
        (False, True, "https://ecr.us-east-1.api.aws"),
    ],
)
def test_fips_and_dual_stack_registries_use_their_endpoints(
    aws_env: None, fips: bool, dualstack: bool, endpoint: str
) -> None:
    registry = EcrRegistry("host", "123456789012", "us-east-1", fips=fips, dualstack=dualstack)

    client = EcrRegistryClient(FAST)._client(registry)

    assert client.meta.endpoint_url == endpoint


def _repo(name: str = "team/web") -> EcrRepository:
    registry = EcrRegistry(
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
        "123456789012",
        "eu-west-1",
        fips=False,
        dualstack=False,
    )
    return EcrRepository(registry=registry, name=name)


def _detail(digest: str, tags: list[str]) -> dict[str, object]:
    return {
        "registryId": "123456789012",
        "repositoryName": "team/web",
        "imageDigest": digest,
        "imageTags": tags,
        "imagePushedAt": 1764139534.0,
        "imageManifestMediaType": OCI_MANIFEST,
    }


def _manifest_of(moto_ecr: MotoEcr, repo: str, tag: str) -> bytes:
    images = moto_ecr.client().batch_get_image(repositoryName=repo, imageIds=[{"imageTag": tag}])
    return images["images"][0]["imageManifest"].encode()
