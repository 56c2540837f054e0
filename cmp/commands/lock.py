"""`tagpin lock`: render the app, ask ECR for the tags the lock lacks, and say what changed;
`tagpin lock --check` (for CI) writes nothing and fails if the committed lock lacks a tag a
render uses or locks a digest ECR no longer has for its tag (unused entries are only noted).

The lock file's format lives in cmp/images/lockfile.py and the registry layer that answers
from it in cmp/registry/lock.py; this module is the command's work, which needs the whole
pipeline.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from cmp.commands.options import check_pairs, render_options
from cmp.errors import LockError, ResolveError
from cmp.images.lockfile import LockEntry, entry_order
from cmp.images.pin import collect, resolve
from cmp.output import Output, execute
from cmp.pipeline import load, raise_explained
from cmp.registry.base import Registry
from cmp.registry.names import EcrRepository
from cmp.request import RenderRequest


@dataclass(frozen=True)
class LockUpdate:
    """What `tagpin lock` wrote, and how it differs from the lock it replaced."""

    entries: tuple[LockEntry, ...]
    added: tuple[LockEntry, ...] = ()
    changed: tuple[LockEntry, ...] = ()
    removed: tuple[LockEntry, ...] = ()

    def summary(self, shown: str) -> list[str]:
        lines = [
            f"{shown}: {len(self.entries)} image(s); {len(self.added)} added, "
            f"{len(self.changed)} changed, {len(self.removed)} removed"
        ]
        lines += [f"  + {e.image} {e.digest}" for e in self.added]
        lines += [f"  ~ {e.image} {e.digest}" for e in self.changed]
        lines += [f"  - {e.image}" for e in self.removed]
        return lines


def lock_app(
    request: RenderRequest,
    registry_factory: Callable[[], Registry],
    output: Output,
    *,
    existing: Sequence[LockEntry] = (),
    update: bool = False,
    keep: bool = False,
) -> LockUpdate:
    """The lock for every ECR tag a render of `request` uses (all values layers applied): the
    render's own first stage (cmp.pipeline.load), so what a render refuses, this refuses too.

    Tags already in `existing` keep their digest unless `update`, so a bump changes one line;
    the rest are asked of `registry_factory` (ECR). Entries this render no longer uses are
    dropped unless `keep` (an app rendered with several values files locks each in turn).
    Branch-deploy overrides are not locked: they follow tags pushed after the lock is written.
    """
    loaded = load(request, output)
    wanted, _ = collect(loaded.manifests, loaded.rules._replace(require_digests=False))
    old = {(e.repository, e.tag): e for e in existing}
    reuse = {} if update else old
    ask = [w for w in wanted if (w.repository, w.tag) not in reuse]
    try:
        fresh = resolve(ask, registry_factory(), request.settings.ecr_concurrency) if ask else {}
    except ResolveError as error:  # `tag: 1.10` read as 1.1: say so, as a render does
        raise_explained(error, loaded)
    new: dict[tuple[EcrRepository, str], LockEntry] = dict(old) if keep else {}
    for item in wanted:
        key = (item.repository, item.tag)
        info = fresh.get(key)
        new[key] = (
            reuse[key]
            if info is None
            else LockEntry(
                item.repository, f"{item.repository.uri}:{item.tag}", item.tag, info.digest
            )
        )
    ordered = tuple(sorted(new.values(), key=entry_order))
    return LockUpdate(
        entries=ordered,
        added=tuple(e for e in ordered if (e.repository, e.tag) not in old),
        changed=tuple(
            e
            for e in ordered
            if (e.repository, e.tag) in old and old[(e.repository, e.tag)].digest != e.digest
        ),
        removed=tuple(sorted((e for k, e in old.items() if k not in new), key=entry_order)),
    )


def check_lock(
    request: RenderRequest,
    registry_factory: Callable[[], Registry],
    output: Output,
    existing: Sequence[LockEntry],
    *,
    shown: str,
) -> list[str]:
    """Notes for a lock that is up to date; a LockError naming every gap or mismatch."""
    # What `tagpin lock --update` would write: every used tag, as ECR answers now.
    wanted = lock_app(request, registry_factory, output, existing=existing, update=True)
    old = {(e.repository, e.tag): e for e in existing}
    problems = []
    for entry in wanted.entries:
        locked = old.get((entry.repository, entry.tag))
        if locked is None:
            problems.append(
                f"{entry.image}: a render uses this tag but {shown} lacks it; run "
                "`tagpin lock` and commit the lock"
            )
        elif locked.digest != entry.digest:
            problems.append(
                f"{entry.image}: {shown} locks {locked.digest}, but ECR now has "
                f"{entry.digest}; run `tagpin lock --update` if the new image is "
                "intended, else restore the tag"
            )
    if problems:
        raise LockError(*problems)
    notes = [f"{shown}: up to date ({len(wanted.entries)} image(s) checked against ECR)"]
    notes += [f"  unused entry (kept): {e.image}" for e in wanted.removed]
    return notes


def branch_deploy_note(request: RenderRequest) -> list[str]:
    """A lock holds git's tags: the image-updater parameter is checked as a render checks it
    (a typo fails) and said to be left out."""
    parameter = request.parameters.get("image-updater") or {}
    if not parameter:
        return []
    from cmp.imageupdater.plan import policies_from

    policies_from({}, parameter, request.words.image_updater)
    return [
        f"{request.words.image_updater} is not locked: branch-deploy picks follow tags pushed "
        "after the lock is written, so the lock holds the tags git names"
    ]


@click.command("lock")
@render_options
@click.option(
    "--update",
    is_flag=True,
    help="Ask ECR for every tag, also those already locked (default: only new tags).",
)
@click.option(
    "--keep",
    is_flag=True,
    help="Keep entries this render does not use (lock one app's values files in turn).",
)
@click.option(
    "--lock-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The lock to write or --check (default: APP_DIR/tagpin.lock).",
)
@click.option(
    "--check",
    is_flag=True,
    help="For CI: write nothing; exit 11 if the lock lacks a tag a render uses or "
    "locks a digest ECR no longer has for it.",
)
@click.pass_context
def lock_command(
    ctx: click.Context,
    /,
    app_dir: Path,
    update: bool,
    keep: bool,
    lock_file: Path | None,
    check: bool,
    **options: Any,
) -> int:
    """Write APP_DIR/tagpin.lock: the digest of every ECR image tag a render with these flags
    uses. Commit it; renders then take digests from git instead of ECR (always from ECR
    itself, never a cache; with --digests, from that file)."""
    from cmp.commands.options import app_request
    from cmp.images.lockfile import read_lock, write_lock
    from cmp.registry.pushes import PushFloors
    from cmp.services import registry_for, services_for
    from cmp.settings import LOCK_FILE, LockMode

    check_pairs(options)
    if options["output_format"] != "yaml":
        raise click.UsageError(
            f"tagpin lock writes its lock as YAML only, not {options['output_format']}: "
            "-o/--output is the output format in every command; to write the lock to "
            "another file, use --lock-file FILE"
        )

    def job(output: Output) -> str:
        request = app_request(app_dir, options)
        target = Path(os.path.abspath(lock_file)) if lock_file else request.app_dir / LOCK_FILE
        shown = os.path.relpath(target) if lock_file is None else str(lock_file)
        limit = request.settings.max_file_bytes
        # The app's own lock obeys the repository's rules; a path given with --lock-file is
        # the user's choice.
        root = None if lock_file else request.repo_root
        existing = (
            read_lock(target, str(target), repo_root=root, max_bytes=limit)
            if target.is_file()
            else []
        )
        output.note(*branch_deploy_note(request))
        # What ECR says now, not what a cache remembers; --digests answers alone, otherwise
        # ECR, whatever TAGPIN_LOCK says about the app's lock.
        settings = request.settings._replace(lock=LockMode.OFF).fresh()
        request = request._replace(settings=settings)
        pushes = PushFloors(skew=float(settings.push_clock_skew))
        services = services_for(settings, request.settings_env)
        registry = registry_for(request, services, pushes, output.warnings)
        if check:
            output.note(*check_lock(request, registry, output, existing, shown=shown))
            return ""
        result = lock_app(request, registry, output, existing=existing, update=update, keep=keep)
        write_lock(target, result.entries)
        output.note(*result.summary(shown))
        return ""

    return execute(job, debug=ctx.obj["debug"])
