"""One way for unit tests to name an ECR repository of the test account (123456789012)."""

from __future__ import annotations

from cmp.registry.names import EcrRegistry, EcrRepository

ACCOUNT = "123456789012"


def ecr_repository(name: str = "team/web", region: str = "eu-west-1") -> EcrRepository:
    registry = EcrRegistry(
        f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com", ACCOUNT, region, fips=False, dualstack=False
    )
    return EcrRepository(registry=registry, name=name)
