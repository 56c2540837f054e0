"""`tagpin diff`: render an app at two git revisions and show what would change in the cluster.

Both sides go through the same pipeline as the sidecar, each with the tagpin.lock of its own
revision, so a digest bump shows up as the image lines it changes. Like diff(1): exit 0 when
equal, 1 when different, anything else is an error.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import click

from cmp.commands.options import as_json, check_pairs, render_options
from cmp.errors import ConfigError, TagpinError
from cmp.output import Output, execute
from cmp.pipeline import RenderResult, run
from cmp.request import RenderRequest
from cmp.services import Services
from cmp.source.emit import emit_stream
from cmp.source.gitrev import Revision, checkout, repository_root, resolve_revision
from cmp.source.manifests import Manifest

WORKTREE = "working tree"


class Side(NamedTuple):
    """One rendered side: its label, and its output (None when the app does not exist there)."""

    label: str
    result: RenderResult | None
    output_format: str = "yaml"  # `-o json`: diff the JSON form of the objects

    @property
    def text(self) -> str:
        if self.result is None:
            return ""
        if self.output_format == "json":
            return as_json([m.body for m in self.result.manifests])
        return self.result.text


class DiffResult(NamedTuple):
    text: str  # the unified diff
    different: bool


def diff_app(
    request: RenderRequest,
    services: Services,
    output: Output,
    *,
    base: str = "HEAD",
    head: str | None = None,
    context_lines: int = 3,
    output_format: str = "yaml",
) -> DiffResult:
    """Render `request`'s app at `base` and at `head` (None: the working tree) and diff them
    (`output_format` json: the JSON forms of the objects, as `tagpin render -o json` prints).
    Each side's warnings go to `output` named by the side; notes summarize the change.

    `request.app_dir` names the app in the working tree; each revision is written to a
    temporary directory and the app is rendered from the same relative path there.
    """
    existing = next(p for p in (request.app_dir, *request.app_dir.parents) if p.is_dir())
    repo = repository_root(existing)
    app_path = _relative_app_path(request, repo)
    base_revision = resolve_revision(repo, base)
    head_revision = resolve_revision(repo, head) if head is not None else None
    before = _render_at(request, services, output, repo, app_path, base_revision)
    if head_revision is None:
        after = Side(
            WORKTREE,
            _render_or_label(WORKTREE, request, services, output)
            if request.app_dir.is_dir()
            else None,
        )
    else:
        after = _render_at(request, services, output, repo, app_path, head_revision)
    before, after = (side._replace(output_format=output_format) for side in (before, after))
    if before.result is None and after.result is None:
        raise ConfigError(f"{app_path}: no such app at {before.label} nor at {after.label}")
    shown = app_path.as_posix() or "."
    lines = list(
        difflib.unified_diff(
            before.text.splitlines(keepends=True),
            after.text.splitlines(keepends=True),
            fromfile=f"a/{shown} ({before.label})",
            tofile=f"b/{shown} ({after.label})",
            n=context_lines,
        )
    )
    output.note(
        *(
            f"{shown}: no such app at {side.label}; diffing against nothing"
            for side in (before, after)
            if side.result is None
        ),
        *summarize(_manifests(before), _manifests(after)),
    )
    return DiffResult(text="".join(_terminated(lines)), different=bool(lines))


def _relative_app_path(request: RenderRequest, repo: Path) -> Path:
    app = Path(os.path.realpath(request.app_dir))
    try:
        return app.relative_to(os.path.realpath(repo))
    except ValueError:
        raise ConfigError(f"{request.app_dir} is not inside the git repository {repo}") from None


def _relative_root(request: RenderRequest, repo: Path) -> Path:
    """Where the request's repository root lies inside the git repository (usually `.`)."""
    try:
        return Path(os.path.realpath(request.repo_root)).relative_to(os.path.realpath(repo))
    except ValueError:
        raise ConfigError(
            f"the repository root {request.repo_root} is not inside the git repository {repo}"
        ) from None


def _render_at(
    request: RenderRequest,
    services: Services,
    output: Output,
    repo: Path,
    app_path: Path,
    revision: Revision,
) -> Side:
    with checkout(repo, revision) as root:
        app_dir = root / app_path
        if not app_dir.is_dir():
            return Side(revision.label, None)
        # --repo-root names a directory of the working tree; the same one in this checkout.
        at_revision = request._replace(
            app_dir=app_dir, repo_root=root / _relative_root(request, repo)
        )
        return Side(revision.label, _render_or_label(revision.label, at_revision, services, output))


def _render_or_label(
    label: str, request: RenderRequest, services: Services, output: Output
) -> RenderResult:
    """Render; its warnings, and an error's problems, say which side they are from (an error
    keeps its class and exit code). A side's notes (overrides applied) are left out."""
    side = Output()
    try:
        return run(request, services, side)
    except TagpinError as exc:
        raise type(exc)(*(f"at {label}: {problem}" for problem in exc.problems)) from exc
    finally:
        output.warn(*(f"{label}: {warning}" for warning in side.warnings))


def _manifests(side: Side) -> list[Manifest]:
    return side.result.manifests if side.result is not None else []


def summarize(before: list[Manifest], after: list[Manifest]) -> list[str]:
    """One line per object added, removed or changed, for a pull-request comment's first lines."""
    old, new = _by_identity(before), _by_identity(after)
    lines: list[str] = []
    for identity in sorted(old.keys() | new.keys()):
        name = _identity_text(identity)
        if identity not in old:
            lines.append(f"added {name}")
        elif identity not in new:
            lines.append(f"removed {name}")
        elif old[identity] != new[identity]:
            lines.append(f"changed {name}")
    return lines


def _by_identity(manifests: list[Manifest]) -> dict[tuple[str, str, str, str], str]:
    return {(m.group, m.kind, m.namespace, m.name): emit_stream([m.body]) for m in manifests}


def _identity_text(identity: tuple[str, str, str, str]) -> str:
    group, kind, namespace, name = identity
    qualified = f"{kind}.{group}" if group else kind
    return f"{qualified} {namespace}/{name}" if namespace else f"{qualified} {name}"


def _terminated(lines: list[str]) -> Iterator[str]:
    # A last line without a newline would run into the next hunk header; diff(1) marks it so.
    for line in lines:
        yield line
        if not line.endswith("\n"):
            yield "\n\\ No newline at end of file\n"


@click.command("diff")
@render_options
@click.option(
    "--base",
    default="HEAD",
    show_default=True,
    help="Git revision to compare from (in CI: the merge base with the target branch).",
)
@click.option(
    "--head",
    default=None,
    help="Git revision to compare to (default: the working tree, uncommitted changes included).",
)
@click.option(
    "--context",
    "-U",
    "context_lines",
    default=3,
    show_default=True,
    type=click.IntRange(min=0),
    help="Lines of context around each change.",
)
@click.pass_context
def diff_command(
    ctx: click.Context,
    /,
    app_dir: Path,
    base: str,
    head: str | None,
    context_lines: int,
    **options: Any,
) -> int:
    """Render APP_DIR at two git revisions and print a unified diff of the outputs; the
    render flags apply to both sides.

    Exit 0 when they are equal, 1 when they differ, another code on an error (see README)."""
    from cmp.commands.diff import diff_app
    from cmp.commands.options import app_request
    from cmp.errors import ExitStatus
    from cmp.services import services_for
    from cmp.settings import AppLookup

    check_pairs(options)
    outcome: list[DiffResult] = []

    def job(output: Output) -> str:
        request = app_request(app_dir, options, must_exist=False)
        # A preview shows git's tags, not a live branch deploy's.
        request = request._replace(settings=request.settings._replace(app_lookup=AppLookup.OFF))
        result = diff_app(
            request,
            services_for(request.settings, request.settings_env),
            output,
            base=base,
            head=head,
            context_lines=context_lines,
            output_format=options["output_format"],
        )
        outcome.append(result)
        return result.text

    status = execute(job, debug=ctx.obj["debug"])
    if status == ExitStatus.OK and outcome and outcome[0].different:
        return int(ExitStatus.DIFFERENT)
    return status
