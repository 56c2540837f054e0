"""Tests of the Argo CD CMP emulator itself, driven by throwaway plugins written per test.

If the emulator is wrong, every contract test built on it proves nothing; so each mechanic of
the repo-server/cmp-server pair (env, copy, discovery, exec, parsing, deadlines) is pinned here.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.support.cmpserver import (
    AppSpec,
    CmpError,
    CmpServer,
    GenerateResult,
    ManifestParseError,
    PluginConfig,
    envsubst,
    escaped,
    go_glob,
    go_match,
    parse_manifests,
    zglob,
)

PYTHON = sys.executable

# Prints its whole environment and what it sees on disk, as two ConfigMaps in a YAML stream.
PROBE = """
import json, os, stat
cwd = os.getcwd()
source_path = os.environ.get("ARGOCD_APP_SOURCE_PATH", ".")
depth = len([part for part in source_path.split("/") if part not in ("", ".")])
repo = os.path.normpath(os.path.join(cwd, *[".."] * depth))
modes = {}
for directory, dirs, files in os.walk(repo):
    for name in dirs + files:
        path = os.path.join(directory, name)
        modes[os.path.relpath(path, repo)] = oct(stat.S_IMODE(os.lstat(path).st_mode))
links = {
    os.path.relpath(os.path.join(d, n), repo): os.readlink(os.path.join(d, n))
    for d, dirs, files in os.walk(repo) for n in dirs + files
    if os.path.islink(os.path.join(d, n))
}
docs = [
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "env"},
     "data": dict(os.environ)},
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "probe"},
     "data": {"cwd": cwd, "repo": repo, "modes": json.dumps(modes), "links": json.dumps(links)}},
]
for doc in docs:
    print("---")
    print(json.dumps(doc))
"""

REPO_FILES: dict[str, str] = {
    ".git/HEAD": "ref: refs/heads/main\n",
    "README.md": "# repo\n",
    "apps/web/tagpin.yaml": "images: {}\n",
    "apps/web/deploy.yaml": "kind: Deployment\n",
    "apps/web/nested/deep/marker.tpl": "x\n",
    "apps/web/private/key.txt": "k\n",
    "plain/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain}\n",
}


def build_tree(root: Path, files: Mapping[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def plugin_config(generate: list[str], **spec: Any) -> PluginConfig:
    """A plugin named probe-v1 that, unless told otherwise, claims app dirs holding tagpin.yaml."""
    spec.setdefault("discover", {"fileName": "tagpin.yaml"})
    return PluginConfig.from_mapping(
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "ConfigManagementPlugin",
            "metadata": {"name": "probe"},
            "spec": {"version": "v1", "generate": {"command": generate}, **spec},
        }
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return build_tree(tmp_path / "repo", REPO_FILES)


@pytest.fixture
def sidecar_env(tmp_path: Path) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path / "home"),
        "SIDECAR_ONLY": "from-sidecar",
        "ARGOCD_APP_NAME": "sidecar-loses",
        "ARGOCD_ENV_MODE": "sidecar-loses",
    }


@pytest.fixture
def script(tmp_path: Path) -> Callable[[str, str], str]:
    """Write a throwaway plugin script outside the repo and return its path."""

    def write(name: str, source: str) -> str:
        path = tmp_path / "plugin-bin" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")
        return str(path)

    return write


@pytest.fixture
def make_server(tmp_path: Path, sidecar_env: dict[str, str]) -> Callable[..., CmpServer]:
    def make(config: PluginConfig, **options: Any) -> CmpServer:
        return CmpServer(config, sidecar_env, tmp_path / "cmp-tmp", **options)

    return make


@pytest.fixture
def probe_server(
    make_server: Callable[..., CmpServer], script: Callable[[str, str], str]
) -> CmpServer:
    return make_server(plugin_config([PYTHON, script("probe.py", PROBE)]))


def probe(server: CmpServer, repo: Path, app: AppSpec) -> tuple[dict[str, str], dict[str, str]]:
    result = server.generate(repo, app)
    assert result.error is None, result.error
    by_name = {obj["metadata"]["name"]: obj["data"] for obj in result.objects}
    return by_name["env"], by_name["probe"]


WEB = AppSpec(name="web", source_path="apps/web")


# -------------------------------------------------------------------------------------------
# plugin.yaml


def test_plugin_yaml_loads_with_unknown_and_case_insensitive_keys(tmp_path: Path) -> None:
    path = tmp_path / "plugin.yaml"
    path.write_text(
        textwrap.dedent(
            """
            apiVersion: argoproj.io/v1alpha1
            kind: ConfigManagementPlugin
            metadata: {name: tagpin}
            spec:
              version: v1
              lockRepo: true          # legacy key: ignored by Argo, so ignored here
              init: {command: [sh, -c], args: ["true"]}
              Generate: {command: [tagpin, generate], args: [--strict]}
              discover: {fileName: tagpin.yaml}
              parameters:
                static: [{name: strict, collectionType: string, string: "true"}]
                dynamic: {command: [tagpin, params]}
              preserveFileMode: true
            """
        ),
        encoding="utf-8",
    )
    config = PluginConfig.load(path)
    assert config.socket_name == "tagpin-v1"
    assert config.init == ("sh", "-c", "true")
    assert config.generate == ("tagpin", "generate", "--strict")
    assert config.discover_file_name == "tagpin.yaml"
    assert config.static_parameters == (
        {"name": "strict", "collectionType": "string", "string": "true"},
    )
    assert config.dynamic_parameters == ("tagpin", "params")
    assert config.preserve_file_mode is True


def test_socket_name_without_version_is_the_plugin_name() -> None:
    config = PluginConfig.from_mapping(
        {
            "kind": "ConfigManagementPlugin",
            "metadata": {"name": "tagpin"},
            "spec": {"generate": {"command": ["x"]}},
        }
    )
    assert config.socket_name == "tagpin"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            {"kind": "ConfigManagementPlugin", "spec": {"generate": {"command": ["x"]}}},
            "metadata.name should be non-empty",
        ),
        (
            {"kind": "Plugin", "metadata": {"name": "p"}, "spec": {"generate": {"command": ["x"]}}},
            "kind should be ConfigManagementPlugin, found Plugin",
        ),
        (
            {
                "kind": "ConfigManagementPlugin",
                "metadata": {"name": "p"},
                "spec": {"generate": {"args": ["x"]}},
            },
            "spec.generate command should be non-empty",
        ),
        (
            {
                "kind": "ConfigManagementPlugin",
                "metadata": {"name": "p"},
                "spec": {"generate": {"command": "tagpin generate"}},
            },
            "must be a list of strings",
        ),
        (
            {
                "kind": "ConfigManagementPlugin",
                "metadata": {"name": "p"},
                "spec": {
                    "generate": {"command": ["x"]},
                    "parameters": {"static": [{"name": "m", "map": {"a": 1}}]},
                },
            },
            "map values must be strings",
        ),
    ],
)
def test_invalid_plugin_yaml_is_rejected(document: dict[str, Any], message: str) -> None:
    with pytest.raises(CmpError, match=message):
        PluginConfig.from_mapping(document)


# -------------------------------------------------------------------------------------------
# Environment


def test_build_variables_reach_the_plugin(probe_server: CmpServer, repo: Path) -> None:
    app = AppSpec(
        name="web",
        project="payments",
        source_path="apps/web",
        repo_url="https://git.example.com/org/deploy.git",
        target_revision="main",
        revision="0123456789abcdef0123456789abcdef01234567",
        destination_namespace="payments-prod",
        kube_version="v1.29.3+k3s1",
        api_versions=("apps/v1", "apps/v1/Deployment", "v1", "v1/ConfigMap"),
    )
    env, _ = probe(probe_server, repo, app)
    assert {
        name: value for name, value in env.items() if name.startswith(("ARGOCD_", "KUBE_"))
    } == {
        "ARGOCD_APP_NAME": "web",
        "ARGOCD_APP_NAMESPACE": "payments-prod",
        "ARGOCD_APP_PROJECT_NAME": "payments",
        "ARGOCD_APP_REVISION": "0123456789abcdef0123456789abcdef01234567",
        "ARGOCD_APP_REVISION_SHORT": "0123456",
        "ARGOCD_APP_REVISION_SHORT_8": "01234567",
        "ARGOCD_APP_SOURCE_REPO_URL": "https://git.example.com/org/deploy.git",
        "ARGOCD_APP_SOURCE_PATH": "apps/web",
        "ARGOCD_APP_SOURCE_TARGET_REVISION": "main",
        "KUBE_VERSION": "1.29.3",
        "KUBE_API_VERSIONS": "apps/v1,apps/v1/Deployment,v1,v1/ConfigMap",
        # The sidecar's own ARGOCD_ENV_MODE survives: no plugin block, so nothing overrides it.
        "ARGOCD_ENV_MODE": "sidecar-loses",
    }


def test_sidecar_env_is_inherited_and_request_vars_win(probe_server: CmpServer, repo: Path) -> None:
    app = AppSpec(
        name="web", source_path="apps/web", plugin={"env": [{"name": "MODE", "value": "app"}]}
    )
    env, _ = probe(probe_server, repo, app)
    assert env["SIDECAR_ONLY"] == "from-sidecar"
    assert env["ARGOCD_APP_NAME"] == "web"
    assert env["ARGOCD_ENV_MODE"] == "app"


def test_build_env_lists_sidecar_first_then_request(probe_server: CmpServer) -> None:
    env = probe_server.build_env(
        AppSpec(name="web", plugin={"env": [{"name": "MODE", "value": "app"}]})
    )
    assert env.index("ARGOCD_APP_NAME=sidecar-loses") < env.index("ARGOCD_APP_NAME=web")
    assert env[-2:] == ["ARGOCD_ENV_MODE=app", "ARGOCD_APP_PARAMETERS=null"]


def test_empty_values_are_passed_not_dropped(probe_server: CmpServer, repo: Path) -> None:
    env, _ = probe(probe_server, repo, AppSpec(name="web", source_path="apps/web", kube_version=""))
    assert env["ARGOCD_APP_NAMESPACE"] == ""
    assert env["KUBE_VERSION"] == ""


@pytest.mark.parametrize(
    ("app_namespace", "controller_namespace", "expected"),
    [
        ("argocd", "argocd", "web"),
        ("", "argocd", "web"),
        ("team-a", "argocd", "team-a_web"),
        ("argocd", "openshift-gitops", "argocd_web"),
    ],
)
def test_app_name_is_namespace_qualified_outside_the_control_plane(
    probe_server: CmpServer,
    repo: Path,
    app_namespace: str,
    controller_namespace: str,
    expected: str,
) -> None:
    app = AppSpec(
        name="web",
        source_path="apps/web",
        app_namespace=app_namespace,
        controller_namespace=controller_namespace,
    )
    env, _ = probe(probe_server, repo, app)
    assert env["ARGOCD_APP_NAME"] == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$ARGOCD_APP_NAME", "web"),
        ("${ARGOCD_APP_REVISION_SHORT}-x", "abcdef0-x"),
        ("pre-$ARGOCD_APP_NAME.post", "pre-web.post"),
        ("$$ARGOCD_APP_NAME", "$ARGOCD_APP_NAME"),
        ("cost: 5$", "cost: 5$"),
        ("$UNKNOWN|${UNKNOWN}", "|"),
        ("$HOME", ""),  # sidecar env is not interpolated: only the build variables are
        ("${KUBE_VERSION}", "1.31.0"),
        ("a${}b", "ab"),
        ("a${open", "aopen"),
        ("$1$-x", "x"),
        ("no dollars", "no dollars"),
    ],
)
def test_plugin_env_is_envsubst_over_build_variables_only(
    probe_server: CmpServer, repo: Path, text: str, expected: str
) -> None:
    app = AppSpec(
        name="web",
        source_path="apps/web",
        revision="abcdef0123456789",
        plugin={"env": [{"name": "VALUE", "value": text}]},
    )
    env, _ = probe(probe_server, repo, app)
    assert env["ARGOCD_ENV_VALUE"] == expected


def test_envsubst_function_matches_go_os_expand() -> None:
    assert envsubst("${A}$B$$C$", {"A": "1", "B": "2"}) == "12$C$"


def test_plugin_env_names_are_not_escaped(probe_server: CmpServer, repo: Path) -> None:
    app = AppSpec(
        name="web", source_path="apps/web", plugin={"env": [{"name": "image.tag", "value": "v1"}]}
    )
    env, _ = probe(probe_server, repo, app)
    assert env["ARGOCD_ENV_image.tag"] == "v1"


def test_parameters_become_param_variables(probe_server: CmpServer, repo: Path) -> None:
    parameters = [
        {"name": "strict", "string": "true"},
        {"name": "value-files", "array": ["values-dev.yaml", "values.yaml"]},
        {"name": "helm-parameters", "map": {"image.tag": "v1.2.3", "replica-count": "2"}},
        {"name": "valueFiles", "string": "$ARGOCD_APP_NAME"},
    ]
    app = AppSpec(name="web", source_path="apps/web", plugin={"parameters": parameters})
    env, _ = probe(probe_server, repo, app)
    assert {name: value for name, value in env.items() if name.startswith("PARAM_")} == {
        "PARAM_STRICT": "true",
        "PARAM_VALUE_FILES_0": "values-dev.yaml",
        "PARAM_VALUE_FILES_1": "values.yaml",
        "PARAM_HELM_PARAMETERS_IMAGE_TAG": "v1.2.3",
        "PARAM_HELM_PARAMETERS_REPLICA_COUNT": "2",
        "PARAM_VALUEFILES": "$ARGOCD_APP_NAME",  # parameters are never envsubst'ed
    }


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("image.tag", "IMAGE_TAG"),
        ("valueFiles", "VALUEFILES"),
        ("a-b c/d", "A_B_C_D"),
        ("ünï", "_N_"),
    ],
)
def test_escaped_matches_argo(name: str, expected: str) -> None:
    assert escaped(name) == expected


def test_colliding_param_names_last_one_wins(probe_server: CmpServer, repo: Path) -> None:
    parameters = [{"name": "a-b", "string": "first"}, {"name": "a.b", "string": "second"}]
    env, _ = probe(
        probe_server,
        repo,
        AppSpec(name="web", source_path="apps/web", plugin={"parameters": parameters}),
    )
    assert env["PARAM_A_B"] == "second"


@pytest.mark.parametrize(
    ("plugin", "expected"),
    [
        ({}, "null"),
        ({"name": "probe-v1", "env": [{"name": "X", "value": "1"}]}, "null"),
        (
            {
                "parameters": [
                    {"name": "value-files", "array": ["a.yaml"]},
                    {"name": "m", "map": {"k": "<v&>"}},
                    {"name": "s", "string": "x"},
                    {"name": "empty", "array": []},
                ]
            },
            '[{"array":["a.yaml"],"name":"value-files"},{"map":{"k":"\\u003cv\\u0026\\u003e"},"name":"m"},'
            '{"name":"s","string":"x"},{"array":[],"name":"empty"}]',
        ),
    ],
)
def test_argocd_app_parameters_is_compact_sorted_json(
    probe_server: CmpServer, repo: Path, plugin: dict[str, Any], expected: str
) -> None:
    env, _ = probe(probe_server, repo, AppSpec(name="web", source_path="apps/web", plugin=plugin))
    assert env["ARGOCD_APP_PARAMETERS"] == expected


def test_no_plugin_block_means_no_plugin_env_at_all(probe_server: CmpServer, repo: Path) -> None:
    env, _ = probe(probe_server, repo, AppSpec(name="web", source_path="apps/web"))
    assert "ARGOCD_APP_PARAMETERS" not in env
    assert not [name for name in env if name.startswith("PARAM_")]


# -------------------------------------------------------------------------------------------
# The request's copy of the repository


def test_commands_run_in_the_app_dir_of_a_fresh_copy(
    probe_server: CmpServer, repo: Path, tmp_path: Path
) -> None:
    (repo / "apps/web/run.sh").write_text("#!/bin/sh\n")
    (repo / "apps/web/run.sh").chmod(0o755)
    (repo / "apps/web/private").chmod(0o700)  # a dir made from REPO_FILES
    _, seen = probe(probe_server, repo, WEB)
    cwd = Path(seen["cwd"])
    request_dir = cwd.parent.parent
    assert cwd.parts[-2:] == ("apps", "web")
    assert request_dir.parent == (tmp_path / "cmp-tmp" / "_cmp_server").resolve()
    uuid.UUID(request_dir.name)
    modes = json.loads(seen["modes"])
    assert modes["apps/web/run.sh"] == "0o644"
    assert modes["apps/web/tagpin.yaml"] == "0o644"
    assert modes["apps/web/private"] == "0o755"
    assert modes[".git/HEAD"] == "0o644"  # .git travels with the repo unless excluded
    assert not request_dir.exists()  # deleted after the request


def test_preserve_file_mode_keeps_modes(
    make_server: Callable[..., CmpServer], script: Callable[[str, str], str], repo: Path
) -> None:
    (repo / "apps/web/run.sh").write_text("#!/bin/sh\n")
    (repo / "apps/web/run.sh").chmod(0o755)
    server = make_server(plugin_config([PYTHON, script("probe.py", PROBE)], preserveFileMode=True))
    _, seen = probe(server, repo, WEB)
    assert json.loads(seen["modes"])["apps/web/run.sh"] == "0o755"


def test_tar_exclusions_use_go_match_on_the_relative_path(
    probe_server: CmpServer, repo: Path
) -> None:
    result = probe_server.generate(repo, WEB, exclude=[".git/*", "*.md"])
    modes = json.loads(
        next(o for o in result.objects if o["metadata"]["name"] == "probe")["data"]["modes"]
    )
    assert ".git" in modes and ".git/HEAD" not in modes
    assert "README.md" not in modes
    assert "apps/web/tagpin.yaml" in modes


def test_symlinks_inside_the_repo_are_recreated(probe_server: CmpServer, repo: Path) -> None:
    (repo / "apps/web/shared.yaml").symlink_to("../../plain/cm.yaml")
    _, seen = probe(probe_server, repo, WEB)
    assert json.loads(seen["links"]) == {"apps/web/shared.yaml": "../../plain/cm.yaml"}


def test_symlink_escaping_the_repo_fails_the_request(
    probe_server: CmpServer, repo: Path, tmp_path: Path
) -> None:
    (tmp_path / "secret").write_text("s")
    (repo / "apps/web/leak").symlink_to(tmp_path / "secret")  # absolute: re-rooted, so stays inside
    (repo / "apps/web/up").symlink_to("../../../secret")
    result = probe_server.generate(repo, WEB)
    assert result.error is not None and result.error.startswith("illegal filepath in symlink:")
    assert result.objects == []


@pytest.mark.parametrize(
    ("source_path", "message"),
    [
        ("../outside", "illegal appPath: out of workDir bound"),
        ("/abs", "/abs: app path is absolute"),
        ("apps/missing", "apps/missing: app path does not exist"),
    ],
)
def test_bad_source_paths_are_rejected(
    probe_server: CmpServer, repo: Path, source_path: str, message: str
) -> None:
    result = probe_server.generate(repo, AppSpec(name="web", source_path=source_path))
    assert result.error == message


def test_init_runs_first_in_the_same_dir_and_its_output_is_discarded(
    make_server: Callable[..., CmpServer], script: Callable[[str, str], str], repo: Path
) -> None:
    init = script("init.py", 'print("init noise")\nopen("made-by-init", "w").write("v")\n')
    generate = script(
        "gen.py",
        """
        import json
        name = open("made-by-init").read()
        print(json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}))
        """,
    )
    server = make_server(plugin_config([PYTHON, generate], init={"command": [PYTHON, init]}))
    result = server.generate(repo, WEB)
    assert result.error is None
    assert [obj["metadata"]["name"] for obj in result.objects] == ["v"]
    assert "init noise" not in result.stdout


def test_failing_init_stops_generate(
    make_server: Callable[..., CmpServer], script: Callable[[str, str], str], repo: Path
) -> None:
    init = script("init.py", "import sys\nsys.exit('init broke')\n")
    generate = script("gen.py", 'print("kind: ConfigMap")\n')
    server = make_server(plugin_config([PYTHON, generate], init={"command": [PYTHON, init]}))
    result = server.generate(repo, WEB)
    assert result.error == f"`{PYTHON} {init}` failed exit status 1: init broke"
    assert result.objects == []


# -------------------------------------------------------------------------------------------
# Discovery and selection

MARKER_COMMAND = [PYTHON, "-c", "import os; print('yes' if os.path.exists('tagpin.yaml') else '')"]


@pytest.mark.parametrize(
    ("discover", "source_path", "matches"),
    [
        ({"fileName": "tagpin.yaml"}, "apps/web", True),
        ({"fileName": "tagpin.yaml"}, "plain", False),
        ({"fileName": "tagpin.yaml"}, ".", False),  # relative to the app dir, not the repo root
        ({"fileName": "*.yaml"}, "plain", True),
        ({"fileName": "**/marker.tpl"}, "apps/web", False),  # filepath.Glob has no **
        ({"fileName": "*/*/marker.tpl"}, "apps/web", True),
        ({"fileName": ".git"}, ".", True),
        ({"find": {"glob": "**/marker.tpl"}}, "apps/web", True),
        ({"find": {"glob": "**/marker.tpl"}}, "plain", False),
        ({"find": {"glob": "**/*.{tpl,j2}"}}, "apps/web", True),
        ({"find": {"glob": "tagpin.yaml"}}, "apps/web", True),
        ({"find": {"command": MARKER_COMMAND}}, "apps/web", True),
        ({"find": {"command": MARKER_COMMAND}}, "plain", False),
        (
            {"fileName": "tagpin.yaml", "find": {"command": [PYTHON, "-c", "print('always')"]}},
            "plain",
            False,
        ),
    ],
)
def test_discover_rules(
    make_server: Callable[..., CmpServer],
    repo: Path,
    discover: dict[str, Any],
    source_path: str,
    matches: bool,
) -> None:
    server = make_server(plugin_config(["true"], discover=discover))
    assert server.match_repository(repo, AppSpec(name="web", source_path=source_path)) is matches


def test_find_command_sees_the_request_env(
    make_server: Callable[..., CmpServer], repo: Path
) -> None:
    command = [
        PYTHON,
        "-c",
        "import os; print(os.environ.get('ARGOCD_ENV_MODE') == 'app' and os.getcwd() or '')",
    ]
    server = make_server(plugin_config(["true"], discover={"find": {"command": command}}))
    app = AppSpec(
        name="web", source_path="apps/web", plugin={"env": [{"name": "MODE", "value": "app"}]}
    )
    assert server.match_repository(repo, app) is True
    # Auto-discovery (no plugin block) sends build variables only: the sidecar's value shows.
    assert server.match_repository(repo, AppSpec(name="web", source_path="apps/web")) is False


def test_find_command_failure_is_an_error(
    make_server: Callable[..., CmpServer], repo: Path
) -> None:
    server = make_server(
        plugin_config(
            ["true"], discover={"find": {"command": [PYTHON, "-c", "raise SystemExit(2)"]}}
        )
    )
    with pytest.raises(CmpError, match=r"^error running find command: `.*` failed exit status 2$"):
        server.match_repository(repo, WEB)


@pytest.mark.parametrize(
    ("discover", "plugin", "source_path", "error"),
    [
        ({"fileName": "tagpin.yaml"}, None, "apps/web", None),
        (
            {"fileName": "tagpin.yaml"},
            None,
            "plain",
            "could not find plugin supporting the given repository",
        ),
        ({}, None, "apps/web", "could not find plugin supporting the given repository"),
        ({}, {"name": "probe-v1"}, "plain", None),  # named, no discovery: always used
        (
            {"fileName": "tagpin.yaml"},
            {"name": "probe-v1"},
            "plain",
            'could not find cmp-server plugin with name "probe-v1"',
        ),
        ({}, {"name": "probe"}, "apps/web", 'could not find cmp-server plugin with name "probe"'),
        ({"fileName": "tagpin.yaml"}, {}, "apps/web", None),
    ],
)
def test_generate_selects_the_plugin_like_the_repo_server(
    make_server: Callable[..., CmpServer],
    repo: Path,
    discover: dict[str, Any],
    plugin: dict[str, Any] | None,
    source_path: str,
    error: str | None,
) -> None:
    server = make_server(
        plugin_config([PYTHON, "-c", "print('kind: ConfigMap')"], discover=discover)
    )
    result = server.generate(repo, AppSpec(name="web", source_path=source_path, plugin=plugin))
    if error is None:
        assert result.error is None
        assert result.objects == [{"kind": "ConfigMap"}]
    else:
        assert result.error is not None and result.error.startswith(error)
        assert result.exit_code is None


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("*.yaml", "a.yaml", True),
        ("*.yaml", ".hidden.yaml", True),
        ("*.yaml", "dir/a.yaml", False),
        (".git/*", ".git/HEAD", True),
        (".git/*", ".git/refs/heads", False),
        ("a?c", "abc", True),
        ("[^a]bc", "xbc", True),
        ("[a-c]x", "dx", False),
        ("\\*", "*", True),
    ],
)
def test_go_match(pattern: str, name: str, matches: bool) -> None:
    assert go_match(pattern, name) is matches


@pytest.mark.parametrize("pattern", ["[", "[]a]", "a\\", "[-a]"])
def test_go_match_bad_patterns_raise(pattern: str) -> None:
    with pytest.raises(CmpError, match="syntax error in pattern"):
        go_match(pattern, "a")


def test_go_glob_and_zglob_differ_on_double_star(repo: Path) -> None:
    app = repo / "apps/web"
    assert go_glob(f"{app}/**/marker.tpl") == []
    assert zglob(f"{app}/**/marker.tpl") == [f"{app}/nested/deep/marker.tpl"]
    assert zglob(f"{app}/**/tagpin.yaml") == [f"{app}/tagpin.yaml"]


# -------------------------------------------------------------------------------------------
# Output parsing


@pytest.mark.parametrize(
    ("stdout", "kinds"),
    [
        ("", []),
        ("   \n\n", []),
        ("---\n---\n", []),
        ("# only a comment\n", []),
        ("null\n---\n~\n", []),
        ("kind: A\n---\nkind: B\n", ["A", "B"]),
        ("---\nkind: A\n--- \n\n---\nkind: B\n...\n", ["A", "B"]),
        ('{"kind": "A"}\n{"kind": "B"}', ["A", "B"]),
        ('  {"kind": "A"} {"kind": "B"}\n', ["A", "B"]),
        ('{"kind": "A"}\nnull\n', ["A"]),
        ("kind: List\nitems:\n- kind: A\n- kind: B\n", ["A", "B"]),
        ("kind: ConfigMapList\nitems: []\n", []),
        ("kind: ConfigMapList\nitems: null\n", []),
        ("kind: Widget\nitems: null\nspec: {}\n", ["Widget"]),
        ("kind: Widget\nitems: {a: 1}\n", ["Widget"]),
    ],
)
def test_stdout_is_split_like_argo(stdout: str, kinds: list[str]) -> None:
    assert [obj.get("kind") for obj in parse_manifests(stdout)] == kinds


@pytest.mark.parametrize(
    ("stdout", "message"),
    [
        (
            "apiVersion: v1\nmetadata: {name: x}\n",
            'Object \'Kind\' is missing in \'{"apiVersion":"v1","metadata":{"name":"x"}}\'',
        ),
        ("kind: ''\n", "Object 'Kind' is missing"),
        ("- kind: A\n", "failed to unmarshal manifest"),
        ("just a string\n", "failed to unmarshal manifest"),
        ("kind: A\n  bad: indent\n", "failed to unmarshal manifest"),
        ('{"kind": "A"} {broken', "failed to unmarshal manifest"),
        ("kind: List\nitems: [1]\n", "items member is not an object"),
    ],
)
def test_unparseable_stdout_is_an_error(stdout: str, message: str) -> None:
    with pytest.raises(ManifestParseError, match=None) as caught:
        parse_manifests(stdout)
    assert message in str(caught.value)


def test_yaml_is_read_as_json_would_be() -> None:
    [obj] = parse_manifests("kind: A\ndata:\n  when: 2024-01-02\n  enabled: yes\n  1: one\n")
    assert obj["data"] == {"when": "2024-01-02", "enabled": True, "1": "one"}


def run_generate(
    make_server: Callable[..., CmpServer],
    script: Callable[[str, str], str],
    repo: Path,
    source: str,
    **options: Any,
) -> tuple[GenerateResult, str]:
    path = script("gen.py", source)
    server = make_server(plugin_config([PYTHON, path, "--flag", "two words"]), **options)
    return server.generate(repo, WEB), path


def test_empty_output_is_zero_objects_and_no_error(
    make_server: Callable[..., CmpServer], script: Callable[[str, str], str], repo: Path
) -> None:
    result, _ = run_generate(
        make_server, script, repo, "import sys\nsys.stderr.write('warning only')\n"
    )
    assert result.error is None
    assert result.exit_code == 0
    assert result.objects == []
    assert result.stderr == "warning only"


def test_json_stream_output(
    make_server: Callable[..., CmpServer], script: Callable[[str, str], str], repo: Path
) -> None:
    source = 'print(\'{"kind": "A", "metadata": {"name": "a"}}\')\nprint(\'{"kind": "B"}\')\n'
    result, _ = run_generate(make_server, script, repo, source)
    assert result.objects == [{"kind": "A", "metadata": {"name": "a"}}, {"kind": "B"}]


def test_missing_kind_fails_generation(
    make_server: Callable[..., CmpServer], script: Callable[[str, str], str], repo: Path
) -> None:
    result, _ = run_generate(make_server, script, repo, 'print("kind: A\\n---\\napiVersion: v1")\n')
    assert result.objects == []
    assert result.error is not None and "Object 'Kind' is missing" in result.error


def test_non_zero_exit_message_matches_argo(
    make_server: Callable[..., CmpServer], script: Callable[[str, str], str], repo: Path
) -> None:
    source = (
        "import sys\nprint('kind: Partial')\n"
        "sys.stderr.write('\\n  image web:1.0 not found in ECR  \\n')\nsys.exit(8)\n"
    )
    result, path = run_generate(make_server, script, repo, source)
    assert (
        result.error == f'`{PYTHON} {path} --flag "two words"` failed exit status 8: '
        "image web:1.0 not found in ECR"
    )
    assert result.exit_code == 8
    assert result.objects == []  # partial stdout is discarded


def test_non_zero_exit_without_stderr_has_no_colon(
    make_server: Callable[..., CmpServer], script: Callable[[str, str], str], repo: Path
) -> None:
    result, path = run_generate(make_server, script, repo, "raise SystemExit(3)\n")
    assert result.error == f'`{PYTHON} {path} --flag "two words"` failed exit status 3'


def test_missing_executable_is_reported_like_go(
    make_server: Callable[..., CmpServer], repo: Path
) -> None:
    result = make_server(plugin_config(["no-such-tagpin-binary", "generate"])).generate(repo, WEB)
    assert result.error == 'exec: "no-such-tagpin-binary": executable file not found in $PATH'


# -------------------------------------------------------------------------------------------
# Deadline

GROUP_SLEEPER = """
import os, subprocess, sys, time
ready = os.path.join(os.environ["MARKERS"], "child-ready")
child = subprocess.Popen([sys.executable, "-c", '''
import os, signal, sys, time
if sys.argv[1] == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
open(sys.argv[2], "w").write(str(os.getpid()))
time.sleep(30)
print("survived", flush=True)
''', sys.argv[1], ready])
while not os.path.exists(ready):
    time.sleep(0.01)
print("kind: Started", flush=True)
time.sleep(30)
"""


@pytest.mark.parametrize("child_mode", ["obey", "ignore"])
def test_deadline_kills_the_whole_process_group(
    make_server: Callable[..., CmpServer],
    script: Callable[[str, str], str],
    repo: Path,
    sidecar_env: dict[str, str],
    tmp_path: Path,
    child_mode: str,
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    sidecar_env["MARKERS"] = str(markers)
    path = script("sleeper.py", GROUP_SLEEPER)
    server = make_server(plugin_config([PYTHON, path, child_mode]), timeout=3.0, kill_grace=0.2)
    result = server.generate(repo, WEB)
    # The grandchild held stdout open, so returning at all means it died; "survived" proves how.
    assert (markers / "child-ready").exists()
    assert result.error == f"`{PYTHON} {path} {child_mode}` failed signal: killed"
    assert "survived" not in result.stdout
    assert result.objects == []


# -------------------------------------------------------------------------------------------
# Parameter announcements


def test_announcement_is_dynamic_then_static_with_reduced_env(
    make_server: Callable[..., CmpServer], script: Callable[[str, str], str], repo: Path
) -> None:
    dynamic = script(
        "params.py",
        """
        import json, os
        names = ("ARGOCD_APP_NAME", "ARGOCD_APP_REVISION", "KUBE_VERSION",
                 "ARGOCD_ENV_MODE", "PARAM_STRICT")
        seen = {name: os.environ.get(name, "<unset>") for name in names}
        print(json.dumps([{"name": "seen", "collectionType": "map", "map": seen}]))
        """,
    )
    config = plugin_config(
        ["true"],
        parameters={
            "static": [{"name": "strict", "string": "false"}],
            "dynamic": {"command": [PYTHON, dynamic]},
        },
    )
    app = AppSpec(
        name="web",
        source_path="apps/web",
        plugin={
            "env": [{"name": "MODE", "value": "$ARGOCD_APP_NAME"}],
            "parameters": [{"name": "strict", "string": "true"}],
        },
    )
    announced = make_server(config).parameters_announcement(repo, app)
    assert announced == [
        {
            "name": "seen",
            "collectionType": "map",
            "map": {
                "ARGOCD_APP_NAME": "web",
                "ARGOCD_APP_REVISION": "<unset>",
                "KUBE_VERSION": "<unset>",
                "ARGOCD_ENV_MODE": "web",
                "PARAM_STRICT": "true",
            },
        },
        {"name": "strict", "string": "false"},
    ]


@pytest.mark.parametrize(
    ("stdout", "message"),
    [
        ('{"name": "x"}', "expected a JSON array"),
        ("not json", "error unmarshaling dynamic parameter output"),
        ('[{"name": "m", "map": {"a": 1}}]', "map values must be strings"),
    ],
)
def test_bad_dynamic_announcement_is_an_error(
    make_server: Callable[..., CmpServer], repo: Path, stdout: str, message: str
) -> None:
    command = [PYTHON, "-c", f"print({stdout!r})"]
    server = make_server(plugin_config(["true"], parameters={"dynamic": {"command": command}}))
    with pytest.raises(CmpError, match=message):
        server.parameters_announcement(repo, WEB)


def test_from_plugin_yaml_builds_a_server(tmp_path: Path, repo: Path) -> None:
    path = tmp_path / "plugin.yaml"
    path.write_text(
        "kind: ConfigManagementPlugin\nmetadata: {name: p}\n"
        f"spec: {{generate: {{command: [{PYTHON}, -c, 'print(\"kind: A\")']}}}}\n",
        encoding="utf-8",
    )
    server = CmpServer.from_plugin_yaml(path, workdir=tmp_path / "w")
    result = server.generate(
        repo, AppSpec(name="web", source_path="apps/web", plugin={"name": "p"})
    )
    assert result.objects == [{"kind": "A"}]
