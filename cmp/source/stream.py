"""A manifest stream read into checked Kubernetes objects: `tagpin pin`'s first stage, where an
app's is rendering it (cmp/source/render.py).

Any YAML or JSON stream goes: `helm template ... | tagpin pin -`, Helm's post-renderer,
`kustomize build | tagpin pin -`. Its objects are checked as a render's are, so for the same
objects `tagpin pin` prints what `tagpin generate` prints.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from cmp.errors import ConfigError, ManifestError, SourceError
from cmp.output import Output
from cmp.request import ManifestStream, StreamInput
from cmp.source.appdir import AppConfig, Limits, RepoFiles, decode, load_config, unreadable
from cmp.source.manifests import Manifest, check_documents
from cmp.source.render import unterminated_blocks
from cmp.source.templates import RenderedFile
from cmp.source.yamlread import load_all

STDIN = "-"
STDIN_NAME = "<stdin>"


def read_inputs(paths: Sequence[str], stdin: IO[bytes], max_bytes: int) -> tuple[StreamInput, ...]:
    """Every FILE (or `-`, standard input, once), each at most TAGPIN_MAX_FILE_BYTES."""
    if sum(1 for path in paths if path == STDIN) > 1:
        raise ConfigError("standard input (`-`) can be read only once")
    inputs: list[StreamInput] = []
    for path in paths or [STDIN]:
        if path == STDIN:
            data = stdin.read(max_bytes + 1)
            name = STDIN_NAME
        else:
            name = path
            try:
                with open(path, "rb") as handle:  # a pipe (`<(helm template ...)`) is fine
                    data = handle.read(max_bytes + 1)
            except OSError as exc:
                raise unreadable(path, exc) from None
        if len(data) > max_bytes:
            raise SourceError(f"{name}: larger than {max_bytes} bytes (TAGPIN_MAX_FILE_BYTES)")
        inputs.append(StreamInput(name, decode(data, name)))
    return tuple(inputs)


def read_stream(
    stream: ManifestStream, *, default_namespace: str, max_nodes: int, output: Output
) -> list[Manifest]:
    """Objects from every input, checked as a render's are. No objects at all is no error here:
    a filter given nothing prints nothing (a chart with every part disabled), while `generate`
    still refuses an empty render, which Argo CD would read as "prune everything"."""

    def parsed() -> Iterator[tuple[str, Any]]:
        for item in stream.inputs:
            try:
                yield item.name, _documents(item, max_nodes, output.warnings)
            except SourceError as exc:
                yield item.name, ManifestError(*exc.problems)

    manifests = check_documents(parsed(), default_namespace=default_namespace, allow_empty=True)
    files = [RenderedFile(item.name, item.text) for item in stream.inputs]
    output.warn(*unterminated_blocks(files))
    if not manifests:
        output.note("the input holds no Kubernetes objects; printed none")
    return manifests


def _documents(item: StreamInput, max_nodes: int, warnings: list[str]) -> list[tuple[int, Any]]:
    if item.text.lstrip().startswith(("{", "[")):
        return json_documents(item.text, item.name, max_nodes)
    return load_all(item.text, item.name, max_nodes=max_nodes, warnings=warnings)


def json_documents(text: str, name: str, max_nodes: int) -> list[tuple[int, Any]]:
    """One JSON value or several in a row (`kubectl get -o json`, `jq -c`), with start lines,
    under the bounds of cmp/jsonread.py; what Argo CD cannot apply (NaN, a number beyond a
    float, a key given twice) is refused with its path."""
    from cmp.jsonread import JsonError, TooManyNodes, load_stream

    try:
        return load_stream(text, max_nodes=max_nodes)
    except JsonError as exc:
        where = f"{name}:{exc.line}" if exc.line else name
        limit = " (TAGPIN_MAX_YAML_NODES)" if isinstance(exc, TooManyNodes) else ""
        raise SourceError(f"{where}: invalid JSON: {exc.message}{limit}") from None


def read_config(path: Path) -> AppConfig:
    """`--config tagpin.yaml`: the file an app directory would have (its `images` settings
    apply to the stream)."""
    directory = Path(os.path.abspath(path)).parent
    return load_config(RepoFiles(directory, directory, Limits()), Path(os.path.abspath(path)))
