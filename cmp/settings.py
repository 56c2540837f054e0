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
    choice setting takes; `minimum` and `maximum`: the range of a numeric setting (every one has
    both: a value past what the code can use must be an error at start, not a crash later)."""

    env: str
    default: str
    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None


HOUR, DAY, YEAR = 3600, 86400, 365 * 86400

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
    Setting(
        "TAGPIN_CACHE_TTL",
        "300",
        "Seconds a cached tag→digest answer is trusted.",
        minimum=0,
        maximum=YEAR,
    ),
    Setting(
        "TAGPIN_TAG_LIST_TTL",
        "30",
        "Seconds a cached tag list (branch deploys) is trusted.",
        minimum=0,
        maximum=YEAR,
    ),
    Setting(
        "TAGPIN_SERVE_STALE_HOURS",
        "0",
        "When ECR is down or throttling, serve cached digests up to this many hours old, "
        "with a warning; 0 = never (the default).",
        minimum=0,
        maximum=24 * 365,
    ),
    Setting(
        "TAGPIN_REDIS_URL",
        "(unset: memory and disk only)",
        "redis:// or rediss:// (TLS) URL of a Redis shared by every replica (Argo CD's "
        "argocd-redis); database number in the path; for rediss:// the options ssl_ca_certs, "
        "ssl_cert_reqs, ssl_check_hostname, ssl_certfile, ssl_keyfile (docs/install.md).",
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
        "Milliseconds to connect to Redis, and for each round trip (commands and all their "
        "replies); a render's round trips take 10 times this at most in all. Past either the "
        "render goes on without Redis, with a warning.",
        minimum=1,
        maximum=60_000,
    ),
    Setting(
        "TAGPIN_ECR_MAX_ATTEMPTS",
        "4",
        "Attempts per ECR call (botocore standard retries).",
        minimum=1,
        maximum=100,
    ),
    Setting(
        "TAGPIN_ECR_CONNECT_TIMEOUT", "3", "Seconds to connect to ECR.", minimum=1, maximum=HOUR
    ),
    Setting(
        "TAGPIN_ECR_READ_TIMEOUT",
        "5",
        "Seconds to wait for an ECR answer.",
        minimum=1,
        maximum=HOUR,
    ),
    Setting(
        "TAGPIN_ECR_DEADLINE",
        "12",
        "Seconds after which no new ECR call starts; with TAGPIN_ECR_READ_TIMEOUT it must fit in "
        "TAGPIN_MAX_RENDER_SECONDS.",
        minimum=1,
        maximum=HOUR,
    ),
    Setting(
        "TAGPIN_ECR_CONCURRENCY", "8", "Repositories asked in parallel.", minimum=1, maximum=64
    ),
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
        maximum=HOUR,
    ),
    Setting(
        "TAGPIN_MAX_FILE_BYTES",
        str(32 * 1024 * 1024),
        "Largest app file (template, values) tagpin reads.",
        minimum=1,
        maximum=1 << 30,
    ),
    Setting(
        "TAGPIN_MAX_OUTPUT_BYTES",
        str(64 * 1024 * 1024),
        "Largest rendered output; Argo CD's own gRPC limit is 100 MiB.",
        minimum=1,
        maximum=1 << 30,
    ),
    Setting(
        "TAGPIN_MAX_YAML_NODES",
        "200000",
        "Most YAML nodes in one document, aliases expanded (a node costs ~300 bytes to parse).",
        minimum=1,
        maximum=10**9,
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
        "15",
        "CPU seconds one render may use (RLIMIT_CPU), below TAGPIN_MAX_RENDER_SECONDS so a "
        "looping template gets the clearer message; a render server's worker is capped too; "
        "0 = no cap.",
        minimum=0,
        maximum=DAY,
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
        "15",
        "Seconds one `kustomize build` may run, within TAGPIN_MAX_RENDER_SECONDS.",
        minimum=1,
        maximum=HOUR,
    ),
    Setting(
        "TAGPIN_MAX_MEMORY_MB",
        "auto",
        "Memory (data size) cap of one render, so a runaway template or a huge input fails "
        "with a clear error instead of the sidecar being OOM-killed. `auto`: the container's "
        "cgroup memory limit less 128 MiB, divided by TAGPIN_MAX_PARALLEL_RENDERS (4096 "
        "without a limit); a number of MiB; 0 = no cap.",
        minimum=0,
        maximum=1 << 24,  # MiB: 16 TiB, and RLIMIT_DATA in bytes still fits 64 bits
    ),
    Setting(
        "TAGPIN_MAX_PARALLEL_RENDERS",
        "2",
        "Renders the sidecar runs at once; the others wait for a slot, fairly across "
        "repositories and Applications (docs/reliability.md). With TAGPIN_MAX_MEMORY_MB=auto each "
        "gets an equal share of the container's memory.",
        minimum=1,
        maximum=256,
    ),
    Setting(
        "TAGPIN_SLOT_WAIT_SECONDS",
        "30",
        "Seconds a render waits for a slot before it fails with exit 75 naming what holds the "
        "slots; longer than TAGPIN_MAX_RENDER_SECONDS, and the two together well inside Argo "
        "CD's 60 s deadline.",
        minimum=0,
        maximum=HOUR,
    ),
    Setting(
        "TAGPIN_MAX_RENDER_SECONDS",
        "20",
        "Seconds a render may keep its slot: past it the render fails with exit 5 naming the "
        "setting (and is killed 5 s later if it cannot stop); 0 = no limit.",
        minimum=0,
        maximum=DAY,
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
        maximum=HOUR,
    ),
    Setting(
        "TAGPIN_WEBHOOK_MAX_BODY_BYTES",
        "65536",
        "Larger request bodies get 413.",
        minimum=256,
        maximum=1 << 30,
    ),
    Setting(
        "TAGPIN_WEBHOOK_MAX_EVENT_AGE",
        "300",
        "Seconds; older (or this far future) events are refused as replays.",
        minimum=1,
        maximum=DAY,
    ),
    Setting(
        "TAGPIN_WEBHOOK_APP_CACHE_SECONDS",
        "1",
        "Events within this many seconds share one list of Applications.",
        minimum=0,
        maximum=HOUR,
    ),
    Setting(
        "TAGPIN_WEBHOOK_REQUEST_TIMEOUT",
        "10",
        "Seconds a connection may take in all (sending and being answered).",
        minimum=0.1,
        maximum=HOUR,
    ),
    Setting(
        "TAGPIN_WEBHOOK_MAX_CONNECTIONS",
        "64",
        "Authenticated requests served at once; more get 503 with Retry-After. Four times as "
        "many connections may still be sending their request; past that the oldest is dropped.",
        minimum=1,
        maximum=10_000,
    ),
    Setting(
        "TAGPIN_WEBHOOK_SHUTDOWN_SECONDS",
        "20",
        "SIGTERM to exit at most; keep it under the pod's grace period.",
        minimum=0,
        maximum=HOUR,
    ),
)

SETTINGS_BY_ENV = {s.env: s for s in SETTINGS}
SETTING_PREFIX = "TAGPIN_"


def unknown_settings(environ: Mapping[str, str]) -> list[str]:
    """One warning per TAGPIN_* variable that is no setting: a misspelt one (`TAGPIN_CAHCE=off`)
    would otherwise be ignored without a word. Names the closest setting."""
    unknown = sorted(
        name
        for name in environ
        if name.upper().startswith(SETTING_PREFIX) and name not in SETTINGS_BY_ENV
    )
    if not unknown:
        return []
    import difflib  # only when there is something to say

    suffixes = {env[len(SETTING_PREFIX) :]: env for env in SETTINGS_BY_ENV}
    warnings = []
    for name in unknown:
        closest = difflib.get_close_matches(name[len(SETTING_PREFIX) :].upper(), suffixes, n=1)
        hint = (
            f"did you mean {suffixes[closest[0]]}?"
            if closest
            else "docs/reference.md lists the settings"
        )
        warnings.append(f"{name} is not a tagpin setting and is ignored; {hint}")
    return warnings


LOCK_SETTING = "TAGPIN_LOCK"  # named in messages
LOCK_MODES = SETTINGS_BY_ENV[LOCK_SETTING].choices  # see cmp.registry.lock.LockMode
RENDER_SERVER_MODES = SETTINGS_BY_ENV["TAGPIN_RENDER_SERVER"].choices  # see cmp.cli.SERVED_MODES
CACHE_MODES = SETTINGS_BY_ENV["TAGPIN_CACHE"].choices  # see cmp.registry.cache.CacheMode


def setting_int(environ: Mapping[str, str], env: str, *, minimum: int | None = None) -> int:
    """An integer setting; unset or empty means the table's default (Argo CD sends `NAME=`),
    and the table's minimum applies unless one is given."""
    raw = environ.get(env) or SETTINGS_BY_ENV[env].default
    return int(parse_number(env, raw, whole=True, minimum=minimum))


def parse_number(
    env: str, raw: str, *, whole: bool, minimum: float | None = None, flag: bool = False
) -> float:
    """A numeric setting's value: ASCII digits only, with a decimal point unless `whole` (so
    no `nan`, `1e400`, `0x10`, `+5`, `1_000` or other scripts' digits, which float() and int()
    take), within the table's minimum (unless one is given) and maximum. The one parser of
    every numeric setting, the webhook's flags included (`flag`: messages without the
    variable's name, as click names the flag)."""
    setting = SETTINGS_BY_ENV[env]
    text = raw.strip()
    if minimum is None:
        minimum = setting.minimum if setting.minimum is not None else 0
    short = text if len(text) <= 40 else text[:40] + "..."
    unsigned = text.removeprefix("-")
    whole_part, point, fraction = unsigned.partition(".")
    digits = whole_part + fraction
    if not (
        digits.isascii() and digits.isdigit() and (not point or (not whole and fraction != ""))
    ):
        shown = repr(short) if flag else f"{env}={short!r}"
        raise ConfigError(f"{shown} is not {'a whole number' if whole else 'a number'}")
    if len(whole_part.lstrip("0")) > 18:  # past every maximum; and int() of 5,000 digits is slow
        whole_part, fraction = "9" * 19, ""
    value = float(f"{whole_part}.{fraction}") if point else int(whole_part)
    if unsigned != text:
        value = -value
    shown = short if flag else f"{env}={short}"
    if value < minimum:
        raise ConfigError(f"{shown} must be at least {_number_text(minimum)}")
    if setting.maximum is not None and value > setting.maximum:
        raise ConfigError(f"{shown} must be at most {_number_text(setting.maximum)}")
    return value


def _number_text(number: float) -> str:
    return str(int(number)) if number == int(number) else str(number)


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
    slot_wait_seconds: int
    max_render_seconds: int
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


def parse_parameters(raw: str | None, given_as: str = "ARGOCD_APP_PARAMETERS") -> dict[str, Any]:
    """`ARGOCD_APP_PARAMETERS` (absent, `null`, or a JSON list) → {name: value}, with the
    announced defaults for every parameter the Application does not set; messages name the
    JSON `given_as` (`--parameters-json` at the CLI)."""
    # lazily: a served render's thin client reads its settings, never parameters
    import json

    from cmp.jsonread import JsonError, loads

    values: dict[str, Any] = {p.name: _copy_default(p.default) for p in PARAMETERS}
    if raw is None or not raw.strip() or raw.strip() == "null":
        return values
    try:
        items = loads(raw)
    except JsonError as exc:
        raise ConfigError(f"{given_as} is not valid JSON: {exc}") from None
    if items is None:
        return values
    if not isinstance(items, list):
        raise ConfigError(f"{given_as} must be a JSON list of parameters")
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
