"""Image references: the Docker/distribution grammar, ported from
github.com/distribution/reference, and the problems of a reference that breaks it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from typing import NamedTuple

from cmp.errors import ImageError

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


def quoted(text: str) -> str:
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
    bad = f"image {quoted(text)}"
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
            f"{bad} has an invalid registry host {quoted(domain)}: a host is DNS labels "
            "(letters, digits, inner dashes) joined by dots, or [IPv6], with an optional :port"
        )
    if not path:
        raise ImageError(f"{bad} has no repository path after the registry host")
    if path.lower() != path:
        raise ImageError(
            f"{bad} has uppercase letters in the repository path {quoted(path)}: "
            "repository names must be lowercase"
        )
    if not _REMOTE_NAME_RE.fullmatch(path):
        raise ImageError(f"{bad} has an invalid repository path {quoted(path)}: {_PATH_RULE}")
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
    return f"has an invalid tag {quoted(tag)}: {_TAG_RULE}"


def _digest_problem(digest: str) -> str | None:
    """go-digest's checks: the general form, a registered algorithm, the exact hex length."""
    algorithm, colon, encoded = digest.partition(":")
    if not colon or not _DIGEST_RE.fullmatch(digest):
        return (
            f"has an invalid digest {quoted(digest)}: write @sha256: followed by "
            "64 lowercase hex digits"
        )
    length = DIGEST_HEX_LENGTHS.get(algorithm)
    if length is None:
        known = ", ".join(DIGEST_HEX_LENGTHS)
        return f"has an unsupported digest algorithm {quoted(algorithm)}: use one of {known}"
    if len(encoded) != length:
        return f"has a {algorithm} digest of {len(encoded)} hex digits: it must have {length}"
    if encoded.lower() != encoded:
        return f"has uppercase hex digits in its {algorithm} digest: digests are lowercase"
    return None
