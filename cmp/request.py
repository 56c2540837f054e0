"""What one render is asked to do: a plain value built from Argo CD's environment or from flags.

`tagpin generate`, `tagpin render` and `tagpin pin` all build a RenderRequest and hand it to the
same pipeline, which is why they print the same bytes for the same objects. A request renders
an app directory, or pins a manifest stream (`stream`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any, NamedTuple

from cmp.errors import ConfigError
from cmp.settings import DEFAULT_SETTINGS, PARAMETERS_BY_NAME, Settings, parse_parameters

ENV_PREFIX = "ARGOCD_ENV_"


class AppInfo(NamedTuple):
    """The `app` template variable: who is being rendered, from the ARGOCD_APP_* variables."""

    instance: str = ""  # ARGOCD_APP_NAME as given: `<name>` or `<app namespace>_<name>`
    namespace: str = ""  # destination namespace
    project: str = ""
    revision: str = ""
    repo_url: str = ""
    source_path: str = ""
    target_revision: str = ""
    # `tagpin render`/`lock`/`diff` without --app-name: a name taken from the app directory's,
    # for templates only; never one to look the live Application up by (that needs `instance`).
    default_name: str = ""

    @property
    def name(self) -> str:
        if not self.instance:
            return self.default_name
        # Application names are DNS subdomains and cannot contain `_`, so the split is exact.
        return self.instance.split("_", 1)[1] if "_" in self.instance else self.instance

    @property
    def app_namespace(self) -> str:
        """The namespace of the Application object when Argo CD names it `<ns>_<name>`."""
        return self.instance.split("_", 1)[0] if "_" in self.instance else ""

    def context(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "instance": self.instance or self.default_name,
            "app_namespace": self.app_namespace,
            "namespace": self.namespace,
            "project": self.project,
            "revision": self.revision,
            "revision_short": self.revision[:7],
            "revision_short_8": self.revision[:8],
            "source": {
                "repo_url": self.repo_url,
                "path": self.source_path,
                "target_revision": self.target_revision,
            },
        }


class KubeInfo(NamedTuple):
    version: str = ""  # e.g. "1.31.2" as Argo CD sends it (no "v")
    api_versions: tuple[str, ...] = ()


class Words(NamedTuple):
    """What messages call the inputs a person gave: Argo CD's names under `tagpin generate`
    (and for --parameters-json), the flags of the command that was run at the CLI."""

    values: str = "plugin parameter 'values'"
    image_updater: str = "image-updater parameter"
    parameters: str = "ARGOCD_APP_PARAMETERS"


ARGOCD_WORDS = Words()
CLI_WORDS = Words(values="--set", image_updater="--image-updater", parameters="--parameters-json")


class StreamInput(NamedTuple):
    """One input of `tagpin pin`, already read."""

    name: str  # as messages show it: the path given, or <stdin>
    text: str


class ManifestStream(NamedTuple):
    """`tagpin pin`'s input: objects someone else rendered (`helm template`), to pin as the
    sidecar pins an app's."""

    inputs: tuple[StreamInput, ...]
    config: Path | None = None  # `--config tagpin.yaml`: its images settings
    lock: Path | None = None  # `--lock FILE`: answers first, as an app's tagpin.lock


class RenderRequest(NamedTuple):
    app_dir: Path  # a stream's: the working directory
    repo_root: Path
    app: AppInfo
    kube: KubeInfo
    env: Mapping[str, str]  # ARGOCD_ENV_* with the prefix stripped
    parameters: Mapping[str, Any]  # announced defaults applied
    # The environment for what is not a tagpin setting (AWS_*, KUBECONFIG, XDG_CACHE_HOME, PATH).
    settings_env: Mapping[str, str] = MappingProxyType({})
    settings: Settings = DEFAULT_SETTINGS  # TAGPIN_*, built once from the same environment
    # True when `tagpin render` found no .git above the app and no --repo-root was given, so
    # the app directory is the root: a template included from above it is then "not found".
    root_guessed: bool = False
    words: Words = ARGOCD_WORDS
    digests: Path | None = None  # `--digests FILE`: every digest from FILE, ECR never asked
    stream: ManifestStream | None = None  # pin these objects instead of rendering app_dir


def from_argocd_environment(
    environ: Mapping[str, str], cwd: Path, settings: Settings | None = None
) -> RenderRequest:
    """Everything `tagpin generate` knows, read from the environment Argo CD builds;
    `settings`: already built from that environment."""
    source_path = environ.get("ARGOCD_APP_SOURCE_PATH", "")
    app = AppInfo(
        instance=environ.get("ARGOCD_APP_NAME", ""),
        namespace=environ.get("ARGOCD_APP_NAMESPACE", ""),
        project=environ.get("ARGOCD_APP_PROJECT_NAME", ""),
        revision=environ.get("ARGOCD_APP_REVISION", ""),
        repo_url=environ.get("ARGOCD_APP_SOURCE_REPO_URL", ""),
        source_path=source_path,
        target_revision=environ.get("ARGOCD_APP_SOURCE_TARGET_REVISION", ""),
    )
    return RenderRequest(
        app_dir=cwd,
        repo_root=repo_root_for(cwd, source_path),
        app=app,
        kube=KubeInfo(
            version=environ.get("KUBE_VERSION", ""),
            api_versions=parse_api_versions(environ.get("KUBE_API_VERSIONS", "")),
        ),
        env=plugin_env(environ),
        parameters=parse_parameters(environ.get("ARGOCD_APP_PARAMETERS")),
        settings_env=dict(environ),
        settings=settings if settings is not None else Settings.from_environ(environ),
    )


def plugin_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The `env` template variable: ARGOCD_ENV_* without the prefix, and nothing else."""
    return {
        key[len(ENV_PREFIX) :]: value
        for key, value in sorted(environ.items())
        if key.startswith(ENV_PREFIX) and len(key) > len(ENV_PREFIX)
    }


def parse_api_versions(raw: str) -> tuple[str, ...]:
    return tuple(sorted({item.strip() for item in raw.split(",") if item.strip()}))


def repo_root_for(app_dir: Path, source_path: str) -> Path:
    """The repository copy's root: the working directory minus ARGOCD_APP_SOURCE_PATH.

    Without a source path the app directory is its own root, so nothing above it is reachable.
    """
    parts = [p for p in PurePosixPath(source_path.strip()).parts if p not in (".", "/")]
    if any(p == ".." for p in parts):
        raise ConfigError(f"ARGOCD_APP_SOURCE_PATH={source_path!r} must not contain '..'")
    root = Path(os.path.abspath(app_dir))
    for part in reversed(parts):
        if root.name != part:
            raise ConfigError(
                f"the working directory {app_dir} does not end with ARGOCD_APP_SOURCE_PATH="
                f"{source_path!r}; cannot tell where the repository starts"
            )
        root = root.parent
    return root


def find_repo_root(app_dir: Path) -> Path:
    """The nearest ancestor holding `.git`, else the app directory itself."""
    current = app_dir.resolve()
    for candidate in (current, *current.parents):
        if (candidate / ".git").exists():
            return candidate
    return current


def directory_app_name(app_dir: Path) -> str:
    """The app name a directory gives when none is passed (`apps/Web_UI` -> `web-ui`): its
    name lowercased, every run of other characters a `-`, at most 63 characters, so it is a
    valid Kubernetes name wherever a template puts `app.name`."""
    words = "".join(c if c.isascii() and c.isalnum() else " " for c in app_dir.name.lower())
    name = "-".join(words.split())[:63].rstrip("-")
    if not name:
        raise ConfigError(
            f"{app_dir}: no app name can be taken from the directory's name "
            f"({app_dir.name!r} has no letters or digits); pass --app-name NAME"
        )
    return name


def for_directory(
    app_dir: str | os.PathLike[str],
    *,
    app: AppInfo,
    kube: KubeInfo,
    env: Mapping[str, str],
    parameters: Mapping[str, Any],
    settings_env: Mapping[str, str],
    settings: Settings | None = None,
    repo_root: str | os.PathLike[str] | None = None,
    must_exist: bool = True,
    words: Words = ARGOCD_WORDS,
) -> RenderRequest:
    """A request for an app directory on disk (`tagpin render`, `lock`, `diff`, cmp.testing):
    the repository root is `repo_root` or the nearest ancestor holding `.git`, and
    `app.source_path` is the app's path inside it, as Argo CD would send it. Without an app
    name, templates see the directory's (`directory_app_name`)."""
    app_path = Path(os.path.abspath(app_dir))
    if must_exist and not app_path.is_dir():
        raise ConfigError(f"{app_dir}: not a directory")
    if repo_root is not None:
        root = Path(os.path.abspath(repo_root))
    else:  # `tagpin diff` may name an app the working tree no longer has
        root = find_repo_root(next(p for p in (app_path, *app_path.parents) if p.is_dir()))
    guessed = repo_root is None and not (root / ".git").exists()
    try:
        source_path = app_path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        raise ConfigError(f"{app_dir} is not inside the repository root {root}") from None
    if not app.instance:
        app = app._replace(default_name=directory_app_name(app_path))
    return RenderRequest(
        app_dir=app_path,
        repo_root=root,
        app=app._replace(source_path="" if source_path == "." else source_path),
        kube=kube,
        env=dict(sorted(env.items())),
        parameters=parameters,
        settings_env=settings_env,
        settings=settings if settings is not None else Settings.from_environ(settings_env),
        root_guessed=guessed,
        words=words,
    )


def parameters_json(
    values_files: Sequence[str] = (),
    values: Mapping[str, str] | None = None,
    image_updater: Mapping[str, str] | None = None,
) -> str:
    """The plugin parameters as Argo CD sends them (ARGOCD_APP_PARAMETERS), from what a person
    gives on the command line or to cmp.testing: `tagpin render -f/--set/--image-updater`,
    `lock`, `diff`, `pin` and `render_app` all go through here."""
    items: list[dict[str, Any]] = []
    if values_files:
        items.append({"name": "values-files", "array": list(values_files)})
    if values:
        items.append({"name": "values", "map": dict(values)})
    if image_updater:
        items.append({"name": "image-updater", "map": dict(image_updater)})
    assert {i["name"] for i in items} <= set(PARAMETERS_BY_NAME)
    return json.dumps(items)
