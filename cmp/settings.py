"""One table of plugin parameters and one of sidecar settings.

The parameter table feeds three things that must agree: the defaults the code applies, the
static announcements in plugin.yaml (`tagpin plugin-yaml` regenerates it; a test fails on drift)
and the README. Argo CD never sends announced defaults, so the code applies them itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from cmp.errors import ConfigError, Problems

PLUGIN_NAME = "tagpin"
MARKER_FILE = "tagpin.yaml"
LOCK_FILE = "tagpin.lock"
IMAGE_UPDATER_PREFIX = "argocd-image-updater.argoproj.io/"
IMAGE_LIST_KEY = "image-list"  # without it, Image Updater annotations govern no image


class Parameter(NamedTuple):
    name: str
    title: str
    tooltip: str
    collection_type: str  # "string" | "array" | "map", as Argo CD's ParameterAnnouncement
    default: Any

    def announcement(self) -> dict[str, Any]:
        announced: dict[str, Any] = {
            "name": self.name,
            "title": self.title,
            "tooltip": self.tooltip,
            "collectionType": self.collection_type,
        }
        if self.collection_type == "array":
            announced["array"] = list(self.default)
        elif self.collection_type == "map":
            announced["map"] = dict(self.default)
        else:
            announced["string"] = self.default
        return announced


PARAMETERS: tuple[Parameter, ...] = (
    Parameter(
        name="values-files",
        title="Values files",
        tooltip="Extra values files, relative to the app directory, layered in order over "
        "values.yaml and tagpin.yaml's valuesFiles.",
        collection_type="array",
        default=(),
    ),
    Parameter(
        name="values",
        title="Values",
        tooltip="Values set by dotted key, like helm --set (image.tag=v2). Applied last.",
        collection_type="map",
        default={},
    ),
    Parameter(
        name="image-updater",
        title="Image Updater overrides",
        tooltip="Argo CD Image Updater annotation keys without the "
        "argocd-image-updater.argoproj.io/ prefix (image-list, <alias>.allow-tags, ...). "
        "They win over the live Application's annotations.",
        collection_type="map",
        default={},
    ),
)

PARAMETERS_BY_NAME = {p.name: p for p in PARAMETERS}


class Setting(NamedTuple):
    """A sidecar-wide setting read from the environment (not per app). `choices`: the values a
    choice setting takes; `minimum`: the smallest a whole-number setting takes."""

    env: str
    default: str
    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "TAGPIN_CACHE_DIR",
        "$XDG_CACHE_HOME/tagpin, else <tmp>/tagpin-cache-<uid>",
        "Directory of the digest cache shared by concurrent renders.",
    ),
    Setting(
        "TAGPIN_CACHE",
        "on",
        "`on`, `off` (no cache at all) or `refresh` (ask ECR, then update the cache).",
        choices=("on", "off", "refresh"),
    ),
    Setting("TAGPIN_CACHE_TTL", "300", "Seconds a cached tag→digest answer is trusted.", minimum=0),
    Setting(
        "TAGPIN_TAG_LIST_TTL",
        "30",
        "Seconds a cached tag list (branch deploys) is trusted.",
        minimum=0,
    ),
    Setting(
        "TAGPIN_SERVE_STALE_HOURS",
        "0",
        "When ECR is down or throttling, serve cached digests up to this many hours old, "
        "with a warning; 0 = never (the default).",
        minimum=0,
    ),
    Setting(
        "TAGPIN_REDIS_URL",
        "(unset: memory and disk only)",
        "redis:// or rediss:// (TLS) URL of a Redis shared by every replica (Argo CD's "
        "argocd-redis); database number in the path (docs/install.md).",
    ),
    Setting(
        "TAGPIN_REDIS_PASSWORD",
        "(none)",
        "Redis password; or TAGPIN_REDIS_PASSWORD_FILE, a file holding it.",
    ),
    Setting(
        "TAGPIN_REDIS_PASSWORD_FILE",
        "(none)",
        "A file holding the Redis password (a mounted Secret) instead (not both).",
    ),
    Setting(
        "TAGPIN_REDIS_SIGNING_KEY",
        "(required with TAGPIN_REDIS_URL)",
        "At least 32 bytes signing every shared entry (HMAC-SHA256); or "
        "TAGPIN_REDIS_SIGNING_KEY_FILE, a file holding it.",
    ),
    Setting(
        "TAGPIN_REDIS_SIGNING_KEY_FILE",
        "(none)",
        "A file holding the signing key (a mounted Secret) instead (not both).",
    ),
    Setting(
        "TAGPIN_REDIS_TIMEOUT_MS",
        "500",
        "Milliseconds to connect to Redis and for each command; past it the render goes on "
        "without Redis, with a warning.",
        minimum=1,
    ),
    Setting(
        "TAGPIN_ECR_MAX_ATTEMPTS",
        "4",
        "Attempts per ECR call (botocore standard retries).",
        minimum=1,
    ),
    Setting("TAGPIN_ECR_CONNECT_TIMEOUT", "3", "Seconds to connect to ECR.", minimum=1),
    Setting("TAGPIN_ECR_READ_TIMEOUT", "5", "Seconds to wait for an ECR answer.", minimum=1),
    Setting("TAGPIN_ECR_DEADLINE", "25", "Seconds after which no new ECR call starts.", minimum=1),
    Setting("TAGPIN_ECR_CONCURRENCY", "8", "Repositories asked in parallel.", minimum=1),
    Setting(
        "TAGPIN_APP_LOOKUP",
        "auto",
        "`auto`, `on` or `off`: read the live Application's "
        "Image Updater annotations from the Kubernetes API.",
        choices=("auto", "on", "off"),
    ),
    Setting(
        "TAGPIN_PUSH_CLOCK_SKEW",
        "2",
        "Seconds the clocks of webhook and sidecar pods may differ; a cached answer fetched "
        "less than this after a push the webhook announced is not trusted.",
        minimum=0,
    ),
    Setting(
        "TAGPIN_MAX_FILE_BYTES",
        str(32 * 1024 * 1024),
        "Largest app file (template, values) tagpin reads.",
        minimum=1,
    ),
    Setting(
        "TAGPIN_MAX_OUTPUT_BYTES",
        str(64 * 1024 * 1024),
        "Largest rendered output; Argo CD's own gRPC limit is 100 MiB.",
        minimum=1,
    ),
    Setting(
        "TAGPIN_MAX_YAML_NODES",
        "200000",
        "Most YAML nodes in one document, aliases expanded (a node costs ~300 bytes to parse).",
        minimum=1,
    ),
    Setting(
        "TAGPIN_LOCK",
        "use",
        "`use`, `verify`, `strict` or `off`: what a render does with the app's tagpin.lock "
        "(docs/previews.md).",
        choices=("use", "verify", "strict", "off"),
    ),
    Setting(
        "TAGPIN_MAX_CPU_SECONDS",
        "60",
        "CPU seconds one render may use (RLIMIT_CPU; Argo CD's own deadline is 60 s by "
        "default: raise both together); a render server's worker is capped too; 0 = no cap.",
        minimum=0,
    ),
    Setting(
        "TAGPIN_RENDER_SERVER",
        "off",
        "`off`, `on` or `auto`: `tagpin generate` asks a render server's warm worker to render "
        "(`on`), and starts that server itself when none answers (`auto`, set in the image); "
        "without one it renders in its own process (docs/server.md).",
        choices=("off", "on", "auto"),
    ),
    Setting(
        "TAGPIN_RENDER_SERVER_SOCKET",
        "render-server-<version>.sock in $TAGPIN_CACHE_DIR or $XDG_CACHE_HOME/tagpin",
        "The render server's Unix socket (at most 100 bytes); its directory must be writable "
        "by this user alone. Without it or either directory, renders run in-process.",
    ),
    Setting(
        "TAGPIN_KUSTOMIZE",
        "kustomize on PATH, else kubectl (as `kubectl kustomize`)",
        "The kustomize (or kubectl) executable for Kustomize apps (docs/kustomize.md).",
    ),
    Setting(
        "TAGPIN_KUSTOMIZE_REMOTE",
        "off",
        "`off` or `on`: whether Kustomize apps may load remote bases (git or HTTP URLs).",
        choices=("off", "on"),
    ),
    Setting(
        "TAGPIN_KUSTOMIZE_TIMEOUT",
        "45",
        "Seconds one `kustomize build` may run, below Argo CD's 60 s repo-server deadline.",
        minimum=1,
    ),
    Setting(
        "TAGPIN_MAX_MEMORY_MB",
        "auto",
        "Memory (data size) cap of one render, so a runaway template or a huge input fails "
        "with a clear error instead of the sidecar being OOM-killed. `auto`: the container's "
        "cgroup memory limit less 128 MiB, divided by TAGPIN_MAX_PARALLEL_RENDERS (4096 "
        "without a limit); a number of MiB; 0 = no cap.",
    ),
    Setting(
        "TAGPIN_MAX_PARALLEL_RENDERS",
        "2",
        "Renders the sidecar runs at once; the others wait for a slot (up to 40 s). With "
        "TAGPIN_MAX_MEMORY_MB=auto each gets an equal share of the container's memory.",
        minimum=1,
    ),
    # `tagpin webhook` (its own Deployment; each also a flag, see docs/webhook.md)
    Setting(
        "TAGPIN_WEBHOOK_SECRET",
        "(required, or TAGPIN_WEBHOOK_SECRET_FILE)",
        "The shared secret, at least 16 characters; the webhook refuses to start without one.",
    ),
    Setting(
        "TAGPIN_WEBHOOK_SECRET_FILE", "(none)", "A file holding the secret instead (not both)."
    ),
    Setting(
        "TAGPIN_WEBHOOK_LISTEN", "127.0.0.1:8080", "HOST:PORT to serve on; 0.0.0.0:8080 in a pod."
    ),
    Setting(
        "TAGPIN_WEBHOOK_NAMESPACES",
        "ARGOCD_NAMESPACE, else the pod's, else argocd",
        "Namespaces whose Applications are refreshed (space-separated).",
    ),
    Setting(
        "TAGPIN_WEBHOOK_COALESCE_SECONDS",
        "2",
        "Pushes for one Application within this window give one refresh.",
        minimum=0,
    ),
    Setting(
        "TAGPIN_WEBHOOK_MAX_BODY_BYTES", "65536", "Larger request bodies get 413.", minimum=256
    ),
    Setting(
        "TAGPIN_WEBHOOK_MAX_EVENT_AGE",
        "300",
        "Seconds; older (or this far future) events are refused as replays.",
        minimum=1,
    ),
    Setting(
        "TAGPIN_WEBHOOK_APP_CACHE_SECONDS",
        "1",
        "Events within this many seconds share one list of Applications.",
        minimum=0,
    ),
    Setting(
        "TAGPIN_WEBHOOK_REQUEST_TIMEOUT",
        "10",
        "Seconds a connection may take in all (sending and being answered).",
        minimum=0.1,
    ),
    Setting(
        "TAGPIN_WEBHOOK_MAX_CONNECTIONS",
        "64",
        "Authenticated requests served at once; more get 503 with Retry-After. Four times as "
        "many connections may still be sending their request; past that the oldest is dropped.",
        minimum=1,
    ),
    Setting(
        "TAGPIN_WEBHOOK_SHUTDOWN_SECONDS",
        "20",
        "SIGTERM to exit at most; keep it under the pod's grace period.",
        minimum=0,
    ),
)

SETTINGS_BY_ENV = {s.env: s for s in SETTINGS}
LOCK_SETTING = "TAGPIN_LOCK"  # named in messages
LOCK_MODES = SETTINGS_BY_ENV[LOCK_SETTING].choices  # see cmp.registry.lock.LockMode
RENDER_SERVER_MODES = SETTINGS_BY_ENV["TAGPIN_RENDER_SERVER"].choices  # see cmp.cli.SERVED_MODES
CACHE_MODES = SETTINGS_BY_ENV["TAGPIN_CACHE"].choices  # see cmp.registry.cache.CacheMode


def setting_int(environ: Mapping[str, str], env: str, *, minimum: int | None = None) -> int:
    """An integer setting; unset or empty means the table's default (Argo CD sends `NAME=`),
    and the table's minimum applies unless one is given."""
    setting = SETTINGS_BY_ENV[env]
    raw = environ.get(env) or setting.default
    if minimum is None:
        minimum = int(setting.minimum) if setting.minimum is not None else 0
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{env}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{env}={value} must be at least {minimum}")
    return value


def setting_choice(
    environ: Mapping[str, str], env: str, choices: tuple[str, ...] | None = None
) -> str:
    """A choice setting, case-insensitive; the table's choices unless others are given."""
    setting = SETTINGS_BY_ENV[env]
    choices = choices or setting.choices
    raw = (environ.get(env) or setting.default).strip().lower()
    if raw not in choices:
        raise ConfigError(f"{env}={raw!r} must be one of {', '.join(choices)}")
    return raw


def env_name(field: str) -> str:
    """The environment variable behind a `Settings` field (`cache_ttl` → TAGPIN_CACHE_TTL)."""
    return "TAGPIN_" + field.upper()


_SECRET_FIELDS = frozenset({"redis_password", "redis_signing_key"})
_CHECKED_WHERE_USED = frozenset({"app_lookup"})  # their own message names the fix


class Settings(NamedTuple):
    """A render's settings, typed and checked: built once from the environment at the edge
    (the commands, `tagpin generate`'s environment reader, a render server's worker from the
    client's environment, cmp.testing) and passed down on the RenderRequest instead of the
    environment. Names are the table's without `TAGPIN_`; every bad value is reported at once.
    A setting with neither choices nor a minimum is kept as its text ("" = unset)."""

    cache: str
    cache_ttl: int
    tag_list_ttl: int
    serve_stale_hours: int
    ecr_max_attempts: int
    ecr_connect_timeout: int
    ecr_read_timeout: int
    ecr_deadline: int
    ecr_concurrency: int
    push_clock_skew: int
    max_file_bytes: int
    max_output_bytes: int
    max_yaml_nodes: int
    lock: str
    max_cpu_seconds: int
    kustomize_remote: str
    kustomize_timeout: int
    max_parallel_renders: int
    max_memory_mb: int | None  # None: `auto`, decided with the container's limit
    cache_dir: str
    kustomize: str
    render_server: str
    render_server_socket: str
    app_lookup: str  # as given: cmp.argocd.lookup checks it with its own advice
    redis_url: str
    redis_timeout_ms: int
    # Secrets stay text here; files are read (and the key checked) only when Redis is used.
    redis_password: str
    redis_password_file: str
    redis_signing_key: str
    redis_signing_key_file: str

    def __repr__(self) -> str:  # never a password or the signing key
        shown = {
            name: "***" if name in _SECRET_FIELDS and value else value
            for name, value in zip(self._fields, self, strict=True)
        }
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        problems = Problems()
        values: dict[str, Any] = {}
        for name in cls._fields:
            env = env_name(name)
            try:
                setting = SETTINGS_BY_ENV[env]
                if name == "max_memory_mb":  # `auto` or a whole number
                    raw = (environ.get(env) or setting.default).strip().lower()
                    values[name] = None if raw == "auto" else setting_int(environ, env)
                elif setting.choices and name not in _CHECKED_WHERE_USED:
                    values[name] = setting_choice(environ, env)
                elif setting.minimum is not None:
                    values[name] = setting_int(environ, env)
                else:
                    values[name] = environ.get(env) or ""
            except ConfigError as error:
                problems.add(error)
        problems.raise_if_any()
        return cls(**values)


DEFAULT_SETTINGS = Settings.from_environ({})


def parse_parameters(raw: str | None) -> dict[str, Any]:
    """`ARGOCD_APP_PARAMETERS` (absent, `null`, or a JSON list) → {name: value}, with the
    announced defaults for every parameter the Application does not set."""
    # lazily: a served render's thin client reads its settings, never parameters
    import json

    from cmp.jsonread import JsonError, loads

    values: dict[str, Any] = {p.name: _copy_default(p.default) for p in PARAMETERS}
    if raw is None or not raw.strip() or raw.strip() == "null":
        return values
    try:
        items = loads(raw)
    except JsonError as exc:
        raise ConfigError(f"ARGOCD_APP_PARAMETERS is not valid JSON: {exc}") from None
    if items is None:
        return values
    if not isinstance(items, list):
        raise ConfigError("ARGOCD_APP_PARAMETERS must be a JSON list of parameters")
    problems: list[str] = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            shown = json.dumps(item)  # loaded from JSON, so it dumps at the same depth
            shown = shown if len(shown) <= 200 else shown[:200] + "..."
            problems.append(f"plugin parameter {shown} has no name")
            continue
        name = item["name"]
        parameter = PARAMETERS_BY_NAME.get(name)
        if parameter is None:
            known = ", ".join(p.name for p in PARAMETERS)
            problems.append(f"unknown plugin parameter {name!r} (tagpin knows: {known})")
            continue
        try:
            values[name] = _parameter_value(parameter, item)
        except ValueError as exc:
            problems.append(f"plugin parameter {name!r}: {exc}")
    if problems:
        raise ConfigError(*problems)
    return values


def _parameter_value(parameter: Parameter, item: Mapping[str, Any]) -> Any:
    kind = parameter.collection_type
    value = item.get(kind)
    others = [k for k in ("string", "array", "map") if k != kind and item.get(k) is not None]
    if value is None:
        if others:
            raise ValueError(f"must be given as {kind}, not {others[0]}")
        return _copy_default(parameter.default)
    if kind == "array":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError("must be an array of strings")
        return list(value)
    if kind == "map":
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise ValueError("must be a map of strings to strings")
        return dict(value)
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value


def _copy_default(default: Any) -> Any:
    if isinstance(default, tuple):
        return list(default)
    if isinstance(default, dict):
        return dict(default)
    return default


def plugin_config() -> dict[str, Any]:
    """The plugin.yaml object for Argo CD's cmp-server."""
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "ConfigManagementPlugin",
        "metadata": {"name": PLUGIN_NAME},
        "spec": {
            # No version: the socket is tagpin.sock and Applications say `plugin: {name: tagpin}`.
            "discover": {"fileName": MARKER_FILE},
            "generate": {"command": ["tagpin", "generate"]},
            "parameters": {"static": [p.announcement() for p in PARAMETERS]},
        },
    }


def plugin_yaml() -> str:
    from cmp.source.emit import emit_stream

    header = "# Generated by `tagpin plugin-yaml` from cmp/settings.py; do not edit by hand.\n"
    return header + emit_stream([plugin_config()])
