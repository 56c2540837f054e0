"""Kubernetes objects parsed from the rendered YAML stream, with where each came from."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from cmp.errors import ManifestError, Problems, SourceError
from cmp.source.emit import emit_value
from cmp.source.yamlread import load_all

if TYPE_CHECKING:
    from cmp.source.templates import RenderedFile


class Manifest:
    """One Kubernetes object and its provenance.

    `body` is the object itself (plain dicts/lists/scalars), rewritten in place when images are
    pinned; `source` is the repository-relative path of the template file that produced it,
    `line` the 1-based line in that file's rendered output where the document starts. Compared
    by identity: two equal bodies from two files are two objects.
    """

    __slots__ = ("body", "line", "source")

    def __init__(self, body: dict[str, Any], source: str, line: int = 1) -> None:
        self.body = body
        self.source = source
        self.line = line

    def __repr__(self) -> str:
        return f"Manifest({self.describe()})"

    @property
    def api_version(self) -> str:
        return str(self.body.get("apiVersion", ""))

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", ""))

    @property
    def group(self) -> str:
        """API group: `apps` for `apps/v1`, `` for the core `v1`."""
        api_version = self.api_version
        return api_version.rsplit("/", 1)[0] if "/" in api_version else ""

    @property
    def name(self) -> str:
        metadata = self.body.get("metadata")
        return str(metadata.get("name", "")) if isinstance(metadata, dict) else ""

    @property
    def namespace(self) -> str:
        metadata = self.body.get("metadata")
        return str(metadata.get("namespace") or "") if isinstance(metadata, dict) else ""

    def describe(self) -> str:
        """`Deployment/web in templates/web.yaml:3` — how messages name an object."""
        return f"{self.kind}/{self.name} in {self.source}:{self.line}"


def parse_rendered(
    files: Iterable[RenderedFile],
    *,
    default_namespace: str,
    max_nodes: int,
    warnings: list[str] | None = None,
) -> list[Manifest]:
    """Parse every rendered file into Kubernetes objects and check them; report every problem.

    Empty documents are skipped (a template may render nothing); `*List` objects are
    flattened into their items, as Argo CD does; an app that renders no object at all is an
    error, because Argo CD would read empty output as "delete everything". A key given twice
    with the same value is a warning in `warnings` (without it, an error).
    """

    def parsed() -> Iterator[tuple[str, list[tuple[int, Any]] | ManifestError]]:
        for rendered in files:
            found: list[str] | None = None if warnings is None else []
            try:
                documents = load_all(
                    rendered.text, rendered.name, max_nodes=max_nodes, warnings=found
                )
            except SourceError as exc:
                problems = [_in_template(p, rendered) for p in exc.problems]
                if rendered.locate is None and _plain_with_braces(rendered):
                    from cmp.source.plainfiles import rename_hint

                    problems.append(rename_hint(rendered.name))
                yield rendered.name, ManifestError(*problems)
                continue
            if found and warnings is not None:
                warnings.extend(_in_template(line, rendered) for line in found)
            yield rendered.name, documents

    return check_documents(parsed(), default_namespace=default_namespace)


def check_documents(
    sources: Iterable[tuple[str, list[tuple[int, Any]] | ManifestError]],
    *,
    default_namespace: str,
    allow_empty: bool = False,
) -> list[Manifest]:
    """Objects from already parsed documents ((source name, [(line, document)]) or the
    source's parse error), checked as `parse_rendered` describes. `allow_empty` is for filters
    (`tagpin pin`): given no objects, they print none."""
    problems = Problems()
    manifests: list[Manifest] = []
    for name, documents in sources:
        if isinstance(documents, ManifestError):
            problems.add(documents)
            continue
        for line, document in documents:
            if document is None:
                continue
            for body in _flatten(document):
                manifest = Manifest(body=body, source=name, line=line)
                problem = _check_object(body, manifest)
                if problem:
                    problems.add(ManifestError(problem))
                else:
                    manifests.append(manifest)
    problems.raise_if_any()
    _check_duplicates(manifests, default_namespace)
    if not manifests and not allow_empty:
        raise ManifestError(
            "the app rendered no Kubernetes objects; refusing to print an empty stream, which "
            "Argo CD would read as 'delete every resource of this app'"
        )
    return manifests


def _plain_with_braces(rendered: RenderedFile) -> bool:
    """A plain file (copied, not rendered) whose invalid YAML may be unquoted Jinja2."""
    from cmp.source.plainfiles import may_hold_jinja

    return rendered.name.endswith((".yaml", ".yml", ".json")) and may_hold_jinja(rendered.text)


def _in_template(problem: str, rendered: RenderedFile) -> str:
    """`file:12:5: …` about rendered text → the template line that wrote it (a loop or an
    include above the fault shifts the rendered lines), keeping the rendered line too."""
    prefix = re.match(re.escape(rendered.name) + r":(\d+)(?::(\d+))?: ", problem)
    if prefix is None or rendered.locate is None:
        return problem
    line, column = int(prefix[1]), int(prefix[2] or 1)
    where = rendered.locate(line, column)
    if where is None:
        return problem
    shown = f"line {line}" + (f", column {column}" if prefix[2] else "")
    return f"{where}: {problem[prefix.end() :]} (rendered {shown})"


def _flatten(document: Any) -> list[Any]:
    if (
        isinstance(document, dict)
        and str(document.get("kind", "")).endswith("List")
        and isinstance(document.get("items"), list)
    ):
        return list(document["items"])
    return [document]


def _check_object(body: Any, manifest: Manifest) -> str | None:
    where = f"{manifest.source}:{manifest.line}"
    if not isinstance(body, dict):
        kind = "a list" if isinstance(body, list) else f"the value {body!r}"[:80]
        return f"{where}: expected a Kubernetes object (a mapping), found {kind}"
    kind_name = body["kind"] if isinstance(body.get("kind"), str) and body["kind"] else "object"
    metadata = body.get("metadata")
    fields = [("apiVersion", body.get("apiVersion")), ("kind", body.get("kind"))]
    if isinstance(metadata, dict) and not metadata.get("generateName"):
        fields.append(("metadata.name", metadata.get("name")))
    # `name: y` or `apiVersion: 1` parse as a bool/number: say so rather than "lacks".
    for field_name, value in fields:
        if value not in (None, "") and not isinstance(value, str):
            return (
                f"{where}: {kind_name} {field_name} must be a string, found "
                f"{emit_value(value)} (quote it)"
            )
    missing = [key for key in ("apiVersion", "kind") if not body.get(key)]
    if not isinstance(metadata, dict):
        missing.append("metadata")
    elif not (isinstance(metadata.get("name"), str) and metadata["name"]) and not (
        isinstance(metadata.get("generateName"), str) and metadata["generateName"]
    ):
        missing.append("metadata.name")
    if missing:
        return f"{where}: {kind_name} lacks {', '.join(missing)}"
    return None


def _check_duplicates(manifests: list[Manifest], default_namespace: str) -> None:
    seen: dict[tuple[str, str, str, str], Manifest] = {}
    problems: list[str] = []
    for manifest in manifests:
        if not manifest.name:
            continue  # generateName objects are unique by construction
        key = (
            manifest.group,
            manifest.kind,
            manifest.namespace or default_namespace,
            manifest.name,
        )
        first = seen.get(key)
        if first is None:
            seen[key] = manifest
            continue
        group = f"{manifest.group}/" if manifest.group else ""
        namespace = f" in namespace {key[2]}" if key[2] else ""
        problems.append(
            f"{group}{manifest.kind} {manifest.name!r}{namespace} is defined twice: "
            f"{first.source}:{first.line} and {manifest.source}:{manifest.line}"
        )
    if problems:
        raise ManifestError(*problems)
