"""What the registry layers report as they work, for operators' metrics: which layer answered
and how fresh its answer was, ECR calls and their errors, Redis trouble, waits on another
render's fill.

Every layer takes a `RegistryObserver` when it is built (cmp.registry.build passes the same
one to all); the base class does nothing, and a render server counting for Prometheus
overrides what it counts. A warm render makes one call per answer. Every argument comes from a
small fixed vocabulary, never a tag, a digest or a repository name, so a metric label made of
one stays bounded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the vocabulary, for the type checker; at run time each value is a str
    from typing import Literal

    Layer = Literal["lock", "memory", "disk", "redis", "ecr"]
    # a repository's tags (pinning), or all of them (branch deploys)
    Question = Literal["tags", "listing"]
    # fresh: the layer answered; pushed: it held an answer the push floor refused (a push was
    # announced since), so a lower layer was asked; stale: it answered past its time to live
    # because ECR was unavailable (TAGPIN_SERVE_STALE_HOURS).
    Outcome = Literal["fresh", "pushed", "stale"]
    # down: Redis could not be used (unreachable, timeout, auth, protocol; the render went on
    # without it); rejected: a value not signed with the fleet's key, or malformed;
    # planted_lock: a single-flight lock no replica could have taken, replaced.
    RedisTrouble = Literal["down", "rejected", "planted_lock"]


class RegistryObserver:
    """Does nothing; override what you count. Called from the threads that resolve
    repositories in parallel: an override must be thread-safe, and quick."""

    def answered(self, layer: Layer, question: Question, outcome: Outcome) -> None:
        """One question about one repository met `layer`'s answer, with `outcome`."""

    def ecr_called(self, operation: str, error: str | None, retries: int) -> None:
        """One ECR API call (`DescribeImages`, `ListImages`, `BatchGetImage`; a page of a
        listing is a call) ended: `error` is None, AWS's error code when it is one tagpin
        knows (ThrottlingException, AccessDeniedException, RepositoryNotFoundException, …),
        `other` for any other code, botocore's error class for a transport or credentials
        problem, or `deadline` (TAGPIN_ECR_DEADLINE stopped it); `retries` are botocore's
        retries within the call (throttling or server errors met on the way)."""

    def redis_trouble(self, trouble: RedisTrouble) -> None:
        """The shared cache met `trouble` (each one also counted or warned about once)."""

    def waited(self, layer: Layer) -> None:
        """A render waited for another one filling the same repository: another process on
        this machine (`disk`: the cache file's lock) or another replica (`redis`)."""


SILENT = RegistryObserver()  # stateless: the default of every layer
