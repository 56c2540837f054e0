"""Kustomize apps: `kustomize: {}` in tagpin.yaml makes the app directory a kustomization.

The sidecar runs `kustomize build` (or `kubectl kustomize` when only kubectl is installed) and
pins the result like a template app's output. Kustomizations come from repositories many people
can push to, so they get the templates' safety: before kustomize runs, every kustomization the
app reaches is read here and refused if it leaves the repository copy (a path or symlink), asks
for a Helm chart, names an exec/container KRM function, or loads a remote base (unless
TAGPIN_KUSTOMIZE_REMOTE allows it). kustomize itself then runs with its default load restrictor,
without plugins, Helm or network, with no credential in its environment, under a timeout, the
render's memory cap (inherited) and the output limit.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cmp.errors import ConfigError, Problems, SourceError, TemplateError
from cmp.settings import Settings
from cmp.source.appdir import KustomizeOptions, Limits, RepoFiles, decode
from cmp.source.templates import RenderedFile
from cmp.source.yamlread import Misread, load_one

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
# Fields whose entries name other kustomizations or files kustomize loads as a whole.
PATH_FIELDS = ("resources", "bases", "components", "generators", "transformers", "validators")
PLUGIN_FIELDS = ("generators", "transformers", "validators")
HELM_FIELDS = ("helmCharts", "helmChartInflationGenerator", "helmGlobals")
FUNCTION_ANNOTATIONS = ("config.kubernetes.io/function", "config.k8s.io/function")
IMAGE_FIELDS = ("newTag", "newName", "digest")  # a kustomization's `images:` entries
READ_CHUNK = 1 << 16
WARNING_PREFIX = "# Warning:"  # how kustomize prints a warning on stderr


class KustomizeError(TemplateError):
    """`kustomize build` failed: the render failed, like a template (same exit code)."""

    title = "kustomize build failed"


def refuse_values(parameters: Mapping[str, Any]) -> None:
    """Values are for templates; a `values` parameter on a Kustomize app is a mistake."""
    if parameters.get("values"):
        raise ConfigError(
            "plugin parameter 'values' has no effect on a Kustomize app "
            "(`kustomize:` in tagpin.yaml); use the kustomization's own fields"
        )


def kustomization_file(directory: Path) -> Path | None:
    for name in KUSTOMIZATION_FILES:
        candidate = directory / name
        if os.path.lexists(candidate):
            return candidate
    return None


def build(
    files: RepoFiles,
    app_dir: Path,
    options: KustomizeOptions,
    settings: Settings,
    environ: Mapping[str, str],
    limits: Limits,
    meanwhile: Callable[[], None] | None = None,
    warnings: list[str] | None = None,
) -> RenderedFile:
    """`kustomize build APP_DIR` after the safety checks; the output as one rendered file.
    `meanwhile` runs while kustomize works (on another core, if there is one); kustomize's
    warnings (deprecated fields) are added to `warnings`."""
    allow_remote = settings.kustomize_remote == "on"
    timeout = settings.kustomize_timeout
    top = kustomization_file(app_dir)
    if top is None:
        raise SourceError(
            f"{files.display(app_dir)}/: tagpin.yaml says `kustomize:` but the directory has no "
            f"{' or '.join(KUSTOMIZATION_FILES)}"
        )
    check_tree(files, app_dir, allow_remote=allow_remote)
    command = kustomize_command(settings, environ, options)
    argv = [*command, str(files.inside(app_dir))]
    text = _run(
        argv,
        _child_environment(environ, allow_remote),
        timeout,
        limits,
        files,
        top,
        meanwhile,
        warnings,
    )
    return RenderedFile(name=f"{files.display(top)} (kustomize build)", text=text)


def check_tree(files: RepoFiles, app_dir: Path, *, allow_remote: bool) -> None:
    """Read every kustomization reachable from `app_dir` and refuse what tagpin does not run:
    paths outside the repository, Helm charts, exec/container functions, remote bases."""
    problems = Problems()
    pending = [app_dir]
    seen: set[Path] = set()
    while pending:
        directory = pending.pop()
        real = files.inside(directory)
        if real in seen:
            continue
        seen.add(real)
        kfile = kustomization_file(directory)
        if kfile is None:
            continue  # kustomize says "unable to find one of ..." naming the directory
        shown = files.display(kfile)
        misread: list[Misread] = []
        try:
            body = load_one(
                files.read_text(kfile),
                shown,
                max_nodes=files.limits.max_yaml_nodes,
                misread=misread,
            )
        except SourceError as exc:
            problems.add(exc)
            continue
        if not isinstance(body, dict):
            continue  # kustomize's own message is clear enough
        problems.extend(ConfigError(p) for p in misread_image_fields(misread))
        for key in HELM_FIELDS:
            if body.get(key):
                problems.add(
                    SourceError(
                        f"{shown}: {key}: Helm charts are not rendered inside a kustomization by "
                        "tagpin (no --enable-helm); pipe `helm template ... | tagpin pin -` instead"
                    )
                )
        for field in PATH_FIELDS:
            entries = body.get(field)
            if not isinstance(entries, list):
                continue
            for entry in entries:
                try:
                    found = _check_entry(files, directory, shown, field, entry, allow_remote)
                except SourceError as exc:
                    problems.add(exc)
                    continue
                if found is not None:
                    pending.append(found)
    problems.raise_if_any()


def misread_image_fields(misread: list[Misread]) -> list[str]:
    """`images: [{newTag: 1.10}]`: YAML reads 1.10 as a number, which kustomize refuses without
    a line ("cannot unmarshal number into ... newTag"); say where, and the fix."""
    return [
        f"{item.where}: {item.written} is read by YAML as {item.read_as}, not text, which "
        f"kustomize refuses; write {item.key}: '{item.text}'"
        for item in misread
        if item.key in IMAGE_FIELDS
    ]


def _check_entry(
    files: RepoFiles, directory: Path, shown: str, field: str, entry: Any, allow_remote: bool
) -> Path | None:
    """One `resources:`-like entry: the directory to scan next, or None."""
    if isinstance(entry, dict) or (isinstance(entry, str) and "\n" in entry):
        if field in PLUGIN_FIELDS:  # an inline plugin configuration
            _refuse_functions(_as_documents(entry, shown, files), shown, field)
        return None
    if not isinstance(entry, str) or not entry:
        return None
    path = directory / entry
    if not os.path.lexists(path):
        if allow_remote:
            return None
        raise SourceError(
            f"{shown}: {field}: {entry!r} is not a file or directory in the repository; remote "
            "bases are off (a sidecar setting, TAGPIN_KUSTOMIZE_REMOTE=on, allows them)"
        )
    try:
        files.inside(path)
    except SourceError:
        raise SourceError(
            f"{shown}: {field}: {entry!r} resolves outside the repository (a symlink or '..'); "
            "tagpin only reads files inside the app's repository"
        ) from None
    if os.path.isdir(path):
        return path
    if field in PLUGIN_FIELDS:
        text = files.read_text(path)
        _refuse_functions(_as_documents(text, files.display(path), files), shown, field)
    return None


def _as_documents(entry: Any, shown: str, files: RepoFiles) -> list[Any]:
    if isinstance(entry, dict):
        return [entry]
    from cmp.source.yamlread import load_all

    return [doc for _, doc in load_all(entry, shown, max_nodes=files.limits.max_yaml_nodes)]


def _refuse_functions(documents: list[Any], shown: str, field: str) -> None:
    for document in documents:
        metadata = document.get("metadata") if isinstance(document, dict) else None
        annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
        if not isinstance(annotations, dict):
            continue
        for key in FUNCTION_ANNOTATIONS:
            if key in annotations:
                kind = document.get("kind", "object")
                raise SourceError(
                    f"{shown}: {field}: {kind} is a KRM function ({key}); tagpin runs no exec, "
                    "container or Starlark plugins"
                )


def kustomize_command(
    settings: Settings, environ: Mapping[str, str], options: KustomizeOptions
) -> list[str]:
    """`kustomize build` if TAGPIN_KUSTOMIZE or PATH has it, else `kubectl kustomize`."""
    configured = settings.kustomize.strip()
    # PATH is not a tagpin setting: cmp.testing's minimal settings still find kubectl.
    search = environ.get("PATH") or os.environ.get("PATH", os.defpath)
    if configured:
        found = shutil.which(configured, path=search)
        if found is None:
            raise ConfigError(f"TAGPIN_KUSTOMIZE={configured!r}: no such executable")
        binary = found
    else:
        binary = (
            shutil.which("kustomize", path=search) or shutil.which("kubectl", path=search) or ""
        )
        if not binary:
            raise ConfigError(
                "a kustomize app needs `kustomize` or `kubectl` on PATH "
                "(or TAGPIN_KUSTOMIZE); the tagpin image ships kustomize"
            )
    if os.path.basename(binary).startswith("kubectl"):
        if options.enable_managed_by_label:
            raise ConfigError(
                "tagpin.yaml: kustomize.enableManagedByLabel needs the kustomize "
                f"binary; {binary} is kubectl, whose `kustomize` lacks the flag"
            )
        return [binary, "kustomize"]
    extra = ["--enable-managedby-label"] if options.enable_managed_by_label else []
    return [binary, "build", *extra]


def _child_environment(environ: Mapping[str, str], allow_remote: bool) -> dict[str, str]:
    """What kustomize sees: no AWS credential, token or ARGOCD_ENV_* value. Without remote
    bases, git may use only local repositories and any HTTP fetch goes to a closed port."""
    child = {
        "PATH": environ.get("PATH") or os.environ.get("PATH", os.defpath),
        "HOME": environ.get("HOME", "/tmp"),
    }
    if allow_remote:
        for key in (
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "NO_PROXY",
            "http_proxy",
            "https_proxy",
            "no_proxy",
        ):
            if key in environ:
                child[key] = environ[key]
    else:
        closed = "http://127.0.0.1:9"  # the discard port: nothing listens, connect fails fast
        child.update(
            GIT_ALLOW_PROTOCOL="file",
            HTTP_PROXY=closed,
            HTTPS_PROXY=closed,
            http_proxy=closed,
            https_proxy=closed,
            NO_PROXY="",
            no_proxy="",
        )
    return child


def _run(
    argv: list[str],
    env: dict[str, str],
    timeout: int,
    limits: Limits,
    files: RepoFiles,
    kfile: Path,
    meanwhile: Callable[[], None] | None = None,
    warnings: list[str] | None = None,
) -> str:
    shown = files.display(kfile)
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=str(files.root),
        )
    except OSError as exc:
        raise ConfigError(f"cannot run {argv[0]}: {exc.strerror}") from None
    stdout, stderr = process.stdout, process.stderr
    assert stdout is not None and stderr is not None
    errors = bytearray()

    def drain_stderr() -> None:  # keep the start; read the rest so kustomize never blocks
        while chunk := stderr.read(READ_CHUNK):
            if len(errors) < READ_CHUNK:
                errors.extend(chunk)

    reader = threading.Thread(target=drain_stderr, daemon=True)
    reader.start()
    timed_out = threading.Event()

    def stop() -> None:
        timed_out.set()
        process.kill()

    timer = threading.Timer(timeout, stop)
    timer.start()
    chunks: list[bytes] = []
    size = 0
    try:
        if meanwhile is not None:
            meanwhile()
        while chunk := stdout.read(READ_CHUNK):
            size += len(chunk)
            if size > limits.max_output_bytes:
                process.kill()
                break
            chunks.append(chunk)
        status = process.wait()
    finally:
        timer.cancel()
        stdout.close()
        reader.join(5)
        stderr.close()
    if size > limits.max_output_bytes:
        raise SourceError(
            f"{shown}: the kustomize build output exceeds "
            f"{limits.max_output_bytes} bytes (TAGPIN_MAX_OUTPUT_BYTES)"
        )
    if status != 0:
        if timed_out.is_set():
            raise KustomizeError(
                f"{shown}: kustomize build did not finish in {timeout} s (TAGPIN_KUSTOMIZE_TIMEOUT)"
            )
        message = _relative(errors.decode("utf-8", "replace"), files)
        lines = [
            line.removeprefix("Error: ").removeprefix("error: ")
            for line in message.strip().splitlines()
            if line.strip() and not line.startswith(WARNING_PREFIX)
        ] or [f"exit {status}"]
        shown = files.display(_concerned(message, files, kfile))
        raise KustomizeError(f"{shown}: {lines[0]}", *(f"  {line}" for line in lines[1:20]))
    if warnings is not None:
        message = _relative(errors.decode("utf-8", "replace"), files)
        warnings.extend(
            f"{shown}: kustomize: {line.removeprefix(WARNING_PREFIX).strip()}"
            for line in message.splitlines()
            if line.startswith(WARNING_PREFIX)
        )
    return decode(b"".join(chunks), f"{shown} (kustomize build)")


def _concerned(message: str, files: RepoFiles, default: Path) -> Path:
    """The innermost kustomization kustomize's message names (it nests `... path 'base': ...`
    clauses, repository-relative by now), else the app's own."""
    found = default
    for match in re.finditer(r"(?:accumulation of path|make target for path) '([^']+)'", message):
        directory = files.root / match.group(1)
        try:
            files.inside(directory)
        except SourceError:
            continue
        found = kustomization_file(directory) or found
    return found


def _relative(message: str, files: RepoFiles) -> str:
    """kustomize names absolute paths; messages show repository-relative ones."""
    root = str(files.root)
    return message.replace(root + os.sep, "").replace(root, ".")
