"""Which hosts are private ECR registries, and the hosts that are almost one: a typo there
would leave an image unpinned and pulled from a host that does not exist (#23 item 2)."""

from __future__ import annotations

import json
import os

import botocore
import pytest

from cmp.registry.names import (
    PARTITIONS,
    ecr_lookalike,
    ecr_registry,
    partition_of,
    registry_host,
    repository_named,
)


def botocore_partitions() -> dict[str, dict[str, object]]:
    path = os.path.join(os.path.dirname(botocore.__file__), "data", "partitions.json")
    with open(path, encoding="utf-8") as handle:
        return {p["id"]: p for p in json.load(handle)["partitions"]}


def test_the_partition_table_is_botocore_s() -> None:
    """When botocore learns a partition or Region, this fails until the table has it too
    (a Region the table lacks is still accepted if named like one; see below)."""
    known = botocore_partitions()
    assert sorted(p.name for p in PARTITIONS) == sorted(known)
    for partition in PARTITIONS:
        theirs = known[partition.name]
        outputs = theirs["outputs"]
        assert isinstance(outputs, dict) and isinstance(theirs["regions"], dict)
        assert partition.region_pattern == theirs["regionRegex"]
        assert partition.suffix == outputs["dnsSuffix"]
        assert partition.dualstack_suffix == str(outputs["dualStackDnsSuffix"]).replace(
            "api.", "on.", 1
        )
        regions = {r for r in theirs["regions"] if not r.endswith("-global")}
        assert set(partition.regions) == regions, partition.name


ACCOUNT = "123456789012"

VALID = [
    f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com",
    f"{ACCOUNT}.dkr.ecr-fips.us-east-1.amazonaws.com",
    f"{ACCOUNT}.dkr-ecr.eu-west-1.on.aws",
    f"{ACCOUNT}.dkr-ecr-fips.us-gov-west-1.on.aws",
    f"{ACCOUNT}.dkr.ecr.cn-northwest-1.amazonaws.com.cn",
    f"{ACCOUNT}.dkr-ecr.cn-north-1.on.amazonwebservices.com.cn",
    f"{ACCOUNT}.dkr.ecr.eusc-de-east-1.amazonaws.eu",
    f"{ACCOUNT}.dkr-ecr.us-iso-west-1.on.aws.ic.gov",
    f"{ACCOUNT}.dkr-ecr.us-isob-east-1.on.aws.scloud",
    f"{ACCOUNT}.dkr-ecr.us-isof-south-1.on.aws.hci.ic.gov",
    f"{ACCOUNT}.dkr-ecr.eu-isoe-west-1.on.cloud-aws.adc-e.uk",
    # A Region opened after botocore's table, named as Regions are: accepted.
    f"{ACCOUNT}.dkr.ecr.eu-west-4.amazonaws.com",
    f"{ACCOUNT}.dkr.ecr.ap-southwest-1.amazonaws.com",
]


@pytest.mark.parametrize("host", VALID)
def test_valid_hosts_are_ecr_and_no_lookalike(host: str) -> None:
    assert ecr_registry(host) is not None
    assert ecr_lookalike(host) is None


LOOKALIKES = [
    # host, what is wrong, the nearest valid host
    (
        f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.co",
        "amazonaws.co is not an ECR domain",
        f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com",
    ),
    (
        f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaw.com",
        "amazonaw.com is not an ECR domain",
        f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com",
    ),
    (
        "12345678901.dkr.ecr.eu-west-1.amazonaws.com",
        "the account ID 12345678901 has 11 digits, an AWS account ID has 12",
        "12345678901.dkr.ecr.eu-west-1.amazonaws.com",
    ),
    (
        "1234567890123.dkr.ecr.eu-west-1.amazonaws.com",
        "has 13 digits",
        "1234567890123.dkr.ecr.eu-west-1.amazonaws.com",
    ),
    (
        f"{ACCOUNT}.dkr.ecr.eu-wset-1.amazonaws.com",
        "there is no AWS Region eu-wset-1",
        f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com",
    ),
    (
        f"{ACCOUNT}.dkr.ecr.eu-west-l.amazonaws.com",
        "there is no AWS Region eu-west-l",
        f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com",
    ),
    (
        f"{ACCOUNT}.dkr.ecr.us-east1.amazonaws.com",
        "there is no AWS Region us-east1",
        f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com",
    ),
    (
        f"{ACCOUNT}.dkr-ecr.eu-west-1.amazonaws.com",
        "dkr-ecr goes with on.aws",
        f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com",
    ),
    (
        f"{ACCOUNT}.dkr.ecr.eu-west-1.on.aws",
        "dkr.ecr goes with amazonaws.com",
        f"{ACCOUNT}.dkr-ecr.eu-west-1.on.aws",
    ),
    (
        f"{ACCOUNT}.dkr_ecr.eu-west-1.amazonaws.com",
        "dkr_ecr is not dkr.ecr",
        f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com",
    ),
    (
        f"{ACCOUNT}.dkrecr.eu-west-1.on.aws",
        "dkrecr is not dkr-ecr",
        f"{ACCOUNT}.dkr-ecr.eu-west-1.on.aws",
    ),
    (
        f"{ACCOUNT}.dkr.ecs.eu-west-1.amazonaws.com",
        "dkr.ecs is not dkr.ecr",
        f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com",
    ),
    (
        f"{ACCOUNT}.dkr.ecr.cn-north-1.amazonaws.com",
        "registries in cn-north-1 are under amazonaws.com.cn",
        f"{ACCOUNT}.dkr.ecr.cn-north-1.amazonaws.com.cn",
    ),
    (
        f"{ACCOUNT}.dkr.ecr.eusc-de-east-1.amazonaws.com",
        "registries in eusc-de-east-1 are under amazonaws.eu",
        f"{ACCOUNT}.dkr.ecr.eusc-de-east-1.amazonaws.eu",
    ),
    (
        f"{ACCOUNT}.dkr.ecr-fips.us-gov-west-1.amazonaws.co",
        "amazonaws.co is not an ECR domain",
        f"{ACCOUNT}.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
    ),
    (
        f"{ACCOUNT}.DKR.ECR.EU-WEST-1.AMAZONAWS.COM",
        "has capital letters",
        f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com",
    ),
    (
        f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com".replace("amazonaws", "Amazonaws"),
        "ECR hosts are lowercase",
        f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com",
    ),
]


@pytest.mark.parametrize(("host", "wrong", "nearest"), LOOKALIKES)
def test_a_host_almost_like_ecr_says_what_is_wrong_and_the_nearest_valid_one(
    host: str, wrong: str, nearest: str
) -> None:
    assert ecr_registry(host) is None
    problem = ecr_lookalike(host)
    assert problem is not None and wrong in problem and problem.endswith(f": {nearest}")
    assert ecr_lookalike(f"{host}:443") == problem  # a port changes nothing
    # The suggestion is valid (once a wrong account is made 12 digits).
    assert ecr_registry(ACCOUNT + "." + nearest.split(".", 1)[1]) is not None


@pytest.mark.parametrize(
    ("host", "problem"),
    [
        ("publc.ecr.aws", "is almost ECR Public's host: public.ecr.aws"),
        ("public.ecr.aw", "is almost ECR Public's host: public.ecr.aws"),
        (
            "PUBLIC.ECR.AWS",
            "has capital letters (ECR hosts are lowercase): public.ecr.aws",
        ),
        (
            f"{ACCOUNT}.dkr.ecr.amazonaws.com",
            "is not a valid ECR registry host: write <12-digit account>.dkr.ecr.<region>."
            "amazonaws.com (.amazonaws.com.cn in China)",
        ),
        (
            f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com.evil.example",
            "is not a valid ECR registry host: write <12-digit account>.dkr.ecr.<region>."
            "amazonaws.com (.amazonaws.com.cn in China)",
        ),
    ],
)
def test_other_hosts_almost_like_ecr(host: str, problem: str) -> None:
    assert ecr_lookalike(host) == problem


@pytest.mark.parametrize(
    "host",
    [
        "",
        "docker.io",
        "index.docker.io",
        "quay.io",
        "ghcr.io",
        "gcr.io",
        "registry.k8s.io",
        "mcr.microsoft.com",
        "myregistry.azurecr.io",
        "public.ecr.aws",
        "ecr-public.aws.com",
        "localhost:5000",
        "[::1]:5000",
        "aws.example.com",
        "registry.aws-tools.internal",
        f"{ACCOUNT}.dkr.ecr.eu-west-1.mirror.example.com",  # a mirror under its own domain
        "api.ecr.us-east-1.amazonaws.com",
        "x" * 300 + ".dkr.ecr.eu-west-1.amazonaws.co",  # longer than any DNS name
    ],
)
def test_hosts_nothing_like_private_ecr_are_left_alone(host: str) -> None:
    assert ecr_registry(host) is None
    assert ecr_lookalike(host) is None


@pytest.mark.parametrize(
    ("region", "partition"),
    [
        ("eu-west-1", "aws"),
        ("us-gov-east-1", "aws-us-gov"),
        ("cn-north-1", "aws-cn"),
        ("us-isob-west-1", "aws-iso-b"),
        ("mx-central-2", "aws"),  # not in botocore yet, named like a Region
        ("eu-wset-1", None),
        ("xx-east-1", None),
        ("us-east", None),
    ],
)
def test_regions_belong_to_partitions(region: str, partition: str | None) -> None:
    found = partition_of(region)
    assert (found.name if found is not None else None) == partition


def test_registry_host_uses_the_region_s_partition_domain() -> None:
    assert registry_host(ACCOUNT, "eu-west-1") == f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"
    assert registry_host(ACCOUNT, "cn-north-1") == f"{ACCOUNT}.dkr.ecr.cn-north-1.amazonaws.com.cn"
    assert (
        registry_host(ACCOUNT, "eusc-de-east-1") == f"{ACCOUNT}.dkr.ecr.eusc-de-east-1.amazonaws.eu"
    )
    assert registry_host(ACCOUNT, "mars-1") is None


@pytest.mark.parametrize(
    ("uri", "named"),
    [
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/web", ("eu-west-1", "team/web")),
        ("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com/a/b/c", ("us-east-1", "a/b/c")),
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com/", None),
        ("ghcr.io/org/web", None),
        ("public.ecr.aws/org/web", None),
    ],
)
def test_a_repository_is_named_as_push_events_and_records_name_it(
    uri: str, named: tuple[str, str] | None
) -> None:
    """`<host>/<name>`: how the webhook writes a push, and how the render and Redis read it."""
    repository = repository_named(uri)
    found = None if repository is None else (repository.registry.region, repository.name)
    assert found == named
