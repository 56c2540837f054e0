"""ECR push events as EventBridge delivers them (AWS docs' "ECR Image Action" example, with the
tests' values), for the webhook's tests."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

ACCOUNT = "111122223333"
REGION = "eu-west-1"
DIGEST = "sha256:" + "ab" * 32


def ecr_event(
    repository: str = "team/web",
    tag: str = "1.2.4",
    *,
    event_time: float | None = None,
    event_id: str | None = None,
    digest: str = DIGEST,
    detail: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A successful push of `repository:tag` in the tests' account and region."""
    return {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
        "detail-type": "ECR Image Action",
        "source": "aws.ecr",
        "account": ACCOUNT,
        "time": time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if event_time is None else event_time)
        ),
        "region": REGION,
        "resources": [],
        "detail": {
            "result": "SUCCESS",
            "repository-name": repository,
            "image-digest": digest,
            "action-type": "PUSH",
            "image-tag": tag,
            **(detail or {}),
        },
    }
