"""What ECR calls things: partitions, the hosts of private registries (and the hosts that are
almost one), and `EcrRepository`, the key every registry layer answers for.

Nothing here knows image references: `ecr_repository` takes anything with a `domain` and a
`path` (cmp.images.reference.ImageRef), so the images package depends on this one and never
the other way round.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, NamedTuple, Protocol


class Partition(NamedTuple):
    """An AWS partition as botocore's partitions.json describes it, with the domains its
    private ECR registries live under."""

    name: str
    region_pattern: str  # botocore's regionRegex
    suffix: str  # `<account>.dkr.ecr[-fips].<region>.<suffix>`: botocore's dnsSuffix
    dualstack_suffix: str  # `<account>.dkr-ecr[-fips].<region>.<dualstack_suffix>`
    regions: tuple[str, ...]  # the Regions botocore knew when this table was written

    @property
    def suffixes(self) -> tuple[str, str]:
        return self.suffix, self.dualstack_suffix

    def host(
        self, account: str, region: str, *, fips: bool = False, dualstack: bool = False
    ) -> str:
        service = ("dkr-ecr" if dualstack else "dkr.ecr") + ("-fips" if fips else "")
        return f"{account}.{service}.{region}.{self.dualstack_suffix if dualstack else self.suffix}"


def _partition(name: str, pattern: str, suffixes: str, regions: str) -> Partition:
    suffix, dualstack = suffixes.split()
    return Partition(name, pattern, suffix, dualstack, tuple(regions.split()))


# The dual-stack domain is botocore's dualStackDnsSuffix with `api.` made `on.`; the pairs
# (`dkr.ecr` with the IPv4 domain, `dkr-ecr` with the dual-stack one) are those EKS's kubelet
# credential provider matches (its matchImages). tests/unit/registry/test_names.py checks
# this table against the installed botocore's partitions.json.
PARTITIONS: tuple[Partition, ...] = (
    _partition(
        "aws",
        r"^(us|eu|ap|sa|ca|me|af|il|mx)\-\w+\-\d+$",
        "amazonaws.com on.aws",
        "af-south-1 ap-east-1 ap-east-2 ap-northeast-1 ap-northeast-2 ap-northeast-3 "
        "ap-south-1 ap-south-2 ap-southeast-1 ap-southeast-2 ap-southeast-3 ap-southeast-4 "
        "ap-southeast-5 ap-southeast-6 ap-southeast-7 ca-central-1 ca-west-1 eu-central-1 "
        "eu-central-2 eu-north-1 eu-south-1 eu-south-2 eu-west-1 eu-west-2 eu-west-3 "
        "il-central-1 me-central-1 me-south-1 me-west-1 mx-central-1 sa-east-1 sa-west-1 "
        "us-east-1 us-east-2 us-west-1 us-west-2",
    ),
    _partition(
        "aws-cn",
        r"^cn\-\w+\-\d+$",
        "amazonaws.com.cn on.amazonwebservices.com.cn",
        "cn-north-1 cn-northwest-1",
    ),
    _partition(
        "aws-us-gov", r"^us\-gov\-\w+\-\d+$", "amazonaws.com on.aws", "us-gov-east-1 us-gov-west-1"
    ),
    _partition(
        "aws-eusc",
        r"^eusc\-(de)\-\w+\-\d+$",
        "amazonaws.eu on.amazonwebservices.eu",
        "eusc-de-east-1",
    ),
    _partition(
        "aws-iso", r"^us\-iso\-\w+\-\d+$", "c2s.ic.gov on.aws.ic.gov", "us-iso-east-1 us-iso-west-1"
    ),
    _partition(
        "aws-iso-b",
        r"^us\-isob\-\w+\-\d+$",
        "sc2s.sgov.gov on.aws.scloud",
        "us-isob-east-1 us-isob-west-1",
    ),
    _partition(
        "aws-iso-e",
        r"^eu\-isoe\-\w+\-\d+$",
        "cloud.adc-e.uk on.cloud-aws.adc-e.uk",
        "eu-isoe-west-1",
    ),
    _partition(
        "aws-iso-f",
        r"^us\-isof\-\w+\-\d+$",
        "csp.hci.ic.gov on.aws.hci.ic.gov",
        "us-isof-east-1 us-isof-south-1",
    ),
)
_KNOWN_REGIONS: dict[str, Partition] = {r: p for p in PARTITIONS for r in p.regions}
_SUFFIXES = tuple(dict.fromkeys(suffix for p in PARTITIONS for suffix in p.suffixes))
# The direction word every Region name has had so far: a Region botocore does not list yet
# (one opened after this table was written) is accepted when it has one of them.
_DIRECTIONS = frozenset(
    {
        "east",
        "west",
        "north",
        "south",
        "central",
        "northeast",
        "northwest",
        "southeast",
        "southwest",
    }
)

# After awslabs/amazon-ecr-credential-helper's ecr-login/api/client.go: account, service
# (`dkr.ecr` or dual-stack `dkr-ecr`, each maybe `-fips`), Region, domain; the Region is then
# checked against the partitions above and the domain against the Region's partition.
_ECR_HOST_RE = re.compile(
    r"^(\d{12})\.dkr([.\-])ecr(-fips)?\.([a-z0-9-]+)\.("
    + "|".join(re.escape(suffix) for suffix in _SUFFIXES)
    + r")$",
    re.ASCII,
)
ECR_PUBLIC_HOSTS = frozenset({"public.ecr.aws", "ecr-public.aws.com"})
_SERVICE_FORMS = ("dkr.ecr", "dkr-ecr", "dkr.ecr-fips", "dkr-ecr-fips")
_MAX_HOST = 253  # DNS; longer text is nothing like a registry host


def partition_of(region: str) -> Partition | None:
    """The partition a Region belongs to, or None when it is no AWS Region."""
    known = _KNOWN_REGIONS.get(region)
    if known is not None:
        return known
    words = region.split("-")
    if len(words) < 3 or words[-2] not in _DIRECTIONS:
        return None
    return next((p for p in PARTITIONS if re.match(p.region_pattern, region, re.ASCII)), None)


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


@functools.lru_cache(maxsize=4096)
def ecr_registry(domain: str) -> EcrRegistry | None:
    """The ECR registry behind an image's host, or None when the host is not private ECR.

    ECR Public (`public.ecr.aws`, `ecr-public.aws.com`) is None too: it is a different API
    (`ecr-public`, us-east-1 only) that tagpin does not resolve.
    """
    host = _without_port(domain)
    match = _ECR_HOST_RE.match(host)
    if match is None:
        return None
    account, separator, fips, region, suffix = match.groups()
    partition = partition_of(region)
    dualstack = separator == "-"
    if partition is None or suffix != partition.suffixes[dualstack]:
        return None
    return EcrRegistry(
        host=host, account=account, region=region, fips=fips is not None, dualstack=dualstack
    )


def registry_host(account: str, region: str) -> str | None:
    """The IPv4 host of an account's private registry in a Region (None: no such Region)."""
    partition = partition_of(region)
    return partition.host(account, region) if partition is not None else None


class EcrRepository(NamedTuple):
    """A repository in a private ECR registry, named as the ECR API expects.

    Two repositories are equal when registry and name are: the prefix set only says how to read
    the name, so it is left out of equality, hashing and repr.
    """

    registry: EcrRegistry
    name: str  # the reference's path, e.g. "team/web" or "docker-hub/library/nginx"
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


if TYPE_CHECKING:  # a type only: defining a Protocol costs every render's start

    class NamedImage(Protocol):
        """An image's registry host (maybe with a port) and repository path, as parsed."""

        @property
        def domain(self) -> str: ...

        @property
        def path(self) -> str: ...


def ecr_repository(
    ref: NamedImage, pull_through_prefixes: frozenset[str] = DEFAULT_PULL_THROUGH_PREFIXES
) -> EcrRepository | None:
    """The ECR repository an image lives in, or None for images outside private ECR."""
    registry = ecr_registry(ref.domain)
    if registry is None:
        return None
    return EcrRepository(
        registry=registry, name=ref.path, pull_through_prefixes=pull_through_prefixes
    )


def repository_named(uri: str) -> EcrRepository | None:
    """The private ECR repository `<host>/<name>` names, as push events, the push record and
    Redis's generations name it; None for any other registry, or no name."""
    host, _, name = uri.partition("/")
    registry = ecr_registry(host)
    if registry is None or not name:
        return None
    return EcrRepository(registry, name)


def _without_port(domain: str) -> str:
    return domain.rsplit(":", 1)[0] if not domain.startswith("[") else domain


def ecr_lookalike(domain: str) -> str | None:
    """Why a registry host that is almost an ECR host (a typo'd domain, Region or service
    label, an 11-digit account, capitals) is not one, naming the nearest valid host; None for
    ECR hosts and for hosts nothing like one. tagpin would leave such an image unpinned, and
    the cluster would pull from a host that does not exist, or not from ECR."""
    host = _without_port(domain)
    if len(host) > _MAX_HOST or ecr_registry(domain) is not None or host in ECR_PUBLIC_HOSTS:
        return None
    lower = host.lower()
    if lower != host and (ecr_registry(lower) is not None or lower in ECR_PUBLIC_HOSTS):
        return f"has capital letters (ECR hosts are lowercase): {lower}"
    if not any(word in lower for word in ("ecr", "dkr", "amazonaw", "aws")):
        return None  # the common case: a registry that is nothing like ECR
    if _distance(lower, "public.ecr.aws") <= 2:
        return "is almost ECR Public's host: public.ecr.aws"
    near = _nearest_private(lower)
    if near is not None:
        return near
    if "amazonaws" in lower and any(word in lower for word in ("dkr.ecr", "dkr-ecr")):
        return (
            "is not a valid ECR registry host: write <12-digit account>.dkr.ecr.<region>."
            "amazonaws.com (.amazonaws.com.cn in China)"
        )
    return None


class _HostParts(NamedTuple):
    account: str
    service: str  # `dkr.ecr`, `dkr-ecr-fips`, … or a typo of one
    region: str
    suffix: str


def _nearest_private(host: str) -> str | None:
    """What makes `host` not a private ECR host, and the nearest one that is, when both its
    service label (`dkr.ecr`) and its domain are at most two typos away from valid ones."""
    parts = _ecr_shaped(host)
    if parts is None:
        return None
    account, service, region, suffix = parts
    reasons = []
    if not re.fullmatch(r"[0-9]{12}", account, re.ASCII):
        reasons.append(
            f"the account ID {account} has {len(account)} digits, an AWS account ID has 12"
            if account.isascii() and account.isdigit()
            else f"{account} is not a 12-digit AWS account ID"
        )
    partition = partition_of(region)
    if partition is None:
        nearest = min(_KNOWN_REGIONS, key=lambda known: (_distance(region, known), known))
        reasons.append(f"there is no AWS Region {region}")
        region, partition = nearest, _KNOWN_REGIONS[nearest]
    if suffix in partition.suffixes:
        dualstack = suffix == partition.dualstack_suffix
    else:
        if suffix in _SUFFIXES:
            reasons.append(
                f"registries in {region} are under {partition.suffix} (dual-stack: "
                f"{partition.dualstack_suffix})"
            )
        else:
            reasons.append(f"{suffix} is not an ECR domain")
        dualstack = service.startswith("dkr-")
    wanted = ("dkr-ecr" if dualstack else "dkr.ecr") + ("-fips" if "fips" in service else "")
    if service != wanted:
        reasons.append(
            f"{service} is not {wanted}"
            if service not in _SERVICE_FORMS
            else f"{service} goes with {partition.suffixes[service.startswith('dkr-')]}"
        )
    if not reasons:
        return None
    nearest_host = partition.host(account, region, fips="fips" in service, dualstack=dualstack)
    return f"is almost an ECR registry host ({'; '.join(reasons)}): {nearest_host}"


def _ecr_shaped(host: str) -> _HostParts | None:
    """`host` read as account, service, Region and domain, when the service and the domain
    are each at most two typos (one for a short domain) from valid ones."""
    labels = host.split(".")
    best: tuple[int, _HostParts] | None = None
    for service_labels in (1, 2):  # `dkr-ecr` is one label, `dkr.ecr` two
        if len(labels) < 3 + service_labels:
            continue
        service = ".".join(labels[1 : 1 + service_labels])
        suffix = ".".join(labels[2 + service_labels :])
        service_off = min(_distance(service, form) for form in _SERVICE_FORMS)
        suffix_off, near = min((_distance(suffix, known), known) for known in _SUFFIXES)
        if service_off > 2 or suffix_off > (1 if len(near) <= 6 else 2):
            continue
        parts = _HostParts(labels[0], service, labels[1 + service_labels], suffix)
        if best is None or service_off + suffix_off < best[0]:
            best = (service_off + suffix_off, parts)
    return best[1] if best is not None else None


def _distance(a: str, b: str) -> int:
    """Levenshtein distance (both strings are short: hosts are at most 253 characters)."""
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            )
        previous = current
    return previous[-1]
