"""What one render is asked to do, read from Argo CD's environment (cmp/request.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmp.errors import ConfigError
from cmp.request import (
    AppInfo,
    KubeInfo,
    directory_app_name,
    for_directory,
    from_argocd_environment,
    parse_api_versions,
    plugin_env,
    repo_root_for,
)


@pytest.mark.parametrize(
    "source_path, expected",
    [
        ("apps/web", "/work/repo"),
        ("./apps/web", "/work/repo"),
        ("apps/web/", "/work/repo"),
        ("", "/work/repo/apps/web"),  # no source path: the app is its own root, nothing above it
        (".", "/work/repo/apps/web"),
        ("web", "/work/repo/apps"),
    ],
)
def test_repo_root_is_the_working_directory_minus_the_source_path(
    source_path: str, expected: str
) -> None:
    assert repo_root_for(Path("/work/repo/apps/web"), source_path) == Path(expected)


@pytest.mark.parametrize(
    "source_path, message",
    [
        ("other/web", "does not end with ARGOCD_APP_SOURCE_PATH='other/web'"),
        ("../escape", "must not contain '..'"),
    ],
)
def test_a_source_path_that_does_not_fit_is_a_config_error(source_path: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        repo_root_for(Path("/work/repo/apps/web"), source_path)


def test_env_holds_only_argocd_env_entries_without_their_prefix() -> None:
    environ = {
        "ARGOCD_ENV_LOG_LEVEL": "debug",
        "ARGOCD_ENV_mixedCase": "kept as written",
        "ARGOCD_ENV_": "nameless",
        "AWS_SECRET_ACCESS_KEY": "s3cr3t",
        "ARGOCD_APP_NAME": "web",
        "PATH": "/usr/bin",
    }
    assert plugin_env(environ) == {"LOG_LEVEL": "debug", "mixedCase": "kept as written"}


def test_api_versions_are_split_trimmed_deduplicated_and_sorted() -> None:
    assert parse_api_versions(" v1,batch/v1/CronJob,, v1 ,apps/v1") == (
        "apps/v1",
        "batch/v1/CronJob",
        "v1",
    )
    assert parse_api_versions("") == ()


@pytest.mark.parametrize(
    "instance, name, app_namespace",
    [
        ("web", "web", ""),
        ("team-a_web", "web", "team-a"),
        ("", "", ""),
    ],
)
def test_apps_in_any_namespace_split_their_instance_name(
    instance: str, name: str, app_namespace: str
) -> None:
    app = AppInfo(instance=instance)
    assert (app.name, app.app_namespace) == (name, app_namespace)


def test_the_request_reads_every_argo_cd_variable(tmp_path: Path) -> None:
    app_dir = tmp_path / "apps" / "web"
    app_dir.mkdir(parents=True)
    request = from_argocd_environment(
        {
            "ARGOCD_APP_NAME": "team-a_web",
            "ARGOCD_APP_NAMESPACE": "shop",
            "ARGOCD_APP_PROJECT_NAME": "retail",
            "ARGOCD_APP_REVISION": "0123456789abcdef",
            "ARGOCD_APP_SOURCE_REPO_URL": "https://git.example.com/shop.git",
            "ARGOCD_APP_SOURCE_PATH": "apps/web",
            "ARGOCD_APP_SOURCE_TARGET_REVISION": "main",
            "KUBE_VERSION": "1.31.2",
            "KUBE_API_VERSIONS": "v1,batch/v1",
            "ARGOCD_APP_PARAMETERS": '[{"name":"values","map":{"a":"1"}}]',
            "ARGOCD_ENV_MODE": "x",
        },
        app_dir,
    )
    assert request.repo_root == tmp_path
    assert request.app.context() == {
        "name": "web",
        "instance": "team-a_web",
        "app_namespace": "team-a",
        "namespace": "shop",
        "project": "retail",
        "revision": "0123456789abcdef",
        "revision_short": "0123456",
        "revision_short_8": "01234567",
        "source": {
            "repo_url": "https://git.example.com/shop.git",
            "path": "apps/web",
            "target_revision": "main",
        },
    }
    assert request.kube.version == "1.31.2" and request.kube.api_versions == ("batch/v1", "v1")
    assert request.parameters == {"values-files": [], "values": {"a": "1"}, "image-updater": {}}
    assert request.env == {"MODE": "x"}


@pytest.mark.parametrize(
    "directory, name",
    [
        ("apps/web", "web"),
        ("apps/Web_UI", "web-ui"),
        ("apps/web.v2", "web-v2"),
        ("apps/-café-", "caf"),
        ("apps/" + "a" * 70, "a" * 63),
    ],
)
def test_an_app_directory_gives_a_valid_kubernetes_name(directory: str, name: str) -> None:
    assert directory_app_name(Path("/work/repo") / directory) == name


def test_a_directory_name_without_letters_or_digits_asks_for_app_name() -> None:
    with pytest.raises(ConfigError, match="pass --app-name NAME"):
        directory_app_name(Path("/work/repo/___"))


def test_without_an_app_name_templates_see_the_directory_name_and_nothing_is_looked_up(
    tmp_path: Path,
) -> None:
    (tmp_path / "shop-web").mkdir()
    request = for_directory(
        tmp_path / "shop-web",
        app=AppInfo(),
        kube=KubeInfo(),
        env={},
        parameters={},
        settings_env={},
        repo_root=tmp_path,
    )
    assert request.app.context()["name"] == "shop-web"
    assert request.app.instance == ""  # what the live-Application lookup goes by
    named = for_directory(
        tmp_path / "shop-web",
        app=AppInfo(instance="argocd_web-prod"),
        kube=KubeInfo(),
        env={},
        parameters={},
        settings_env={},
        repo_root=tmp_path,
    )
    assert named.app.context()["name"] == "web-prod"
