"""`tagpin branch set --wait`: follow the Application until the chosen digest runs, Synced and
Healthy, with one progress line on stderr (rewritten in place on a terminal, plain lines else).

Degraded fails the wait only once the new digest is among the app's images: an app that was
Degraded before the deploy may be exactly what the new build fixes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING

from cmp.argocd.branch import LiveApp, is_running, read
from cmp.errors import NotDeployedError

if TYPE_CHECKING:
    from cmp.argocd.kube import ApplicationApi


def wait_for(
    api: ApplicationApi,
    app: LiveApp,
    digest: str,
    *,
    timeout: float,
    interval: float,
    progress: IO[str],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> LiveApp:
    """Poll until `digest` runs with sync Synced and health Healthy; NotDeployedError on a
    timeout or Degraded health."""
    started = clock()
    tty = progress.isatty()
    last = ""
    while True:
        current = read(api, app.namespace, app.name)
        sync = (current.status.get("sync") or {}).get("status") or "Unknown"
        health = (current.status.get("health") or {}).get("status") or "Unknown"
        running = is_running(current, digest)
        elapsed = clock() - started
        line = (
            f"{app.namespace}/{app.name}: sync {sync}, health {health}, "
            f"{'new image running' if running else 'new image not running yet'}"
        )
        if tty:
            progress.write(f"\r\x1b[K{line} ({elapsed:.0f} s)")
        elif line != last:
            progress.write(f"{line} ({elapsed:.0f} s)\n")
        progress.flush()
        last = line
        if running and sync == "Synced" and health == "Healthy":
            if tty:
                progress.write("\n")
            return current
        if running and health == "Degraded":
            if tty:
                progress.write("\n")
            message = (current.status.get("health") or {}).get("message")
            raise NotDeployedError(
                f"{app.where} is Degraded running {digest}" + (f": {message}" if message else "")
            )
        if elapsed + interval > timeout:
            if tty:
                progress.write("\n")
            raise NotDeployedError(
                f"{app.where}: not Synced and Healthy with {digest} after {timeout:g} s "
                f"(last seen: sync {sync}, health {health}, "
                f"{'running' if running else 'not running'} the new image)"
            )
        sleep(interval)
