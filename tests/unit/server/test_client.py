"""The served client (cmp/server/client.py): all a served `tagpin generate` imports. It reads
its few settings itself, so it must read them as the settings table does; and it must import
nothing it does not need to send the request."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from cmp import __version__
from cmp.errors import ConfigError
from cmp.server.client import (
    SERVED_MODES,
    decode_request,
    encode_request,
    same_user,
    served_mode,
    socket_path,
)
from cmp.settings import ServerMode, Settings


@pytest.mark.parametrize(
    "raw", [None, "", "off", "on", "auto", " Auto ", "ON", "yes", "true", "o n", "auto\n"]
)
def test_the_client_asks_a_server_exactly_when_the_settings_say_so(raw: str | None) -> None:
    environ = {} if raw is None else {"TAGPIN_RENDER_SERVER": raw}
    try:
        mode = Settings.from_environ(environ).render_server
    except ConfigError:  # rendered in-process, which reports it
        assert served_mode(environ) is None
        return
    expected = mode.value if mode in (ServerMode.ON, ServerMode.AUTO) else None
    assert served_mode(environ) == expected
    assert set(SERVED_MODES) < {m.value for m in ServerMode}


@pytest.mark.parametrize(
    "environ",
    [
        {"TAGPIN_CACHE_DIR": "/c"},
        {"XDG_CACHE_HOME": "/x"},
        {"TAGPIN_RENDER_SERVER_SOCKET": "/s.sock", "TAGPIN_CACHE_DIR": "/c"},
        {"TAGPIN_RENDER_SERVER_SOCKET": "", "TAGPIN_CACHE_DIR": "", "XDG_CACHE_HOME": "/x"},
        {"TAGPIN_CACHE_DIR": " /c "},
    ],
)
def test_the_socket_is_where_the_settings_put_it(environ: dict[str, str]) -> None:
    settings = Settings.from_environ(environ)
    name = f"render-server-{__version__}.sock"
    base = settings.cache_dir or os.path.join(environ.get("XDG_CACHE_HOME", ""), "tagpin")
    expected = settings.render_server_socket or os.path.join(base, name)
    assert socket_path(environ) == expected


def test_no_socket_without_a_directory_or_past_what_can_be_bound() -> None:
    assert socket_path({}) is None  # the temp directory's default needs `tempfile`
    assert socket_path({"TAGPIN_CACHE_DIR": "/" + "d" * 120}) is None  # sockaddr_un: 108 bytes


def test_a_request_carries_the_directory_umask_and_environment_as_they_are() -> None:
    environ = {b"A": b"1", b"EMPTY": b"", b"WITH": b"x=y=z", b"BYTES": b"\xff\xfe"}
    frame = encode_request("/repo/apps/\u00e9", 0o027, environ)
    size = int.from_bytes(frame[:4], "big")
    assert size == len(frame) - 4
    assert decode_request(frame[4:]) == ("/repo/apps/\u00e9", 0o027, environ)


def test_a_request_of_another_protocol_is_refused() -> None:
    frame = encode_request("/", 0o022, {})
    with pytest.raises(ValueError, match="unknown protocol"):
        decode_request(frame[4:].replace(b"tagpin-render/", b"tagpin-render/9", 1))


def test_only_this_user_is_trusted_at_the_other_end() -> None:
    mine, theirs = socket.socketpair(socket.AF_UNIX)
    with mine, theirs:
        assert same_user(mine) and same_user(theirs)


def test_the_client_imports_nothing_it_does_not_need_to_send_a_request() -> None:
    """A served render's whole cost is this process starting: no typing, no `socket` (its enums
    and selectors), no settings table, no YAML (bench --cases served imports measures it)."""
    probe = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import cmp.cli\n"
        "from cmp.server.client import ask_server, served_mode\n"
        "print(' '.join(sorted(set(sys.modules) - before)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split() == ["_socket", "cmp", "cmp.cli", "cmp.server", "cmp.server.client"]
