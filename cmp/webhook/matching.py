"""Which Applications a pushed tag can change: the same Image Updater policies branch deploys
use decide for the repositories they name, and the live status's images for the rest."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cmp.imageupdater.annotations import (
    ImagePolicy,
    compile_allow_tags,
    merge_sources,
    normalize_repository,
    parse_policies,
)

PARAMETER_NAME = "image-updater"


@dataclass(frozen=True, order=True)
class AppRef:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Match:
    app: AppRef
    reason: str  # for logs: which rule selected the Application


def _sources(application: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    spec = application.get("spec") or {}
    found = [spec.get("source")] + list(spec.get("sources") or [])
    return [source for source in found if isinstance(source, dict)]


def image_updater_parameter(application: Mapping[str, Any]) -> dict[str, str]:
    """The `image-updater` plugin parameter's map, from `spec.source` or any of `spec.sources`."""
    merged: dict[str, str] = {}
    for source in _sources(application):
        plugin = source.get("plugin")
        parameters = (plugin.get("parameters") or []) if isinstance(plugin, dict) else []
        for parameter in parameters:
            if isinstance(parameter, dict) and parameter.get("name") == PARAMETER_NAME:
                values = parameter.get("map") or {}
                if isinstance(values, dict):
                    merged.update((str(k), str(v)) for k, v in values.items())
    return merged


def application_policies(application: Mapping[str, Any]) -> tuple[ImagePolicy, ...]:
    metadata = application.get("metadata") or {}
    annotations = {str(k): str(v) for k, v in (metadata.get("annotations") or {}).items()}
    return parse_policies(merge_sources(annotations, image_updater_parameter(application)))


def summary_repositories(application: Mapping[str, Any]) -> set[str]:
    """Repositories of the images Argo CD last saw live (`status.summary.images`)."""
    images = ((application.get("status") or {}).get("summary") or {}).get("images") or []
    return {normalize_repository(image) for image in images if isinstance(image, str) and image}


def match_reason(application: Mapping[str, Any], repository: str, tag: str) -> str | None:
    """Why a push of `repository:tag` should refresh `application`, or None if it should not.

    A policy that names the repository decides alone: a `pr-77-…` push cannot change an app that
    only allows `^pr-42-`, whatever it runs. Repositories without a policy refresh on any tag,
    because a pinned tag such as `main` may just have moved.
    """
    governing = [p for p in application_policies(application) if p.matches_repository(repository)]
    if governing:
        allowing = [p for p in governing if p.allows(tag)]
        return f"image-updater {allowing[0].describe()}" if allowing else None
    if repository in summary_repositories(application):
        return "status.summary.images"
    return None


# Told about an Application whose policy could not be evaluated, and why; it is then skipped.
PolicyErrorHandler = Callable[[str, BaseException], None]


class UnusablePolicy(ValueError):
    """A policy for the pushed repository whose allow-tags Go rejects: it matches no tag."""


def unusable_policies(application: Mapping[str, Any], repository: str) -> list[str]:
    """Why the policies naming `repository` can match no tag (an allow-tags Go rejects)."""
    problems = []
    for policy in application_policies(application):
        if policy.allow_tags is not None and policy.matches_repository(repository):
            problem = compile_allow_tags(policy.allow_tags)[1]
            if problem:
                problems.append(problem)
    return problems


def select(
    applications: Iterable[Mapping[str, Any]],
    repository: str,
    tag: str,
    on_error: PolicyErrorHandler | None = None,
) -> list[Match]:
    """The Applications to refresh for one push, sorted by namespace and name.

    Each Application is evaluated on its own: one whose policy (or object) breaks the matching
    is reported to `on_error` (by `namespace/name`) and skipped, and the others still refresh.
    """
    matches = []
    for application in applications:
        try:
            metadata = application.get("metadata") or {}
            reason = match_reason(application, repository, tag)
            if reason is not None and metadata.get("name") and metadata.get("namespace"):
                matches.append(Match(AppRef(metadata["namespace"], metadata["name"]), reason))
            elif on_error is not None:
                for problem in unusable_policies(application, repository):
                    on_error(_describe(application), UnusablePolicy(problem))
        except Exception as error:  # noqa: BLE001 - RecursionError, a bug: one tenant, not all
            if on_error is None:
                raise
            on_error(_describe(application), error)
    return sorted(matches, key=lambda match: match.app)


def _describe(application: Mapping[str, Any]) -> str:
    metadata = application.get("metadata") if isinstance(application, Mapping) else None
    if isinstance(metadata, Mapping):
        return f"{metadata.get('namespace')}/{metadata.get('name')}"
    return "<an Application without metadata>"
