"""`tagpin branch`: point an Application's Image Updater rule at a branch's tags, and back.

A branch deploy is three annotations on the live Application: `<alias>.allow-tags` and
`<alias>.update-strategy` under Image Updater's prefix, which the render reads, and
`tagpin.dev/branch-deploy`, which records who set it, when, and the values it replaced so `clear`
can put them back. Every write is one merge patch carrying the resourceVersion that was read, so
a concurrent writer makes it fail (409) instead of being overwritten; a write that loses only to
Argo CD's own status updates is retried. Nothing is written unless ECR holds a tag the new rule
selects: a typo in the rule is refused before it can empty a branch environment.

The operations here return values and patches; cmp/commands/branch.py prints them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cmp.errors import AppLookupError, ConfigError, ConflictError, ImageError, ResolveError
from cmp.images.reference import parse_image
from cmp.imageupdater.annotations import (
    PREFIX,
    STRATEGIES,
    Candidate,
    ImagePolicy,
    compile_allow_tags,
    merge_sources,
    parse_policies,
)
from cmp.imageupdater.plan import policies_from
from cmp.jsonread import JsonError, loads
from cmp.registry.base import Registry, TagInfo
from cmp.registry.names import EcrRepository, ecr_repository

if TYPE_CHECKING:
    from cmp.argocd.kube import ApplicationApi

RECORD_ANNOTATION = "tagpin.dev/branch-deploy"
REFRESH_ANNOTATION = "argocd.argoproj.io/refresh"
IMAGE_LIST = "image-list"
DEFAULT_STRATEGY = "alphabetical"  # sortable branch tags (pr-42-<epoch>-<sha>) need no semver
REFUSED = "a render refuses it: "  # `status`: the error a render fails with, in a row
PATCH_ATTEMPTS = 5  # 409s caused only by Argo CD's status updates, retried on a fresh read
MAX_RECORD_BYTES = 256 * 1024  # all of an object's annotations may hold (Kubernetes' limit)


@dataclass(frozen=True)
class LiveApp:
    """The parts of a live Application a branch deploy reads."""

    namespace: str
    name: str
    resource_version: str
    annotations: Mapping[str, str]
    parameter: Mapping[str, str]  # the `image-updater` plugin parameter, from git
    status: Mapping[str, Any]

    @property
    def where(self) -> str:
        return f"Application {self.namespace}/{self.name}"

    @classmethod
    def from_object(cls, document: Mapping[str, Any]) -> LiveApp:
        """The parts read, from an object as the API server sent it: a field of an unexpected
        type reads as absent (the API server's schema makes that rare, never a crash)."""
        metadata = _mapping(document.get("metadata"))
        annotations = {str(k): str(v) for k, v in _mapping(metadata.get("annotations")).items()}
        return cls(
            namespace=str(metadata.get("namespace", "")),
            name=str(metadata.get("name", "")),
            resource_version=str(metadata.get("resourceVersion", "")),
            annotations=annotations,
            parameter=_updater_parameter(_mapping(document.get("spec"))),
            status=_mapping(document.get("status")),
        )

    def merged(self) -> dict[str, tuple[str, str]]:
        return merge_sources(self.annotations, self.parameter)

    def policies(self) -> tuple[ImagePolicy, ...]:
        return parse_policies(self.merged())

    def records(self) -> dict[str, dict[str, Any]]:
        """The branch deploys tagpin recorded, by alias; ConfigError when the annotation is not
        what tagpin writes (anyone with `patch` on the Application can write it)."""
        raw = self.annotations.get(RECORD_ANNOTATION)
        if not raw:
            return {}
        try:
            records = loads(raw, max_bytes=MAX_RECORD_BYTES)
            problem = _record_problem(records)
        except JsonError as error:
            problem = str(error)
        if problem is not None:
            raise ConfigError(
                f"{self.where}: annotation {RECORD_ANNOTATION} is not the JSON object tagpin "
                f"writes ({problem}); fix or remove it by hand"
            )
        checked: dict[str, dict[str, Any]] = records
        return checked

    def branch_state(self) -> tuple[Any, ...]:
        """What a concurrent `tagpin branch` (or a person) changes; not Argo CD's status."""
        ours = {k: v for k, v in self.annotations.items() if k.startswith(PREFIX)}
        return (
            sorted(ours.items()),
            self.annotations.get(RECORD_ANNOTATION),
            sorted(self.parameter.items()),
        )


def _updater_parameter(spec: Mapping[str, Any]) -> dict[str, str]:
    """The `image-updater` map of the plugin source (`spec.source`, or one of `spec.sources`)."""
    sources = spec.get("sources")
    for source in [spec.get("source"), *(sources if isinstance(sources, list) else [])]:
        parameters = _mapping(_mapping(source).get("plugin")).get("parameters")
        for parameter in parameters if isinstance(parameters, list) else []:
            if isinstance(parameter, dict) and parameter.get("name") == "image-updater":
                return {str(k): str(v) for k, v in _mapping(parameter.get("map")).items()}
    return {}


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


# The record's fields: what `set` writes, and what `clear` may put back.
RECORD_TEXT_FIELDS = ("allowTags", "strategy", "tag", "digest", "by", "at")
RESTORABLE = ("allow-tags", "update-strategy", IMAGE_LIST)


def _record_problem(records: object) -> str | None:
    """What makes `records` other than the `{alias: record}` object tagpin writes, or None.
    Strict, because `clear` writes `previous` back into annotations."""
    if not isinstance(records, dict):
        return "not an object"
    for alias, record in records.items():
        if not isinstance(record, dict):
            return f"the record of alias {alias!r} is not an object"
        for key in RECORD_TEXT_FIELDS:
            if not isinstance(record.get(key, ""), str):
                return f"{key} of alias {alias!r} is not a string"
        previous = record.get("previous", {})
        if not isinstance(previous, dict) or not all(
            option in RESTORABLE and (value is None or isinstance(value, str))
            for option, value in previous.items()
        ):
            return f"previous of alias {alias!r} is not a map of {', '.join(RESTORABLE)} to strings"
    return None


@dataclass(frozen=True)
class Deploy:
    """What a rule selects now: the tag and its immutable digest."""

    alias: str | None
    image: str  # the repository as image-list names it
    tag: str
    digest: str

    @property
    def reference(self) -> str:
        return f"{self.image}:{self.tag}@{self.digest}"


@dataclass
class Change:
    """One write: the annotations to set (None removes) and what it will deploy."""

    app: LiveApp
    alias: str
    annotations: dict[str, str | None]
    deploy: Deploy | None  # None: see `instead`
    warnings: list[str] = field(default_factory=list)
    instead: str = "no image-updater rule left for this alias; git's tag deploys"


def read(api: ApplicationApi, namespace: str, name: str) -> LiveApp:
    document = api.get_application(namespace, name)
    if document is None:  # not a bad configuration: the Application cannot be read (exit 10)
        raise AppLookupError(
            f"Application {namespace}/{name} does not exist: check the name and -n NAMESPACE"
        )
    return LiveApp.from_object(document)


def normalize_rule(value: str) -> str:
    """`--allow-tags ^pr-42-` means `regexp:^pr-42-`; `regexp:…` and `any` pass unchanged.
    Checked with the render's own matcher, so what is accepted here matches there."""
    rule = (
        value
        if value.lower() == "any" or value.lower().startswith("regexp:")
        else (f"regexp:{value}")
    )
    problem = compile_allow_tags(rule)[1]
    if problem:
        raise ConfigError(problem.replace(", so no tag can match", ""))
    return rule


def check_image(image: str) -> None:
    """`--image` must be one image repository: it becomes an `alias=image` entry of the
    comma-separated image-list, and a bot may pass what a user typed, so a comma, `=` or
    whitespace would smuggle in another entry. A digest is refused: the branch rule picks it."""
    smuggled = sorted({c for c in image if c in ",=" or c.isspace()})
    if smuggled:
        shown = " ".join(repr(c) for c in smuggled)
        raise ConfigError(f"--image {image!r} is not one image repository: it contains {shown}")
    try:
        reference = parse_image(image)
    except ImageError as error:
        raise ConfigError(f"--image: {'; '.join(error.problems)}") from None
    if reference.digest is not None:
        raise ConfigError(
            f"--image {image!r} names a digest: give the repository "
            f"({reference.repository}); the branch rule picks the tag and its digest"
        )


def repository_of(policy: ImagePolicy, where: str) -> EcrRepository:
    try:
        repository = ecr_repository(parse_image(policy.image))
    except ImageError as error:
        raise ConfigError(f"{where}: image-list names {policy.image!r}: {error}") from None
    if repository is None:
        raise ConfigError(
            f"{where}: image-list names {policy.image!r}, which is not in a private Amazon ECR "
            "registry; tagpin branch lists tags only from ECR"
        )
    return repository


def select(policy: ImagePolicy, registry: Registry, where: str) -> Deploy:
    """The tag `policy` picks among the repository's tags now; ResolveError when none."""
    repository = repository_of(policy, where)
    listing = registry.list_tags(repository)
    if listing.repository_missing:
        raise ResolveError(f"{where}: ECR repository {policy.image} does not exist")
    tags: dict[str, TagInfo] = dict(listing.found)
    candidates = [Candidate(i.tag, i.digest, i.pushed_at) for _, i in sorted(tags.items())]
    winner = policy.select(candidates)
    if winner is None:
        raise ResolveError(
            f"{where}: no tag of {policy.image} satisfies {policy.describe()} "
            f"(of {len(candidates)} tags); nothing written"
        )
    return Deploy(policy.alias, policy.image, winner.tag, winner.digest)


def _option_alias(alias: str) -> str:
    return alias.replace("/", "_")  # how annotation keys spell an alias's `/` (v0.18)


def _alias_for_new_image(image: str) -> str:
    """`…/shop/web` -> `web`: Image Updater's alias grammar (alphanumerics, `-`, `.`, `_`)."""
    last = parse_image(image).path.rsplit("/", 1)[-1]
    return "".join(c if c.isalnum() or c in "-._" else "-" for c in last)


def _choose_alias(app: LiveApp, alias: str | None, image: str | None) -> tuple[str, str | None]:
    """The alias to set and, when image-list must gain `alias=image`, its new value."""
    policies = app.policies()
    aliased = [p for p in policies if p.alias is not None]
    listed = ", ".join(sorted(str(p.alias) for p in aliased)) or "none"
    if alias is None and image is not None:
        matching = [p for p in aliased if p.matches_repository(image)]
        alias = str(matching[0].alias) if matching else _alias_for_new_image(image)
    if alias is None:
        if len(aliased) == 1:
            return str(aliased[0].alias), None
        if not aliased:
            raise ConfigError(
                f"{app.where} has no aliased entry in its {PREFIX}{IMAGE_LIST} annotation: "
                "pass --image REPOSITORY to add one"
            )
        raise ConfigError(f"{app.where} has several aliases ({listed}): pass --alias NAME")
    existing = next((p for p in aliased if p.alias == alias), None)
    if existing is not None:
        if image is not None and not existing.matches_repository(image):
            raise ConfigError(
                f"{app.where}: alias {alias!r} already names {existing.image}, not {image}"
            )
        return alias, None
    if image is None:
        raise ConfigError(
            f"{app.where}: image-list defines no alias {alias!r} (aliases: {listed}); "
            "pass --image REPOSITORY to add it"
        )
    if IMAGE_LIST in app.parameter:
        raise ConfigError(
            f"{app.where}: its image-list comes from the image-updater parameter in git; add "
            f"'{alias}={image}' there"
        )
    current = app.annotations.get(PREFIX + IMAGE_LIST, "").strip().rstrip(",")
    return alias, f"{current}, {alias}={image}" if current else f"{alias}={image}"


def _refuse_parameter_keys(app: LiveApp, keys: Sequence[str]) -> None:
    """The parameter (git) wins over annotations: a rule written there would never apply."""
    shadowed = [key for key in keys if key in app.parameter]
    if shadowed:
        raise ConfigError(
            f"{app.where}: the image-updater parameter in git sets {', '.join(shadowed)}, which "
            "wins over annotations; change it in git instead"
        )


def plan_set(
    app: LiveApp,
    registry: Registry,
    *,
    allow_tags: str,
    alias: str | None,
    image: str | None,
    strategy: str | None,
    by: str,
    now: str,
) -> Change:
    rule = normalize_rule(allow_tags)
    if image is not None:
        check_image(image)
    if strategy is not None and strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {strategy!r}: choose one of {', '.join(STRATEGIES)}")
    chosen, new_image_list = _choose_alias(app, alias, image)
    keys = {
        "allow-tags": f"{_option_alias(chosen)}.allow-tags",
        "update-strategy": f"{_option_alias(chosen)}.update-strategy",
    }
    _refuse_parameter_keys(app, list(keys.values()))
    # Not the alias's current strategy: production's semver would select no branch tag.
    new_strategy = strategy or DEFAULT_STRATEGY
    values: dict[str, str] = {"allow-tags": rule, "update-strategy": new_strategy}
    if new_image_list is not None:
        keys[IMAGE_LIST] = IMAGE_LIST
        values[IMAGE_LIST] = new_image_list

    annotations: dict[str, str | None] = {PREFIX + keys[o]: values[o] for o in keys}
    after = _with(app.annotations, annotations)
    policy = _policy_for(after, app.parameter, chosen, app.where)
    deploy = select(policy, registry, app.where)

    records = app.records()
    previous = {o: app.annotations.get(PREFIX + keys[o]) for o in keys}
    if chosen in records:  # a second set keeps what the first one replaced
        previous.update(records[chosen].get("previous") or {})
    records[chosen] = {
        "allowTags": rule,
        "strategy": new_strategy,
        "tag": deploy.tag,
        "digest": deploy.digest,
        "by": by,
        "at": now,
        "previous": previous,
    }
    annotations[RECORD_ANNOTATION] = _record_text(records)
    annotations[REFRESH_ANNOTATION] = "hard"
    return Change(app, chosen, annotations, deploy, list(policy.problems))


def plan_clear(
    app: LiveApp, registry: Registry, *, alias: str | None, only_if: str | None
) -> Change | str:
    """The change that restores what the recorded set replaced, or why nothing is to be done."""
    records = app.records()
    if alias is None:
        if not records:
            return f"{app.where}: no branch deploy recorded; nothing to clear"
        if len(records) > 1:
            raise ConfigError(
                f"{app.where} has branch deploys for several aliases "
                f"({', '.join(sorted(records))}): pass --alias NAME"
            )
        alias = next(iter(records))
    record = records.pop(alias, None)
    if record is None:
        return f"{app.where}: no branch deploy recorded for alias {alias!r}; nothing to clear"
    rule_key = f"{PREFIX}{_option_alias(alias)}.allow-tags"
    if only_if is not None and app.annotations.get(rule_key) != normalize_rule(only_if):
        return (
            f"{app.where}: alias {alias!r} deploys {app.annotations.get(rule_key)!r} "
            f"(set by {record.get('by', '?')}), not {normalize_rule(only_if)!r}; left as it is"
        )
    previous = record.get("previous") or {}
    keys = {
        "allow-tags": f"{_option_alias(alias)}.allow-tags",
        "update-strategy": f"{_option_alias(alias)}.update-strategy",
        IMAGE_LIST: IMAGE_LIST,
    }
    annotations: dict[str, str | None] = {
        PREFIX + keys[option]: previous[option] for option in keys if option in previous
    }
    annotations[RECORD_ANNOTATION] = _record_text(records) if records else None
    annotations[REFRESH_ANNOTATION] = "hard"
    after = _with(app.annotations, annotations)
    deploy = None
    policy = next(
        (p for p in parse_policies(merge_sources(after, app.parameter)) if p.alias == alias), None
    )
    if policy is None:
        return Change(app, alias, annotations, None)
    try:
        deploy = select(policy, registry, app.where)
    except (ConfigError, ResolveError) as error:
        # Still cleared: the rule before the branch deploy is what the app should have again.
        return Change(app, alias, annotations, None, instead=f"nothing deploys: {error}")
    return Change(app, alias, annotations, deploy)


def _with(annotations: Mapping[str, str], changes: Mapping[str, str | None]) -> dict[str, str]:
    after = dict(annotations)
    for key, value in changes.items():
        if value is None:
            after.pop(key, None)
        else:
            after[key] = value
    return after


def _policy_for(
    annotations: Mapping[str, str], parameter: Mapping[str, str], alias: str, where: str
) -> ImagePolicy:
    # The render's own reading, typo checks included: what it would refuse is refused here.
    for policy in policies_from(annotations, parameter):
        if policy.alias == alias:
            return policy
    raise ConfigError(f"{where}: image-list defines no alias {alias!r}")  # pragma: no cover


def _record_text(records: Mapping[str, Any]) -> str:
    return json.dumps(records, sort_keys=True, separators=(",", ":"))


def apply(api: ApplicationApi, change: Change) -> LiveApp:
    """Write `change` in one merge patch guarded by the resourceVersion read.

    A 409 means the Application changed since it was read. If what changed is only Argo CD's
    bookkeeping (status, the refresh annotation), the same change is written again on a fresh
    read; if the branch deploy itself changed, someone else won and nothing is written."""
    from cmp.argocd.kube import KubeApiError

    app = change.app
    current = app
    for _ in range(PATCH_ATTEMPTS):
        patch = {
            "metadata": {
                "resourceVersion": current.resource_version,
                "annotations": change.annotations,
            }
        }
        try:
            return LiveApp.from_object(api.patch_application(app.namespace, app.name, patch))
        except KubeApiError as error:
            if error.status != 409:
                raise
        current = read(api, app.namespace, app.name)
        if current.branch_state() != app.branch_state():
            raise ConflictError(_conflict_message(app, current, change.alias))
    raise ConflictError(
        f"{app.where} kept changing ({PATCH_ATTEMPTS} writes refused as stale); try again"
    )


def _conflict_message(before: LiveApp, now: LiveApp, alias: str) -> str:
    record = now.records().get(alias)
    who = f" by {record.get('by')} at {record.get('at')}" if record else ""
    rule = now.annotations.get(f"{PREFIX}{_option_alias(alias)}.allow-tags")
    return (
        f"{before.where}: its branch deploy changed since it was read{who} "
        f"(alias {alias!r} now allows {rule!r}); run `tagpin branch status` and try again"
    )


# --- status ---------------------------------------------------------------------------------


def running_images(app: LiveApp) -> list[str]:
    images = _mapping(app.status.get("summary")).get("images")
    return [str(image) for image in images] if isinstance(images, list) else []


def is_running(app: LiveApp, digest: str) -> bool:
    return any(image.endswith("@" + digest) for image in running_images(app))


def status_rows(app: LiveApp, registry_for: Callable[[], Registry]) -> list[dict[str, Any]]:
    """One row per image-list entry: its rule, where it comes from, what it selects and runs.
    Annotations a render refuses (a misspelt key) put the render's error in every row (or in
    one row without an alias or image, when there is no image-list to show). An Application
    whose record or rules cannot be read gets one row saying why: in a namespace-wide status,
    one team's broken annotation never hides the other teams' rows."""
    running = running_images(app)
    sync = str(_mapping(app.status.get("sync")).get("status") or "Unknown")
    health = str(_mapping(app.status.get("health")).get("status") or "Unknown")
    try:
        records = app.records()
        lenient = app.policies()
    except ConfigError as error:
        return [_app_error_row(app, str(error), running, sync, health)]
    try:
        policies, refused = policies_from(app.annotations, app.parameter), None
    except ConfigError as error:  # the render's own checks: it would fail with this
        policies, refused = lenient, f"{REFUSED}{error}"
    if refused is not None and not policies:
        return [_app_error_row(app, refused, running, sync, health)]
    rows: list[dict[str, Any]] = []
    for policy in policies:
        record = records.get(policy.alias or "") or {}
        row: dict[str, Any] = {
            "app": f"{app.namespace}/{app.name}",
            "alias": policy.alias,
            "image": policy.image,
            "allowTags": policy.allow_tags,
            "strategy": policy.strategy,
            "source": policy.source,
            "tag": None,
            "digest": None,
            "error": None,
            "running": [i for i in running if policy.matches_repository(i)],
            "sync": sync,
            "health": health,
            "setBy": record.get("by"),
            "setAt": record.get("at"),
        }
        if refused is not None:
            row["error"] = refused
            rows.append(row)
            continue
        try:
            deploy = select(policy, registry_for(), app.where)
            row["tag"], row["digest"] = deploy.tag, deploy.digest
        except (ConfigError, ResolveError) as error:
            row["error"] = str(error)
        rows.append(row)
    return rows


def _app_error_row(
    app: LiveApp, error: str, running: list[str], sync: str, health: str
) -> dict[str, Any]:
    keys = ("alias", "image", "allowTags", "strategy", "source", "tag", "digest")
    return {
        "app": f"{app.namespace}/{app.name}",
        **dict.fromkeys(keys),
        "error": error,
        "running": running,
        "sync": sync,
        "health": health,
        "setBy": None,
        "setAt": None,
    }


def branch_apps(api: ApplicationApi, namespace: str) -> tuple[list[LiveApp], list[str]]:
    """Every Application in `namespace` with an image-list (annotation or parameter), and a
    warning for each one the API server holds but tagpin cannot read (left out)."""
    listed = api.list_applications(namespace)
    apps = [LiveApp.from_object(document) for document in listed]
    warnings = [
        f"Application {skipped.describe(namespace)} cannot be read ({skipped.problem}); "
        "left out of this status"
        for skipped in listed.unreadable
    ]
    return [app for app in apps if IMAGE_LIST in app.merged()], warnings
