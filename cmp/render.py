"""Jinja2 templates → YAML text, in a sandbox, with errors as `file:line: message`.

Templates come from repositories many people can push to while the sidecar holds AWS
credentials, so they run in Jinja2's immutable sandbox with a context that holds only what a
render needs: no process environment beyond ARGOCD_ENV_*, no file outside the repository,
no Python internals, no randomness or clock (output must be deterministic).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from .errors import Problems, SourceError, TemplateError
from .request import KubeInfo
from .sources import AppSource, Limits, RepoFiles, TemplateFile

MAX_REPEAT = 1_000_000  # longest string/list a template may build with `*`
MAX_POWER = 10_000
MAX_INT_BITS = 100_000  # largest integer `*`/`**` may build; far beyond any real manifest value


class RenderedFile(NamedTuple):
    name: str  # repository-relative path of the template
    text: str


class Tree(dict[str, Any]):
    """A mapping that knows its own dotted path, so undefined lookups say which value."""

    __slots__ = ("_tagpin_path",)

    def __init__(self, items: Mapping[str, Any], path: str) -> None:
        super().__init__(items)
        self._tagpin_path = path


def tree(value: Any, path: str) -> Any:
    if isinstance(value, Mapping):
        return Tree({k: tree(v, f"{path}.{k}") for k, v in value.items()}, path)
    if isinstance(value, list):
        return [tree(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


class KubeCapabilities:
    """The `kube` template variable: the destination cluster's version and APIs."""

    def __init__(self, info: KubeInfo) -> None:
        self.version = info.version
        parts = (info.version.split(".") + ["", ""])[:2]
        self.major, self.minor = parts[0], parts[1]
        self.api_versions = info.api_versions
        self._apis = frozenset(info.api_versions)

    def has(self, api: str) -> bool:
        """`kube.has("batch/v1/CronJob")` or `kube.has("batch/v1")`, like Helm's APIVersions.Has."""
        return api in self._apis


class TemplateAbort(Exception):
    """Raised by `required`/`fail` inside a template; carries the author's message."""


def _jinja() -> Any:
    # Imported here: an app with no .j2 files never pays for Jinja2.

    import jinja2
    import jinja2.sandbox

    return jinja2, jinja2.sandbox


def build_environment(files: RepoFiles, app_dir: Path, limits: Limits,
                      bytecode_dir: Path | None = None) -> Any:
    # Imported here: an app with no .j2 files never pays for Jinja2 (or these).
    import base64
    import hashlib
    import json

    import jinja2
    import jinja2.loaders
    from jinja2 import sandbox

    class RepoLoader(jinja2.BaseLoader):
        """Finds templates relative to the app directory first, then the repository root."""

        def get_source(
            self, environment: Any, template: str
        ) -> tuple[str, str, Callable[[], bool]]:
            pieces = jinja2.loaders.split_template_path(template)  # refuses '..'
            for base in (app_dir, files.root):
                candidate = Path(base, *pieces)
                if os.path.isfile(candidate):
                    text = files.read_text(candidate)  # refuses paths resolving outside
                    return text, files.display(candidate), lambda: True
            raise jinja2.TemplateNotFound(template)

    class StrictTreeUndefined(jinja2.StrictUndefined):
        __slots__ = ()

        @property
        def _undefined_message(self) -> str:
            owner = self._undefined_obj
            # A hint is the sandbox's own reason (an unsafe attribute): keep it.
            if isinstance(owner, Tree) and not self._undefined_hint:
                return f"{owner._tagpin_path}.{self._undefined_name} is not defined"
            return str(super()._undefined_message)

    class TagpinSandbox(sandbox.ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset(["*", "**"])

        def getattr(self, obj: Any, attribute: str) -> Any:
            # `values.items` means the key "items", not dict.items: values are data.
            if isinstance(obj, dict) and attribute in obj:
                return obj[attribute]
            return super().getattr(obj, attribute)

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            if operator == "**" and isinstance(right, int) and abs(right) > MAX_POWER:
                raise sandbox.SecurityError(f"exponent {right} is too large")
            # Small operands can still build huge integers: (10**10000) ** 10000 takes minutes.
            if (
                isinstance(left, int)
                and isinstance(right, int)
                and _int_bits(operator, left, right) > MAX_INT_BITS
            ):
                raise sandbox.SecurityError(
                    f"the result of {operator} would exceed {MAX_INT_BITS} bits"
                )
            if operator == "*":
                for seq, count in ((left, right), (right, left)):
                    if (
                        isinstance(seq, (str, list, tuple))
                        and isinstance(count, int)
                        and len(seq) * count > MAX_REPEAT
                    ):
                        raise sandbox.SecurityError(
                            f"repeating a sequence {count} times exceeds {MAX_REPEAT} items"
                        )
            return super().call_binop(context, operator, left, right)

    env = TagpinSandbox(
        loader=RepoLoader(),
        undefined=StrictTreeUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=lambda value: "" if value is None else value,
        auto_reload=False,
        cache_size=-1,
        bytecode_cache=_bytecode_cache(jinja2, bytecode_dir),
    )
    for unsafe in ("lipsum",):  # random text would make output non-deterministic
        env.globals.pop(unsafe, None)
    env.filters.pop("random", None)

    def required(value: Any, message: str = "a required value is missing") -> Any:
        if isinstance(value, jinja2.Undefined) or value is None or value == "":
            raise TemplateAbort(message)
        return value

    def fail(message: str) -> None:
        raise TemplateAbort(message)

    from .emit import emit_value, quote_scalar
    from .yamlread import load_one

    env.filters.update(
        to_yaml=emit_value,
        to_json=lambda v: json.dumps(v, sort_keys=True, ensure_ascii=False, separators=(",", ":")),
        from_yaml=lambda text: load_one(str(text), "from_yaml", max_nodes=limits.max_yaml_nodes),
        from_json=lambda text: json.loads(str(text)),
        b64encode=lambda v: base64.b64encode(_bytes(v)).decode("ascii"),
        b64decode=lambda v: base64.b64decode(_bytes(v), validate=True).decode("utf-8"),
        sha256=lambda v: hashlib.sha256(_bytes(v)).hexdigest(),
        quote=quote_scalar,
        nindent=lambda v, width=2: "\n" + _indent(str(v), width),
        required=required,
    )
    env.globals.update(required=required, fail=fail)
    return env


def _int_bits(operator: str, left: int, right: int) -> int:
    """An upper bound on the size in bits of `left <operator> right` for integers."""
    if operator == "*":
        return left.bit_length() + right.bit_length()
    if right <= 0 or abs(left) <= 1:
        return 1
    return left.bit_length() * right


def _bytecode_cache(jinja2: Any, directory: Path | None) -> Any:
    """Compiled templates kept between renders (Argo CD starts a process per render, and
    compiling is a good part of a small app's time). Jinja2 loads them with marshal, so only a
    directory that this user alone can write is trusted; any I/O problem just means no cache.
    The directory name carries tagpin's version, because compiled code depends on the
    environment's options, which Jinja2 does not put in its cache key."""
    if directory is None:
        return None
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        info = os.stat(directory)
    except OSError:
        return None
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        return None

    class QuietBytecodeCache(jinja2.FileSystemBytecodeCache):
        def load_bytecode(self, bucket: Any) -> None:
            try:
                super().load_bytecode(bucket)
            except Exception:  # noqa: BLE001 - a damaged entry is a miss, never an error
                bucket.reset()

        def dump_bytecode(self, bucket: Any) -> None:
            with contextlib.suppress(OSError):  # read-only or full: the render goes on uncached
                super().dump_bytecode(bucket)

    return QuietBytecodeCache(str(directory))


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


def _indent(text: str, width: int) -> str:
    pad = " " * width
    return "\n".join(pad + line if line else line for line in text.split("\n"))


def build_context(
    values: Mapping[str, Any],
    app: Mapping[str, Any],
    env: Mapping[str, str],
    params: Mapping[str, Any],
    kube: KubeInfo,
) -> dict[str, Any]:
    return {
        "values": tree(values, "values"),
        "app": tree(app, "app"),
        "env": tree(dict(env), "env"),
        "params": tree(dict(params), "params"),
        "kube": KubeCapabilities(kube),
    }


def render_all(
    source: AppSource, app_dir: Path, context: Mapping[str, Any], limits: Limits,
    bytecode_dir: Path | None = None,
) -> list[RenderedFile]:
    """Render every template; report every failing file, not only the first."""
    problems = Problems()
    rendered: list[RenderedFile] = []
    environment = None
    budget = limits.max_output_bytes
    for template in source.templates:
        try:
            if template.is_jinja:
                if environment is None:
                    environment = build_environment(source.files, app_dir, limits,
                                                    bytecode_dir)
                text = render_one(environment, template, context, budget)
            else:
                text = source.files.read_text(template.path)
        except (SourceError, TemplateError) as exc:
            problems.add(exc)
            continue
        budget -= len(text)
        if budget < 0:
            problems.add(
                SourceError(
                    f"{template.name}: the rendered output exceeds {limits.max_output_bytes} bytes "
                    "(TAGPIN_MAX_OUTPUT_BYTES)"
                )
            )
            break
        rendered.append(RenderedFile(name=template.name, text=text))
    problems.raise_if_any()
    return rendered


def render_one(
    environment: Any, template: TemplateFile, context: Mapping[str, Any], budget: int
) -> str:
    jinja2, sandbox = _jinja()
    try:
        compiled = environment.get_template(template.app_name)
        chunks: list[str] = []
        size = 0
        for chunk in compiled.generate(context):
            size += len(chunk)
            if size > budget:
                raise TemplateError(
                    f"{template.name}: the rendered output exceeds the output limit "
                    "(TAGPIN_MAX_OUTPUT_BYTES); is a loop running away?"
                )
            chunks.append(chunk)
        return "".join(chunks)
    except jinja2.TemplateSyntaxError as exc:
        where = f"{exc.filename or template.name}:{exc.lineno}"
        raise TemplateError(f"{where}: template syntax error: {exc.message}") from None
    except jinja2.TemplateNotFound as exc:
        line = _template_line(template.name)
        raise TemplateError(
            f"{line}: template {exc.name!r} not found in the app directory or the repository "
            "(paths are relative to the app directory or the repository root; '..' is not allowed)"
        ) from None
    except SourceError as exc:
        raise TemplateError(f"{_template_line(template.name)}: {exc}") from None
    except TemplateAbort as exc:
        raise TemplateError(f"{_template_line(template.name)}: {exc}") from None
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"{_template_line(template.name)}: {exc.message}") from None
    except sandbox.SecurityError as exc:
        raise TemplateError(
            f"{_template_line(template.name)}: not allowed in a template: {exc}"
        ) from None
    except RecursionError:
        raise TemplateError(
            f"{_template_line(template.name)}: templates include each other endlessly"
        ) from None
    except TemplateError:
        raise
    except MemoryError:
        raise TemplateError(
            f"{_template_line(template.name)}: the template needs more memory than tagpin "
            "allows (TAGPIN_MAX_MEMORY_MB); is it building a huge string or list?"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any error raised by template code is the template's
        raise TemplateError(
            f"{_template_line(template.name)}: {type(exc).__name__}: {exc}"
        ) from None


def _template_line(default_name: str) -> str:
    """`file:line` of the innermost template frame of the exception being handled."""
    import traceback

    frames: Iterable[Any] = traceback.extract_tb(sys.exc_info()[2])
    where = default_name
    for frame in frames:
        name = frame.filename
        if name.endswith((".j2", ".yaml", ".yml", ".json")) and not name.endswith(".py"):
            where = f"{name}:{frame.lineno}"
    return where
