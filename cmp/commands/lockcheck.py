"""`tagpin lock --check`: does the committed lock hold, unchanged, every tag a render uses?

For CI: nothing is written. A tag the render uses but the lock lacks, or a locked digest that
ECR no longer has for its tag, fails the check with the lock's exit code; entries no render
uses are only mentioned (an app rendered with several values files keeps them on purpose).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from cmp.errors import LockError

if TYPE_CHECKING:
    from cmp.registry.base import Registry
    from cmp.registry.lock import LockEntry
    from cmp.request import RenderRequest


def check_lock(request: RenderRequest, registry_factory: Callable[[], Registry],
               existing: Sequence[LockEntry], *, shown: str, concurrency: int = 8) -> list[str]:
    """Notes for a lock that is up to date; a LockError naming every gap or mismatch."""
    from cmp.commands.lock import lock_app

    # What `tagpin lock --update` would write: every used tag, as ECR answers now.
    wanted = lock_app(request, registry_factory, existing=existing, update=True, keep=False,
                      concurrency=concurrency)
    old = {(e.repository, e.tag): e for e in existing}
    problems = []
    for entry in wanted.entries:
        locked = old.get((entry.repository, entry.tag))
        if locked is None:
            problems.append(f"{entry.image}: a render uses this tag but {shown} lacks it; run "
                            "`tagpin lock` and commit the lock")
        elif locked.digest != entry.digest:
            problems.append(f"{entry.image}: {shown} locks {locked.digest}, but ECR now has "
                            f"{entry.digest}; run `tagpin lock --update` if the new image is "
                            "intended, else restore the tag")
    if problems:
        raise LockError(*problems)
    notes = [f"{shown}: up to date ({len(wanted.entries)} image(s) checked against ECR)"]
    notes += [f"  unused entry (kept): {e.image}" for e in wanted.removed]
    return notes
