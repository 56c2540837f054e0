"""Jinja2 templates → YAML text, in a sandbox, with errors as `file:line: message`.

Templates come from repositories many people can push to while the sidecar holds AWS
credentials, so they run in Jinja2's immutable sandbox with a context that holds only what a
render needs: no process environment beyond ARGOCD_ENV_*, no file outside the repository,
no Python internals, no randomness or clock (output must be deterministic).
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from cmp.errors import Problems, SourceError, TemplateError
from cmp.source.appdir import TEMPLATE_DIR, AppSource, Limits, RepoFiles, TemplateFile
from cmp.source.context import Tree, TreeList
from cmp.source.rendercache import TemplateLookup, find_template, lookup, render_cache

MAX_REPEAT = 1_000_000  # longest string/list a template may build with `*`
MAX_POWER = 10_000
MAX_INT_BITS = 100_000  # largest integer `*`/`**` may build; far beyond any real manifest value


TEMPLATE_NOT_FOUND = "not found in the app directory or the repository"
HELM_HINT = (
    "tagpin templates are Jinja2, not Helm's Go templates: write values.x for .Values.x, "
    "app.name for .Release.Name, {% if … %}…{% endif %} for {{ if … }}…{{ end }} "
    "(docs/guide.md)"
)
# Go-template words that Jinja2 reads as variable names (`{{ end }}`: "'end' is undefined").
_HELM_WORDS = frozenset(
    {"end", "if", "else", "range", "with", "define", "include", "template", "toYaml", "tpl"}
)
# `{{ .Values.x }}`, `{{ $x := … }}`, `{{ include "x" . }}`, `{{ toYaml .Values.x }}`.
_HELM_SYNTAX = (
    r"\{\{-?\s*(?:[.$]|(?:include|template|toYaml|tpl|end|range|with|define|else)\b"
    r"|[^}]*\s\.(?:Values|Release|Chart|Capabilities|Files)\b)"
)


class RenderedFile(NamedTuple):
    name: str  # repository-relative path of the template
    text: str
    # For a Jinja2 template: (rendered line, column) → the template `file:line` that wrote it,
    # or None if unknown. Asked only when the text has a problem (it renders again).
    locate: Callable[[int, int], str | None] | None = None


class TemplateAbort(Exception):
    """Raised by `required`/`fail` inside a template; carries the author's message."""


def _jinja() -> Any:
    # Imported here: an app with no .j2 files never pays for Jinja2.

    import jinja2
    import jinja2.sandbox

    return jinja2, jinja2.sandbox


def build_environment(
    files: RepoFiles,
    app_dir: Path,
    limits: Limits,
    bytecode_dir: Path | None = None,
    as_data: Callable[[Any], Any] | None = None,
    lookups: list[TemplateLookup] | None = None,
) -> Any:
    """The sandbox; `as_data` (if given) prepares what `to_yaml` and `to_json` write; every
    template the loader is asked for is added to `lookups` (if given)."""
    # Imported here: an app with no .j2 files never pays for Jinja2 (or these).
    import base64
    import hashlib
    import json

    import jinja2
    import jinja2.compiler
    import jinja2.loaders
    from jinja2 import sandbox
    from jinja2.utils import _PassArg

    from cmp.source.printable import TEXT_FILTERS, checked_filter, checked_join
    from cmp.source.printable import check as check_printable

    class RepoLoader(jinja2.BaseLoader):
        """Finds templates relative to the app directory first, then the repository root;
        tells `lookups` what it found."""

        def get_source(
            self, environment: Any, template: str
        ) -> tuple[str, str, Callable[[], bool]]:
            pieces = jinja2.loaders.split_template_path(template)  # refuses '..'
            found = find_template(files, app_dir, pieces)  # refuses paths resolving outside
            if lookups is not None:
                lookups.append(lookup(files, pieces, found))
            if found is None:
                raise jinja2.TemplateNotFound(template)
            path, text = found
            return text, files.display(path), lambda: True

    class StrictTreeUndefined(jinja2.StrictUndefined):
        __slots__ = ()

        @property
        def _undefined_message(self) -> str:
            owner = self._undefined_obj
            # A hint is the sandbox's own reason (an unsafe attribute): keep it.
            if isinstance(owner, Tree) and not self._undefined_hint:
                return f"{owner._tagpin_path}.{self._undefined_name} is not defined"
            return str(super()._undefined_message)

    def printable(value: Any) -> Any:
        return check_printable(value, jinja2.Undefined, jinja2.exceptions.SecurityError)

    class PrintableFormatter(sandbox.SandboxedFormatter):
        def convert_field(self, value: Any, conversion: str | None) -> Any:
            return super().convert_field(printable(value), conversion)  # `!r` and `!s` too

        def format_field(self, value: Any, format_spec: str) -> Any:
            return super().format_field(printable(value), format_spec)

    class PrintableConcat(jinja2.compiler.CodeGenerator):
        """`a ~ b` with each operand checked (Jinja2 would str() it)."""

        @jinja2.compiler.optimizeconst
        def visit_Concat(self, node: Any, frame: Any) -> None:
            self.write("str_join((" if not frame.eval_ctx.autoescape else "markup_join((")
            for argument in node.nodes:
                self.write("environment.printable(")
                self.visit(argument, frame)
                self.write("), ")
            self.write("))")

    class TagpinSandbox(sandbox.ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset(["*", "**", "%"])
        code_generator_class = PrintableConcat

        def printable(self, value: Any) -> Any:
            return printable(value)

        def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
            """Jinja2's own `str.format` wrapper, with a formatter that prints only data."""
            if super().wrap_str_format(value) is None:
                return None
            template, vformat = value.__self__, PrintableFormatter(self).vformat
            if value.__name__ == "format_map":

                def format_map(mapping: Any) -> str:
                    text: str = type(template)(vformat(template, (), mapping))
                    return text

                return format_map

            def format_(*args: Any, **kwargs: Any) -> str:
                text: str = type(template)(vformat(template, args, kwargs))
                return text

            return format_

        # The last value a lookup returned and its path (`values.image`), so a lookup into it
        # that fails can say which value it was: Jinja2 only knows "'str object' has no
        # attribute 'repository'". Only the last one: the next lookup is almost always into it.
        _tagpin_last: tuple[Any, str] = (None, "")

        def getattr(self, obj: Any, attribute: str) -> Any:
            # `values.items` means the key "items", not dict.items: values are data.
            if isinstance(obj, dict) and attribute in obj:
                return self._explained(obj, attribute, obj[attribute])
            return self._explained(obj, attribute, super().getattr(obj, attribute))

        def getitem(self, obj: Any, argument: Any) -> Any:
            return self._explained(obj, argument, super().getitem(obj, argument))

        def _explained(self, obj: Any, key: Any, result: Any) -> Any:
            if isinstance(obj, Tree):
                path = f"{obj._tagpin_path}.{key}"
            elif isinstance(obj, TreeList):
                path = f"{obj._tagpin_path}[{key}]" if isinstance(key, int) else ""
            elif obj is self._tagpin_last[0] and self._tagpin_last[1]:
                path = self._tagpin_last[1] + (f"[{key}]" if isinstance(key, int) else f".{key}")
            else:
                path = ""
            if not isinstance(result, jinja2.Undefined):
                if not isinstance(result, Tree):  # a Tree knows its own path
                    self._tagpin_last = (result, path)
                return result
            if isinstance(obj, Tree | jinja2.Undefined) or result._undefined_hint:
                return result  # "values.x.y is not defined", or the sandbox's own reason
            what = "attribute" if isinstance(key, str) else "item"
            owner = path[: -len(f".{key}")] if path.endswith(f".{key}") else ""
            if isinstance(key, int) and path.endswith(f"[{key}]"):
                owner = path[: -len(f"[{key}]")]
            # Else a loop variable or macro argument: the template's own name for it.
            owner = owner or _template_name_of(obj) or "the value"
            return self.undefined(
                hint=f"{owner} is {_describe_value(obj)}, which has no {what} {key!r}",
                obj=obj,
                name=key,
            )

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            if operator == "**" and isinstance(right, int) and abs(right) > MAX_POWER:
                raise jinja2.exceptions.SecurityError(f"exponent {right} is too large")
            # Small operands can still build huge integers: (10**10000) ** 10000 takes minutes.
            if (
                isinstance(left, int)
                and isinstance(right, int)
                and _int_bits(operator, left, right) > MAX_INT_BITS
            ):
                raise jinja2.exceptions.SecurityError(
                    f"the result of {operator} would exceed {MAX_INT_BITS} bits"
                )
            if operator == "%" and isinstance(left, str):
                printable(right)  # old-style formatting prints its operands too
            if operator == "*":
                for seq, count in ((left, right), (right, left)):
                    if (
                        isinstance(seq, (str, list, tuple))
                        and isinstance(count, int)
                        and len(seq) * count > MAX_REPEAT
                    ):
                        raise jinja2.exceptions.SecurityError(
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
        finalize=lambda value: "" if value is None else printable(value),
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

    from cmp.jsonread import loads as load_json
    from cmp.source.emit import emit_value, quote_scalar
    from cmp.source.yamlread import load_one

    data = as_data or (lambda value: value)
    env.filters.update(
        to_yaml=lambda v: emit_value(data(v)),
        to_json=lambda v: json.dumps(
            data(v), sort_keys=True, ensure_ascii=False, separators=(",", ":")
        ),
        from_yaml=lambda text: load_one(str(text), "from_yaml", max_nodes=limits.max_yaml_nodes),
        from_json=lambda text: load_json(str(text)),
        b64encode=lambda v: base64.b64encode(_bytes(v)).decode("ascii"),
        b64decode=lambda v: base64.b64decode(_bytes(v), validate=True).decode("utf-8"),
        sha256=lambda v: hashlib.sha256(_bytes(v)).hexdigest(),
        quote=quote_scalar,
        nindent=lambda v, width=2: "\n" + _indent(str(v), width),
        required=required,
    )
    env.globals.update(required=required, fail=fail)
    for name in TEXT_FILTERS:
        function = env.filters[name]
        env.filters[name] = checked_filter(
            function, printable, 0 if _PassArg.from_obj(function) is None else 1
        )
    env.filters["join"] = checked_join(env.filters["join"], printable)
    return env


def _template_name_of(value: Any) -> str | None:
    """The variable a template holds `value` in (`p` of `{% for p in … %}`, a macro's argument),
    read from the compiled template's frame (Jinja2 names its locals `l_<depth>_<name>`); None
    unless exactly one name holds it. Asked only to word an error."""
    frame = sys._getframe(1)
    for _ in range(8):  # the template frame is a few calls up (getattr → _explained → here)
        frame = frame.f_back  # type: ignore[assignment]
        if frame is None:
            return None
        template_locals = {
            found.group(1): held
            for local, held in frame.f_locals.items()
            if (found := re.fullmatch(r"l_\d+_(\w+)", local))
        }
        if template_locals:  # the template's frame
            holding = {name for name, held in template_locals.items() if held is value}
            return holding.pop() if len(holding) == 1 else None
    return None


def _describe_value(value: Any) -> str:
    """What a value is, for messages: `a string ('nginx:1.27')`, `a list of 2 items`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, str):
        shown = repr(value) if len(value) <= 40 else repr(value[:39] + "…")
        return f"a string ({shown})"
    if isinstance(value, list | tuple):
        return f"a list of {len(value)} item{'' if len(value) == 1 else 's'}"
    if isinstance(value, Mapping):
        keys = ", ".join(sorted(map(str, value))[:8])
        return f"a mapping (keys: {keys})" if keys else "an empty mapping"
    return f"a {type(value).__name__}"


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
    from cmp.source import cachedir

    if directory is None or not cachedir.trusted(directory):
        return None

    class QuietBytecodeCache(jinja2.FileSystemBytecodeCache):  # type: ignore[misc]
        def load_bytecode(self, bucket: Any) -> None:
            try:
                super().load_bytecode(bucket)
            except Exception:  # noqa: BLE001 - a damaged entry is a miss, never an error
                bucket.reset()

        def dump_bytecode(self, bucket: Any) -> None:
            with contextlib.suppress(OSError):  # read-only or full: the render goes on uncached
                super().dump_bytecode(bucket)
            # Only a new compilation adds a file: bound the directory then.
            cachedir.trim(
                Path(self.directory),
                ".cache",
                cachedir.MAX_COMPILED_TEMPLATES,
                cachedir.MAX_COMPILED_BYTES,
            )

    return QuietBytecodeCache(str(directory))


def _bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


def _indent(text: str, width: int) -> str:
    pad = " " * width
    return "\n".join(pad + line if line else line for line in text.split("\n"))


def render_all(
    source: AppSource,
    app_dir: Path,
    context: Mapping[str, Any],
    limits: Limits,
    bytecode_dir: Path | None = None,
    warnings: list[str] | None = None,
    as_data: Callable[[Any], Any] | None = None,
) -> list[RenderedFile]:
    """Render every template; report every failing file, not only the first. Jinja2 in a
    plain file is an error or a warning (added to `warnings`): see cmp/source/plainfiles.py.
    `as_data`: see build_environment. With `bytecode_dir`, the Jinja2 templates' output is
    kept there and reused while nothing they read changed (cmp/source/rendercache.py)."""
    problems = Problems()
    rendered: list[RenderedFile] = []
    environment = None
    jinja_names = [template.app_name for template in source.templates if template.is_jinja]
    cache = (
        render_cache(bytecode_dir, source.files, app_dir, jinja_names, context, limits)
        if as_data is None
        else None
    )
    kept = cache.load(2 * limits.max_output_bytes + 1024 * 1024) if cache else None
    lookups: list[TemplateLookup] | None = [] if cache and kept is None else None
    fresh: list[str] = []

    def sandbox() -> Any:
        nonlocal environment
        if environment is None:
            environment = build_environment(
                source.files, app_dir, limits, bytecode_dir, as_data, lookups
            )
        return environment

    budget = limits.max_output_bytes
    for template in source.templates:
        try:
            if template.is_jinja:
                if kept is None:
                    text = render_one(sandbox(), template, context, budget)
                else:  # the limits are part of the key: a kept text fits as it did
                    text = kept[len(fresh)]
                fresh.append(text)
            else:
                text = source.files.read_text(template.path)
                if not _declared_literal(template, source.config.literal):
                    _check_plain(template, text, warnings)
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
        locate = _locator(sandbox, template, context) if template.is_jinja else None
        rendered.append(RenderedFile(name=template.name, text=text, locate=locate))
    problems.raise_if_any()
    if cache is not None and lookups is not None:
        cache.store(fresh, lookups)
    if warnings is not None:
        plain = [t for t in source.templates if not t.is_jinja]
        warnings.extend(
            f"tagpin.yaml: templates.literal pattern {pattern!r} matches no plain file under "
            f"{TEMPLATE_DIR}/"
            for pattern in source.config.literal
            if not any(_declared_literal(template, (pattern,)) for template in plain)
        )
    return rendered


def _declared_literal(template: TemplateFile, patterns: Iterable[str]) -> bool:
    """Whether tagpin.yaml's `templates.literal` names the file (app-relative globs)."""
    if not patterns:
        return False
    from fnmatch import fnmatchcase

    return any(fnmatchcase(template.app_name, pattern) for pattern in patterns)


def _check_plain(template: TemplateFile, text: str, warnings: list[str] | None) -> None:
    """Jinja2 written for tagpin in a plain file is refused; other Jinja2 syntax is said."""
    if "{{" not in text and "{%" not in text and "{#" not in text:
        return  # nearly every plain file: not even the module is loaded
    from cmp.source.plainfiles import jinja_tags, rename_hint

    tags = jinja_tags(text)
    if not tags:
        return
    meant = [tag for tag in tags if tag.for_tagpin]
    first = (meant or tags)[0]
    more = len(meant or tags) - 1
    where = f"{template.name}:{first.line}: {first.text}" + (f" (and {more} more)" if more else "")
    if meant:
        raise SourceError(f"{where} is Jinja2 for tagpin, but {rename_hint(template.name)}")
    statements = [tag for tag in tags if not tag.expression]
    if warnings is not None and statements:
        first = statements[0]
        warnings.append(
            f"{template.name}:{first.line}: {first.text} looks like Jinja2, but "
            f"{rename_hint(template.name)}"
        )


def _locator(
    sandbox: Callable[[], Any], template: TemplateFile, context: Mapping[str, Any]
) -> Callable[[int, int], str | None]:
    def locate(line: int, column: int) -> str | None:
        from cmp.source.sourcemap import locate as find

        return find(sandbox(), template.app_name, context, line, column)

    return locate


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
        lines = (exc.source or "").splitlines()
        line = lines[exc.lineno - 1] if 0 < exc.lineno <= len(lines) else ""
        raise TemplateError(
            f"{where}: template syntax error: {exc.message}{_helm_hint(line)}"
        ) from None
    except jinja2.TemplateNotFound as exc:
        line = _template_line(template.name)
        raise TemplateError(
            f"{line}: template {exc.name!r} {TEMPLATE_NOT_FOUND} "
            "(paths are relative to the app directory or the repository root; '..' is not allowed)"
        ) from None
    except SourceError as exc:
        raise TemplateError(f"{_template_line(template.name)}: {exc}") from None
    except TemplateAbort as exc:
        raise TemplateError(f"{_template_line(template.name)}: {exc}") from None
    except jinja2.UndefinedError as exc:
        named = re.fullmatch(r"'(\w+)' is undefined", exc.message or "")
        hint = f"; {HELM_HINT}" if named and named.group(1) in _HELM_WORDS else ""
        raise TemplateError(f"{_template_line(template.name)}: {exc.message}{hint}") from None
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateError(
            f"{_template_line(template.name)}: not allowed in a template: {_no_address(exc)}"
        ) from None
    except RecursionError:
        raise TemplateError(
            f"{_template_line(template.name)}: templates include each other endlessly, or the "
            "template builds a value nested too deeply to print"
        ) from None
    except TemplateError:
        raise
    except MemoryError:
        from cmp.limits.memory import MemoryLimitExceeded

        raise MemoryLimitExceeded(
            f"{_template_line(template.name)}: the template needs more memory than tagpin "
            "allows (TAGPIN_MAX_MEMORY_MB); is it building a huge string or list?"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any error raised by template code is the template's
        raise TemplateError(
            f"{_template_line(template.name)}: {type(exc).__name__}: {_no_address(exc)}"
        ) from None


def _helm_hint(line: str) -> str:
    """A syntax error on a line written in Helm's syntax: say what the Jinja2 is."""
    return f"; {HELM_HINT}" if re.search(_HELM_SYNTAX, line) else ""


def _no_address(exc: BaseException) -> str:
    """The message without the heap addresses Python reprs carry (`<… at 0x7f…>`): some
    errors quote the object they failed on, and the address differs on every run."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", str(exc))


def _template_line(default_name: str) -> str:
    """`file:line` of the innermost template frame of the exception being handled, and the
    template lines that led there: `lib/k8s.j2:8 (called from web.yaml.j2:9)`."""
    import traceback

    frames: Iterable[Any] = traceback.extract_tb(sys.exc_info()[2])
    chain: list[tuple[str, str]] = []  # (file:line, how it was entered), outermost first
    for frame in frames:
        name = frame.filename
        if name.endswith((".j2", ".yaml", ".yml", ".json")) and not name.endswith(".py"):
            where = f"{name}:{frame.lineno}"
            # Jinja2 names a template's top-level code so; a macro's or block's otherwise.
            how = "included from" if frame.name == "top-level template code" else "called from"
            if not chain or chain[-1][0] != where:
                chain.append((where, how))
    if not chain:
        return default_name
    callers = [f"{chain[i][1]} {chain[i - 1][0]}" for i in range(len(chain) - 1, 0, -1)]
    return f"{chain[-1][0]} ({', '.join(callers)})" if callers else chain[-1][0]
