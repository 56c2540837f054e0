"""Branch deploys: apply Image Updater overrides (live annotations + the `image-updater`
parameter) to the images of a render, before they are pinned.

Production apps carry no override and render exactly what git says. An app whose Application
points `<alias>.allow-tags` at a branch's tags gets the newest matching tag, pinned to its
digest, and an annotation on the workload saying which rule chose it, so `argocd app diff`
shows why the image changed. No matching tag is an error, never a silent fallback to git's tag.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from cmp.errors import ResolveError
from cmp.images.fields import ImageField
from cmp.imageupdater.annotations import (
    PREFIX,
    Candidate,
    ImagePolicy,
    merge_sources,
    parse_policies,
)
from cmp.imageupdater.keys import check_sources
from cmp.registry.base import Registry, TagInfo
from cmp.registry.names import EcrRepository
from cmp.source.manifests import Manifest

OVERRIDE_ANNOTATION = "tagpin.dev/image-overrides"


@dataclass(frozen=True)
class Override:
    field: ImageField
    policy: ImagePolicy
    git_tag: str
    chosen: TagInfo


@dataclass
class OverridePlan:
    chosen: dict[ImageField, TagInfo] = field(default_factory=dict)
    overrides: list[Override] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def policies_from(
    annotations: Mapping[str, str],
    parameter: Mapping[str, str],
    parameter_name: str = "image-updater parameter",
) -> tuple[ImagePolicy, ...]:
    """The policies of the image list; ConfigError for a key Image Updater does not define
    (a parameter key's message names `parameter_name`: `--image-updater` at the CLI)."""
    merged = merge_sources(annotations, parameter)
    policies = parse_policies(merged)
    aliases = None
    if "image-list" in merged:
        # Annotation keys spell an alias's `/` as `_` (v0.18); v1.x reads the alias verbatim.
        named = [p.alias for p in policies if p.alias is not None]
        aliases = {*named, *(alias.replace("/", "_") for alias in named)}
    check_sources(annotations, parameter, aliases, PREFIX, parameter_name)
    return policies


def policy_warnings(policies: Sequence[ImagePolicy]) -> list[str]:
    """Non-fatal problems of each policy, for stderr and Argo CD's UI."""
    return [
        f"image-updater {policy.describe()}: {problem}"
        for policy in policies
        for problem in policy.problems
    ]


def plan(
    wanted: Sequence[tuple[ImageField, EcrRepository, str, str]],
    policies: Sequence[ImagePolicy],
    registry_factory: Callable[[], Registry],
) -> OverridePlan:
    """For each (field, repository, repository as written, git tag), pick the tag its policy
    allows. A repository's tags are listed once per render, however many images use it."""
    result = OverridePlan()
    listings: dict[EcrRepository, dict[str, TagInfo] | None] = {}  # None: no such repository
    problems: list[str] = []
    used: set[int] = set()
    for image, repository, repository_text, git_tag in wanted:
        governing = [p for p in policies if p.matches_repository(repository_text)]
        used.update(id(p) for p in governing)
        if not governing:
            continue
        policy = governing[0]
        if repository not in listings:
            lookup = registry_factory().list_tags(repository)
            listings[repository] = None if lookup.repository_missing else dict(lookup.found)
        tags = listings[repository]
        if tags is None:
            problems.append(
                f"{repository_text}: repository does not exist, but image-updater "
                f"{policy.describe()} asks for its tags; used by {image.describe()}"
            )
            continue
        candidates = [
            Candidate(tag=i.tag, digest=i.digest, pushed_at=i.pushed_at)
            for _, i in sorted(tags.items())
        ]
        winner = policy.select(candidates)
        if winner is None:
            problems.append(
                f"{repository_text}: no tag satisfies image-updater {policy.describe()} "
                f"(of {len(candidates)} tags); refusing to fall back to git's tag {git_tag!r}; "
                f"used by {image.describe()}"
            )
            continue
        result.chosen[image] = tags[winner.tag]
        result.overrides.append(Override(image, policy, git_tag, tags[winner.tag]))
    # A typo in image-list (another host, a missing path segment) would otherwise silently
    # deploy git's tags on a branch deploy.
    result.warnings.extend(
        f"image-updater {p.describe()}: image-list names {p.image}, which no ECR image of "
        "this app that needs a digest uses; check the name (registry host included)"
        for p in policies
        if id(p) not in used
    )
    if problems:
        raise ResolveError(*problems)
    return result


def annotate(overrides: Sequence[Override]) -> list[str]:
    """Record on each workload what chose its images; returns one summary line per override."""
    by_manifest: dict[int, tuple[Manifest, list[str]]] = {}
    notes: list[str] = []
    for item in overrides:
        manifest = item.field.manifest
        line = (
            f"{item.field.value} -> {item.chosen.tag}: {item.policy.describe()}; "
            f"git tag {item.git_tag}"
        )
        by_manifest.setdefault(id(manifest), (manifest, []))[1].append(line)
        notes.append(f"override: {item.field.describe()}: {line}")
    for manifest, lines in by_manifest.values():
        metadata = manifest.body.setdefault("metadata", {})
        annotations = metadata.get("annotations")
        if not isinstance(annotations, dict):
            annotations = metadata["annotations"] = {}
        annotations[OVERRIDE_ANNOTATION] = "\n".join(sorted(set(lines))) + "\n"
    return notes
