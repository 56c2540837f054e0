"""Reading the app directory: tagpin.yaml, values files and the template list.

Every path is resolved (symlinks included) and must stay inside the repository copy, because
templates and values come from repositories that many people can push to and the sidecar
holds credentials.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from cmp.errors import ConfigError, Problems, SourceError
from cmp.settings import MARKER_FILE
from cmp.source.yamlread import Misread, load_one

TEMPLATE_DIR = "templates"
COPIED_SUFFIXES = (".yaml", ".yml", ".json")
JINJA_SUFFIX = ".j2"
CONFIG_KEYS = {
    "valuesFiles": "values files layered over values.yaml",
    "images": "image settings: paths, requireDigests, allowUnpinned",
    "kustomize": "build the app with kustomize (docs/kustomize.md)",
    "templates": "template settings: literal",
}
IMAGE_KEYS = ("paths", "requireDigests", "allowUnpinned")
TEMPLATE_KEYS = ("literal",)


# tagpin.yaml `kustomize:` keys: the short allowlist of build options.
OPTION_KEYS = {"enableManagedByLabel": "--enable-managedby-label (the kustomize binary only)"}
REFUSED_OPTIONS = {
    "loadRestrictor": "files outside a kustomization's root stay unreadable",
    "enableHelm": "render charts with `helm template ... | tagpin pin -` (docs/kustomize.md)",
    "enableAlphaPlugins": "exec and container plugins would run code from the repository",
    "enableExec": "exec plugins would run code from the repository",
    "network": "KRM functions get no network",
    "mount": "KRM functions get no mounts",
}


class Limits(NamedTuple):
    max_file_bytes: int = 32 * 1024 * 1024
    max_output_bytes: int = 64 * 1024 * 1024
    max_yaml_nodes: int = 2_000_000


class RepoFiles:
    """Reads files by path, refusing anything that resolves outside the repository root."""

    def __init__(self, repo_root: Path, app_dir: Path, limits: Limits) -> None:
        self.root = Path(os.path.realpath(repo_root))
        self.app_dir = Path(os.path.abspath(app_dir))
        self.limits = limits

    def display(self, path: Path) -> str:
        """Repository-relative POSIX path for messages (never an absolute sidecar path)."""
        try:
            return Path(os.path.abspath(path)).relative_to(self.root).as_posix()
        except ValueError:
            return path.name

    def inside(self, path: Path) -> Path:
        real = Path(os.path.realpath(path))
        if real != self.root and self.root not in real.parents:
            raise SourceError(
                f"{self.display(path)}: resolves outside the repository "
                "(a symlink or '..'); tagpin only reads files inside the app's repository"
            )
        return real

    def read_text(self, path: Path) -> str:
        return read_file(self.inside(path), self.display(path), self.limits.max_file_bytes)


def read_file(real: Path, shown: str, max_bytes: int) -> str:
    """A regular file's text, at most `max_bytes` long; errors name it as `shown`."""
    try:
        with open_regular(real, shown) as handle:
            if os.fstat(handle.fileno()).st_size > max_bytes:
                raise SourceError(
                    f"{shown}: larger than {max_bytes} bytes "
                    "(TAGPIN_MAX_FILE_BYTES); refusing to read it"
                )
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise unreadable(shown, exc) from None
    if len(data) > max_bytes:
        raise SourceError(
            f"{shown}: larger than {max_bytes} bytes (TAGPIN_MAX_FILE_BYTES); refusing to read it"
        )
    return decode(data, shown)


def open_regular(real: Path, shown: str) -> BinaryIO:
    """`real` opened for reading if it is a regular file; SourceError naming it as `shown`
    otherwise. O_NONBLOCK: a FIFO where a file should be must not hang the render until Argo
    CD kills it, so anything but a regular file is refused before reading."""
    handle = os.fdopen(os.open(real, os.O_RDONLY | os.O_NONBLOCK), "rb")
    try:
        mode = os.fstat(handle.fileno()).st_mode
        if stat.S_ISDIR(mode):
            raise SourceError(f"{shown}: is a directory, expected a file")
        if not stat.S_ISREG(mode):
            raise SourceError(f"{shown}: not a regular file (a FIFO or device?)")
    except BaseException:
        handle.close()
        raise
    return handle


def unreadable(shown: str, exc: OSError) -> SourceError:
    """The error for a file that cannot be read, named as `shown`."""
    if isinstance(exc, FileNotFoundError):
        return SourceError(f"{shown}: file not found")
    if isinstance(exc, IsADirectoryError):
        return SourceError(f"{shown}: is a directory, expected a file")
    return SourceError(f"{shown}: cannot read: {exc.strerror}")


def decode(data: bytes, shown: str) -> str:
    if b"\x00" in data:
        raise SourceError(f"{shown}: looks like a binary file (contains NUL bytes)")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # a UTF-8 byte order mark is harmless; drop it
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SourceError(f"{shown}:{line}: not valid UTF-8 (byte offset {exc.start})") from None


class TemplateFile(NamedTuple):
    path: Path
    name: str  # repository-relative POSIX path, e.g. "apps/web/templates/web.yaml.j2"
    app_name: str  # app-relative POSIX path, e.g. "templates/web.yaml.j2"; the sort key

    @property
    def is_jinja(self) -> bool:
        return self.name.endswith(JINJA_SUFFIX)


class KustomizeOptions(NamedTuple):
    enable_managed_by_label: bool = False


def parse_options(raw: Any, shown: str) -> KustomizeOptions:
    """tagpin.yaml's `kustomize:` value ({} or null for kustomize's defaults)."""
    if raw is None:
        return KustomizeOptions()
    if not isinstance(raw, dict):
        raise ConfigError(f"{shown}: kustomize must be a mapping of build options (it may be {{}})")
    problems: list[str] = []
    for key in raw:
        if key in REFUSED_OPTIONS:
            problems.append(f"{shown}: kustomize.{key} is not allowed: {REFUSED_OPTIONS[key]}")
        elif key not in OPTION_KEYS:
            known = ", ".join(f"{k} ({v})" for k, v in OPTION_KEYS.items())
            problems.append(f"{shown}: unknown key kustomize.{key} (known: {known})")
    label = raw.get("enableManagedByLabel", False)
    if not isinstance(label, bool):
        problems.append(f"{shown}: kustomize.enableManagedByLabel must be true or false")
    if problems:
        raise ConfigError(*problems)
    return KustomizeOptions(enable_managed_by_label=bool(label))


class AppConfig(NamedTuple):
    values_files: tuple[str, ...] = ()
    image_paths: Any = ()  # raw `images.paths`; parsed by cmp.images.reference
    require_digests: bool = False
    allow_unpinned: tuple[str, ...] = ()  # `images.allowUnpinned` glob patterns
    kustomize: KustomizeOptions | None = None  # set for a Kustomize app
    # `templates.literal`: plain files whose braces are data (app-relative globs)
    literal: tuple[str, ...] = ()


class AppSource(NamedTuple):
    config: AppConfig
    values_layers: tuple[tuple[str, dict[str, Any]], ...]  # (where from, values) lowest first
    templates: tuple[TemplateFile, ...]
    files: RepoFiles
    # Values files' numbers and booleans that print unlike their text (`tag: 1.10`)
    values_misread: tuple[Misread, ...] = ()


def load_app(
    app_dir: Path, repo_root: Path, values_files_param: list[str], limits: Limits
) -> AppSource:
    """Read the app, reporting every problem found, not only the first."""
    files = RepoFiles(repo_root, app_dir, limits)
    files.inside(app_dir)  # the app itself must be inside the repository
    problems = Problems()
    config = AppConfig()
    try:
        config = load_config(files, app_dir / MARKER_FILE)
    except (ConfigError, SourceError) as exc:
        problems.add(exc)

    if config.kustomize is not None:
        _check_kustomize_app(files, app_dir, config, values_files_param, problems)
        problems.raise_if_any()
        return AppSource(config=config, values_layers=(), templates=(), files=files)

    layers: list[tuple[str, dict[str, Any]]] = []
    misread: list[Misread] = []
    default_values = app_dir / "values.yaml"
    candidates: list[tuple[Path, bool]] = [(default_values, False)]
    candidates += [(app_dir / p, True) for p in config.values_files]
    candidates += [(app_dir / p, True) for p in values_files_param]
    for path, required in candidates:
        if not required and not os.path.lexists(path):
            continue
        try:
            layers.append((files.display(path), load_values_file(files, path, misread)))
        except (ConfigError, SourceError) as exc:
            problems.add(exc)

    templates: tuple[TemplateFile, ...] = ()
    try:
        templates = list_templates(files, app_dir)
    except SourceError as exc:
        problems.add(exc)
    problems.raise_if_any()
    return AppSource(
        config=config,
        values_layers=tuple(layers),
        templates=templates,
        files=files,
        values_misread=tuple(misread),
    )


def _check_kustomize_app(
    files: RepoFiles,
    app_dir: Path,
    config: AppConfig,
    values_files_param: list[str],
    problems: Problems,
) -> None:
    """A Kustomize app has no templates or values: saying otherwise is a mistake to report."""
    config_file = files.display(app_dir / MARKER_FILE)
    if os.path.lexists(app_dir / TEMPLATE_DIR):
        problems.add(
            ConfigError(
                f"{files.display(app_dir / TEMPLATE_DIR)}/ and `kustomize:` in {config_file}: "
                f"an app is either templates or a kustomization; remove {TEMPLATE_DIR}/ or "
                "`kustomize:`"
            )
        )
    if config.values_files:
        problems.add(
            ConfigError(
                f"{config_file}: valuesFiles has no effect on a Kustomize app (`kustomize:`)"
            )
        )
    if values_files_param:
        problems.add(
            ConfigError(
                "plugin parameter 'values-files' has no effect on a Kustomize app (`kustomize:` in "
                f"{config_file})"
            )
        )


def load_config(files: RepoFiles, path: Path) -> AppConfig:
    shown = files.display(path)
    if not os.path.lexists(path):
        raise ConfigError(
            f"{shown}: missing; an app directory needs a {MARKER_FILE} (it may be {{}})"
        )
    raw = load_one(files.read_text(path), shown, max_nodes=files.limits.max_yaml_nodes)
    if raw is None:
        return AppConfig()
    if not isinstance(raw, dict):
        raise ConfigError(f"{shown}: must be a mapping (it may be {{}}), found {_kind(raw)}")
    problems: list[str] = []
    for key in raw:
        if key not in CONFIG_KEYS:
            known = ", ".join(sorted(CONFIG_KEYS))
            problems.append(f"{shown}: unknown key {key!r} (known keys: {known})")
    values_files = raw.get("valuesFiles") or []
    if not isinstance(values_files, list) or not all(isinstance(v, str) for v in values_files):
        problems.append(f"{shown}: valuesFiles must be a list of file paths")
        values_files = []
    images = _section(raw, "images", IMAGE_KEYS, shown, problems)
    require = images.get("requireDigests", False)
    if not isinstance(require, bool):
        problems.append(f"{shown}: images.requireDigests must be true or false")
        require = False
    allow = _patterns(
        images.get("allowUnpinned"),
        f'{shown}: images.allowUnpinned must be a list of image patterns (globs such as "quay.io'
        '/prometheus/*" or "nginx")',
        problems,
    )
    templates = _section(raw, "templates", TEMPLATE_KEYS, shown, problems)
    literal = _patterns(
        templates.get("literal"),
        f"{shown}: templates.literal must be a list of file patterns relative to the app "
        'directory, such as "templates/alerts/*.yaml"',
        problems,
    )
    kustomize = None
    if "kustomize" in raw:
        try:
            kustomize = parse_options(raw["kustomize"], shown)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(*problems)
    return AppConfig(
        values_files=tuple(values_files),
        image_paths=images.get("paths") or (),
        require_digests=require,
        allow_unpinned=allow,
        kustomize=kustomize,
        literal=literal,
    )


def _section(
    raw: dict[str, Any], name: str, keys: tuple[str, ...], shown: str, problems: list[str]
) -> dict[str, Any]:
    """tagpin.yaml's mapping `name` ({} when unset); what is wrong with it is said, and
    read as {} when it is not a mapping."""
    section = raw.get(name) or {}
    if not isinstance(section, dict):
        problems.append(f"{shown}: {name} must be a mapping with keys {', '.join(keys)}")
        return {}
    for key in section:
        if key not in keys:
            problems.append(f"{shown}: unknown key {name}.{key} (known: {', '.join(keys)})")
    return section


def _patterns(value: Any, problem: str, problems: list[str]) -> tuple[str, ...]:
    """A list of non-empty glob patterns (none when unset); else `problem` is said."""
    if not value:
        return ()
    if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
        problems.append(problem)
        return ()
    return tuple(value)


def load_values_file(
    files: RepoFiles, path: Path, misread: list[Misread] | None = None
) -> dict[str, Any]:
    """A values file's mapping; its numbers and booleans that print unlike their text are
    added to `misread`."""
    shown = files.display(path)
    if not os.path.lexists(path):
        raise SourceError(f"{shown}: values file not found")
    raw = load_one(
        files.read_text(path), shown, max_nodes=files.limits.max_yaml_nodes, misread=misread
    )
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{shown}: a values file must hold a mapping, found {_kind(raw)}")
    return raw


def list_templates(files: RepoFiles, app_dir: Path) -> tuple[TemplateFile, ...]:
    """Files under templates/, recursively, sorted by their POSIX path (code point order).

    `*.yaml`, `*.yml`, `*.json` are copied; `*.j2` are rendered. Names starting with `_` are
    partials for `{% include %}`/`{% import %}` and produce no output; dotfiles are skipped.
    """
    root = app_dir / TEMPLATE_DIR
    if not os.path.lexists(root):
        raise SourceError(f"{files.display(root)}/: missing; put the app's manifests there")
    files.inside(root)
    found: list[TemplateFile] = []
    visited: set[Path] = set()
    for directory, dirnames, filenames in os.walk(root, followlinks=True):
        real = files.inside(Path(directory))  # a linked directory must stay inside too
        if real in visited:  # a symlink loop
            dirnames[:] = []
            continue
        visited.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for filename in filenames:
            if filename.startswith((".", "_")):
                continue
            if not filename.endswith((*COPIED_SUFFIXES, JINJA_SUFFIX)):
                continue
            path = Path(directory) / filename
            found.append(
                TemplateFile(
                    path=path,
                    name=files.display(path),
                    app_name=path.relative_to(app_dir).as_posix(),
                )
            )
    found.sort(key=lambda t: t.app_name)
    return tuple(found)


# A YAML document that is a Kubernetes object: `apiVersion:` and `kind:` at the start of a line.
_OBJECT_KEYS = (re.compile(rb"^apiVersion:", re.M), re.compile(rb"^kind:", re.M))
STRAY_READ_BYTES = 64 * 1024  # enough to see the keys of the first objects
STRAY_MAX_FILES = 256  # files looked into per render: a hint, never a render's real cost


def stray_manifests(files: RepoFiles, app_dir: Path, known: Iterable[str] = ()) -> list[str]:
    """YAML and JSON files of the app directory, outside templates/, that hold a Kubernetes
    object: they are not rendered, and their being there says the user thinks they are.
    Looks at the app directory and its subdirectories one level down (not templates/, dotted
    ones, or another app's), except the `known` files (values layers: read already), and at
    most STRAY_MAX_FILES of them; files it cannot read are left to other checks."""
    skipped = set(known)
    budget = STRAY_MAX_FILES
    found: list[str] = []
    directories = [app_dir]
    for entry in _entries(app_dir):
        if (
            entry.is_dir(follow_symlinks=False)
            and entry.name != TEMPLATE_DIR
            and not entry.name.startswith(".")
            and not os.path.lexists(Path(entry.path) / MARKER_FILE)
        ):
            directories.append(Path(entry.path))
    for directory in directories:
        for entry in sorted(_entries(directory), key=lambda e: e.name):
            if entry.name.startswith(".") or not entry.name.endswith(COPIED_SUFFIXES):
                continue
            path = Path(entry.path)
            if files.display(path) in skipped:
                continue
            if budget == 0:
                return found
            budget -= 1
            try:
                with open_regular(files.inside(path), entry.name) as handle:
                    head = handle.read(STRAY_READ_BYTES)
            except (OSError, SourceError):
                continue
            if all(key.search(head) for key in _OBJECT_KEYS):
                found.append(files.display(path))
    return found


def _entries(directory: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as entries:
            return list(entries)
    except OSError:
        return []


def _kind(value: Any) -> str:
    return {
        list: "a list",
        str: "a string",
        int: "a number",
        float: "a number",
        bool: "a boolean",
    }.get(type(value), type(value).__name__)
