"""Amazon ECR: which registry hosts are ECR, and the repository an image reference names."""

from __future__ import annotations

import re
from typing import NamedTuple

from cmp.images.reference import ImageRef

# From awslabs/amazon-ecr-credential-helper ecr-login/api/client.go (also used by
# kubernetes cloud-provider-aws): account, "-fips", region, partition suffix.
_ECR_HOST_RE = re.compile(
    r"^(\d{12})\.dkr[\.\-]ecr(\-fips)?\.([a-zA-Z0-9][a-zA-Z0-9-_]*)\."
    r"(amazonaws\.(?:com(?:\.cn)?|eu)|on\.(?:aws|amazonwebservices\.com\.cn)"
    r"|sc2s\.sgov\.gov|c2s\.ic\.gov|cloud\.adc-e\.uk|csp\.hci\.ic\.gov)$",
    re.ASCII,
)

DEFAULT_PULL_THROUGH_PREFIXES: frozenset[str] = frozenset(
    {
        "ecr-public",
        "docker-hub",
        "quay",
        "k8s",
        "registry-k8s-io",
        "github",
        "ghcr",
        "gitlab",
        "azure",
        "chainguard",
    }
)
"""Repository prefixes the ECR console suggests for pull-through cache rules."""


class EcrRegistry(NamedTuple):
    """A private ECR registry: which account owns it and which Region's API answers for it."""

    host: str  # the registry host without any :port
    account: str  # 12 digits; pass as registryId so cross-account registries work
    region: str
    fips: bool
    dualstack: bool  # the IPv6 endpoints, `….on.aws` and `….on.amazonwebservices.com.cn`


def ecr_registry(domain: str) -> EcrRegistry | None:
    """The ECR registry behind an image's host, or None when the host is not private ECR.

    ECR Public (`public.ecr.aws`, `ecr-public.aws.com`) is None too: it is a different API
    (`ecr-public`, us-east-1 only) that tagpin does not resolve.
    """
    host = domain.rsplit(":", 1)[0] if not domain.startswith("[") else domain
    match = _ECR_HOST_RE.match(host)
    if match is None:
        return None
    account, fips, region, suffix = match.groups()
    return EcrRegistry(
        host=host,
        account=account,
        region=region,
        fips=fips is not None,
        dualstack=suffix.startswith("on."),
    )


class EcrRepository(NamedTuple):
    """A repository in a private ECR registry, named as the ECR API expects.

    Two repositories are equal when registry and name are: the prefix set only says how to read
    the name, so it is left out of equality, hashing and repr.
    """

    registry: EcrRegistry
    name: str  # ImageRef.path, e.g. "team/web" or "docker-hub/library/nginx"
    pull_through_prefixes: frozenset[str] = DEFAULT_PULL_THROUGH_PREFIXES

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EcrRepository):
            return NotImplemented
        return self.registry == other.registry and self.name == other.name

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash((self.registry, self.name))

    def __repr__(self) -> str:
        return f"EcrRepository(registry={self.registry!r}, name={self.name!r})"

    @property
    def uri(self) -> str:
        """`<host>/<name>`, as ECR's repositoryUri and as messages name the repository."""
        return f"{self.registry.host}/{self.name}"

    @property
    def pull_through_prefix(self) -> str | None:
        """The pull-through cache rule prefix (e.g. "docker-hub"), when the name starts with one.

        Such repositories appear only after their first pull, so "not found" may mean "never
        pulled through the cache" rather than "misspelt".
        """
        prefix, slash, _ = self.name.partition("/")
        return prefix if slash and prefix in self.pull_through_prefixes else None


def ecr_repository(
    ref: ImageRef, pull_through_prefixes: frozenset[str] = DEFAULT_PULL_THROUGH_PREFIXES
) -> EcrRepository | None:
    """The ECR repository an image lives in, or None for images outside private ECR."""
    registry = ecr_registry(ref.domain)
    if registry is None:
        return None
    return EcrRepository(
        registry=registry, name=ref.path, pull_through_prefixes=pull_through_prefixes
    )
