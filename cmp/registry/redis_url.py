"""TAGPIN_REDIS_URL, read and checked with the other settings: which server, database and TLS
options the fleet cache's client (cmp.registry.resp) uses. Every mistake is a ConfigError naming
the setting (exit 3) at the start of a render, never a failure of the first cold lookup; no
message repeats the URL, which may hold a password.

`redis[s]://[[user]:password@]host[:port][/db][?option=value&…]`, options as redis-py names
them: `ssl_ca_certs`, `ssl_cert_reqs` (required, optional, none), `ssl_check_hostname`,
`ssl_certfile` and `ssl_keyfile`, all for `rediss://` only. Anything else is refused: timeouts
and retries are tagpin's own settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple
from urllib.parse import parse_qsl, unquote, urlsplit

from cmp.errors import ConfigError
from cmp.settings import env_name

URL_ENV = env_name("redis_url")
DEFAULT_PORT = 6379
MAX_DATABASE = 1 << 20  # far more than any server configures (16 by default)
TLS_OPTIONS = ("ssl_ca_certs", "ssl_cert_reqs", "ssl_check_hostname", "ssl_certfile", "ssl_keyfile")
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})
# Options tagpin sets itself, with where to set them instead.
_OWN_SETTINGS = {
    "socket_timeout": env_name("redis_timeout_ms"),
    "socket_connect_timeout": env_name("redis_timeout_ms"),
    "password": f"{env_name('redis_password')} (or the URL's user:password@)",
    "db": "the URL's path (redis://host:6379/2)",
}


class RedisAddress(NamedTuple):
    """Where and how to connect. `password` is the URL's (TAGPIN_REDIS_PASSWORD wins)."""

    host: str
    port: int
    db: int
    tls: bool
    username: str | None = None
    password: str | None = None
    ca_certs: str | None = None  # None: the system's CAs
    verify: bool = True  # ssl_cert_reqs=none turns certificate checks off
    check_hostname: bool = True
    certfile: str | None = None  # a client certificate (mutual TLS)
    keyfile: str | None = None


def parse_redis_url(url: str) -> RedisAddress:
    """The server `url` names, or a ConfigError saying what is wrong with it."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in ("redis", "rediss"):
        raise ConfigError(
            f"{URL_ENV} must start with redis:// or rediss:// (TLS), e.g. "
            "redis://argocd-redis:6379/0"
        )
    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ConfigError(f"{URL_ENV} has an invalid host or port") from None
    if parts.fragment:
        raise ConfigError(f"{URL_ENV} must not have a #fragment")
    tls = scheme == "rediss"
    options = _options(parts.query, tls)
    return RedisAddress(
        host=parts.hostname or "localhost",
        port=port,
        db=_database(parts.path),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        ca_certs=options.get("ssl_ca_certs"),
        verify=_cert_reqs(options.get("ssl_cert_reqs", "required")),
        check_hostname=_flag("ssl_check_hostname", options.get("ssl_check_hostname", "true")),
        certfile=options.get("ssl_certfile"),
        keyfile=options.get("ssl_keyfile"),
    )


def check_files(address: RedisAddress) -> None:
    """The URL's certificate and key files exist, so a typo is exit 3 and not a warning on
    every cold render."""
    files = {
        "ssl_ca_certs": address.ca_certs,
        "ssl_certfile": address.certfile,
        "ssl_keyfile": address.keyfile,
    }
    for option, path in files.items():
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"{URL_ENV}: {option}={path} is not a file")
    if address.keyfile is not None and address.certfile is None:
        raise ConfigError(f"{URL_ENV}: ssl_keyfile needs ssl_certfile (the client certificate)")


def _options(query: str, tls: bool) -> dict[str, str]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ConfigError(f"{URL_ENV} has a malformed ?query") from None
    options: dict[str, str] = {}
    for name, value in pairs:
        if name in _OWN_SETTINGS:
            raise ConfigError(f"{URL_ENV}: set {name} with {_OWN_SETTINGS[name]}, not in the URL")
        if name not in TLS_OPTIONS:
            raise ConfigError(
                f"{URL_ENV}: unknown option {name!r}; the options tagpin reads are "
                + ", ".join(TLS_OPTIONS)
            )
        if not tls:
            raise ConfigError(f"{URL_ENV}: {name} needs rediss:// (TLS), not redis://")
        if name in options:
            raise ConfigError(f"{URL_ENV}: option {name} is given twice")
        if not value:
            raise ConfigError(f"{URL_ENV}: option {name} is empty")
        options[name] = value
    return options


def _database(path: str) -> int:
    number = path.removeprefix("/")
    if not number:
        return 0
    if not (number.isascii() and number.isdigit()) or int(number) > MAX_DATABASE:
        raise ConfigError(
            f"{URL_ENV}: the path must be a database number (redis://host:6379/0), "
            f"not {number[:40]!r}"
        )
    return int(number)


def _cert_reqs(value: str) -> bool:
    reqs = value.lower()
    if reqs not in ("required", "optional", "none"):
        raise ConfigError(f"{URL_ENV}: ssl_cert_reqs must be required, optional or none")
    return reqs != "none"  # a client checks the server's certificate for `optional` too


def _flag(name: str, value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ConfigError(f"{URL_ENV}: {name} must be true or false")
