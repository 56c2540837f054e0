"""Offline stand-in for Argo CD's repo-server + cmp-server driving one Config Management Plugin.

It copies the repo, builds the environment, selects, runs and parses as argo-cd's
cmpserver/plugin/plugin.go and reposerver/repository/repository.go do (contract notes §1-§4, §9),
so tests prove tagpin's plugin contract through Argo's own mechanics.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import yaml

PLUGIN_KIND = "ConfigManagementPlugin"
# plugin.go: runCommand sends SIGTERM to the process group, then SIGKILL after this long.
KILL_GRACE_SECONDS = 5.0

DEFAULT_API_VERSIONS: tuple[str, ...] = (
    "admissionregistration.k8s.io/v1",
    "admissionregistration.k8s.io/v1/MutatingWebhookConfiguration",
    "admissionregistration.k8s.io/v1/ValidatingWebhookConfiguration",
    "apiextensions.k8s.io/v1",
    "apiextensions.k8s.io/v1/CustomResourceDefinition",
    "apps/v1",
    "apps/v1/DaemonSet",
    "apps/v1/Deployment",
    "apps/v1/ReplicaSet",
    "apps/v1/StatefulSet",
    "argoproj.io/v1alpha1",
    "argoproj.io/v1alpha1/AppProject",
    "argoproj.io/v1alpha1/Application",
    "autoscaling/v2",
    "autoscaling/v2/HorizontalPodAutoscaler",
    "batch/v1",
    "batch/v1/CronJob",
    "batch/v1/Job",
    "networking.k8s.io/v1",
    "networking.k8s.io/v1/Ingress",
    "networking.k8s.io/v1/NetworkPolicy",
    "policy/v1",
    "policy/v1/PodDisruptionBudget",
    "rbac.authorization.k8s.io/v1",
    "rbac.authorization.k8s.io/v1/ClusterRole",
    "rbac.authorization.k8s.io/v1/ClusterRoleBinding",
    "rbac.authorization.k8s.io/v1/Role",
    "rbac.authorization.k8s.io/v1/RoleBinding",
    "v1",
    "v1/ConfigMap",
    "v1/Namespace",
    "v1/PersistentVolumeClaim",
    "v1/Pod",
    "v1/Secret",
    "v1/Service",
    "v1/ServiceAccount",
)


class CmpError(Exception):
    """A failure Argo CD would report: bad plugin.yaml, failed discovery or announcement."""


# --------------------------------------------------------------------------------------------
# plugin.yaml


def _field(mapping: Mapping[str, Any], name: str) -> Any:
    """Go encoding/json lookup: exact or case-insensitive key, the last matching key wins."""
    found: Any = None
    for key, value in mapping.items():
        if isinstance(key, str) and key.casefold() == name.casefold():
            found = value
    return found


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise CmpError(f"invalid plugin configuration file. {where} must be a mapping")
    return value


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise CmpError(f"invalid plugin configuration file. {where} must be a list of strings")
    return tuple(value)


def _command(value: Any, where: str) -> tuple[str, ...]:
    """Command.command + Command.args, the argv Go's exec.CommandContext receives."""
    spec = _mapping(value, where)
    command = _strings(_field(spec, "command"), f"{where}.command")
    args = _strings(_field(spec, "args"), f"{where}.args")
    return command + args if command else ()


def _check_announcement(item: Any, where: str) -> dict[str, Any]:
    """Reject what Go's json.Unmarshal into a ParameterAnnouncement would reject."""
    if not isinstance(item, dict):
        raise CmpError(f"{where} must be an object")
    for key in ("name", "title", "tooltip", "itemType", "collectionType", "string"):
        if _field(item, key) is not None and not isinstance(_field(item, key), str):
            raise CmpError(f"{where}.{key} must be a string")
    if _field(item, "required") is not None and not isinstance(_field(item, "required"), bool):
        raise CmpError(f"{where}.required must be a boolean")
    array = _field(item, "array")
    if array is not None and not (
        isinstance(array, list) and all(isinstance(v, str) for v in array)
    ):
        raise CmpError(f"{where}.array must be a list of strings")
    map_value = _field(item, "map")
    if map_value is not None and not (
        isinstance(map_value, dict) and all(isinstance(v, str) for v in map_value.values())
    ):
        raise CmpError(f"{where}.map values must be strings (map<string,string> in the proto)")
    return item


@dataclass(frozen=True)
class PluginConfig:
    """A parsed plugin.yaml, validated like argo-cd's ValidatePluginConfig; unknown keys ignored."""

    name: str
    version: str
    init: tuple[str, ...]
    generate: tuple[str, ...]
    discover: dict[str, Any]
    static_parameters: tuple[dict[str, Any], ...]
    dynamic_parameters: tuple[str, ...]
    preserve_file_mode: bool
    raw: dict[str, Any] = field(repr=False)

    @property
    def socket_name(self) -> str:
        """What an Application's spec.source.plugin.name must be (config.go: Address)."""
        return f"{self.name}-{self.version}" if self.version else self.name

    @property
    def discovery_configured(self) -> bool:
        """config.go: Discover.IsDefined."""
        return bool(self.discover_file_name or self.discover_glob or self.discover_command)

    @property
    def discover_file_name(self) -> str:
        return str(_field(self.discover, "fileName") or "")

    @property
    def discover_glob(self) -> str:
        return str(_field(_mapping(_field(self.discover, "find"), "find"), "glob") or "")

    @property
    def discover_command(self) -> tuple[str, ...]:
        return _command(_field(self.discover, "find"), "spec.discover.find")

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> PluginConfig:
        metadata = _mapping(_field(raw, "metadata"), "metadata")
        spec = _mapping(_field(raw, "spec"), "spec")
        name = _field(metadata, "name") or ""
        kind = _field(raw, "kind") or ""
        if not name:
            raise CmpError("invalid plugin configuration file. metadata.name should be non-empty")
        if kind != PLUGIN_KIND:
            raise CmpError(
                f"invalid plugin configuration file. kind should be {PLUGIN_KIND}, found {kind}"
            )
        generate_spec = _mapping(_field(spec, "generate"), "spec.generate")
        if not _strings(_field(generate_spec, "command"), "spec.generate.command"):
            raise CmpError(
                "invalid plugin configuration file. spec.generate command should be non-empty"
            )
        discover = dict(_mapping(_field(spec, "discover"), "spec.discover"))
        _command(_field(discover, "find"), "spec.discover.find")  # type errors fail at load time
        parameters = _mapping(_field(spec, "parameters"), "spec.parameters")
        static = _field(parameters, "static") or []
        if not isinstance(static, list):
            raise CmpError(
                "invalid plugin configuration file. spec.parameters.static must be a list"
            )
        return cls(
            name=str(name),
            version=str(_field(spec, "version") or ""),
            init=_command(_field(spec, "init"), "spec.init"),
            generate=_command(generate_spec, "spec.generate"),
            discover=discover,
            static_parameters=tuple(
                _check_announcement(item, f"spec.parameters.static[{index}]")
                for index, item in enumerate(static)
            ),
            dynamic_parameters=_command(_field(parameters, "dynamic"), "spec.parameters.dynamic"),
            preserve_file_mode=bool(_field(spec, "preserveFileMode")),
            raw=dict(raw),
        )

    @classmethod
    def load(cls, path: Path) -> PluginConfig:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise CmpError(f"{path}: plugin.yaml must be a mapping")
        return cls.from_mapping(raw)


# --------------------------------------------------------------------------------------------
# The Application


@dataclass(frozen=True)
class AppSpec:
    """The parts of an Application (and of the repo-server request) a CMP can observe."""

    name: str
    app_namespace: str = "argocd"
    controller_namespace: str = "argocd"
    project: str = "default"
    source_path: str = "."
    repo_url: str = "https://git.example.com/org/repo.git"
    target_revision: str = "HEAD"
    revision: str = "0" * 40
    destination_namespace: str = ""
    # spec.source.plugin: {name?, env: [{name, value}], parameters: [{name, string?|array?|map?}]}
    plugin: Mapping[str, Any] | None = None
    kube_version: str = "1.31.0"
    api_versions: tuple[str, ...] = DEFAULT_API_VERSIONS

    @property
    def instance_name(self) -> str:
        """types.go: InstanceName, what ARGOCD_APP_NAME carries."""
        if not self.app_namespace or self.app_namespace == self.controller_namespace:
            return self.name
        return f"{self.app_namespace}_{self.name}"


# --------------------------------------------------------------------------------------------
# Environment (repository.go: newEnv, getPluginEnvs, getPluginParamEnvs; types.go)


def _is_shell_special(char: str) -> bool:
    return char in "*#$@!?-0123456789"


def _is_alnum(char: str) -> bool:
    return char == "_" or ("0" <= char <= "9") or ("a" <= char <= "z") or ("A" <= char <= "Z")


def _shell_name(text: str) -> tuple[str, int]:
    """Go os.getShellName: the variable name after `$` and how many characters it spans."""
    if text[0] == "{":
        if len(text) > 2 and _is_shell_special(text[1]) and text[2] == "}":
            return text[1], 3
        for index in range(1, len(text)):
            if text[index] == "}":
                if index == 1:
                    return "", 2  # "${}" is eaten
                return text[1:index], index + 1
        return "", 1  # "${" without "}" is eaten
    if _is_shell_special(text[0]):
        return text[0], 1
    index = 0
    while index < len(text) and _is_alnum(text[index]):
        index += 1
    return text[:index], index


def envsubst(text: str, variables: Mapping[str, str]) -> str:
    """types.go Env.Envsubst = Go os.Expand: unknown names become "", `$$` becomes `$`."""
    out: list[str] = []
    start = 0
    index = 0
    while index < len(text):
        if text[index] == "$" and index + 1 < len(text):
            out.append(text[start:index])
            name, width = _shell_name(text[index + 1 :])
            if name == "" and width > 0:
                pass  # invalid syntax is swallowed
            elif name == "":
                out.append("$")
            else:
                out.append("$" if name == "$" else variables.get(name, ""))
            index += width
            start = index + 1
        index += 1
    out.append(text[start:])
    return "".join(out)


def escaped(name: str) -> str:
    """types.go escaped(): upper-case per rune, then every rune outside [A-Z0-9_] becomes `_`."""
    upper = "".join(char.upper() if len(char.upper()) == 1 else char for char in name)
    return re.sub(r"[^A-Z0-9_]", "_", upper)


def _go_json(value: Any) -> str:
    """Go json.Marshal of a map: compact, sorted keys, HTML characters escaped."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escape)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def parameters_environ(parameters: Sequence[Mapping[str, Any]] | None) -> list[str]:
    """types.go Parameters.Environ: ARGOCD_APP_PARAMETERS, then PARAM_* (string, map, array)."""
    marshalled: list[dict[str, Any]] = []
    env: list[str] = []
    for parameter in parameters or ():
        name = str(parameter.get("name", ""))
        out: dict[str, Any] = {"name": name}
        base = "PARAM_" + escaped(name)
        if parameter.get("string") is not None:
            out["string"] = parameter["string"]
            env.append(f"{base}={parameter['string']}")
        if "map" in parameter:
            mapping = parameter["map"] or {}
            out["map"] = mapping
            # Go iterates the map in random order; sorted keeps collisions reproducible here.
            env.extend(f"{base}_{escaped(key)}={mapping[key]}" for key in sorted(mapping))
        if "array" in parameter:
            array = parameter["array"] or []
            out["array"] = array
            env.extend(f"{base}_{index}={item}" for index, item in enumerate(array))
        marshalled.append(out)
    # A nil Go slice marshals to null; an empty list never survives the protobuf trip.
    json_value = _go_json(marshalled) if marshalled else "null"
    return [f"ARGOCD_APP_PARAMETERS={json_value}", *env]


def plugin_param_envs(env: Sequence[str], plugin: Mapping[str, Any] | None) -> list[str]:
    """repository.go getPluginParamEnvs: ARGOCD_ENV_* envsubst'ed over `env`, then parameters."""
    result = list(env)
    if plugin is None:
        return result
    variables: dict[str, str] = {}
    for entry in env:
        name, _, value = entry.partition("=")
        variables[name] = value
    for entry in plugin.get("env") or ():
        result.append(
            f"ARGOCD_ENV_{entry['name']}={envsubst(str(entry.get('value', '')), variables)}"
        )
    result.extend(parameters_environ(plugin.get("parameters")))
    return result


def kube_version_string(version: str) -> str:
    """repository.go parseKubeVersion: ParseGeneric(...).String(), v1.29.3+k3s1 -> 1.29.3."""
    if not version:
        return ""
    match = re.match(r"^\s*v?([0-9]+(?:\.[0-9]+)+)", version)
    if match is None:
        raise CmpError(f"could not parse kubernetes version {version}")
    return ".".join(str(int(part)) for part in match.group(1).split("."))


def build_vars(app: AppSpec) -> list[str]:
    """repository.go newEnv: the nine ARGOCD_APP_* build variables."""
    return [
        f"ARGOCD_APP_NAME={app.instance_name}",
        f"ARGOCD_APP_NAMESPACE={app.destination_namespace}",
        f"ARGOCD_APP_PROJECT_NAME={app.project}",
        f"ARGOCD_APP_REVISION={app.revision}",
        f"ARGOCD_APP_REVISION_SHORT={app.revision[:7]}",
        f"ARGOCD_APP_REVISION_SHORT_8={app.revision[:8]}",
        f"ARGOCD_APP_SOURCE_REPO_URL={app.repo_url}",
        f"ARGOCD_APP_SOURCE_PATH={app.source_path}",
        f"ARGOCD_APP_SOURCE_TARGET_REVISION={app.target_revision}",
    ]


def request_env(app: AppSpec) -> list[str]:
    """repository.go getPluginEnvs: what the repo-server sends for discovery and generate."""
    env = [
        *build_vars(app),
        f"KUBE_VERSION={kube_version_string(app.kube_version)}",
        f"KUBE_API_VERSIONS={','.join(app.api_versions)}",
    ]
    return plugin_param_envs(env, app.plugin)


def announcement_request_env(app: AppSpec) -> list[str]:
    """repository.go populatePluginAppDetails: the reduced env for the UI's Parameters tab."""
    env = [
        f"ARGOCD_APP_NAME={app.instance_name}",
        f"ARGOCD_APP_SOURCE_REPO_URL={app.repo_url}",
        f"ARGOCD_APP_SOURCE_PATH={app.source_path}",
        f"ARGOCD_APP_SOURCE_TARGET_REVISION={app.target_revision}",
    ]
    return plugin_param_envs(env, app.plugin)


def env_to_dict(env: Sequence[str]) -> dict[str, str]:
    """A NAME=value list as Go's os/exec hands it to the child: the last duplicate wins."""
    result: dict[str, str] = {}
    for entry in env:
        name, _, value = entry.partition("=")
        if name:
            result[name] = value
    return result


# --------------------------------------------------------------------------------------------
# Go globbing: filepath.Match/Glob (fileName, tar exclusions), mattn/go-zglob v0.0.6 (find.glob)


class BadPatternError(CmpError):
    """Go's filepath.ErrBadPattern."""

    def __init__(self, pattern: str) -> None:
        super().__init__(f"syntax error in pattern {pattern!r}")


def _go_class_char(pattern: str, index: int) -> tuple[str, int]:
    """Go filepath getEsc: one (possibly escaped) character inside [...]."""
    if index >= len(pattern) or pattern[index] in "-]":
        raise BadPatternError(pattern)
    if pattern[index] == "\\":
        index += 1
        if index >= len(pattern):
            raise BadPatternError(pattern)
    if index + 1 >= len(pattern):
        raise BadPatternError(pattern)
    return pattern[index], index + 1


def go_match_regex(pattern: str) -> re.Pattern[str]:
    """Compile a Go filepath.Match pattern (`*`/`?` stop at `/`, `[^...]`, backslash escapes)."""
    out: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "*":
            out.append("[^/]*")
            index += 1
        elif char == "?":
            out.append("[^/]")
            index += 1
        elif char == "\\":
            if index + 1 >= len(pattern):
                raise BadPatternError(pattern)
            out.append(re.escape(pattern[index + 1]))
            index += 2
        elif char == "[":
            index += 1
            negated = index < len(pattern) and pattern[index] == "^"
            if negated:
                index += 1
            ranges: list[str] = []
            count = 0
            while True:
                if index < len(pattern) and pattern[index] == "]" and count > 0:
                    index += 1
                    break
                low, index = _go_class_char(pattern, index)
                high = low
                if pattern[index] == "-":
                    high, index = _go_class_char(pattern, index + 1)
                if low <= high:  # Go accepts an inverted range that simply never matches
                    ranges.append(f"{re.escape(low)}-{re.escape(high)}")
                count += 1
            body = "".join(ranges)
            if negated:
                out.append(f"[^{body}]" if body else "(?s:.)")
            else:
                out.append(f"[{body}]" if body else "(?!)")
        else:
            out.append(re.escape(char))
            index += 1
    return re.compile("".join(out), re.DOTALL)


def go_match(pattern: str, name: str) -> bool:
    """Go path/filepath.Match."""
    return go_match_regex(pattern).fullmatch(name) is not None


def _has_meta(path: str) -> bool:
    return any(char in path for char in "*?[\\")


def go_glob(pattern: str) -> list[str]:
    """Go path/filepath.Glob (no `**`, hidden files match `*`, no symlink-following surprises)."""
    go_match_regex(pattern)
    if not _has_meta(pattern):
        return [pattern] if os.path.lexists(pattern) else []
    directory, _, file_pattern = pattern.rpartition("/")
    directory = "/" if pattern.startswith("/") and directory == "" else (directory or ".")
    if not _has_meta(directory):
        return _glob_in(directory, file_pattern)
    if directory == pattern:
        raise BadPatternError(pattern)
    matches: list[str] = []
    for parent in go_glob(directory):
        matches.extend(_glob_in(parent, file_pattern))
    return matches


def _glob_in(directory: str, file_pattern: str) -> list[str]:
    if not os.path.isdir(directory):
        return []
    regex = go_match_regex(file_pattern)
    return [
        os.path.join(directory, name)
        for name in sorted(os.listdir(directory))
        if regex.fullmatch(name)
    ]


def _zglob_literal(char: str) -> str:
    if char == "/" or char.isascii() and char.isalnum() or ord(char) > 255:
        return char
    return re.escape(char)


def zglob(pattern: str) -> list[str]:
    """mattn/go-zglob v0.0.6 Glob: `**/` spans directories, `{a,b}` alternates, `?` is literal."""
    segments = pattern.split("/")
    root = ""
    prefix: list[str] = []
    for segment in segments:
        if any(char in segment for char in "*{"):
            root = "/".join(prefix) or ("/" if pattern.startswith("/") else ".")
            break
        prefix.append(segment)
    if not root:
        return [pattern] if os.path.exists(pattern) else []
    regex: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index < len(pattern) - 2:
            regex.append(re.escape(pattern[index + 1]))
            index += 2
        elif char == "*":
            if pattern[index + 1 : index + 3] == "*/":
                regex.append("(.*/)?")
                index += 3
            else:
                regex.append("[^/]*")
                index += 1
        elif char == "[" and "]" in pattern[index + 2 :]:
            end = pattern.index("]", index + 1)
            regex.append(f"[{pattern[index + 1 : end]}]")
            index = end + 1
        elif char == "{" and "}" in pattern[index:]:
            end = pattern.index("}", index)
            options = pattern[index + 1 : end].split(",")
            regex.append(
                "(" + "|".join("".join(map(_zglob_literal, option)) for option in options) + ")"
            )
            index = end + 1
        else:
            regex.append(_zglob_literal(char))
            index += 1
    if regex and regex[-1].endswith("/"):
        regex.append("[^/]*")
    compiled = re.compile("".join(regex))
    matches: list[str] = []
    for directory, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = os.path.join(directory, name)
            if compiled.fullmatch(path):
                matches.append(path)
    return matches


# --------------------------------------------------------------------------------------------
# The request's copy of the repository (util/io/files/tar.go: Tgz on the repo-server, untar here)


def _walk_lexical(root: Path, exclude: Sequence[str]) -> Iterator[tuple[Path, str]]:
    """filepath.Walk order (lexical, symlinks not followed) minus the tar exclusions."""
    patterns = [go_match_regex(pattern) for pattern in exclude]
    pending = [root]
    while pending:
        directory = pending.pop()
        children: list[Path] = []
        for name in sorted(os.listdir(directory)):
            path = directory / name
            relative = path.relative_to(root).as_posix()
            if any(pattern.fullmatch(relative) for pattern in patterns):
                continue
            yield path, relative
            if path.is_dir() and not path.is_symlink():
                children.append(path)
        # Depth-first, lexical: push in reverse so the smallest name is walked first.
        pending.extend(reversed(children))


def _inbound(candidate: str, base: str) -> bool:
    return os.path.normpath(candidate).startswith(os.path.normpath(base) + os.sep)


def copy_repository(
    source: Path,
    destination: Path,
    *,
    exclude: Sequence[str] = (),
    preserve_file_mode: bool = False,
) -> None:
    """What the cmp-server's request dir receives: files 0644, dirs 0755, in-bound symlinks."""
    files_written = 0
    for path, relative in _walk_lexical(source, exclude):
        target = destination / relative
        info = path.lstat()
        mode = stat.S_IMODE(info.st_mode)
        if stat.S_ISLNK(info.st_mode):
            # untar: filepath.Join(dir, linkname) (absolute links are re-rooted), must stay inside.
            link_target = os.path.normpath(f"{target.parent}/{os.readlink(path)}")
            real = os.path.realpath(link_target) if os.path.exists(link_target) else link_target
            if not _inbound(real, str(destination)):
                raise CmpError(f"illegal filepath in symlink: {link_target}")
            target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            os.symlink(os.path.relpath(real, target.parent), target)
        elif stat.S_ISDIR(info.st_mode):
            target.mkdir(mode=mode if preserve_file_mode else 0o755, parents=True, exist_ok=True)
        elif stat.S_ISREG(info.st_mode):
            target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            descriptor = os.open(
                target,
                os.O_RDWR | os.O_CREAT | os.O_TRUNC,
                mode if preserve_file_mode else 0o644,
            )
            with os.fdopen(descriptor, "wb") as handle, path.open("rb") as original:
                shutil.copyfileobj(original, handle)
            files_written += 1
    if files_written == 0:
        raise CmpError(f"no files to send({source})")


# --------------------------------------------------------------------------------------------
# Running commands (plugin.go: runCommand)

_SIGNAL_TEXT = {
    signal.SIGKILL: "killed",
    signal.SIGTERM: "terminated",
    signal.SIGINT: "interrupt",
    signal.SIGHUP: "hangup",
    signal.SIGSEGV: "segmentation fault",
    signal.SIGABRT: "aborted",
    signal.SIGPIPE: "broken pipe",
}


def _go_exit_text(returncode: int) -> str:
    """Go's ExitError text: `exit status N` or `signal: killed`."""
    if returncode >= 0:
        return f"exit status {returncode}"
    number = -returncode
    try:
        return "signal: " + _SIGNAL_TEXT.get(signal.Signals(number), f"signal {number}")
    except ValueError:
        return f"signal: signal {number}"


def _go_quote(arg: str) -> str:
    """strconv.Quote, enough for readable argv in error messages."""
    return json.dumps(arg, ensure_ascii=False)


def command_text(argv: Sequence[str]) -> str:
    """util/exec GetCommandArgsToLog: args joined by spaces, quoted when they contain whitespace."""
    parts: list[str] = []
    for arg in argv:
        if arg == "":
            parts.append('""')
        elif any(char.isspace() for char in arg):
            parts.append(_go_quote(arg))
        else:
            parts.append(arg)
    return " ".join(parts)


@dataclass(frozen=True)
class CommandRun:
    """One finished command: trimmed stdout (one trailing newline removed) and Argo's error text."""

    stdout: str
    stderr: str
    exit_code: int | None
    error: str | None


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def run_command(
    argv: Sequence[str],
    cwd: Path,
    env: Sequence[str],
    deadline: float,
    kill_grace: float = KILL_GRACE_SECONDS,
) -> CommandRun:
    """argv without a shell, own process group; at the deadline SIGTERM the group (and SIGKILL the
    leader, as exec.CommandContext does), SIGKILL the group `kill_grace` seconds later."""
    env_map = env_to_dict(env)
    try:
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=env_map,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            process_group=0,
        )
    except FileNotFoundError:
        # cmd.Start fails before anything runs; Argo returns Go's error as is.
        if "/" in argv[0]:
            message = f"fork/exec {argv[0]}: no such file or directory"
        else:
            message = f'exec: "{argv[0]}": executable file not found in $PATH'
        return CommandRun("", "", None, message)
    except PermissionError:
        return CommandRun("", "", None, f"fork/exec {argv[0]}: permission denied")
    try:
        out, err = process.communicate(timeout=max(deadline - time.monotonic(), 0.0))
    except subprocess.TimeoutExpired:
        # Go races exec.CommandContext's SIGKILL of the leader against plugin.go's SIGTERM of the
        # group; leader first keeps the reported "signal: killed" reproducible.
        process.kill()
        _signal_group(process.pid, signal.SIGTERM)
        # Go's goroutine kills the group after the grace even if Wait already returned.
        killer = threading.Timer(kill_grace, _signal_group, (process.pid, signal.SIGKILL))
        killer.daemon = True
        killer.start()
        # Wait returns only when every holder of stdout/stderr has closed it.
        out, err = process.communicate()
    return _command_run(argv, out, err, process.returncode)


def _command_run(argv: Sequence[str], out: bytes, err: bytes, returncode: int) -> CommandRun:
    """What Argo CD keeps of a finished command: stdout less one newline, and its error text."""
    stdout = out.decode("utf-8", errors="replace")
    stderr = err.decode("utf-8", errors="replace")
    stdout = stdout[:-1] if stdout.endswith("\n") else stdout
    error = None
    if returncode != 0:
        error = f"`{command_text(argv)}` failed {_go_exit_text(returncode)}"
        if stderr.strip():
            error += f": {stderr.strip()}"
    return CommandRun(stdout, stderr, returncode, error)


class CommandRunner(Protocol):
    """Where the plugin's commands run: this machine (`run_command`, the venv's tagpin) or a
    container of the image (`ContainerRunner`). Same arguments, same result, same Go texts."""

    def __call__(
        self,
        argv: Sequence[str],
        cwd: Path,
        env: Sequence[str],
        deadline: float,
        kill_grace: float = KILL_GRACE_SECONDS,
    ) -> CommandRun: ...


# Started by `podman exec` in the container: notes its pid (the exec'd process leads its own
# process group there, as cmp-server's children do) so a deadline can signal the group, then
# becomes the command itself; -I keeps the request's PYTHON* variables from acting on it.
_LAUNCH = (
    "import os, sys\n"
    "open(sys.argv[1], 'w').write(str(os.getpid()))\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)
# At the deadline, as run_command: SIGKILL to the leader and SIGTERM to its group, then SIGKILL
# to the group after the grace.
_SIGNAL_GROUP = (
    "import contextlib, os, signal, sys\n"
    "pid = int(open(sys.argv[1]).read())\n"
    "with contextlib.suppress(ProcessLookupError):\n"
    "    if sys.argv[2] == 'SIGTERM':\n"
    "        os.kill(pid, signal.SIGKILL)\n"
    "    os.killpg(pid, getattr(signal, sys.argv[2]))\n"
)


@dataclass(frozen=True)
class ContainerRunner:
    """Runs the plugin's commands in a running container, as argocd-cmp-server does inside the
    sidecar: `podman exec` with the request's working directory and environment on top of the
    container's own (the image's and the pod's), no shell, stdin closed; at the deadline the
    command's process group is signalled inside the container as plugin.go does.

    The emulator copies each request on this machine under `host_dir`; the container sees that
    directory read-only at `container_dir` (cmp-server's own /tmp/_cmp_server). Differences
    from a local run: a missing executable is an exit status with Python's message rather than
    Go's start error, and a command killed by signal N reports podman's exit status 128+N, read
    back as that signal (tagpin never exits above 127 itself)."""

    podman: tuple[str, ...]
    container: str
    host_dir: Path
    container_dir: str = "/tmp/_cmp_server"

    def container_path(self, path: Path) -> str:
        relative = Path(os.path.realpath(path)).relative_to(os.path.realpath(self.host_dir))
        return str(PurePosixPath(self.container_dir, relative.as_posix()))

    def _signal(self, pidfile: str, signal_name: str) -> None:
        subprocess.run(
            [*self.podman, "exec", self.container, "python3", "-I", "-c", _SIGNAL_GROUP]
            + [pidfile, signal_name],
            capture_output=True,
            timeout=60,
            check=False,
        )

    def __call__(
        self,
        argv: Sequence[str],
        cwd: Path,
        env: Sequence[str],
        deadline: float,
        kill_grace: float = KILL_GRACE_SECONDS,
    ) -> CommandRun:
        pidfile = f"/tmp/.cmp-exec-{uuid.uuid4().hex}.pid"
        command = [*self.podman, "exec", "--workdir", self.container_path(cwd)]
        for name, value in env_to_dict(env).items():
            command.append(f"--env={name}={value}")
        command += [self.container, "python3", "-I", "-c", _LAUNCH, pidfile, *argv]
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            out, err = process.communicate(timeout=max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            self._signal(pidfile, "SIGTERM")
            killer = threading.Timer(kill_grace, self._signal, (pidfile, "SIGKILL"))
            killer.daemon = True
            killer.start()
            out, err = process.communicate()
        code = process.returncode
        returncode = 128 - code if code > 128 else code  # podman's 128+N: killed by signal N
        return _command_run(argv, out, err, returncode)


# --------------------------------------------------------------------------------------------
# Output parsing (gitops-engine kube.SplitYAMLToString / SplitYAML, repository.go GenerateManifests)


class ManifestParseError(CmpError):
    """The stdout Argo CD would refuse."""


class _JsonCompatibleLoader(yaml.SafeLoader):
    """sigs.k8s.io/yaml turns every document into JSON: timestamps stay strings."""


def _timestamp_as_string(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    return str(loader.construct_scalar(node))  # type: ignore[arg-type]


_JsonCompatibleLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_string)


def _json_key(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    return str(key)


def _to_json_value(value: Any) -> Any:
    if isinstance(value, dict):
        return {_json_key(key): _to_json_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_to_json_value(item) for item in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def _yaml_documents(text: str) -> Iterator[str]:
    """k8s YAMLReader: a line that is `---` plus only whitespace ends a document."""
    buffer: list[str] = []
    for line in re.split(r"(?<=\n)", text):
        if not line:
            continue
        if line.startswith("---") and line[3:].strip() == "":
            if buffer:
                yield "".join(buffer)
                buffer = []
            continue
        buffer.append(line)
    if buffer:
        yield "".join(buffer)


def _json_documents(text: str) -> Iterator[Any]:
    decoder = json.JSONDecoder()
    index = 0
    while True:
        while index < len(text) and text[index].isspace():
            index += 1
        if index >= len(text):
            return
        try:
            value, index = decoder.raw_decode(text, index)
        except json.JSONDecodeError as error:
            raise ManifestParseError(f"failed to unmarshal manifest: {error}") from error
        yield value


def split_documents(stdout: str) -> list[Any]:
    """kube.SplitYAMLToString: JSON stream if the first non-space is `{`, else YAML; no nulls."""
    if stdout.lstrip().startswith("{"):
        documents = list(_json_documents(stdout))
    else:
        documents = []
        for text in _yaml_documents(stdout):
            try:
                loaded = yaml.load(text, Loader=_JsonCompatibleLoader)  # noqa: S506 - SafeLoader subclass
            except yaml.YAMLError as error:
                raise ManifestParseError(f"failed to unmarshal manifest: {error}") from error
            documents.append(_to_json_value(loaded))
    return [document for document in documents if document is not None]


def parse_manifests(stdout: str) -> list[dict[str, Any]]:
    """Every object Argo CD would apply from this stdout, Lists flattened, null Lists dropped."""
    objects: list[dict[str, Any]] = []
    for document in split_documents(stdout):
        compact = json.dumps(document, sort_keys=True, separators=(",", ":"))
        if not isinstance(document, dict):
            raise ManifestParseError(
                "failed to convert CMP manifests to unstructured objects: failed to unmarshal "
                f"manifest: cannot unmarshal {type(document).__name__} into an object: {compact}"
            )
        if not document.get("kind"):
            raise ManifestParseError(
                "failed to convert CMP manifests to unstructured objects: failed to unmarshal "
                f"manifest: Object 'Kind' is missing in '{compact}'"
            )
        items = document.get("items", ...)
        if isinstance(items, list):
            for item in items:
                if not isinstance(item, dict):
                    raise ManifestParseError(f"items member is not an object: {item!r}")
                objects.append(item)
        elif items is None and "spec" not in document and "status" not in document:
            continue  # repository.go isNullList
        else:
            objects.append(document)
    return objects


# --------------------------------------------------------------------------------------------
# The server


@dataclass(frozen=True)
class GenerateResult:
    """What one GenerateManifests request produced. `error` is the text Argo CD would show."""

    objects: list[dict[str, Any]]
    stdout: str
    stderr: str
    exit_code: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


class CmpServer:
    """One sidecar (one plugin.yaml) plus the repo-server logic that feeds it."""

    def __init__(
        self,
        plugin: PluginConfig,
        sidecar_env: Mapping[str, str],
        workdir: Path,
        timeout: float = 60.0,
        kill_grace: float = KILL_GRACE_SECONDS,
        runner: CommandRunner = run_command,
    ) -> None:
        self.plugin = plugin
        self.sidecar_env = dict(sidecar_env)
        self.workdir = Path(workdir)
        self.timeout = timeout
        self.kill_grace = kill_grace
        self.runner = runner

    @classmethod
    def from_plugin_yaml(
        cls,
        path: Path,
        *,
        sidecar_env: Mapping[str, str] | None = None,
        workdir: Path,
        timeout: float = 60.0,
        runner: CommandRunner = run_command,
    ) -> CmpServer:
        """Load plugin.yaml; the sidecar env defaults to this process's environment."""
        env = dict(os.environ) if sidecar_env is None else sidecar_env
        return cls(PluginConfig.load(path), env, workdir, timeout, runner=runner)

    # -- environment ------------------------------------------------------------------------

    def _sidecar_entries(self) -> list[str]:
        return [f"{name}={value}" for name, value in self.sidecar_env.items()]

    def build_env(self, app: AppSpec) -> list[str]:
        """The env list init/generate receive: sidecar env, then the request's (later wins)."""
        return self._sidecar_entries() + [e for e in request_env(app) if e.partition("=")[0]]

    # -- request plumbing -------------------------------------------------------------------

    def _request_dir(self, repo_root: Path, exclude: Sequence[str]) -> Path:
        base = Path(os.path.realpath(self.workdir)) / "_cmp_server"
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        request = base / str(uuid.uuid4())
        request.mkdir(mode=0o755)
        try:
            copy_repository(
                Path(repo_root),
                request,
                exclude=exclude,
                preserve_file_mode=self.plugin.preserve_file_mode,
            )
        except BaseException:
            shutil.rmtree(request, ignore_errors=True)
            raise
        return request

    @staticmethod
    def _app_dir(request: Path, app: AppSpec) -> Path:
        if os.path.isabs(app.source_path):
            raise CmpError(f"{app.source_path}: app path is absolute")
        app_dir = os.path.normpath(os.path.join(request, app.source_path))
        if not app_dir.startswith(str(request)):
            raise CmpError("illegal appPath: out of workDir bound")
        if not os.path.isdir(app_dir):
            raise CmpError(f"{app.source_path}: app path does not exist")
        return Path(app_dir)

    def _match(self, app_dir: Path, env: Sequence[str], deadline: float) -> bool:
        """plugin.go matchRepository on an already extracted request dir."""
        config = self.plugin
        if config.discover_file_name:
            return bool(go_glob(os.path.normpath(os.path.join(app_dir, config.discover_file_name))))
        if config.discover_glob:
            return bool(zglob(os.path.normpath(os.path.join(app_dir, config.discover_glob))))
        if config.discover_command:
            run = self.runner(
                config.discover_command,
                app_dir,
                self._sidecar_entries() + list(env),
                deadline,
                self.kill_grace,
            )
            if run.error is not None:
                raise CmpError(f"error running find command: {run.error}")
            return run.stdout != ""
        return False

    def _selection_error(self, app: AppSpec, app_dir: Path, deadline: float) -> str | None:
        """discovery.go DetectConfigManagementPlugin for this one sidecar: why it is not chosen."""
        named = (app.plugin or {}).get("name") or ""
        env = request_env(app)
        if named:
            if named != self.plugin.socket_name:
                return (
                    f'could not find cmp-server plugin with name "{named}" supporting the given '
                    f"repository (this sidecar's socket is {self.plugin.socket_name}.sock)"
                )
            if not self.plugin.discovery_configured:
                return None
        elif not self.plugin.discovery_configured:
            return "could not find plugin supporting the given repository"
        try:
            supported = self._match(app_dir, env, deadline)
        except CmpError as error:
            return (
                "could not find plugin supporting the given repository: error checking repository"
                f" support for plugin {self.plugin.socket_name}.sock: match repository error:"
                f" {error}"
            )
        if supported:
            return None
        if named:
            return (
                f'could not find cmp-server plugin with name "{named}" supporting the given'
                " repository"
            )
        return "could not find plugin supporting the given repository"

    # -- the three RPCs ---------------------------------------------------------------------

    def match_repository(
        self, repo_root: Path, app: AppSpec, *, exclude: Sequence[str] = ()
    ) -> bool:
        """MatchRepository on a fresh copy. Auto-discovery (no plugin block) sends only the build
        vars; a plugin block sends the full env. Raises CmpError when find.command fails."""
        env = build_vars(app) if app.plugin is None else request_env(app)
        request = self._request_dir(repo_root, exclude)
        try:
            app_dir = self._app_dir(request, app)
            return self._match(app_dir, env, time.monotonic() + self.timeout)
        finally:
            shutil.rmtree(request, ignore_errors=True)

    def generate(
        self, repo_root: Path, app: AppSpec, *, exclude: Sequence[str] = ()
    ) -> GenerateResult:
        """Select this plugin like the repo-server, then GenerateManifest on a fresh copy."""
        deadline = time.monotonic() + self.timeout
        try:
            request = self._request_dir(repo_root, exclude)
        except CmpError as error:
            return GenerateResult([], "", "", None, str(error))
        try:
            try:
                app_dir = self._app_dir(request, app)
            except CmpError as error:
                return GenerateResult([], "", "", None, str(error))
            selection_error = self._selection_error(app, app_dir, deadline)
            if selection_error is not None:
                return GenerateResult([], "", "", None, selection_error)
            env = self.build_env(app)
            if self.plugin.init:
                init = self.runner(self.plugin.init, app_dir, env, deadline, self.kill_grace)
                if init.error is not None:
                    return GenerateResult([], init.stdout, init.stderr, init.exit_code, init.error)
            run = self.runner(self.plugin.generate, app_dir, env, deadline, self.kill_grace)
        finally:
            shutil.rmtree(request, ignore_errors=True)
        if run.error is not None:
            return GenerateResult([], run.stdout, run.stderr, run.exit_code, run.error)
        try:
            objects = parse_manifests(run.stdout)
        except CmpError as error:
            return GenerateResult([], run.stdout, run.stderr, run.exit_code, str(error))
        return GenerateResult(objects, run.stdout, run.stderr, run.exit_code, None)

    def parameters_announcement(
        self, repo_root: Path, app: AppSpec, *, exclude: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """GetParametersAnnouncement: dynamic command output (JSON array) then static entries."""
        static = [dict(item) for item in self.plugin.static_parameters]
        if not self.plugin.dynamic_parameters:
            return static
        request = self._request_dir(repo_root, exclude)
        try:
            app_dir = self._app_dir(request, app)
            env = self._sidecar_entries() + announcement_request_env(app)
            run = self.runner(
                self.plugin.dynamic_parameters,
                app_dir,
                env,
                time.monotonic() + self.timeout,
                self.kill_grace,
            )
        finally:
            shutil.rmtree(request, ignore_errors=True)
        if run.error is not None:
            raise CmpError(f"error executing dynamic parameter output command: {run.error}")
        prefix = "error unmarshaling dynamic parameter output into ParametersAnnouncementResponse"
        try:
            dynamic = json.loads(run.stdout)
        except json.JSONDecodeError as error:
            raise CmpError(f"{prefix}: {error}") from error
        if dynamic is None:
            dynamic = []
        if not isinstance(dynamic, list):
            raise CmpError(f"{prefix}: expected a JSON array, got {type(dynamic).__name__}")
        checked = [
            _check_announcement(item, f"announcement[{index}]")
            for index, item in enumerate(dynamic)
        ]
        return checked + static
