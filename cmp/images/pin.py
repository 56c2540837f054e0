"""Pin every ECR image to its digest: find image fields, batch the lookups, rewrite in place.

An image already carrying a digest keeps it; an image outside ECR is left as written unless
the app demands digests everywhere (`images.requireDigests`). Every missing tag or repository
is reported in one error naming the image, the tag and each manifest that uses it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from cmp.errors import ImageError, Problems, ResolveError, TagpinError
from cmp.images.fields import ImageField, ImagePath, find_images, parse_image_paths, set_image
from cmp.images.reference import ImageRef, quoted
from cmp.registry.base import Lookup, Registry, TagInfo, describe_many
from cmp.registry.names import (
    ECR_PUBLIC_HOSTS,
    EcrRepository,
    ecr_lookalike,
    ecr_registry,
    ecr_repository,
)
from cmp.source.appdir import AppConfig
from cmp.source.manifests import Manifest

IMPLICIT_TAG = "latest"


class Wanted(NamedTuple):
    """One image field that needs a digest, and the tag that will be pinned."""

    field: ImageField
    ref: ImageRef
    repository: EcrRepository
    tag: str


class Unpinned(NamedTuple):
    """An image field left as written without a digest, and why."""

    field: ImageField
    reason: str  # what it is, after "is": "not in ECR", …


class PinReport:
    """What pinning did: each rewritten field with its new value, the fields kept as written
    (already pinned, or allowed unpinned), and those left unpinned for a reason to tell."""

    __slots__ = ("kept", "pinned", "unpinned")

    def __init__(
        self, kept: list[ImageField] | None = None, unpinned: list[Unpinned] | None = None
    ) -> None:
        self.pinned: list[tuple[ImageField, str]] = []  # (field, new value)
        self.kept: list[ImageField] = kept if kept is not None else []
        self.unpinned: list[Unpinned] = unpinned if unpinned is not None else []

    def notices(self) -> list[str]:
        """One line per image left unpinned that nobody declared: what, why, and where."""
        by_image: dict[str, list[Unpinned]] = defaultdict(list)
        for item in self.unpinned:
            by_image[item.field.value].append(item)
        lines = []
        for image, items in by_image.items():
            more = f" and {len(items) - 1} more" if len(items) > 1 else ""
            lines.append(
                f"not pinned: {quoted(image)} is {items[0].reason} (in "
                f"{items[0].field.describe()}{more}); list it in images.allowUnpinned in "
                "tagpin.yaml to say that is meant"
            )
        return lines


class ImageRules(NamedTuple):
    """tagpin.yaml's `images` settings: more image fields, and which images may stay
    unpinned (`allow_unpinned`: glob patterns, silent and exempt from `require_digests`)."""

    paths: tuple[ImagePath, ...] = ()
    require_digests: bool = False
    allow_unpinned: tuple[str, ...] = ()

    @classmethod
    def of(cls, config: AppConfig, shown: str) -> ImageRules:
        """tagpin.yaml's `images` settings, parsed; errors name the file as `shown`."""
        return cls(
            paths=parse_image_paths(list(config.image_paths or []), shown),
            require_digests=config.require_digests,
            allow_unpinned=config.allow_unpinned,
        )

    def allows_unpinned(self, image: str, ref: ImageRef | None) -> bool:
        """Whether a pattern matches the image as written or, parsed, its repository."""
        if not self.allow_unpinned:
            return False
        from fnmatch import fnmatchcase

        return any(
            fnmatchcase(image, pattern)
            or (ref is not None and fnmatchcase(ref.repository, pattern))
            for pattern in self.allow_unpinned
        )


def collect(manifests: Sequence[Manifest], rules: ImageRules) -> tuple[list[Wanted], PinReport]:
    """Parse every image field; split into those needing a digest and those kept as written.

    Only a reference tagpin would pin (an ECR host, or one almost like it) must parse: others
    (`ko://…`, Tekton's `$(params.IMAGE)`, a `<placeholder>`) are deployed as written, as Argo
    CD would, and named in the report. A host that is almost an ECR host is an error.
    """
    problems = Problems()
    wanted: list[Wanted] = []
    report = PinReport()
    for image in find_images(manifests, rules.paths):
        try:
            ref: ImageRef | None = image.parse()
        except ImageError as exc:
            if _would_pin(image.value):
                problems.add(exc)
                continue
            ref = None
        if ref is not None:
            lookalike = ecr_lookalike(ref.domain)
            if lookalike is not None:
                problems.add(
                    ImageError(
                        f"{image.describe()}: image {quoted(image.value)}: registry host "
                        f"{quoted(ref.domain)} {lookalike}"
                    )
                )
                continue
            if ref.pinned:
                report.kept.append(image)
                continue
            repository = ecr_repository(ref)
            if repository is not None:
                wanted.append(Wanted(image, ref, repository, ref.tag or IMPLICIT_TAG))
                continue
        if rules.allows_unpinned(image.value, ref):
            report.kept.append(image)
            continue
        reason = (
            "not a valid image reference"
            if ref is None
            else "in ECR Public, which tagpin leaves as written by design (a separate, public "
            "API it does not ask)"
            if ref.domain.split(":")[0] in ECR_PUBLIC_HOSTS
            else "not in ECR"
        )
        if rules.require_digests:
            problems.add(
                ImageError(
                    f"{image.describe()}: {image.value!r} is not pinned to a digest and is "
                    f"{reason}, so tagpin cannot pin it; write it as name:tag@sha256:..., or "
                    "list it in images.allowUnpinned (tagpin.yaml sets images.requireDigests: "
                    "true)"
                )
            )
            continue
        report.unpinned.append(Unpinned(image, reason))
    problems.raise_if_any()
    return wanted, report


def _would_pin(text: str) -> bool:
    """Whether an unparsable reference names an ECR host (or one almost like it), so that
    tagpin would have pinned it had it been valid."""
    host = text.strip().split("/", 1)[0].split("@", 1)[0]
    lower = text.lower()
    return (
        ecr_registry(host) is not None
        or ecr_lookalike(host) is not None
        or any(word in lower for word in (".dkr.ecr", ".dkr-ecr", "public.ecr.aws"))
    )


def resolve(
    wanted: Sequence[Wanted], registry: Registry, concurrency: int
) -> dict[tuple[EcrRepository, str], TagInfo]:
    """One batched lookup per repository; every missing tag and repository in one error."""
    requests: dict[EcrRepository, set[str]] = defaultdict(set)
    for item in wanted:
        requests[item.repository].add(item.tag)
    ordered = {repo: sorted(requests[repo]) for repo in sorted(requests, key=_repo_key)}
    try:
        lookups = describe_many(registry, ordered, max_workers=concurrency)
    except TagpinError as error:
        raise _naming_users(error, wanted) from error
    return _found_or_raise(wanted, lookups)


def _naming_users(error: TagpinError, wanted: Sequence[Wanted]) -> TagpinError:
    """The same error, each `<image>: …` problem followed by the manifest fields using that
    image, as a missing tag is reported (a lock that lacks a tag, say, or disagrees with ECR)."""
    users: dict[str, list[str]] = defaultdict(list)
    for item in wanted:
        users[f"{item.repository.uri}:{item.tag}"].append(item.field.describe())
    problems = []
    for problem in error.problems:
        image = problem.split(": ", 1)[0]
        used_by = users.get(image)
        problems.append(f"{problem}; used by {'; '.join(used_by)}" if used_by else problem)
    return type(error)(*problems)


def _found_or_raise(
    wanted: Sequence[Wanted], lookups: Mapping[EcrRepository, Lookup]
) -> dict[tuple[EcrRepository, str], TagInfo]:
    found: dict[tuple[EcrRepository, str], TagInfo] = {}
    users: dict[tuple[EcrRepository, str], list[Wanted]] = defaultdict(list)
    for item in wanted:
        users[(item.repository, item.tag)].append(item)
    problems: list[str] = []
    for (repository, tag), items in sorted(
        users.items(), key=lambda kv: (_repo_key(kv[0][0]), kv[0][1])
    ):
        lookup = lookups[repository]
        info = lookup.found.get(tag)
        if info is not None:
            found[(repository, tag)] = info
            continue
        image = f"{repository.uri}:{tag}"
        if lookup.repository_missing:
            reason = (
                f"repository {repository.name!r} does not exist in registry "
                f"{repository.registry.account} ({repository.registry.region})"
            )
        else:
            reason = f"tag {tag!r} does not exist in repository {repository.name!r}"
        used_by = "; ".join(item.field.describe() for item in items)
        problems.append(f"{image}: {reason}; used by {used_by}")
    if problems:
        raise ResolveError(*problems)
    return found


def _repo_key(repository: EcrRepository) -> tuple[str, str, str]:
    return repository.registry.region, repository.registry.account, repository.name


def pin(
    wanted: Sequence[Wanted],
    report: PinReport,
    registry: Registry,
    concurrency: int = 8,
    chosen: Mapping[ImageField, TagInfo] | None = None,
) -> None:
    """Rewrite every wanted field to `repo:tag@sha256:...`: the tag a branch deploy `chose`
    for it, else its own tag, whose digests are asked of `registry` in one batch per
    repository."""
    chosen = chosen or {}
    rest = [w for w in wanted if w.field not in chosen]
    digests = resolve(rest, registry, concurrency) if rest else {}
    for item in wanted:
        info = chosen.get(item.field) or digests[(item.repository, item.tag)]
        value = str(item.ref.with_pin(info.tag, info.digest))
        set_image(item.field, value)
        report.pinned.append((item.field, value))
