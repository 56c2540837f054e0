"""Where images live in Kubernetes objects: the built-in fields and tagpin.yaml's `images.paths`
rules, found and rewritten in place. Pure functions over values."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from enum import Enum
from functools import cache
from typing import Any, NamedTuple

from cmp.errors import ConfigError, ImageError, Problems
from cmp.images.reference import ImageRef, parse_image
from cmp.images.reference import quoted as _quoted
from cmp.source.manifests import Manifest


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
    by_kind: dict[str, list[ImagePath]] = {}  # most objects have no image rule at all
    for rule in (*BUILTIN_IMAGE_PATHS, *extra_paths):
        by_kind.setdefault(rule.kind, []).append(rule)
    found: list[ImageField] = []
    problems = Problems()
    for manifest in manifests:
        rules = by_kind.get(manifest.kind)
        if rules is None:
            continue
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
