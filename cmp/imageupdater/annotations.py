"""Argo CD Image Updater's annotations (v0.18 grammar) turned into tag-selection policies.

Branch deploys keep the annotations teams already write for Image Updater; tagpin reads the same
keys with the same precedence and picks the tag Image Updater would, then pins it to its digest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache

from cmp.errors import ConfigError
from cmp.imageupdater import gomatch
from cmp.imageupdater.semver import Constraint, Version
from cmp.settings import IMAGE_UPDATER_PREFIX

PREFIX = IMAGE_UPDATER_PREFIX

STRATEGIES = ("semver", "newest-build", "alphabetical", "digest")
# Old names Image Updater still accepts, with a warning.
_RENAMED_STRATEGIES = {"latest": "newest-build", "name": "alphabetical"}

ANNOTATION = "annotation"
PARAMETER = "parameter"


@dataclass(frozen=True)
class Candidate:
    """One tag of a repository, as listed by ECR."""

    tag: str
    digest: str
    pushed_at: float | None  # epoch seconds UTC (ECR imagePushedAt)


@lru_cache(maxsize=1024)  # the webhook evaluates every app's policies on every push
def compile_allow_tags(value: str) -> tuple[Callable[[str], bool], str | None]:
    """Image Updater's ParseMatchfunc: a tag filter and, if the value is unusable, why.

    `regexp:` expressions have Go's RE2 syntax and semantics (cmp.imageupdater.gomatch): linear
    time, and what Go rejects is rejected here too. `tagpin branch set` checks a value with this.
    """
    if value.lower() == "any":
        return (lambda tag: True), None
    function, sep, expression = value.partition(":")
    if not sep:
        return (lambda tag: False), (
            f"allow-tags {value!r} has no 'regexp:' prefix, so no tag can match; "
            "write 'regexp:<expression>' or 'any'"
        )
    if function.lower() != "regexp":
        return (lambda tag: False), (
            f"allow-tags {value!r} uses the unknown function {function!r}, so no tag can match; "
            "only 'regexp:<expression>' and 'any' exist"
        )
    try:
        # Go's regexp.Match is an unanchored search: authors write ^ and $ themselves.
        return gomatch.compile_regexp(expression), None
    except gomatch.BadPattern as error:
        shown = value if len(value) <= 80 else value[:80] + "…"  # a log line, not a dump
        return (lambda tag: False), (
            f"allow-tags {shown!r} is not a valid regular expression ({error}), so no tag can match"
        )


@lru_cache(maxsize=1024)
def _compile_glob(glob: str) -> Callable[[str], bool] | None:
    """An ignore-tags matcher, or None when Go's filepath.Match rejects the pattern."""
    try:
        return gomatch.compile_glob(glob)
    except gomatch.BadPattern:
        return None


def _compile_constraint(strategy: str, constraint: str) -> tuple[Constraint | None, str | None]:
    if strategy != "semver":
        return None, None
    try:
        return Constraint.parse(constraint), None
    except ValueError as error:
        return None, f"{error}; no tag can match"


def _split_reference(reference: str) -> tuple[str, str]:
    """`registry/path[:tag][@digest]` -> (image path, tag or constraint)."""
    without_digest = reference.split("@", 1)[0]
    last_slash = without_digest.rfind("/")
    colon = without_digest.find(":", last_slash + 1)
    if colon < 0:
        return without_digest, ""
    return without_digest[:colon], without_digest[colon + 1 :]


def normalize_repository(reference: str) -> str:
    """The canonical image path: docker.io and library/ made explicit, tag and digest dropped."""
    path, _ = _split_reference(reference.strip())
    first, sep, rest = path.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, name = first.lower(), rest
    else:
        registry, name = "docker.io", path
    if registry == "index.docker.io":
        registry = "docker.io"
    if registry == "docker.io" and "/" not in name:
        name = f"library/{name}"
    return f"{registry}/{name}"


@dataclass(frozen=True)
class ImagePolicy:
    """What governs one image-list entry: which tags qualify and which one wins."""

    alias: str | None
    image: str  # image path as written in image-list, without the constraint
    strategy: str  # one of STRATEGIES
    constraint: str  # the image-list `:constraint`, "" if none
    allow_tags: str | None  # the allow-tags value in force, None when missing (any tag)
    ignore_tags: tuple[str, ...]
    source: str  # ANNOTATION or PARAMETER: PARAMETER if any key used came from the parameter
    problems: tuple[str, ...]  # non-fatal warnings for the Argo CD UI

    @cached_property
    def _allow_filter(self) -> Callable[[str], bool]:
        if self.allow_tags is None:
            return lambda tag: True
        return compile_allow_tags(self.allow_tags)[0]

    @cached_property
    def _ignore_patterns(self) -> tuple[Callable[[str], bool], ...]:
        # A pattern Go's Match rejects is skipped: Image Updater then ignores nothing for it.
        return tuple(m for glob in self.ignore_tags if (m := _compile_glob(glob)) is not None)

    @cached_property
    def _semver_constraint(self) -> Constraint | None:
        return _compile_constraint(self.strategy, self.constraint)[0]

    def matches_repository(self, repository: str) -> bool:
        """True if `repository` (any reference form) names this entry's image."""
        return normalize_repository(repository) == normalize_repository(self.image)

    def allows(self, tag: str) -> bool:
        """True if `tag` passes allow-tags and ignore-tags and fits the strategy's constraint."""
        if not self._allow_filter(tag):
            return False
        if any(ignored(tag) for ignored in self._ignore_patterns):
            return False
        if self.strategy == "semver":
            version = Version.parse(tag)
            constraint = self._semver_constraint
            return version is not None and constraint is not None and constraint.check(version)
        if self.strategy == "digest":
            return bool(self.constraint) and tag == self.constraint
        return True

    def select(self, candidates: Sequence[Candidate]) -> Candidate | None:
        """The tag Image Updater would choose among `candidates`, or None if none qualifies."""
        allowed = [c for c in candidates if self.allows(c.tag)]
        if not allowed:
            return None
        if self.strategy == "semver":
            ranked = [(v, c) for c in allowed if (v := Version.parse(c.tag)) is not None]
            # Equal versions (1.2, 1.2.0, v1.2.0) fall back to the larger original string.
            return max(ranked, key=lambda vc: (vc[0].precedence, vc[1].tag))[1]
        if self.strategy == "newest-build":
            # Same push time: the larger tag name, as upstream; an unknown time counts as oldest.
            return max(
                allowed,
                key=lambda c: (c.pushed_at is not None, c.pushed_at or 0.0, c.tag.encode()),
            )
        # alphabetical is Go's byte-wise string order; digest has one candidate left.
        return max(allowed, key=lambda c: c.tag.encode())

    def describe(self) -> str:
        """One line for messages, e.g. `alias web, strategy newest-build, from annotation`."""
        parts = [f"alias {self.alias}" if self.alias is not None else f"image {self.image}"]
        parts.append(f"strategy {self.strategy}")
        if self.constraint:
            parts.append(f"constraint {self.constraint}")
        if self.allow_tags is not None:
            parts.append(f"allow-tags {self.allow_tags}")
        if self.ignore_tags:
            parts.append(f"ignore-tags {','.join(self.ignore_tags)}")
        parts.append(f"from {self.source}")
        return ", ".join(parts)


def merge_sources(
    annotations: Mapping[str, str], parameter: Mapping[str, str]
) -> dict[str, tuple[str, str]]:
    """Keys without PREFIX -> (value, origin); the plugin parameter wins over annotations."""
    merged = {
        key[len(PREFIX) :]: (value, ANNOTATION)
        for key, value in annotations.items()
        if key.startswith(PREFIX)
    }
    merged.update((key, (value, PARAMETER)) for key, value in parameter.items())
    return merged


def _lookup(
    merged: Mapping[str, tuple[str, str]], option_alias: str | None, option: str
) -> tuple[str, str] | None:
    # v0.18: the first key that is *present* wins, even when empty. Without an alias only the
    # app-wide key applies.
    keys = [f"{option_alias}.{option}"] if option_alias is not None else []
    keys.append(option)
    for key in keys:
        if key in merged:
            return merged[key]
    return None


def _parse_entry(entry: str, merged: Mapping[str, tuple[str, str]]) -> ImagePolicy:
    problems: list[str] = []
    origins = [merged["image-list"][1]]
    alias: str | None = None
    reference = entry
    if "=" in entry:
        # Image Updater v1.x trims both sides and refuses an alias with no image.
        alias, reference = (part.strip() for part in entry.split("=", 1))
        if not reference:
            raise ConfigError(
                f"image-list entry {entry!r} has an alias but no image: write 'alias=image'"
            )
        alias = alias or None
        if alias is not None and ":" in alias:
            problems.append(
                f"image-list entry {entry!r}: the '=' of the version constraint was read as the "
                f"alias separator (alias {alias!r}); put an alias first, e.g. 'app={entry}'"
            )
    image, constraint = _split_reference(reference)
    # Aliases may contain '/', which annotation keys spell '_' (v0.18 normalizedSymbolicName).
    option_alias = alias.replace("/", "_") if alias is not None else None
    label = f"image-list entry {entry!r}"

    strategy = "semver"
    found = _lookup(merged, option_alias, "update-strategy")
    if found is not None:
        origins.append(found[1])
        if found[0]:
            strategy, problem = _parse_strategy(found[0], label)
            if problem:
                problems.append(f"{label}: {problem}")

    allow_tags: str | None = None
    found = _lookup(merged, option_alias, "allow-tags")
    if found is not None:
        origins.append(found[1])
    if (found is None or not found[0]) and option_alias is not None:
        # The deprecated per-image `tag-match` counts only when allow-tags is missing or empty.
        legacy = merged.get(f"{option_alias}.tag-match")
        if legacy is not None:
            origins.append(legacy[1])
            found = legacy
            problems.append(f"{label}: 'tag-match' is deprecated; rename it to 'allow-tags'")
    if found is not None and found[0]:
        allow_tags = found[0]
        problem = compile_allow_tags(allow_tags)[1]
        if problem:
            problems.append(f"{label}: {problem}")

    ignore_tags: tuple[str, ...] = ()
    found = _lookup(merged, option_alias, "ignore-tags")
    if found is not None:
        origins.append(found[1])
        ignore_tags = tuple(t.strip() for t in found[0].split(",") if t.strip())
        for glob in ignore_tags:
            if _compile_glob(glob) is None:
                problems.append(
                    f"{label}: ignore-tags pattern {glob!r} is malformed and ignores nothing"
                )

    if strategy == "digest" and not constraint:
        problems.append(
            f"{label}: strategy 'digest' needs the tag to follow as the constraint, "
            f"e.g. '{entry}:main'; no tag can match"
        )
    elif strategy in ("newest-build", "alphabetical") and constraint:
        problems.append(
            f"{label}: the constraint {constraint!r} has no effect with strategy {strategy!r}; "
            "filter tags with allow-tags instead"
        )
    else:
        problem = _compile_constraint(strategy, constraint)[1]
        if problem:
            problems.append(f"{label}: {problem}")

    return ImagePolicy(
        alias=alias,
        image=image,
        strategy=strategy,
        constraint=constraint,
        allow_tags=allow_tags,
        ignore_tags=ignore_tags,
        source=PARAMETER if PARAMETER in origins else ANNOTATION,
        problems=tuple(problems),
    )


def _parse_strategy(value: str, label: str) -> tuple[str, str | None]:
    name = value.strip().lower()  # v1.x trims the value
    if name in STRATEGIES:
        return name, None
    if name in _RENAMED_STRATEGIES:
        new = _RENAMED_STRATEGIES[name]
        return new, f"update-strategy {value!r} was renamed to {new!r}; please switch"
    # Image Updater falls back to semver, which on a branch's tags deploys the highest release
    # instead: an error, not a warning.
    raise ConfigError(
        f"{label}: unknown update-strategy {value!r}; choose one of {', '.join(STRATEGIES)}"
    )


def parse_policies(merged: Mapping[str, tuple[str, str]]) -> tuple[ImagePolicy, ...]:
    """One policy per `image-list` entry (`[alias=]image[:constraint]`, comma-separated)."""
    if "image-list" not in merged:
        return ()
    entries = (entry.strip() for entry in merged["image-list"][0].split(","))
    return tuple(_parse_entry(entry, merged) for entry in entries if entry)
