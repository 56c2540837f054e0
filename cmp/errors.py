"""The error hierarchy: one root, one subclass per cause, each with its own exit code.

Every message is written for the person reading Argo CD's UI: it names the file and line,
the object or the image at fault, and what to do. Messages never carry credentials or the
contents of files outside the app's repository.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum
from typing import Any, ClassVar


class ExitStatus(IntEnum):
    """Process exit codes. Documented in docs/reference.md's exit-code table; a code with an
    error class below is explained by that class's docstring."""

    OK = 0
    DIFFERENT = 1  # `tagpin diff` only: the two renders differ (like diff(1))
    USAGE = 2  # bad command line (click's own code)
    CONFIG = 3
    SOURCE = 4
    TEMPLATE = 5
    MANIFEST = 6
    IMAGE = 7
    RESOLVE = 8
    REGISTRY = 9
    APP_LOOKUP = 10
    LOCK = 11
    CONFLICT = 12
    NOT_DEPLOYED = 13
    INTERNAL = 70  # a bug in tagpin: rerun with --debug and report it
    BUSY = 75
    INTERRUPTED = 130  # stopped by SIGINT (Ctrl-C)


class TagpinError(Exception):
    """Root of every error tagpin expects. `problems` holds one line per problem found.

    A subclass names its exit status and the title its message starts with in its class line,
    `class ConfigError(TagpinError, exit_status=..., title=...)`, so each kind of error is one
    row; a subclass of a subclass (a kind of template error, say) inherits both."""

    exit_status: ClassVar[ExitStatus] = ExitStatus.INTERNAL
    title: ClassVar[str] = "tagpin failed"

    def __init_subclass__(
        cls, *, exit_status: ExitStatus | None = None, title: str | None = None, **rest: Any
    ) -> None:
        super().__init_subclass__(**rest)
        if exit_status is not None:
            cls.exit_status = exit_status
        if title is not None:
            cls.title = title

    def __init__(self, *problems: str) -> None:
        if not problems:
            raise ValueError("a TagpinError needs at least one problem")
        super().__init__(*problems)
        self.problems: tuple[str, ...] = problems

    def __str__(self) -> str:
        return "\n".join(self.problems)


class ConfigError(TagpinError, exit_status=ExitStatus.CONFIG, title="invalid configuration"):
    """tagpin.yaml, values (values.schema.json), parameters or settings are invalid."""


class SourceError(TagpinError, exit_status=ExitStatus.SOURCE, title="cannot read the input"):
    """An app file, or `tagpin pin`'s stream, is missing, unreadable, too large or outside the
    repository."""


class TemplateError(TagpinError, exit_status=ExitStatus.TEMPLATE, title="template error"):
    """A Jinja2 template failed to compile or render (kustomize build failing is one too)."""


class ManifestError(TagpinError, exit_status=ExitStatus.MANIFEST, title="invalid manifests"):
    """The rendered YAML is not a valid stream of Kubernetes objects."""


class ImageError(TagpinError, exit_status=ExitStatus.IMAGE, title="invalid image reference"):
    """An image reference is malformed, almost ECR, or unpinned where digests are required."""


class ResolveError(TagpinError, exit_status=ExitStatus.RESOLVE, title="cannot resolve image tags"):
    """A tag or repository does not exist, or no tag satisfies a constraint."""


class RegistryError(
    TagpinError, exit_status=ExitStatus.REGISTRY, title="cannot reach the registry"
):
    """ECR could not be asked: unreachable, throttled, access denied, no credentials."""


class AppLookupError(
    TagpinError, exit_status=ExitStatus.APP_LOOKUP, title="cannot read the Argo CD Application"
):
    """The live Application could not be read from the Kubernetes API."""


class LockError(TagpinError, exit_status=ExitStatus.LOCK, title="tagpin.lock problem"):
    """tagpin.lock is malformed, incomplete under strict mode, or disagrees with ECR."""


class ConflictError(
    TagpinError,
    exit_status=ExitStatus.CONFLICT,
    title="the Application changed under tagpin; nothing written",
):
    """`tagpin branch`: someone else changed the branch deploy first; nothing was written."""


class NotDeployedError(
    TagpinError,
    exit_status=ExitStatus.NOT_DEPLOYED,
    title="the branch deploy did not become Synced and Healthy",
):
    """`tagpin branch --wait`: timed out, or the app turned Degraded."""


class BusyError(
    TagpinError,
    exit_status=ExitStatus.BUSY,
    title="the sidecar is busy, nothing is wrong with the app; retry",
):
    """Nothing is wrong with the app: the sidecar had no render slot in time, or its render
    server stopped (sysexits' EX_TEMPFAIL). The message says what kept it busy."""


class Problems:
    """Collects errors from one stage so a run reports every problem, not only the first."""

    def __init__(self) -> None:
        self._errors: list[TagpinError] = []

    def add(self, error: TagpinError) -> None:
        self._errors.append(error)

    def extend(self, errors: Iterable[TagpinError]) -> None:
        self._errors.extend(errors)

    def __bool__(self) -> bool:
        return bool(self._errors)

    def raise_if_any(self) -> None:
        """Raise one error holding every problem; its class (and exit code) is the first's."""
        if not self._errors:
            return
        first = self._errors[0]
        if len(self._errors) == 1:
            raise first
        # A hint shared by several problems (no AWS credentials, say) is said once.
        lines = list(dict.fromkeys(line for error in self._errors for line in error.problems))
        combined = type(first)(*lines)
        raise combined from first
