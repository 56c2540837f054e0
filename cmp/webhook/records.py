"""The webhook's patch: hard refresh plus the push record (cmp.registry.pushes), written with
the API server's optimistic concurrency so concurrent webhook replicas never lose each other's
pushes.

A JSON merge patch replaces an annotation's whole value, so two replicas adding different
repositories to one record would race. Each patch therefore names the `resourceVersion` it read;
the API server refuses it with 409 if anything changed the Application since (another replica,
or Argo CD removing its refresh annotation), and the patch is rebuilt from a fresh read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from cmp.argocd.kube import KubeApiError
from cmp.registry.pushes import (
    PUSHES_ANNOTATION,
    BadRecord,
    PushRecord,
    format_record,
    parse_record,
    record_pushes,
)
from cmp.webhook.events import PushEvent

REFRESH_ANNOTATION = "argocd.argoproj.io/refresh"
CONFLICT_ATTEMPTS = 10  # Argo CD writes Applications often; each retry re-reads at once


class ApplicationStore(Protocol):
    def get_application(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def patch_application(
        self, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]: ...


def refresh_patch(
    application: dict[str, Any], events: Sequence[PushEvent], now: float
) -> dict[str, Any]:
    """The merge patch that hard-refreshes `application` and adds `events` to its record,
    conditional on the version read."""
    metadata = application.get("metadata") or {}
    text = (metadata.get("annotations") or {}).get(PUSHES_ANNOTATION)
    try:
        current = parse_record(text) if isinstance(text, str) else PushRecord({})
    except BadRecord:
        # Unreadable: whatever it announced is lost, so every repository counts as pushed now.
        current = PushRecord({}, older=now)
    record = record_pushes(current, [(e.repository, e.tag, e.digest) for e in events], now)
    return {
        "metadata": {
            "resourceVersion": metadata.get("resourceVersion"),
            "annotations": {REFRESH_ANNOTATION: "hard", PUSHES_ANNOTATION: format_record(record)},
        }
    }


def refresh_and_record(
    kube: ApplicationStore,
    namespace: str,
    name: str,
    events: Sequence[PushEvent],
    clock: Callable[[], float] = time.time,
) -> None:
    """Patch the Application (read, patch, re-read on 409); KubeApiError when it cannot."""
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        application = kube.get_application(namespace, name)
        if application is None:
            raise KubeApiError(
                f'applications.argoproj.io "{name}" not found in namespace {namespace}',
                status=404,
            )
        try:
            kube.patch_application(namespace, name, refresh_patch(application, events, clock()))
            return
        except KubeApiError as error:
            if error.status != 409 or attempt == CONFLICT_ATTEMPTS:
                raise
