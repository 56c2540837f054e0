"""`tagpin lock`: render the app, ask ECR for the tags the lock lacks, and say what changed.

The lock file's format and the registry that reads from it live in cmp/registry/lock.py; this
module is the command's work, which needs the whole pipeline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cmp.images.ecr import EcrRepository
from cmp.images.pin import collect, resolve
from cmp.pipeline import custom_image_paths, render_manifests
from cmp.registry.base import Registry
from cmp.registry.lock import LockEntry, entry_order
from cmp.request import RenderRequest
from cmp.services import limits_from


@dataclass(frozen=True)
class LockUpdate:
    """What `tagpin lock` wrote, and how it differs from the lock it replaced."""

    entries: tuple[LockEntry, ...]
    added: tuple[LockEntry, ...] = ()
    changed: tuple[LockEntry, ...] = ()
    removed: tuple[LockEntry, ...] = ()

    def summary(self, shown: str) -> list[str]:
        lines = [f"{shown}: {len(self.entries)} image(s); {len(self.added)} added, "
                 f"{len(self.changed)} changed, {len(self.removed)} removed"]
        lines += [f"  + {e.image} {e.digest}" for e in self.added]
        lines += [f"  ~ {e.image} {e.digest}" for e in self.changed]
        lines += [f"  - {e.image}" for e in self.removed]
        return lines


@dataclass
class LockOutcome:
    """Shaped like RenderResult for `run.execute`: nothing on stdout, the summary on stderr."""

    text: str = ""
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def lock_app(request: RenderRequest, registry_factory: Callable[[], Registry], *,
             existing: Sequence[LockEntry] = (), update: bool = False, keep: bool = False,
             concurrency: int = 8) -> LockUpdate:
    """The lock for every ECR tag a render of `request` uses (all values layers applied).

    Tags already in `existing` keep their digest unless `update`, so a bump changes one line;
    the rest are asked of `registry_factory` (ECR). Entries this render no longer uses are
    dropped unless `keep` (an app rendered with several values files locks each in turn).
    Branch-deploy overrides are not locked: they follow tags pushed after the lock is written.
    """
    source, manifests = render_manifests(request, limits_from(request.settings_env))
    wanted, _ = collect(manifests, custom_image_paths(source), require_digests=False)
    old = {(e.repository, e.tag): e for e in existing}
    reuse = {} if update else old
    ask = [w for w in wanted if (w.repository, w.tag) not in reuse]
    fresh = resolve(ask, registry_factory(), concurrency) if ask else {}
    new: dict[tuple[EcrRepository, str], LockEntry] = dict(old) if keep else {}
    for item in wanted:
        key = (item.repository, item.tag)
        info = fresh.get(key)
        new[key] = reuse[key] if info is None else LockEntry(
            item.repository, f"{item.repository.uri}:{item.tag}", item.tag, info.digest)
    ordered = tuple(sorted(new.values(), key=entry_order))
    return LockUpdate(
        entries=ordered,
        added=tuple(e for e in ordered if (e.repository, e.tag) not in old),
        changed=tuple(e for e in ordered if (e.repository, e.tag) in old
                      and old[(e.repository, e.tag)].digest != e.digest),
        removed=tuple(sorted((e for k, e in old.items() if k not in new), key=entry_order)),
    )
