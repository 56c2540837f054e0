"""values.schema.json: a JSON Schema for an app's values, checked as Helm checks a chart's.

The schema sits next to values.yaml and is checked against the values a template sees: every
values file and the `values` parameter layered. Each error names the key path, the rule that
failed and the layer the value came from, so a typo in `values-prod.yaml` or in a `--set` is
found before anything renders. jsonschema is imported only when an app has a schema.

The schema comes from the repository, so it may not reach anything else: `$ref` resolves
inside the schema file only (no network, no other file).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cmp.errors import ConfigError, SourceError
from cmp.jsonread import JsonError, loads
from cmp.source.appdir import RepoFiles
from cmp.source.values import split_key

PARAMETER_LAYER = "plugin parameter 'values'"
MAX_ERRORS = 20  # a schema that rejects everything should not flood Argo CD's UI
MAX_SHOWN = 80  # characters of a value or rule quoted in a message


def check_values(
    files: RepoFiles,
    schema_path: Path,
    layers: Sequence[tuple[str, Any]],
    assignments: Mapping[str, str],
    values: Any,
    *,
    assigned_by: str = PARAMETER_LAYER,
) -> None:
    """Raise a ConfigError listing every way `values` breaks the schema at `schema_path`.

    `layers` are the values files (shown name, values) lowest first and `assignments` the
    `values` parameter (named `assigned_by`: `--set` at the CLI), applied last; they only say
    where a failing value came from."""
    shown = files.display(schema_path)
    try:
        _check(files, schema_path, shown, layers, assignments, values, assigned_by)
    except RecursionError:
        # jsonschema recurses per level of schema and value (both bounded by MAX_NESTING, but
        # a few frames each) and a `$ref` may lead back to itself without consuming any value.
        raise ConfigError(
            f"{shown}: the schema refers to itself endlessly, or schema and values together nest "
            "too deeply to check"
        ) from None


def _check(
    files: RepoFiles,
    schema_path: Path,
    shown: str,
    layers: Sequence[tuple[str, Any]],
    assignments: Mapping[str, str],
    values: Any,
    assigned_by: str,
) -> None:
    schema = _load(files, schema_path, shown)
    from jsonschema import validators  # type: ignore[import-untyped,unused-ignore]
    from jsonschema.exceptions import SchemaError  # type: ignore[import-untyped,unused-ignore]
    from referencing import Registry
    from referencing.exceptions import Unresolvable

    checker_class = validators.validator_for(schema, default=validators.Draft7Validator)
    try:
        checker_class.check_schema(schema)
    except SchemaError as exc:
        where = _path(exc.absolute_path, "")
        raise ConfigError(
            f"{shown}: not a valid JSON Schema ({checker_class.__name__}): "
            f"{where + ': ' if where else ''}{_clip(exc.message)}"
        ) from None
    # An empty registry: no remote or file retrieval, whatever a $ref says.
    checker = checker_class(schema, registry=Registry())
    provenance = Provenance(layers, assignments, assigned_by)
    try:
        errors = sorted(checker.iter_errors(values), key=_error_order)
    except Unresolvable as exc:
        raise ConfigError(
            f"{shown}: cannot follow $ref {_clip(str(exc.ref))}: references "
            "must point inside the schema file (e.g. #/definitions/port)"
        ) from None
    problems: list[str] = []
    for error in _leaves(errors):
        problems.extend(_describe(error, shown, provenance))
    if problems:
        if len(problems) > MAX_ERRORS:
            problems = problems[:MAX_ERRORS] + [f"{shown}: … and {len(problems) - MAX_ERRORS} more"]
        raise ConfigError(*problems)


def _load(files: RepoFiles, path: Path, shown: str) -> Any:
    try:
        text = files.read_text(path)  # inside the repository, within the size limit
    except SourceError as exc:
        raise ConfigError(*exc.problems) from None
    try:
        schema = loads(text)
    except JsonError as exc:
        where = f"{shown}:{exc.line}" if exc.line else shown
        raise ConfigError(f"{where}: not valid JSON: {exc.message}") from None
    if not isinstance(schema, dict | bool):
        raise ConfigError(f"{shown}: a JSON Schema is an object (or true/false)")
    return schema


class Provenance:
    """Which layer last set a key path: the `values` parameter, else the last values file."""

    def __init__(
        self,
        layers: Sequence[tuple[str, Any]],
        assignments: Mapping[str, str],
        assigned_by: str = PARAMETER_LAYER,
    ):
        self._layers = layers
        self._assigned_by = assigned_by
        self._assigned: list[list[str | int]] = []
        for dotted in assignments:
            try:
                self._assigned.append(split_key(dotted))
            except ValueError:
                continue  # already reported by the values layering

    def layer_of(self, path: Sequence[str | int]) -> str | None:
        steps = list(path)
        if any(_prefix(assigned, steps) or _prefix(steps, assigned) for assigned in self._assigned):
            return self._assigned_by
        for name, values in reversed(self._layers):
            if _holds(values, steps):
                layer: str = name
                return layer
        return None


def _prefix(short: list[str | int], long: list[str | int]) -> bool:
    return len(short) <= len(long) and long[: len(short)] == short


def _holds(values: Any, steps: Iterable[str | int]) -> bool:
    current = values
    for step in steps:
        in_mapping = isinstance(current, Mapping) and step in current
        in_list = isinstance(current, list) and isinstance(step, int) and 0 <= step < len(current)
        if not (in_mapping or in_list):
            return False
        current = current[step]
    return True


def _leaves(errors: Iterable[Any]) -> Iterable[Any]:
    """anyOf/oneOf failures say only "is not valid under any of the given schemas"; their
    sub-errors say why, so report those when there are any."""
    for error in errors:
        if error.validator in ("anyOf", "oneOf") and error.context:
            yield min(error.context, key=lambda e: (-len(e.absolute_path), _error_order(e)))
        else:
            yield error


def _describe(error: Any, shown: str, provenance: Provenance) -> list[str]:
    path = list(error.absolute_path)
    rule = f"{error.validator} {_clip(json.dumps(error.validator_value, sort_keys=True))}"
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        allowed = error.schema.get("properties", {})
        patterns = error.schema.get("patternProperties", {})
        import re

        extras = [
            key
            for key in error.instance
            if key not in allowed and not any(re.search(p, str(key)) for p in patterns)
        ]
        if extras:
            known = ", ".join(sorted(map(str, allowed))) or "none"
            return [
                f"{shown}: {_path([*path, key])}: not allowed here (rule "
                f"additionalProperties false; known keys: {_clip(known)}); "
                f"{_from(provenance, [*path, key])}"
                for key in extras
            ]
    if error.validator == "required":
        return [
            f"{shown}: {_path(path)}: {_clip(error.message)} (rule required); set it in "
            "a values file or the values parameter"
        ]
    return [
        f"{shown}: {_path(path)}: {_clip(error.message)} (rule {rule}); {_from(provenance, path)}"
    ]


def _from(provenance: Provenance, path: Sequence[str | int]) -> str:
    layer = provenance.layer_of(path)
    return f"the value comes from {layer}" if layer else "no layer sets it"


def _path(steps: Iterable[Any], root: str = "values") -> str:
    text = root
    for step in steps:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else str(step))
    return text


def _error_order(error: Any) -> tuple[str, str]:
    return _path(error.absolute_path), str(error.validator)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"
