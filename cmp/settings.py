"""The plugin's parameters and the sidecar's settings, each declared once.

The parameter table feeds three things that must agree: the defaults the code applies, the
static announcements in plugin.yaml (`tagpin plugin-yaml` regenerates it; a test fails on drift)
and the README. Argo CD never sends announced defaults, so the code applies them itself.

`Settings` is the table of TAGPIN_* settings: each field's annotation carries its row (default,
help, range or choices), so the typed object every command and worker reads, the checks of
the environment, the warnings about unknown variables and docs/reference.md (checked by
tests/unit/test_settings.py) all come from one declaration. Choices are enums.
"""

# No `from __future__ import annotations`: the rows ride on the annotations of `Settings`,
# which must be evaluated when the class is made.

import enum
from collections.abc import Mapping
from typing import Annotated, Any, NamedTuple

from cmp.errors import ConfigError, Problems

PLUGIN_NAME = "tagpin"
MARKER_FILE = "tagpin.yaml"
LOCK_FILE = "tagpin.lock"
IMAGE_UPDATER_PREFIX = "argocd-image-updater.argoproj.io/"


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


class CacheMode(enum.Enum):
    """TAGPIN_CACHE: whether a render reads and writes the digest caches."""

    ON = "on"  # use cached values, write new ones
    OFF = "off"  # no disk cache at all
    REFRESH = "refresh"  # ignore cached values, still write what ECR says


class LockMode(enum.Enum):
    """TAGPIN_LOCK: what a render does with the app's tagpin.lock."""

    USE = "use"  # the lock answers first; ECR resolves the tags it lacks (the default)
    VERIFY = "verify"  # ECR answers every tag; a locked digest that disagrees fails the render
    STRICT = "strict"  # the lock only: ECR is never asked, a tag it lacks fails the render
    OFF = "off"  # ignore the lock and ask ECR, as `tagpin lock` does


class AppLookup(enum.Enum):
    """TAGPIN_APP_LOOKUP: whether a render reads the live Application (cmp/argocd/lookup.py)."""

    AUTO = "auto"  # when an app name is known and in a cluster (or with KUBECONFIG)
    ON = "on"  # always; failing to read it fails the render
    OFF = "off"


class ServerMode(enum.Enum):
    """TAGPIN_RENDER_SERVER: whether `tagpin generate` asks a render server (docs/server.md)."""

    OFF = "off"
    ON = "on"  # ask one; render in-process when none answers
    AUTO = "auto"  # also start one when none answers (the image's default)


class LogFormat(enum.Enum):
    """TAGPIN_LOG_FORMAT: how the render server and the webhook write their logs."""

    AUTO = "auto"  # text for the render server; JSON for the webhook, as it always wrote
    TEXT = "text"  # one line a person reads
    JSON = "json"  # one JSON object per line: time, level, msg (the event) and its fields


class Switch(enum.Enum):
    OFF = "off"
    ON = "on"


class Row:
    """One setting of the table: its default as the docs show it, what it does, and how its
    value is read. `env` and `field` are filled from the `Settings` field that carries it."""

    __slots__ = ("default", "env", "field", "help")

    def __init__(self, default: str, help: str) -> None:
        self.default = default
        self.help = help
        self.field = ""
        self.env = ""

    def read(self, raw: str, flag: bool = False) -> Any:
        """The value of `raw` ("" = unset: Argo CD sends `NAME=`); errors name the variable,
        or only the value when a command-line `flag` gave it (click names the flag)."""
        raise NotImplementedError


class Text(Row):
    """Kept as given; `unset` when unset (a Text row's default is what the docs say happens)."""

    __slots__ = ("secret", "unset")

    def __init__(self, default: str, help: str, *, unset: str = "", secret: bool = False) -> None:
        super().__init__(default, help)
        self.unset = unset
        self.secret = secret  # never shown (Settings' repr)

    def read(self, raw: str, flag: bool = False) -> str:
        return raw or self.unset


class Number(Row):
    """ASCII digits only, with a decimal point unless `whole` (so no `nan`, `1e400`, `0x10`,
    `+5`, `1_000` or other scripts' digits, which float() and int() take), from `minimum` to
    `maximum`: every numeric setting has both, since a value past what the code can use must
    be an error at start, not a crash later."""

    __slots__ = ("maximum", "minimum", "whole")

    def __init__(
        self, default: str, help: str, *, minimum: float, maximum: float, whole: bool = True
    ) -> None:
        super().__init__(default, help)
        self.minimum = minimum
        self.maximum = maximum
        self.whole = whole

    def read(self, raw: str, flag: bool = False) -> Any:
        return self.number(raw.strip() or self.default, flag)

    def number(self, text: str, flag: bool = False) -> int | float:
        short = text if len(text) <= 40 else text[:40] + "..."
        unsigned = text.removeprefix("-")
        whole_part, point, fraction = unsigned.partition(".")
        digits = whole_part + fraction
        if not (
            digits.isascii()
            and digits.isdigit()
            and (not point or (not self.whole and fraction != ""))
        ):
            shown = repr(short) if flag else f"{self.env}={short!r}"
            raise ConfigError(f"{shown} is not {'a whole number' if self.whole else 'a number'}")
        if len(whole_part.lstrip("0")) > 18:  # past every maximum; int() of 5,000 digits is slow
            whole_part, fraction = "9" * 19, ""
        value: int | float = float(f"{whole_part}.{fraction}") if point else int(whole_part)
        if unsigned != text:
            value = -value
        shown = short if flag else f"{self.env}={short}"
        if value < self.minimum:
            raise ConfigError(f"{shown} must be at least {_number_text(self.minimum)}")
        if value > self.maximum:
            raise ConfigError(f"{shown} must be at most {_number_text(self.maximum)}")
        return value if self.whole else float(value)


class AutoOrNumber(Number):
    """`auto` (None: decided where it is used) or a whole number."""

    __slots__ = ()

    def read(self, raw: str, flag: bool = False) -> int | None:
        text = raw.strip() or self.default
        return None if text.lower() == "auto" else int(self.number(text, flag))


class Choice(Row):
    """One of an enum's values, case-insensitive; `kind` is the field's enum."""

    __slots__ = ("kind",)

    def __init__(self, default: str, help: str) -> None:
        super().__init__(default, help)
        self.kind: type[enum.Enum] = enum.Enum

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(member.value for member in self.kind)

    def read(self, raw: str, flag: bool = False) -> enum.Enum:
        text = (raw or self.default).strip().lower()
        try:
            return self.kind(text)
        except ValueError:
            shown = repr(text) if flag else f"{self.env}={text!r}"
            raise ConfigError(f"{shown} must be one of {', '.join(self.choices)}") from None


class Bytes(Number):
    """A size limit in bytes: a whole number from `minimum` to 1 GiB, the most one file,
    output or request body may be, so every size limit has the same ceiling."""

    __slots__ = ()

    def __init__(self, default: int, help: str, *, minimum: int = 1) -> None:
        super().__init__(str(default), help, minimum=minimum, maximum=GIB)


def _number_text(number: float) -> str:
    return str(int(number)) if number == int(number) else str(number)


HOUR, DAY, YEAR = 3600, 86400, 365 * 86400
MIB, GIB = 1 << 20, 1 << 30


class Settings(NamedTuple):
    """The sidecar's (and the webhook's) settings, typed and checked: built once per process
    from the environment where they are used (`tagpin generate`, a render server's worker from
    the environment each request brings, the commands, cmp.testing) and passed down on the
    RenderRequest. A field's variable is its name in capitals after TAGPIN_; every bad value
    is reported at once."""

    cache_dir: Annotated[
        str,
        Text(
            "$XDG_CACHE_HOME/tagpin, else <tmp>/tagpin-cache-<uid>",
            "Directory of the digest cache shared by concurrent renders.",
        ),
    ]
    cache: Annotated[
        CacheMode,
        Choice(
            "on", "`on`, `off` (no cache at all) or `refresh` (ask ECR, then update the cache)."
        ),
    ]
    cache_ttl: Annotated[
        int,
        Number("300", "Seconds a cached tag→digest answer is trusted.", minimum=0, maximum=YEAR),
    ]
    tag_list_ttl: Annotated[
        int,
        Number(
            "30",
            "Seconds a cached tag list (branch deploys) is trusted.",
            minimum=0,
            maximum=YEAR,
        ),
    ]
    serve_stale_hours: Annotated[
        int,
        Number(
            "0",
            "When ECR is down or throttling, serve cached digests up to this many hours old, "
            "with a warning; 0 = never (the default).",
            minimum=0,
            maximum=24 * 365,
        ),
    ]
    redis_url: Annotated[
        str,
        Text(
            "(unset: memory and disk only)",
            "redis:// or rediss:// (TLS) URL of a Redis shared by every replica (Argo CD's "
            "argocd-redis); database number in the path; for rediss:// the options ssl_ca_certs, "
            "ssl_cert_reqs, ssl_check_hostname, ssl_certfile, ssl_keyfile (docs/install.md).",
        ),
    ]
    # Secrets stay text here; files are read (and the key checked) only when Redis is used.
    redis_password: Annotated[
        str,
        Text(
            "(none)",
            "Redis password; or TAGPIN_REDIS_PASSWORD_FILE, a file holding it.",
            secret=True,
        ),
    ]
    redis_password_file: Annotated[
        str,
        Text("(none)", "A file holding the Redis password (a mounted Secret) instead (not both)."),
    ]
    redis_signing_key: Annotated[
        str,
        Text(
            "(required with TAGPIN_REDIS_URL)",
            "At least 32 bytes signing every shared entry (HMAC-SHA256); or "
            "TAGPIN_REDIS_SIGNING_KEY_FILE, a file holding it.",
            secret=True,
        ),
    ]
    redis_signing_key_file: Annotated[
        str,
        Text("(none)", "A file holding the signing key (a mounted Secret) instead (not both)."),
    ]
    redis_timeout_ms: Annotated[
        int,
        Number(
            "500",
            "Milliseconds to connect to Redis, and for each round trip (commands and all their "
            "replies); a render's round trips take 10 times this at most in all. Past either the "
            "render goes on without Redis, with a warning.",
            minimum=1,
            maximum=60_000,
        ),
    ]
    ecr_max_attempts: Annotated[
        int,
        Number("4", "Attempts per ECR call (botocore standard retries).", minimum=1, maximum=100),
    ]
    ecr_connect_timeout: Annotated[
        int, Number("3", "Seconds to connect to ECR.", minimum=1, maximum=HOUR)
    ]
    ecr_read_timeout: Annotated[
        int, Number("5", "Seconds to wait for an ECR answer.", minimum=1, maximum=HOUR)
    ]
    ecr_deadline: Annotated[
        int,
        Number(
            "12",
            "Seconds after which no new ECR call starts; with TAGPIN_ECR_READ_TIMEOUT it must "
            "fit in TAGPIN_MAX_RENDER_SECONDS.",
            minimum=1,
            maximum=HOUR,
        ),
    ]
    ecr_concurrency: Annotated[
        int, Number("8", "Repositories asked in parallel.", minimum=1, maximum=64)
    ]
    app_lookup: Annotated[
        AppLookup,
        Choice(
            "auto",
            "`auto`, `on` or `off`: read the live Application's "
            "Image Updater annotations from the Kubernetes API.",
        ),
    ]
    push_clock_skew: Annotated[
        int,
        Number(
            "2",
            "Seconds the clocks of webhook and sidecar pods may differ; a cached answer fetched "
            "less than this after a push the webhook announced is not trusted.",
            minimum=0,
            maximum=HOUR,
        ),
    ]
    max_file_bytes: Annotated[
        int, Bytes(32 * MIB, "Largest app file (template, values) tagpin reads.")
    ]
    max_output_bytes: Annotated[
        int, Bytes(64 * MIB, "Largest rendered output; Argo CD's own gRPC limit is 100 MiB.")
    ]
    max_yaml_nodes: Annotated[
        int,
        Number(
            "200000",
            "Most YAML nodes in one document, aliases expanded (a node costs ~300 bytes to parse).",
            minimum=1,
            maximum=10**9,
        ),
    ]
    lock: Annotated[
        LockMode,
        Choice(
            "use",
            "`use`, `verify`, `strict` or `off`: what a render does with the app's tagpin.lock "
            "(docs/previews.md).",
        ),
    ]
    max_cpu_seconds: Annotated[
        int,
        Number(
            "15",
            "CPU seconds one render may use (RLIMIT_CPU), below TAGPIN_MAX_RENDER_SECONDS so a "
            "looping template gets the clearer message; a render server's worker is capped too; "
            "0 = no cap.",
            minimum=0,
            maximum=DAY,
        ),
    ]
    render_server: Annotated[
        ServerMode,
        Choice(
            "off",
            "`off`, `on` or `auto`: `tagpin generate` asks a render server's warm worker to "
            "render (`on`), and starts that server itself when none answers (`auto`, set in the "
            "image); without one it renders in its own process (docs/server.md).",
        ),
    ]
    render_server_socket: Annotated[
        str,
        Text(
            "render-server-<version>.sock in $TAGPIN_CACHE_DIR or $XDG_CACHE_HOME/tagpin",
            "The render server's Unix socket (at most 100 bytes); its directory must be writable "
            "by this user alone. Without it or either directory, renders run in-process.",
        ),
    ]
    metrics_port: Annotated[
        int,
        Number(
            "0",
            "Port on which a render server serves Prometheus metrics at /metrics, on every "
            "interface of the pod (docs/observability.md); 0 = none. Renders in their own "
            "process count nothing.",
            minimum=0,
            maximum=65535,
        ),
    ]
    log_format: Annotated[
        LogFormat,
        Choice(
            "auto",
            "`auto`, `text` or `json`: the render server's and the webhook's log lines; `json` is "
            "one object per line (time, level, msg, app, duration_seconds, exit_code); `auto` "
            "is text for the render server and JSON for the webhook.",
        ),
    ]
    kustomize: Annotated[
        str,
        Text(
            "kustomize on PATH, else kubectl (as `kubectl kustomize`)",
            "The kustomize (or kubectl) executable for Kustomize apps (docs/kustomize.md).",
        ),
    ]
    kustomize_remote: Annotated[
        Switch,
        Choice(
            "off",
            "`off` or `on`: whether Kustomize apps may load remote bases (git or HTTP URLs).",
        ),
    ]
    kustomize_timeout: Annotated[
        int,
        Number(
            "15",
            "Seconds one `kustomize build` may run, within TAGPIN_MAX_RENDER_SECONDS.",
            minimum=1,
            maximum=HOUR,
        ),
    ]
    max_memory_mb: Annotated[
        int | None,  # None: `auto`, decided with the container's limit (cmp/limits/memory.py)
        AutoOrNumber(
            "auto",
            "Memory (data size) cap of one render, so a runaway template or a huge input fails "
            "with a clear error instead of the sidecar being OOM-killed. `auto`: the container's "
            "cgroup memory limit less 128 MiB, divided by TAGPIN_MAX_PARALLEL_RENDERS (4096 "
            "without a limit); a number of MiB; 0 = no cap.",
            minimum=0,
            maximum=1 << 24,  # MiB: 16 TiB, and RLIMIT_DATA in bytes still fits 64 bits
        ),
    ]
    max_parallel_renders: Annotated[
        int,
        Number(
            "2",
            "Renders the sidecar runs at once; the others wait for a slot, fairly across "
            "repositories and Applications (docs/reliability.md). With TAGPIN_MAX_MEMORY_MB=auto "
            "each gets an equal share of the container's memory.",
            minimum=1,
            maximum=256,
        ),
    ]
    slot_wait_seconds: Annotated[
        int,
        Number(
            "30",
            "Seconds a render waits for a slot before it fails with exit 75 naming what holds "
            "the slots; longer than TAGPIN_MAX_RENDER_SECONDS, and the two together well inside "
            "Argo CD's 60 s deadline.",
            minimum=0,
            maximum=HOUR,
        ),
    ]
    max_render_seconds: Annotated[
        int,
        Number(
            "20",
            "Seconds a render may keep its slot: past it the render fails with exit 5 naming the "
            "setting (and is killed 5 s later if it cannot stop); 0 = no limit.",
            minimum=0,
            maximum=DAY,
        ),
    ]
    # `tagpin webhook` (its own Deployment; each also a flag, see docs/webhook.md)
    webhook_secret: Annotated[
        str,
        Text(
            "(required, or TAGPIN_WEBHOOK_SECRET_FILE)",
            "The shared secret, at least 16 characters; the webhook refuses to start without one.",
            secret=True,
        ),
    ]
    webhook_secret_file: Annotated[
        str, Text("(none)", "A file holding the secret instead (not both).")
    ]
    webhook_listen: Annotated[
        str,
        Text(
            "127.0.0.1:8080",
            "HOST:PORT to serve on; 0.0.0.0:8080 in a pod.",
            unset="127.0.0.1:8080",
        ),
    ]
    webhook_namespaces: Annotated[
        str,
        Text(
            "ARGOCD_NAMESPACE, else the pod's, else argocd",
            "Namespaces whose Applications are refreshed (space-separated).",
        ),
    ]
    webhook_coalesce_seconds: Annotated[
        float,
        Number(
            "2",
            "Pushes for one Application within this window give one refresh.",
            minimum=0,
            maximum=HOUR,
            whole=False,
        ),
    ]
    webhook_max_body_bytes: Annotated[
        int,
        Bytes(65536, "Larger request bodies get 413.", minimum=256),
    ]
    webhook_max_event_age: Annotated[
        float,
        Number(
            "300",
            "Seconds; older (or this far future) events are refused as replays.",
            minimum=1,
            maximum=DAY,
            whole=False,
        ),
    ]
    webhook_app_cache_seconds: Annotated[
        float,
        Number(
            "1",
            "Events within this many seconds share one list of Applications.",
            minimum=0,
            maximum=HOUR,
            whole=False,
        ),
    ]
    webhook_request_timeout: Annotated[
        float,
        Number(
            "10",
            "Seconds a connection may take in all (sending and being answered).",
            minimum=0.1,
            maximum=HOUR,
            whole=False,
        ),
    ]
    webhook_max_connections: Annotated[
        int,
        Number(
            "64",
            "Authenticated requests served at once; more get 503 with Retry-After. Four times "
            "as many connections may still be sending their request; past that the oldest is "
            "dropped.",
            minimum=1,
            maximum=10_000,
        ),
    ]
    webhook_shutdown_seconds: Annotated[
        float,
        Number(
            "20",
            "SIGTERM to exit at most; keep it under the pod's grace period.",
            minimum=0,
            maximum=HOUR,
            whole=False,
        ),
    ]

    def __repr__(self) -> str:  # never a password, the signing key or the webhook's secret
        shown = {
            row.field: "***" if isinstance(row, Text) and row.secret and value else value
            for row, value in zip(SETTINGS, self, strict=True)
        }
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    def fresh(self) -> "Settings":
        """These settings asking ECR what it says now: a cache is refreshed, not trusted (it
        is still written); without one there is nothing to change."""
        return self if self.cache is CacheMode.OFF else self._replace(cache=CacheMode.REFRESH)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> "Settings":
        problems = Problems()
        values = []
        for row in SETTINGS:
            try:
                values.append(row.read(environ.get(row.env) or ""))
            except ConfigError as error:
                problems.add(error)
        problems.raise_if_any()
        return cls(*values)


def _rows() -> tuple[Row, ...]:
    rows = []
    for field, annotation in Settings.__annotations__.items():
        row: Row = annotation.__metadata__[0]
        row.field, row.env = field, SETTING_PREFIX + field.upper()
        if isinstance(row, Choice):
            row.kind = annotation.__origin__
        rows.append(row)
    return tuple(rows)


SETTING_PREFIX = "TAGPIN_"
SETTINGS = _rows()  # the table, in the order docs/reference.md lists it
SETTINGS_BY_ENV = {row.env: row for row in SETTINGS}
SETTINGS_BY_FIELD = {row.field: row for row in SETTINGS}
DEFAULT_SETTINGS = Settings.from_environ({})
LOCK_SETTING = SETTINGS_BY_FIELD["lock"].env  # named in messages


def env_name(field: str) -> str:
    """The environment variable behind a `Settings` field (`cache_ttl` → TAGPIN_CACHE_TTL)."""
    return SETTINGS_BY_FIELD[field].env


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
