"""The one rule for every cached answer, in memory, on disk or in Redis: it may answer while it
is younger than the layer's time to live and was not fetched before a push the webhook
announced since (cmp.registry.pushes, with the clocks' skew allowed for).

Every caching layer asks `freshness` and nothing else; what it says is what the layers report
(cmp.registry.observe).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Literal

    from cmp.registry.base import Fetched
    from cmp.registry.names import EcrRepository
    from cmp.registry.pushes import PushFloors

    # fresh: it may answer; expired: older than the time to live; pushed: fetched before a
    # push announced since (refused by the push floor).
    Freshness = Literal["fresh", "expired", "pushed"]


def freshness(
    repo: EcrRepository, fetched: Fetched, *, now: float, max_age: float, pushes: PushFloors
) -> Freshness:
    """Whether an answer about `repo` fetched as `fetched` may answer at `now` when answers
    are trusted for `max_age` seconds (a TTL, or TAGPIN_SERVE_STALE_HOURS while ECR is down)."""
    if fetched.at <= now - max_age:
        return "expired"
    if not pushes.admits(repo, fetched.at, fetched.seen):
        return "pushed"
    return "fresh"
