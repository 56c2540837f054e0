"""Push events in, as values: EventBridge "ECR Image Action" events and signed generic payloads.

Everything a sender controls is checked here, before any Application is touched: the shared
secret (constant-time), the HMAC, the event's age, exact replays, the body's JSON and every field.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cmp.errors import ImageError
from cmp.images.reference import parse_image
from cmp.imageupdater.annotations import normalize_repository
from cmp.jsonread import JsonError, loads
from cmp.registry.names import ecr_registry, registry_host

SECRET_HEADER = "X-Tagpin-Secret"
SIGNATURE_HEADER = "X-Tagpin-Signature"
TIMESTAMP_HEADER = "X-Tagpin-Timestamp"
SIGNATURE_PREFIX = "sha256="
MIN_SECRET_LENGTH = 16
ECR_SOURCE = "aws.ecr"
ECR_DETAIL_TYPE = "ECR Image Action"
GENERIC_FIELDS = frozenset({"repository", "tag", "registry", "account", "region", "digest"})

_ACCOUNT_RE = re.compile(r"\d{12}", re.ASCII)
_REGION_RE = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}", re.ASCII)
_TIMESTAMP_RE = re.compile(r"\d{1,12}", re.ASCII)
_SIGNATURE_RE = re.compile(r"[0-9a-f]{64}", re.ASCII)
_EVENT_ID_MAX = 256
_QUOTE_MAX = 80


@dataclass(frozen=True)
class PushEvent:
    """One pushed tag: `repository` is fully qualified (`host/path`), as Applications name it."""

    repository: str
    tag: str
    digest: str | None
    sender: str  # "eventbridge" or "generic"
    replay_key: str  # what identifies an exact replay: the event id, or the signature


class Rejected(Exception):
    """The request is refused with `status`; `outcome` labels the metric, `reason` is for people."""

    def __init__(self, status: int, outcome: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.outcome = outcome
        self.reason = reason


class Ignored(Exception):
    """A valid, authenticated event that cannot move a tag (e.g. a DELETE): answered 200."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _malformed(reason: str) -> Rejected:
    return Rejected(400, "malformed", reason)


def _quoted(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return json.dumps(text[:_QUOTE_MAX] + ("…" if len(text) > _QUOTE_MAX else ""))


# --- authentication ---------------------------------------------------------------------------


def check_secret(secret: str) -> None:
    """Refuse to run with a guessable secret; ValueError says why."""
    if len(secret) < MIN_SECRET_LENGTH:
        raise ValueError(
            f"the webhook secret has {len(secret)} characters; use at least {MIN_SECRET_LENGTH} "
            "random ones (e.g. `openssl rand -hex 32`)"
        )


def verify_shared_secret(headers: Mapping[str, str], secret: str) -> None:
    """EventBridge API destinations send the connection's API key as a fixed header."""
    presented = headers.get(SECRET_HEADER.lower(), "")
    if not hmac.compare_digest(presented.encode("utf-8"), secret.encode("utf-8")):
        raise Rejected(401, "unauthorized", f"missing or wrong {SECRET_HEADER} header")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The X-Tagpin-Signature value: HMAC-SHA256 over `<timestamp>.<raw body>`.

    The timestamp is inside the MAC so an old body cannot be replayed under a new timestamp.
    """
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def verify_signature(
    headers: Mapping[str, str], body: bytes, secret: str, now: float, max_age: float
) -> str:
    """Check the HMAC and the timestamp's age; return the signature (the replay key)."""
    timestamp = headers.get(TIMESTAMP_HEADER.lower(), "")
    signature = headers.get(SIGNATURE_HEADER.lower(), "")
    if not _TIMESTAMP_RE.fullmatch(timestamp):
        raise Rejected(401, "unauthorized", f"missing or invalid {TIMESTAMP_HEADER} (Unix seconds)")
    hex_part = signature[len(SIGNATURE_PREFIX) :]
    if not signature.startswith(SIGNATURE_PREFIX) or not _SIGNATURE_RE.fullmatch(hex_part):
        raise Rejected(
            401, "unauthorized", f"missing or invalid {SIGNATURE_HEADER} (sha256=<64 hex digits>)"
        )
    expected = sign(secret, timestamp, body)
    if not hmac.compare_digest(signature.encode("ascii"), expected.encode("ascii")):
        raise Rejected(401, "unauthorized", f"{SIGNATURE_HEADER} does not match the body")
    check_age(float(timestamp), now, max_age, TIMESTAMP_HEADER)
    return hex_part


def check_age(event_time: float, now: float, max_age: float, what: str) -> None:
    """Old events may be replays; far-future ones mean a broken clock. Both are refused with
    400, which no sender retries: the same event would only get older."""
    if now - event_time > max_age:
        raise Rejected(
            400,
            "stale",
            f"{what} is {now - event_time:.0f} s old, more than the {max_age:g} s allowed; "
            "replays of old events are refused (check the sender's clock and retry policy)",
        )
    if event_time - now > max_age:
        raise Rejected(
            400,
            "stale",
            f"{what} is {event_time - now:.0f} s in the future; check the sender's clock",
        )


class ReplayGuard:
    """Remembers accepted events until they are too old to pass `check_age` anyway."""

    def __init__(self, ttl: float, capacity: int = 100_000) -> None:
        self._ttl = ttl
        self._capacity = capacity
        self._expiry: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, key: str, now: float) -> bool:
        """Record `key`; False when it was already seen (an exact replay)."""
        with self._lock:
            while self._expiry and (
                next(iter(self._expiry.values())) < now or len(self._expiry) >= self._capacity
            ):
                self._expiry.popitem(last=False)
            if key in self._expiry:
                return False
            # Twice the age limit: an event may be max_age old or max_age in the future.
            self._expiry[key] = now + 2 * self._ttl
            return True


# --- strict JSON ------------------------------------------------------------------------------


def parse_json_object(body: bytes) -> dict[str, Any]:
    """RFC 8259 and nothing more (cmp/jsonread.py): UTF-8, bounded nesting, no duplicate keys,
    no NaN/Infinity, an object."""
    try:
        document = loads(body)
    except JsonError as error:
        raise _malformed(f"the body is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise _malformed("the body must be a JSON object")
    return document


# --- payloads ---------------------------------------------------------------------------------


def _string(document: Mapping[str, Any], key: str, where: str, required: bool = True) -> str:
    value = document.get(key)
    if value in (None, "") and not required:
        return ""
    if not isinstance(value, str) or not value:
        raise _malformed(f"{where}{key} must be a non-empty string, got {_quoted(value)}")
    return value


def ecr_host(account: str, region: str) -> str:
    """The private registry host of an account and Region (its partition's domain: .cn in
    China, amazonaws.eu in the European Sovereign Cloud, …)."""
    return registry_host(account, region) or f"{account}.dkr.ecr.{region}.amazonaws.com"


def _registry_of(account: str, region: str, where: str) -> str:
    if not _ACCOUNT_RE.fullmatch(account):
        raise _malformed(f"{where}account {_quoted(account)} is not a 12-digit AWS account id")
    if not _REGION_RE.fullmatch(region):
        raise _malformed(f"{where}region {_quoted(region)} is not an AWS Region such as eu-west-1")
    host = ecr_host(account, region)
    if ecr_registry(host) is None:  # the two grammars must agree, or matching would miss
        raise _malformed(f"{where}account and region do not form an ECR registry host")
    return host


def _image(repository: str, tag: str, digest: str | None) -> tuple[str, str, str | None]:
    """Validate `repository:tag[@digest]` with Docker's grammar; return the normalized parts."""
    text = f"{repository}:{tag}" + (f"@{digest}" if digest else "")
    try:
        ref = parse_image(text)
    except ImageError as error:
        raise _malformed("; ".join(error.problems)) from None
    if ref.tag != tag or ref.repository != repository:
        raise _malformed(f"image {_quoted(text)} does not split into repository and tag")
    return normalize_repository(ref.repository), tag, ref.digest


def parse_eventbridge(document: Mapping[str, Any], now: float, max_age: float) -> PushEvent:
    """An EventBridge event as an API destination delivers it (the whole event, untransformed)."""
    if document.get("source") != ECR_SOURCE or document.get("detail-type") != ECR_DETAIL_TYPE:
        raise _malformed(
            f"expected an event with source {ECR_SOURCE!r} and detail-type {ECR_DETAIL_TYPE!r}, "
            f"got {_quoted(document.get('source'))} / {_quoted(document.get('detail-type'))}: "
            "fix the EventBridge rule's event pattern or send to /events/generic"
        )
    event_id = _string(document, "id", "")
    if len(event_id) > _EVENT_ID_MAX:
        raise _malformed(f"id is longer than {_EVENT_ID_MAX} characters")
    time_text = _string(document, "time", "")
    try:
        event_time = datetime.datetime.fromisoformat(time_text)
    except ValueError:
        raise _malformed(f"time {_quoted(time_text)} is not an RFC 3339 timestamp") from None
    if event_time.tzinfo is None:
        raise _malformed(f"time {_quoted(time_text)} has no time zone (EventBridge sends Z)")
    check_age(event_time.timestamp(), now, max_age, "the event's time")
    detail = document.get("detail")
    if not isinstance(detail, dict):
        raise _malformed("detail must be an object")
    action = _string(detail, "action-type", "detail.")
    result = _string(detail, "result", "detail.")
    if action != "PUSH" or result != "SUCCESS":
        raise Ignored(f"action-type {action} with result {result} moves no tag")
    tag = _string(detail, "image-tag", "detail.", required=False)
    if not tag:
        raise Ignored("a push without a tag (by digest) moves no tag")
    host = _registry_of(_string(document, "account", ""), _string(document, "region", ""), "")
    name = _string(detail, "repository-name", "detail.")
    digest = _string(detail, "image-digest", "detail.", required=False) or None
    repository, tag, digest = _image(f"{host}/{name}", tag, digest)
    return PushEvent(repository, tag, digest, "eventbridge", f"eventbridge:{event_id}")


def parse_generic(document: Mapping[str, Any], replay_key: str) -> PushEvent:
    """`{"repository": "<host>/<path>" | "<path>", "tag": …}` plus `registry` or
    `account` and `region` when the repository has no host, and an optional `digest`."""
    unknown = sorted(set(document) - GENERIC_FIELDS)
    if unknown:
        raise _malformed(
            f"unknown field(s) {', '.join(_quoted(k) for k in unknown)}; "
            f"allowed: {', '.join(sorted(GENERIC_FIELDS))}"
        )
    repository = _string(document, "repository", "")
    tag = _string(document, "tag", "")
    registry = _string(document, "registry", "", required=False)
    account = _string(document, "account", "", required=False)
    region = _string(document, "region", "", required=False)
    digest = _string(document, "digest", "", required=False) or None
    if account or region:
        if registry:
            raise _malformed("send either registry or account and region, not both")
        registry = _registry_of(account, region, "")
    first, slash, _ = repository.partition("/")
    has_host = bool(slash) and ("." in first or ":" in first or first == "localhost")
    if registry and has_host:
        raise _malformed(
            f"repository {_quoted(repository)} already names a registry host; drop registry"
        )
    if registry:
        repository = f"{registry}/{repository}"
    elif not has_host:
        raise _malformed(
            f"repository {_quoted(repository)} has no registry host: send the full name "
            "(<host>/<path>), or registry, or account and region"
        )
    repository, tag, digest = _image(repository, tag, digest)
    return PushEvent(repository, tag, digest, "generic", f"generic:{replay_key}")
