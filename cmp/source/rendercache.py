"""Jinja2 output kept between renders, so a render whose inputs did not change neither imports
nor runs Jinja2.

Argo CD renders an app again on every refresh (a push the webhook announces, a hard refresh, a
changed parameter), mostly from the same commit; in a process of its own (without the render
server: laptops, CI), importing Jinja2 costs more than the rest of a small app's render, and a
served render still runs every template. A template's output is a pure function
of what it reads (cmp/source/templates.py: the sandbox has no clock, randomness, environment or
file outside its loader), so it is kept under a key made of everything else it depends on:

- the context (values, app, env, params, kube) as Python reprs, insertion order included
  (templates iterate in it);
- the templates rendered, in order, the app's place in the repository, the limits;
- the code that renders: Python's version, tagpin's rendering modules, Jinja2's, MarkupSafe's
  and PyYAML's, by size and modification time.

An entry also lists every template lookup the render made (includes, imports, macros' files,
the templates themselves): the name asked for and the file found with its SHA-256, or that none
was. It is used only when every lookup finds the same file with the same bytes again, so an
edited include or a new file that now shadows one is a miss. Anything else (unreadable,
oversized, damaged, in a directory others can write) is a miss too, never an error; a render
that failed is never kept. Only the Jinja2 step is skipped: the rendered text is parsed and
checked on every render as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from cmp.atomicfile import read_regular, write_atomically
from cmp.source import cachedir
from cmp.source.appdir import Limits, RepoFiles
from cmp.source.context import KubeCapabilities, Tree, TreeList

FORMAT = "tagpin-rendered-1"
SUFFIX = ".rendered.json"
MAX_ENTRIES = 2_000
MAX_BYTES = 256 * 1024 * 1024
# The modules whose code decides what a template prints (filters, checks, the sandbox).
_RENDERING_MODULES = (
    *("templates", "context", "printable", "emit", "yamlread", "yamlscalars", "rendercache"),
)


class TemplateLookup(NamedTuple):
    """One template the loader was asked for: the path pieces of its name, and the file found
    (repository-relative) with the SHA-256 of its text, or None for neither."""

    pieces: tuple[str, ...]
    found: str | None
    sha256: str | None


def find_template(
    files: RepoFiles, app_dir: Path, pieces: Sequence[str]
) -> tuple[Path, str] | None:
    """The template a name's `pieces` name, as the loader finds it: relative to the app
    directory first, then to the repository root; None if neither is a file. Raises
    SourceError for a file tagpin may not read (outside the repository, too large)."""
    for base in (app_dir, files.root):
        candidate = Path(base, *pieces)
        if os.path.isfile(candidate):
            return candidate, files.read_text(candidate)
    return None


def lookup(
    files: RepoFiles, pieces: Sequence[str], found: tuple[Path, str] | None
) -> TemplateLookup:
    if found is None:
        return TemplateLookup(tuple(pieces), None, None)
    path, text = found
    return TemplateLookup(tuple(pieces), files.display(path), _sha256(text))


class RenderCache:
    """The entry of one render: `load` gives its texts if every lookup still holds, `store`
    keeps a fresh render's."""

    def __init__(self, path: Path, files: RepoFiles, app_dir: Path, count: int) -> None:
        self.path = path
        self._files = files
        self._app_dir = app_dir
        self._count = count

    def load(self, max_bytes: int) -> list[str] | None:
        """The kept texts, one per template, or None (a miss, whatever the reason)."""
        try:
            data = read_regular(self.path, max_bytes)
            if len(data) > max_bytes:
                return None
            entry = json.loads(data)
            texts, lookups = _parsed(entry, self._count)
            for pieces, found, sha256 in lookups:
                now = lookup(self._files, pieces, find_template(self._files, self._app_dir, pieces))
                if now != (pieces, found, sha256):
                    return None
        except Exception:  # noqa: BLE001 - missing, unreadable or damaged: a miss
            return None
        return texts

    def store(self, texts: Sequence[str], lookups: Sequence[TemplateLookup]) -> None:
        entry = {
            "format": FORMAT,
            "texts": list(texts),
            "lookups": [[list(item.pieces), item.found, item.sha256] for item in lookups],
        }
        try:
            # The temporary file ends as entries do: one a killed render leaves is trimmed too.
            data = json.dumps(entry, ensure_ascii=False).encode("utf-8")
            write_atomically(self.path, data, temp_suffix=SUFFIX)
        except (OSError, ValueError):  # read-only, full, a lone surrogate: renders again
            return
        cachedir.trim(self.path.parent, SUFFIX, MAX_ENTRIES, MAX_BYTES)


def render_cache(
    directory: Path | None,
    files: RepoFiles,
    app_dir: Path,
    template_names: Sequence[str],
    context: Mapping[str, Any],
    limits: Limits,
) -> RenderCache | None:
    """The cache entry for rendering `template_names` (app-relative, in order) with `context`,
    in `directory` (the compiled-template cache's); None when there is no trusted directory or
    the context holds something without an exact repr."""
    if directory is None or not template_names or not cachedir.trusted(directory):
        return None
    shown = _context_text(context)
    if shown is None:
        return None
    key = hashlib.sha256()
    for part in (
        FORMAT,
        _code_fingerprint(),
        files.display(app_dir),
        repr(tuple(template_names)),
        repr(tuple(limits)),
        shown,
    ):
        key.update(part.encode("utf-8", "surrogatepass") + b"\0")
    return RenderCache(
        directory / f"{key.hexdigest()}{SUFFIX}", files, app_dir, len(template_names)
    )


def _parsed(entry: Any, count: int) -> tuple[list[str], list[tuple[tuple[str, ...], Any, Any]]]:
    """An entry's texts and lookups, checked for exactly the shape `store` writes."""
    if not isinstance(entry, dict) or entry.get("format") != FORMAT:
        raise ValueError("not an entry")
    texts, lookups = entry["texts"], entry["lookups"]
    if not (
        isinstance(texts, list)
        and len(texts) == count
        and all(isinstance(text, str) for text in texts)
        and isinstance(lookups, list)
    ):
        raise ValueError("not an entry")
    checked = []
    for item in lookups:
        pieces, found, sha256 = item
        if not (
            isinstance(pieces, list)
            and all(isinstance(piece, str) for piece in pieces)
            and (found is None or isinstance(found, str))
            and (sha256 is None or isinstance(sha256, str))
        ):
            raise ValueError("not a lookup")
        checked.append((tuple(pieces), found, sha256))
    return texts, checked


_EXACT = (str, int, float, bool, type(None))
# Tree and TreeList add only a path made of the keys: plain data, as dict, list and tuple are.
_MAPPINGS = (dict, Tree)
_LISTS = (list, TreeList)


def _context_text(context: Mapping[str, Any]) -> str | None:
    """The context as text that differs whenever a template could see a difference: reprs of
    plain data, mappings with their key order; None for anything else."""
    parts: list[str] = []
    stack: list[Any] = [context]
    try:
        while stack:
            value = stack.pop()
            kind = type(value)
            if kind in _EXACT:
                parts.append(f"{kind.__name__}:{value!r}")
            elif kind in _MAPPINGS:
                parts.append(f"{{{len(value)}")
                for key, item in reversed(list(value.items())):
                    stack.extend((item, key))
            elif kind in _LISTS or kind is tuple:
                # `~` prints a tuple and a list differently
                parts.append(f"{'(' if kind is tuple else '['}{len(value)}")
                stack.extend(reversed(value))
            elif kind is KubeCapabilities:
                parts.append("kube")
                stack.extend((value.version, tuple(value.api_versions)))
            else:
                return None
    except ValueError:  # an integer too long to print (sys.set_int_max_str_digits)
        return None
    return "\n".join(parts)


def _code_fingerprint() -> str:
    """Python's version, and the size and modification time of the code that renders: a
    changed tagpin, Jinja2, MarkupSafe or PyYAML (an upgrade in place, a developer's edit) is
    a new key."""
    here = Path(__file__).parent
    paths = [here / f"{name}.py" for name in _RENDERING_MODULES]
    paths.append(here.parent / "jsonread.py")
    paths.extend(_package_init(name) for name in ("jinja2", "markupsafe", "yaml"))
    parts = [sys.version]
    for path in paths:
        try:
            info = os.stat(path)
        except OSError:
            parts.append(f"{path}:-")
            continue
        parts.append(f"{path}:{info.st_size}:{info.st_mtime_ns}")
    return "\n".join(parts)


def _package_init(name: str) -> Path:
    """A package's __init__.py, found without importing it."""
    from importlib.machinery import PathFinder

    spec = PathFinder.find_spec(name)
    return Path(spec.origin) if spec is not None and spec.origin else Path(name)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
