"""What a render reports as it goes, for the render server's metrics: the registry's layers
(cmp.registry.observe), and what only the render as a whole knows: its wait for a slot, the
limit that stopped it, the first time it pins a digest the webhook announced.

A render in its own process has no one to tell: it uses SILENT, which does nothing and imports
nothing. A render server's worker counts into a Tally (cmp/server/tally.py) that it sends the
server once it has answered. Every argument is from a small fixed vocabulary or a number.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cmp.registry.observe import RegistryObserver

if TYPE_CHECKING:
    from typing import Literal

    Limit = Literal["cpu", "memory", "time"]


class RenderObserver(RegistryObserver):
    """Does nothing; override what you count (thread-safe, and quick)."""

    def slot_waited(self, seconds: float) -> None:
        """The render waited `seconds` for a render slot (got one, or was refused as busy)."""

    def limit_hit(self, limit: Limit) -> None:
        """The render was stopped by its CPU, memory or time limit."""

    def push_floor_decided(self, admitted: bool) -> None:
        """For one repository with a push announced, the caches' answers were `admitted`
        (fetched after the push) or one was refused (fetched before: asked again below)."""

    def push_pinned(self, push: str, seconds: float) -> None:
        """The render pinned the digest of a push the webhook announced `seconds` ago; `push`
        names that push (an opaque short hash, never shown) so it is timed once."""


SILENT = RenderObserver()  # stateless: what a render without a server reports to
