"""tagpin through Argo CD's own mechanics: plugin.yaml discovery, the environment the
repo-server builds, a fresh 0644 copy of the repository, `generate` run as an argv list with no
shell, and stdout parsed as Argo CD parses it (tests/support/cmpserver.py); against the venv and
against the built image (the `server` fixture)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.cmpserver import AppSpec, CmpServer
from tests.support.image import Sidecar, venv_cmp_server

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REVISION = "9c1e0b7d3a5f6e8c9b0a1d2e3f4a5b6c7d8e4f2a"


@pytest.fixture
def user_repo(tmp_path: Path) -> Path:
    """A GitOps repository holding a tagpin app next to apps tagpin must never claim."""
    root = tmp_path / "repo"
    shutil.copytree(REPO / "examples" / "web", root / "apps" / "web")
    shutil.copytree(REPO / "examples" / "lib", root / "examples" / "lib")
    (root / "apps" / "plain").mkdir(parents=True)
    (root / "apps" / "plain" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain}\n"
    )
    (root / "apps" / "chart").mkdir()
    (root / "apps" / "chart" / "Chart.yaml").write_text(
        "apiVersion: v2\nname: chart\nversion: 1.0.0\n"
    )
    (root / "apps" / "kustomized").mkdir()
    (root / "apps" / "kustomized" / "kustomization.yaml").write_text("resources: []\n")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return root


@pytest.fixture(params=["venv", pytest.param("image", marks=pytest.mark.image)])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> CmpServer:
    """The plugin as Argo CD runs it: the venv's tagpin from the repository's plugin.yaml, and
    the image's own plugin.yaml and tagpin inside a running container of it
    (tests/support/image.py). Every test that uses this runs against both, so the emulator and
    the image cannot drift apart unnoticed."""
    if request.param == "image":
        sidecar: Sidecar = request.getfixturevalue("image_sidecar")
        return sidecar.cmp_server(timeout=60)
    return venv_cmp_server(tmp_path)


def web_app(**overrides: object) -> AppSpec:
    spec: dict[str, object] = dict(
        name="web",
        source_path="apps/web",
        destination_namespace="shop",
        revision=REVISION,
        plugin={
            "name": "tagpin",
            "env": [{"name": "LOG_LEVEL", "value": "debug-$ARGOCD_APP_REVISION_SHORT"}],
            "parameters": [
                {"name": "values-files", "array": ["values-prod.yaml"]},
                {"name": "values", "map": {"replicas": "3"}},
            ],
        },
    )
    spec.update(overrides)
    return AppSpec(**spec)  # type: ignore[arg-type]


def test_discovery_claims_only_tagpin_apps(server: CmpServer, user_repo: Path) -> None:
    assert server.match_repository(user_repo, AppSpec(name="web", source_path="apps/web"))
    for other in ("apps/plain", "apps/chart", "apps/kustomized"):
        assert not server.match_repository(user_repo, AppSpec(name="x", source_path=other)), other


def test_generate_through_the_cmp_contract_matches_tagpin_render(
    server: CmpServer, user_repo: Path
) -> None:
    result = server.generate(user_repo, web_app(), exclude=[".git"])
    assert result.ok, result.error
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in result.objects)
    assert kinds == [
        ("ConfigMap", "web-config"),
        ("CronJob", "web-cleanup"),
        ("Deployment", "web"),
        ("Service", "web"),
    ]
    deployment = next(o for o in result.objects if o["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 3
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["env"] == [{"name": "LOG_LEVEL", "value": f"debug-{REVISION[:7]}"}]
    assert "@sha256:" in container["image"]

    # The same inputs through `tagpin render` give the very same bytes.
    rendered = subprocess.run(
        [
            str(BIN / "tagpin"),
            "render",
            "apps/web",
            "--app-name",
            "web",
            "-n",
            "shop",
            "--project",
            "default",
            "--revision",
            REVISION,
            "--repo-url",
            "https://git.example.com/org/repo.git",
            "--target-revision",
            "HEAD",
            "--env",
            f"LOG_LEVEL=debug-{REVISION[:7]}",
            "-f",
            "values-prod.yaml",
            "--set",
            "replicas=3",
            "--kube-version",
            "1.31.0",
            "--api-versions",
            ",".join(web_app().api_versions),
        ],
        cwd=user_repo,
        capture_output=True,
        check=False,
        env={**os.environ, "TAGPIN_APP_LOOKUP": "off", "TAGPIN_CACHE_DIR": str(user_repo / ".c")},
    )
    assert rendered.returncode == 0, rendered.stderr.decode()
    assert rendered.stdout.decode() == result.stdout + "\n"  # Argo trims one newline


def test_a_refresh_of_the_same_commit_is_the_same_until_a_shared_macro_changes(
    server: CmpServer, user_repo: Path
) -> None:
    """Each render gets a fresh copy of the repository; the templates' output is kept between
    renders (cmp/source/rendercache.py), so a refresh of the same commit prints the same bytes,
    and an edit to a macro file outside the app shows in what Argo CD applies next."""
    first = server.generate(user_repo, web_app(), exclude=[".git"])
    again = server.generate(user_repo, web_app(), exclude=[".git"])
    assert first.ok and again.ok, first.error or again.error
    assert (again.stdout, again.stderr) == (first.stdout, first.stderr)

    macros = user_repo / "examples" / "lib" / "labels.j2"
    macros.write_text(
        macros.read_text().replace(
            "app.kubernetes.io/component:",
            "app.kubernetes.io/tier: edited\napp.kubernetes.io/component:",
        )
    )
    edited = server.generate(user_repo, web_app(), exclude=[".git"])
    assert edited.ok, edited.error
    deployment = next(o for o in edited.objects if o["kind"] == "Deployment")
    assert deployment["metadata"]["labels"]["app.kubernetes.io/tier"] == "edited"
    assert (
        deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/tier"] == "edited"
    )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "@sha256:" in container["image"]  # still pinned, to the lock's digest
    before = next(o for o in first.objects if o["kind"] == "Deployment")
    assert container["image"] == before["spec"]["template"]["spec"]["containers"][0]["image"]


def test_apps_in_other_namespaces_see_their_plain_name(server: CmpServer, user_repo: Path) -> None:
    result = server.generate(user_repo, web_app(app_namespace="team-a"), exclude=[".git"])
    assert result.ok, result.error
    labels = next(o for o in result.objects if o["kind"] == "Deployment")["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "web"


def test_auto_discovered_app_without_plugin_block_renders(
    server: CmpServer, user_repo: Path
) -> None:
    result = server.generate(user_repo, web_app(plugin=None), exclude=[".git"])
    assert result.ok, result.error
    assert len(result.objects) == 4


def test_a_failed_render_is_an_error_for_argo_cd_not_an_empty_app(
    server: CmpServer, user_repo: Path
) -> None:
    (user_repo / "apps" / "web" / "templates" / "service.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {}\n"
    )
    result = server.generate(user_repo, web_app(), exclude=[".git"])
    assert not result.ok
    assert result.objects == [] and result.stdout == ""
    assert result.error is not None
    assert "`tagpin generate` failed exit status 6" in result.error
    assert "apps/web/templates/service.yaml:1: Service lacks metadata.name" in result.error


def test_parameter_announcements_are_the_static_table(server: CmpServer, user_repo: Path) -> None:
    announced = server.parameters_announcement(user_repo, web_app(), exclude=[".git"])
    static = yaml.safe_load((REPO / "plugin.yaml").read_text().split("---", 1)[1])
    assert announced == static["spec"]["parameters"]["static"]
