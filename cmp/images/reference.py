"""Image references (the Docker/distribution grammar), ECR registry hosts, and where images live
in Kubernetes objects. Pure functions over values: tagpin finds every image here, then pins it."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from enum import Enum
from functools import cache
from typing import Any, NamedTuple

from cmp.errors import ConfigError, ImageError, Problems
from cmp.source.manifests import Manifest

# --- The reference grammar, ported from github.com/distribution/reference regexp.go ----------
# Go's RE2 and Python's `re` agree on these patterns (leftmost-first); `\w` must be ASCII-only,
# as in Go, hence re.ASCII wherever `_TAG` is used.

_ALPHANUMERIC = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_LOCALHOST = "localhost"
_DOMAIN_NAME_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_OPTIONAL_PORT = r"(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"
_IDENTIFIER = r"[a-f0-9]{64}"
_IPV6_ADDRESS = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_NAME = _DOMAIN_NAME_COMPONENT + r"(?:\." + _DOMAIN_NAME_COMPONENT + r")*"
_HOST = r"(?:" + _DOMAIN_NAME + "|" + _IPV6_ADDRESS + ")"
_DOMAIN_AND_PORT = _HOST + _OPTIONAL_PORT
_PATH_COMPONENT = _ALPHANUMERIC + r"(?:" + _SEPARATOR + _ALPHANUMERIC + r")*"
_REMOTE_NAME = _PATH_COMPONENT + r"(?:/" + _PATH_COMPONENT + r")*"
_NAME = r"(?:" + _DOMAIN_AND_PORT + r"/)?" + _REMOTE_NAME
_REFERENCE = r"(" + _NAME + r")(?::(" + _TAG + r"))?(?:@(" + _DIGEST + r"))?"

_DOMAIN_RE = re.compile(_DOMAIN_AND_PORT, re.ASCII)
_REMOTE_NAME_RE = re.compile(_REMOTE_NAME, re.ASCII)
_TAG_RE = re.compile(_TAG, re.ASCII)
_DIGEST_RE = re.compile(_DIGEST, re.ASCII)
_IDENTIFIER_RE = re.compile(_IDENTIFIER, re.ASCII)

REPOSITORY_PATH_MAX = 255
"""distribution's RepositoryNameTotalLengthMax; it limits the path, not the host."""

DEFAULT_DOMAIN = "docker.io"
_LEGACY_DEFAULT_DOMAIN = "index.docker.io"
_OFFICIAL_REPO_PREFIX = "library/"

# go-digest's registered algorithms and the length of their lowercase-hex encodings.
DIGEST_HEX_LENGTHS: Mapping[str, int] = {"sha256": 64, "sha384": 96, "sha512": 128}

_TAG_RULE = 'a tag is 1 to 128 letters, digits, "_", "." or "-", and must not start with "." or "-"'
_PATH_RULE = (
    "each /-separated part of a repository path is lowercase letters and digits, joined by "
    'single ".", "_", "__" or dashes'
)
_QUOTE_LIMIT = 200


def _quoted(text: str) -> str:
    """Quote user text for a message, cut short so a runaway value cannot flood the UI."""
    if len(text) > _QUOTE_LIMIT:
        text = text[:_QUOTE_LIMIT] + "…"
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ImageRef(NamedTuple):
    """A parsed image reference, kept exactly as written so rewriting it changes only the pin."""

    domain: str  # registry host as written (with any port); "" when implicit Docker Hub
    path: str  # repository path as written, e.g. "team/web" or "nginx"
    tag: str | None = None
    digest: str | None = None  # "sha256:<64 lowercase hex>" (or sha384/sha512)

    @property
    def repository(self) -> str:
        return f"{self.domain}/{self.path}" if self.domain else self.path

    @property
    def normalized_name(self) -> str:
        """The fully qualified name, `docker.io/library/nginx` for `nginx`, as Docker sees it."""
        if self.domain in ("", DEFAULT_DOMAIN, _LEGACY_DEFAULT_DOMAIN):
            path = self.path if "/" in self.path else _OFFICIAL_REPO_PREFIX + self.path
            return f"{DEFAULT_DOMAIN}/{path}"
        return self.repository

    @property
    def pinned(self) -> bool:
        return self.digest is not None

    def with_pin(self, tag: str | None, digest: str) -> ImageRef:
        """The same repository pinned to `digest`, keeping `tag` for people reading the manifest."""
        if tag is not None:
            problem = _tag_problem(tag)
            if problem:
                raise ImageError(f"cannot pin {self.repository}: {problem}")
        problem = _digest_problem(digest)
        if problem:
            raise ImageError(f"cannot pin {self.repository}: {problem}")
        return self._replace(tag=tag, digest=digest)

    def __str__(self) -> str:
        text = self.repository
        if self.tag is not None:
            text += ":" + self.tag
        if self.digest is not None:
            text += "@" + self.digest
        return text


def parse_image(text: str) -> ImageRef:
    """Parse `[host[:port]/]path[:tag][@digest]` as Docker does, or say precisely what is wrong."""
    bad = f"image {_quoted(text)}"
    if not text:
        raise ImageError("an image is empty: set it to repository[:tag][@digest]")
    if any(char.isspace() for char in text):
        raise ImageError(
            f"{bad} contains whitespace: remove it (check the template's quoting and newlines)"
        )
    if _IDENTIFIER_RE.fullmatch(text):
        raise ImageError(
            f"{bad} is a 64-hex-digit image ID, not a repository name: write repository@sha256:<id>"
        )

    # Split where the grammar allows no ambiguity: a name holds no "@"; a tag holds no ":"
    # or "/"; so the tag follows the last ":" only when no "/" comes after it (else a port).
    name_and_tag, at, digest = text.partition("@")
    if at:
        problem = _digest_problem(digest)
        if problem:
            raise ImageError(f"{bad} {problem}")
    if name_and_tag.startswith("[") and "/" not in name_and_tag:
        raise ImageError(f"{bad} has no repository path after the registry host")
    colon, slash = name_and_tag.rfind(":"), name_and_tag.rfind("/")
    name, tag = name_and_tag, None
    if colon > slash:
        name, tag = name_and_tag[:colon], name_and_tag[colon + 1 :]
        problem = _tag_problem(tag)
        if problem:
            raise ImageError(f"{bad} {problem}")
    if not name:
        raise ImageError(f"{bad} has no repository name: write repository[:tag][@digest]")

    domain, path = _split_domain(name)
    if domain and not _DOMAIN_RE.fullmatch(domain):
        raise ImageError(
            f"{bad} has an invalid registry host {_quoted(domain)}: a host is DNS labels "
            "(letters, digits, inner dashes) joined by dots, or [IPv6], with an optional :port"
        )
    if not path:
        raise ImageError(f"{bad} has no repository path after the registry host")
    if path.lower() != path:
        raise ImageError(
            f"{bad} has uppercase letters in the repository path {_quoted(path)}: "
            "repository names must be lowercase"
        )
    if not _REMOTE_NAME_RE.fullmatch(path):
        raise ImageError(f"{bad} has an invalid repository path {_quoted(path)}: {_PATH_RULE}")
    if len(path) > REPOSITORY_PATH_MAX:
        raise ImageError(
            f"{bad} has a repository path {len(path)} characters long: "
            f"the limit is {REPOSITORY_PATH_MAX}"
        )
    # Valid pieces make a valid whole: tests check that against reference_pattern(), whose
    # compilation (~2 ms) every render would otherwise pay at start-up.
    return ImageRef(domain=domain, path=path, tag=tag, digest=digest if at else None)


@cache
def reference_pattern() -> re.Pattern[str]:
    """The whole reference grammar, unanchored (use `fullmatch`). Groups: name, tag, digest."""
    return re.compile(_REFERENCE, re.ASCII)


def _split_domain(name: str) -> tuple[str, str]:
    """normalize.go's splitDockerDomain, minus the defaulting: the host as written, or ""."""
    first, slash, rest = name.partition("/")
    if not slash:
        return "", name
    if first == _LOCALHOST or any(char in first for char in ".:") or first.lower() != first:
        return first, rest
    return "", name


def _tag_problem(tag: str) -> str | None:
    if _TAG_RE.fullmatch(tag):
        return None
    if not tag:
        return 'has an empty tag after ":": remove the ":" or write a tag'
    if len(tag) > 128:
        return f"has a tag {len(tag)} characters long: {_TAG_RULE}"
    return f"has an invalid tag {_quoted(tag)}: {_TAG_RULE}"


def _digest_problem(digest: str) -> str | None:
    """go-digest's checks: the general form, a registered algorithm, the exact hex length."""
    algorithm, colon, encoded = digest.partition(":")
    if not colon or not _DIGEST_RE.fullmatch(digest):
        return (
            f"has an invalid digest {_quoted(digest)}: write @sha256: followed by "
            "64 lowercase hex digits"
        )
    length = DIGEST_HEX_LENGTHS.get(algorithm)
    if length is None:
        known = ", ".join(DIGEST_HEX_LENGTHS)
        return f"has an unsupported digest algorithm {_quoted(algorithm)}: use one of {known}"
    if len(encoded) != length:
        return f"has a {algorithm} digest of {len(encoded)} hex digits: it must have {length}"
    if encoded.lower() != encoded:
        return f"has uppercase hex digits in its {algorithm} digest: digests are lowercase"
    return None


# --- Amazon ECR -------------------------------------------------------------------------------

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


# --- Where images live in manifests -----------------------------------------------------------


class Wildcard(Enum):
    """`[*]` in an image path: every item of a list, or every value of a mapping."""

    ANY = "*"


PathStep = str | int | Wildcard
FieldPath = tuple[str | int, ...]

_KEY = r"[A-Za-z0-9_$-]+"
_KEY_RE = re.compile(_KEY, re.ASCII)
_PATH_TOKEN_RE = re.compile(
    r"""\.(?P<key>[A-Za-z0-9_$-]+)
      | \[(?:(?P<any>\*)
            | (?P<index>[0-9]+)
            | "(?P<dq>(?:[^"\\]|\\.)*)"
            | '(?P<sq>(?:[^'\\]|\\.)*)')\]""",
    re.ASCII | re.VERBOSE,
)
_PATH_SYNTAX = (
    'write keys joined by dots, [N] for the Nth list item, [*] for every item, and ["a.b"] '
    'for keys with dots, e.g. spec.steps[*].image or metadata.annotations["example.com/image"]'
)


def parse_field_path(text: str) -> tuple[PathStep, ...]:
    """Parse `spec.steps[*].image`-style paths; ValueError says where and what is wrong."""
    if not text:
        raise ValueError(f"the path is empty: {_PATH_SYNTAX}")
    # A leading key has no dot before it; give it one so every step has the same shape.
    offset = 0 if text.startswith("[") else 1
    subject = "." * offset + text
    steps: list[PathStep] = []
    position = 0
    while position < len(subject):
        match = _PATH_TOKEN_RE.match(subject, position)
        if match is None:
            column = position - offset + 1
            raise ValueError(
                f"cannot read the path {_quoted(text)} at character {column}: {_PATH_SYNTAX}"
            )
        if match["key"] is not None:
            steps.append(match["key"])
        elif match["any"] is not None:
            steps.append(Wildcard.ANY)
        elif match["index"] is not None:
            steps.append(int(match["index"]))
        else:
            quoted = match["dq"] if match["dq"] is not None else match["sq"]
            steps.append(re.sub(r"\\(.)", r"\1", quoted))
        position = match.end()
    if not isinstance(steps[0], str):
        raise ValueError(f"the path {_quoted(text)} must start with a key, as objects are mappings")
    return tuple(steps)


@cache
def _parsed_field_path(text: str) -> tuple[PathStep, ...]:
    return parse_field_path(text)


def format_field_path(path: Sequence[str | int | Wildcard]) -> str:
    """The inverse of parse_field_path, for messages: `spec.containers[0].image`."""
    text = ""
    for step in path:
        if isinstance(step, Wildcard):
            text += "[*]"
        elif isinstance(step, int):
            text += f"[{step}]"
        elif _KEY_RE.fullmatch(step):
            text += f".{step}" if text else step
        else:
            text += '["' + step.replace("\\", "\\\\").replace('"', '\\"') + '"]'
    return text


class ImagePath(NamedTuple):
    """Where a kind keeps image references, from tagpin.yaml `images.paths` or the built-ins.

    `api_group` None matches any group; "" is the core group (`apiVersion: v1`).
    """

    kind: str
    path: str
    api_group: str | None = None

    @property
    def steps(self) -> tuple[PathStep, ...]:
        return _parsed_field_path(self.path)

    def applies_to(self, manifest: Manifest) -> bool:
        return manifest.kind == self.kind and (
            self.api_group is None or manifest.group == self.api_group
        )


_CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
_POD_SPECS: tuple[tuple[str, str, str], ...] = (
    ("", "Pod", "spec"),
    ("", "PodTemplate", "template.spec"),
    ("", "ReplicationController", "spec.template.spec"),
    ("apps", "Deployment", "spec.template.spec"),
    ("apps", "ReplicaSet", "spec.template.spec"),
    ("apps", "StatefulSet", "spec.template.spec"),
    ("apps", "DaemonSet", "spec.template.spec"),
    ("batch", "Job", "spec.template.spec"),
    ("batch", "CronJob", "spec.jobTemplate.spec.template.spec"),
    ("argoproj.io", "Rollout", "spec.template.spec"),
)
BUILTIN_IMAGE_PATHS: tuple[ImagePath, ...] = tuple(
    ImagePath(kind=kind, path=f"{pod_spec}.{containers}[*].image", api_group=group)
    for group, kind, pod_spec in _POD_SPECS
    for containers in _CONTAINER_LISTS
)
"""Every container image of every workload kind tagpin knows, matched on kind and group."""

_RULE_KEYS = ("kind", "path", "group")


def parse_image_paths(raw: object, source: str) -> tuple[ImagePath, ...]:
    """Validate tagpin.yaml's `images.paths`: a list of {kind, path, group?} mappings."""
    where = f"{source}: images.paths"
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(
            f"{where} must be a list of {{kind, path, group}} entries, not {_type_name(raw)}"
        )
    problems = Problems()
    rules: list[ImagePath] = []
    for index, entry in enumerate(raw):
        entry_where = f"{where}[{index}]"
        try:
            rules.append(_parse_image_path(entry, entry_where))
        except ConfigError as error:
            problems.add(error)
    problems.raise_if_any()
    return tuple(rules)


def _parse_image_path(entry: object, where: str) -> ImagePath:
    if not isinstance(entry, dict):
        raise ConfigError(
            f"{where} must be a mapping with kind, path and optional group, not {_type_name(entry)}"
        )
    unknown = sorted(str(key) for key in entry if key not in _RULE_KEYS)
    if unknown:
        raise ConfigError(
            f"{where} has unknown keys {', '.join(unknown)}: allowed are {', '.join(_RULE_KEYS)}"
        )
    kind, path, group = entry.get("kind"), entry.get("path"), entry.get("group")
    if not isinstance(kind, str) or not kind:
        raise ConfigError(f"{where} needs a kind, e.g. kind: Workflow")
    if not isinstance(path, str) or not path:
        raise ConfigError(f"{where} ({kind}) needs a path, e.g. path: spec.steps[*].image")
    if group is not None and not isinstance(group, str):
        raise ConfigError(
            f'{where} ({kind}) group must be a string such as "argoproj.io" ("" for core)'
        )
    try:
        parse_field_path(path)  # checked here; ImagePath.steps parses (and caches) on use
        return ImagePath(kind=kind, path=path, api_group=group)
    except ValueError as error:
        raise ConfigError(f"{where} ({kind}): {error}") from None


def _type_name(value: object) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}
    return names.get(type(value), "null" if value is None else f"a {type(value).__name__}")


class ImageField(NamedTuple):
    """One image reference found in one object, and where it is so it can be rewritten."""

    manifest: Manifest
    path: FieldPath
    value: str

    def describe(self) -> str:
        """`Deployment/web in templates/web.yaml:3 at spec.template.spec.containers[0].image`."""
        return f"{self.manifest.describe()} at {format_field_path(self.path)}"

    def parse(self) -> ImageRef:
        """The parsed reference; errors name the object and field as well as the image."""
        try:
            return parse_image(self.value)
        except ImageError as error:
            raise ImageError(*(f"{self.describe()}: {line}" for line in error.problems)) from None


def find_images(
    manifests: Sequence[Manifest], extra_paths: Sequence[ImagePath] = ()
) -> list[ImageField]:
    """Every image field, in manifest order and then rule order (built-ins first).

    Objects whose structure stops short of a rule's path are skipped; a non-string image is
    an error, reported together with every other one found.
    """
    rules = (*BUILTIN_IMAGE_PATHS, *extra_paths)
    found: list[ImageField] = []
    problems = Problems()
    for manifest in manifests:
        seen: set[FieldPath] = set()
        for rule in rules:
            if not rule.applies_to(manifest):
                continue
            for path, value in _walk(manifest.body, rule.steps, ()):
                if path in seen or value is None:
                    continue
                seen.add(path)
                if isinstance(value, str):
                    found.append(ImageField(manifest=manifest, path=path, value=value))
                else:
                    where = f"{manifest.describe()} at {format_field_path(path)}"
                    problems.add(
                        ImageError(
                            f"{where}: the image must be a string, not {_type_name(value)}"
                            f" ({_quoted(repr(value))})"
                        )
                    )
    problems.raise_if_any()
    return found


def _walk(node: Any, steps: tuple[PathStep, ...], at: FieldPath) -> Iterator[tuple[FieldPath, Any]]:
    if not steps:
        yield at, node
        return
    step, rest = steps[0], steps[1:]
    if step is Wildcard.ANY:
        if isinstance(node, list):
            for index, item in enumerate(node):
                yield from _walk(item, rest, (*at, index))
        elif isinstance(node, dict):
            for key, value in node.items():
                if isinstance(key, str):
                    yield from _walk(value, rest, (*at, key))
    elif isinstance(step, int):
        if isinstance(node, list) and step < len(node):
            yield from _walk(node[step], rest, (*at, step))
    elif isinstance(node, dict) and step in node:
        yield from _walk(node[step], rest, (*at, step))


def set_image(field: ImageField, new_value: str) -> None:
    """Write `new_value` where `field` was found, in place in the manifest's body."""
    container: Any = field.manifest.body
    for step in field.path[:-1]:
        container = container[step]
    container[field.path[-1]] = new_value
