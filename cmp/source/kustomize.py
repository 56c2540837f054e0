"""Kustomize apps: `kustomize: {}` in tagpin.yaml makes the app directory a kustomization.

The sidecar runs `kustomize build` (or `kubectl kustomize` when only kubectl is installed) and
pins the result like a template app's output. Kustomizations come from repositories many people
can push to, so they get the templates' safety: before kustomize runs, every kustomization the
app reaches, and every generator/transformer/validator configuration, is read here and refused
if it leaves the repository copy (a path or symlink), asks for a Helm chart, names an
exec/container KRM function, or (unless TAGPIN_KUSTOMIZE_REMOTE allows it) loads a remote base
or names an http(s) URL in any value kustomize could load. kustomize itself then runs with its
default load restrictor, without plugins or Helm, with no credential in its environment, under
a timeout, the render's memory cap (inherited) and the output limit, and, without remote
loading, unable to open any network socket (cmp.source.nonetwork): that is the guarantee, the
checks here are the clear message.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cmp.errors import ConfigError, Problems, SourceError, TemplateError
from cmp.settings import Settings, Switch
from cmp.source import nonetwork
from cmp.source.appdir import KustomizeOptions, Limits, RepoFiles, decode
from cmp.source.templates import RenderedFile
from cmp.source.yamlread import Misread, load_one

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
# Fields whose entries name other kustomizations or files kustomize loads as a whole.
PATH_FIELDS = ("resources", "bases", "components", "generators", "transformers", "validators")
PLUGIN_FIELDS = ("generators", "transformers", "validators")
BASE_FIELDS = ("resources", "bases", "components")  # a configuration directory's contents
HELM_FIELDS = ("helmCharts", "helmChartInflationGenerator", "helmGlobals")
FUNCTION_ANNOTATIONS = ("config.kubernetes.io/function", "config.k8s.io/function")
IMAGE_FIELDS = ("newTag", "newName", "digest")  # a kustomization's `images:` entries
READ_CHUNK = 1 << 16
WARNING_PREFIX = "# Warning:"  # how kustomize prints a warning on stderr
# Values under these keys are data kustomize never loads (an annotation may well be a URL);
# every other string value of a kustomization or a plugin configuration may be a path.
DATA_KEYS = frozenset({"metadata", "annotations", "commonAnnotations", "literals"})
# Go's url.Parse: a scheme is a letter, then letters, digits, `+`, `-` or `.`, then `:`.
GO_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
MAX_URLS_SHOWN = 10  # per file
MAX_SHOWN_CHARS = 200
NO_NETWORK = (
    "tagpin does not let kustomize fetch URLs "
    "(a sidecar setting, TAGPIN_KUSTOMIZE_REMOTE=on, allows it)"
)
# How Go reports socket(2) failing with EACCES, which the network filter makes it do.
SOCKET_DENIED = "socket: permission denied"


class KustomizeError(TemplateError, title="kustomize build failed"):
    """`kustomize build` failed: the render failed, like a template (same exit code)."""


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


def checked_kustomization(files: RepoFiles, app_dir: Path, settings: Settings) -> Path:
    """The app's kustomization file, once every kustomization it reaches passed the safety
    checks (check_tree); run_kustomize then builds it."""
    top = kustomization_file(app_dir)
    if top is None:
        raise SourceError(
            f"{files.display(app_dir)}/: tagpin.yaml says `kustomize:` but the directory has no "
            f"{' or '.join(KUSTOMIZATION_FILES)}"
        )
    check_tree(files, app_dir, allow_remote=settings.kustomize_remote is Switch.ON)
    return top


def run_kustomize(
    files: RepoFiles,
    app_dir: Path,
    top: Path,
    options: KustomizeOptions,
    settings: Settings,
    environ: Mapping[str, str],
    limits: Limits,
    meanwhile: Callable[[], None] | None = None,
    warnings: list[str] | None = None,
) -> RenderedFile:
    """`kustomize build APP_DIR`, the output as one rendered file. Unless
    TAGPIN_KUSTOMIZE_REMOTE=on it runs under the network filter, so whatever a kustomization
    names, no connection is made (checked_kustomization's checks are the clear message). `top`
    is the app's kustomization file, named in messages; `meanwhile` runs while kustomize works
    (on another core, if there is one); kustomize's warnings (deprecated fields) are added to
    `warnings`."""
    allow_remote = settings.kustomize_remote is Switch.ON
    argv = [*kustomize_command(settings, environ, options), str(files.inside(app_dir))]
    if not allow_remote:
        argv = confined(argv)
    text = _run(
        argv,
        _child_environment(environ, allow_remote),
        settings.kustomize_timeout,
        limits,
        files,
        top,
        meanwhile,
        warnings,
        confined=not allow_remote,
    )
    return RenderedFile(name=f"{files.display(top)} (kustomize build)", text=text)


def confined(argv: list[str]) -> list[str]:
    """`argv` run by cmp.source.nonetwork: the program and its children get no socket."""
    if not sys.executable:
        raise ConfigError(
            "cannot keep kustomize off the network: no Python interpreter path "
            "(sys.executable) to run cmp.source.nonetwork with"
        )
    return [sys.executable, "-I", "-S", nonetwork.__file__, *argv]


def check_tree(files: RepoFiles, app_dir: Path, *, allow_remote: bool) -> None:
    """Read every kustomization reachable from `app_dir`, and every plugin configuration,
    and refuse what tagpin does not run: paths outside the repository, Helm charts,
    exec/container functions, remote bases and (without remote loading) URLs anywhere."""
    problems = Problems()
    # A directory named by `generators:` & co. holds plugin configurations, not resources.
    pending: list[tuple[Path, bool]] = [(app_dir, False)]
    seen: set[tuple[Path, bool]] = set()
    while pending:
        directory, holds_configs = pending.pop()
        real = files.inside(directory)
        if (real, holds_configs) in seen:
            continue
        seen.add((real, holds_configs))
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
        if not allow_remote:
            _add_urls(problems, shown, body)
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
            configs = field in PLUGIN_FIELDS or (holds_configs and field in BASE_FIELDS)
            for entry in entries:
                if not allow_remote and isinstance(entry, str) and is_url(entry):
                    continue  # reported above
                try:
                    found = _check_entry(
                        files, directory, shown, field, entry, allow_remote, configs
                    )
                except SourceError as exc:
                    problems.add(exc)
                    continue
                if found is not None:
                    pending.append((found, configs))
    problems.raise_if_any()


def is_url(value: str) -> bool:
    """Whether kustomize would fetch `value` over HTTP: its loader's IsRemoteFile, i.e. Go's
    url.Parse finds the scheme http or https (in any case), in the value or after `key=` (a
    generator's `files: [key=URL]`). A URL url.Parse then rejects (a bad IPv6 host, say)
    counts too: it names no file either."""
    return any(_go_scheme(part) in ("http", "https") for part in (value, value.partition("=")[2]))


def _go_scheme(value: str) -> str:
    before_fragment = value.partition("#")[0]
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in before_fragment):
        return ""  # url.Parse fails on a control byte: kustomize takes it for a file name
    match = GO_SCHEME.match(before_fragment)
    return match.group(1).lower() if match else ""


def url_values(document: Any) -> list[tuple[str, str]]:
    """(field path, value) of every string kustomize could load as a path that is a URL:
    every value outside DATA_KEYS, so a field no list names (a new kustomize's) counts too."""
    found: list[tuple[str, str]] = []
    stack: list[tuple[str, Any]] = [("", document)]
    seen: set[int] = set()  # aliases share nodes, and may even form a cycle
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict | list):
            if id(node) in seen:
                continue
            seen.add(id(node))
        if isinstance(node, dict):
            children = [
                (f"{path}.{key}" if path else str(key), value)
                for key, value in node.items()
                if key not in DATA_KEYS
            ]
            stack.extend(reversed(children))
        elif isinstance(node, list):
            stack.extend(reversed([(f"{path}[{i}]", item) for i, item in enumerate(node)]))
        elif isinstance(node, str) and is_url(node):
            found.append((path, node))
    return found


def _url_problems(shown: str, document: Any) -> list[str]:
    found = url_values(document)
    lines = [
        f"{shown}: {_shorten(path)}: {_shorten(value)!r} is a URL; {NO_NETWORK}"
        for path, value in found[:MAX_URLS_SHOWN]
    ]
    if len(found) > MAX_URLS_SHOWN:
        lines.append(f"{shown}: and {len(found) - MAX_URLS_SHOWN} more URLs")
    return lines


def _add_urls(problems: Problems, shown: str, document: Any) -> None:
    lines = _url_problems(shown, document)
    if lines:
        problems.add(SourceError(*lines))


def _shorten(text: str) -> str:
    if len(text) <= MAX_SHOWN_CHARS:
        return text
    half = MAX_SHOWN_CHARS // 2
    return f"{text[:half]}…{text[-half:]}"


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
    files: RepoFiles,
    directory: Path,
    shown: str,
    field: str,
    entry: Any,
    allow_remote: bool,
    configs: bool,
) -> Path | None:
    """One `resources:`-like entry: the directory to scan next, or None. `configs`: the entry
    is a plugin configuration (or a directory of them)."""
    if isinstance(entry, dict) or (isinstance(entry, str) and "\n" in entry):
        if field in PLUGIN_FIELDS:  # an inline plugin configuration
            documents = _as_documents(entry, shown, files)
            _check_configs(documents, f"{shown}: {field} (inline)", shown, field, allow_remote)
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
    if configs:
        config_file = files.display(path)
        documents = _as_documents(files.read_text(path), config_file, files)
        _check_configs(documents, config_file, shown, field, allow_remote)
    return None


def _check_configs(
    documents: list[Any], config_file: str, shown: str, field: str, allow_remote: bool
) -> None:
    """Plugin configurations (a ConfigMapGenerator's own file, say): no KRM function, and
    without remote loading no URL in any value."""
    _refuse_functions(documents, shown, field)
    if allow_remote:
        return
    lines = [line for document in documents for line in _url_problems(config_file, document)]
    if lines:
        raise SourceError(*lines)


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
    bases, git may use only local repositories (the network filter stops everything else)."""
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
        child["GIT_ALLOW_PROTOCOL"] = "file"
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
    *,
    confined: bool,
) -> str:
    """Run `argv` (kustomize, confined by cmp.source.nonetwork or not) and return its output;
    its failure as tagpin's error, in kustomize's words minus kubectl's log decoration."""
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
        text = errors.decode("utf-8", "replace")
        if confined:
            _raise_if_not_started(status, text)
        message = _relative(without_log_prefix(text), files)
        lines = [
            line.removeprefix("Error: ").removeprefix("error: ")
            for line in message.strip().splitlines()
            if line.strip() and not line.startswith(WARNING_PREFIX)
        ] or [f"exit {status}"]
        if confined and SOCKET_DENIED in message:  # said second: long errors are cut
            lines.insert(
                1,
                "kustomize tried to open a network connection: it has no network while "
                "TAGPIN_KUSTOMIZE_REMOTE is off, so no URL any field names is fetched",
            )
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


def _raise_if_not_started(status: int, stderr: str) -> None:
    """cmp.source.nonetwork's own failure: kustomize did not run."""
    if not stderr.startswith(nonetwork.PREFIX):
        return
    reason = stderr.removeprefix(nonetwork.PREFIX).strip()
    if status == nonetwork.UNCONFINED:
        raise ConfigError(
            reason,
            "tagpin runs kustomize only without network, unless the sidecar setting "
            "TAGPIN_KUSTOMIZE_REMOTE=on gives it the network (docs/kustomize.md)",
        )
    if status == nonetwork.NOT_STARTED:
        raise ConfigError(reason)


# A klog line: severity, MMDD, time, thread id, file:line] message (k8s.io/klog/v2).
KLOG_HEADER = re.compile(r"[IWEF]\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ [^\s\]]+:\d+\] ")
KLOG_FAILED = '"command failed" err='  # component-base/cli/run.go: klog.ErrorS(err, ...)
GO_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{3}|.)", re.S)
GO_ESCAPED_CHARS = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def without_log_prefix(text: str) -> str:
    """kubectl stderr as kubectl 1.37 prints it: older kubectl (1.32) logs a failed command
    through klog, `E1204 10:11:12.123456   4242 run.go:72] "command failed" err="..."`,
    with the error Go-quoted, or on tab-indented lines between `err=<` and ` >` when it has
    several; other klog lines lose their header."""
    lines: list[str] = []
    rows = iter(text.splitlines())
    for row in rows:
        header = KLOG_HEADER.match(row)
        if header is None:
            lines.append(row)
            continue
        message = row[header.end() :]
        if message == KLOG_FAILED + "<":
            for value in rows:
                if value == " >":
                    break
                lines.append(value.removeprefix("\t"))
        elif message.startswith(KLOG_FAILED + '"') and message.endswith('"'):
            lines.append(_go_unquote(message[len(KLOG_FAILED) + 1 : -1]))
        else:
            lines.append(message)
    return "\n".join(lines)


def _go_unquote(quoted: str) -> str:
    """The string strconv.Quote turned into `quoted` (without its double quotes)."""
    out = bytearray()
    position = 0
    for match in GO_ESCAPE.finditer(quoted):
        out += quoted[position : match.start()].encode()
        escape = match.group(1)
        if escape[0] == "x" or (escape[0] in "01234567" and len(escape) == 3):
            out.append(int(escape[1:], 16) if escape[0] == "x" else int(escape, 8) & 0xFF)
        elif escape[0] in "uU" and len(escape) > 1:
            out += chr(min(int(escape[1:], 16), 0x10FFFF)).encode("utf-8", "replace")
        else:
            out += GO_ESCAPED_CHARS.get(escape, escape).encode()
        position = match.end()
    out += quoted[position:].encode()
    return out.decode("utf-8", "replace")


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
