"""`tagpin pin`: any YAML or JSON manifest stream in, the sidecar's pinned canonical YAML out.

The stream goes through the sidecar's own stages after rendering (check the objects → find
images → resolve through lock, caches, ECR and Image Updater overrides → emit), so for the
same objects `tagpin pin` prints the bytes `tagpin generate` prints. It is the pinning step
for manifests tagpin does not render itself: `helm template ... | tagpin pin -`, Helm's
post-renderer, `kustomize build | tagpin pin -`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple

from cmp.errors import ConfigError, ManifestError, SourceError
from cmp.source.appdir import Limits, decode
from cmp.source.manifests import Manifest, check_documents
from cmp.source.yamlread import load_all

if TYPE_CHECKING:
    from cmp.images.fields import ImagePath
    from cmp.pipeline import RenderResult
    from cmp.registry.base import Registry
    from cmp.request import RenderRequest
    from cmp.services import Services

STDIN = "-"
STDIN_NAME = "<stdin>"


class StreamInput(NamedTuple):
    name: str  # as messages show it: the path given, or <stdin>
    text: str


class StreamConfig(NamedTuple):
    """tagpin.yaml's `images` settings (`--config`), as an app directory would give them."""

    image_paths: tuple[ImagePath, ...] = ()
    require_digests: bool = False
    allow_unpinned: tuple[str, ...] = ()


def read_inputs(paths: Sequence[str], stdin: IO[bytes], limits: Limits) -> list[StreamInput]:
    """Every FILE (or `-`, standard input, once), each at most TAGPIN_MAX_FILE_BYTES."""
    if sum(1 for path in paths if path == STDIN) > 1:
        raise ConfigError("standard input (`-`) can be read only once")
    inputs: list[StreamInput] = []
    for path in paths or [STDIN]:
        if path == STDIN:
            data = stdin.read(limits.max_file_bytes + 1)
            name = STDIN_NAME
        else:
            name = path
            try:
                with open(path, "rb") as handle:  # a pipe (`<(helm template ...)`) is fine
                    data = handle.read(limits.max_file_bytes + 1)
            except FileNotFoundError:
                raise SourceError(f"{path}: file not found") from None
            except IsADirectoryError:
                raise SourceError(f"{path}: is a directory, expected a file") from None
            except OSError as exc:
                raise SourceError(f"{path}: cannot read: {exc.strerror}") from None
        if len(data) > limits.max_file_bytes:
            raise SourceError(
                f"{name}: larger than {limits.max_file_bytes} bytes (TAGPIN_MAX_FILE_BYTES)"
            )
        inputs.append(StreamInput(name, decode(data, name)))
    return inputs


def parse_inputs(
    inputs: Sequence[StreamInput],
    *,
    default_namespace: str,
    max_nodes: int,
    warnings: list[str] | None = None,
) -> list[Manifest]:
    """Objects from every input, checked as a render's are. No objects at all is no error here:
    a filter given nothing prints nothing (a chart with every part disabled), while `generate`
    still refuses an empty render, which Argo CD would read as "prune everything"."""

    def parsed() -> Any:
        for item in inputs:
            try:
                yield item.name, _documents(item, max_nodes, warnings)
            except SourceError as exc:
                yield item.name, ManifestError(*exc.problems)

    return check_documents(parsed(), default_namespace=default_namespace, allow_empty=True)


def _documents(
    item: StreamInput, max_nodes: int, warnings: list[str] | None
) -> list[tuple[int, Any]]:
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


def read_config(path: Path) -> StreamConfig:
    """`--config tagpin.yaml`: its `images` settings."""
    from cmp.images.fields import parse_image_paths
    from cmp.source.appdir import RepoFiles, load_config

    directory = Path(os.path.abspath(path)).parent
    config = load_config(RepoFiles(directory, directory, Limits()), Path(os.path.abspath(path)))
    return StreamConfig(
        image_paths=parse_image_paths(list(config.image_paths or []), str(path)),
        require_digests=config.require_digests,
        allow_unpinned=config.allow_unpinned,
    )


def stream_registry(
    request: RenderRequest, services: Services, lock: Path | None
) -> Callable[[], Registry]:
    """`--digests FILE` answers alone; `--lock FILE` answers first under TAGPIN_LOCK, as an
    app's tagpin.lock does; otherwise ECR behind the caches."""
    from cmp.images.lockfile import app_lock, digests_lock
    from cmp.registry.build import with_lock
    from cmp.registry.lock import lock_mode

    if services.digests_file is not None:
        return with_lock(digests_lock(services.digests_file), services.registry_factory)
    if lock is None:
        return services.registry_factory
    if not lock.is_file():  # an app may lack a lock; a lock named on the command line may not
        raise SourceError(f"--lock {lock}: no such file")
    mode = services.lock_mode or lock_mode(request.settings)
    found = app_lock(
        mode,
        lock,
        str(lock),
        fix=f"add it to {lock}, or set TAGPIN_LOCK=use to ask ECR for the tags it lacks",
    )
    return with_lock(found, services.registry_factory)


def pin_stream(
    inputs: Sequence[StreamInput],
    request: RenderRequest,
    services: Services,
    *,
    config: StreamConfig | None = None,
    lock: Path | None = None,
) -> RenderResult:
    """Check, pin and emit `inputs` as the sidecar does a rendered app's output."""
    from cmp.images.pin import ImageRules
    from cmp.pipeline import pin_and_emit, unterminated_blocks
    from cmp.services import limits_from
    from cmp.source.templates import RenderedFile

    config = config or StreamConfig()
    limits = limits_from(request.settings)
    manifests = parse_inputs(
        inputs,
        default_namespace=request.app.namespace,
        max_nodes=limits.max_yaml_nodes,
        warnings=services.warnings,
    )
    services.warnings.extend(
        unterminated_blocks([RenderedFile(item.name, item.text) for item in inputs])
    )
    if not manifests:
        services.notes.append("the input holds no Kubernetes objects; printed none")
    rules = ImageRules(config.image_paths, config.require_digests, config.allow_unpinned)
    return pin_and_emit(
        manifests, rules, request, services, stream_registry(request, services, lock)
    )
