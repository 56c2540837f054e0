"""kustomize fetches every path that parses as an http(s) URL, whichever field names it; Go
never sends a loopback address through a proxy. The attack: `configMapGenerator: [{name: s,
files: ["http://127.0.0.1:8084/metrics"]}]` copied the repo-server's metrics page (other
tenants' repositories) into a ConfigMap the tenant reads in Argo CD.

With TAGPIN_KUSTOMIZE_REMOTE off, tagpin refuses such a value before kustomize runs (the
message) and runs kustomize unable to open a socket (the guarantee, cmp.source.nonetwork).
Proof: loopback listeners (tests/support/recorder.py) record zero connections for every field
kustomize loads from, every host spelling and a redirect, through the whole check and through
the kustomize runner alone; with the network given, every field does fetch (the table is live).

FIELDS is enumerated from kustomize's own source, kustomize v5.8.1 (the version the image ships
and kubectl 1.37 embeds), i.e. sigs.k8s.io/kustomize/api v0.21.1 (commit 401be204e1c0). Every
path reaches api/internal/loader/fileloader.go `Load` (URL → HTTP GET) or `New` (git URL →
`git fetch`); their callers, and the fields that reach them:
- target/kusttarget.go accumulateResources: resources, bases (appended to resources by
  types/kustomization.go FixKustomization), and the entries of generators, transformers and
  validators (configureExternal*: anything that is not an inline configuration);
  accumulateComponents → New: components (a git URL); accumulateDirectory and
  krusty/kustomizer.go: openapi.path.
- accumulator/loadconfigfromcrds.go: crds. plugins/builtinconfig/loaddefaultconfig.go:
  configurations.
- kv/kv.go: configMapGenerator and secretGenerator files (also `key=URL`, split by
  generators/utils.go ParseFileSource), envs and env (kustomization.go FixKustomization).
- builtins/PatchTransformer.go: patches[].path; PatchJson6902Transformer.go:
  patchesJson6902[].path; resource/factory.go SliceFromPatches: patchesStrategicMerge;
  ReplacementTransformer.go: replacements[].path; ValueAddTransformer.go: targetFilePath (only
  in a transformer configuration file).
- The same builtins configured from their own files (`apiVersion: builtin`) under generators,
  transformers and validators, inline, or in a directory of configurations.
Not rows: HelmChartInflationGenerator (helmCharts, valuesFile, additionalValuesFiles) loads only
after `--enable-helm`, which tagpin never passes (and refuses helmCharts); execplugin.go
argsFromFile needs `--enable-alpha-plugins`; localizer.go is `kustomize localize`, not build.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from cmp.errors import ConfigError, ExitStatus, TagpinError
from cmp.settings import Settings
from cmp.source import nonetwork
from cmp.source.appdir import KustomizeOptions, Limits, RepoFiles
from cmp.source.kustomize import KustomizeError, _raise_if_not_started, run_kustomize
from tests.support.apptree import build_tree, run_cli
from tests.support.hostile import Sidecar
from tests.support.kustomize import kubectl
from tests.support.recorder import SECRET_PAGE, Recorder, recording_listeners

U = "{url}"
BUILTIN = "apiVersion: builtin\nkind: {kind}\nmetadata: {{name: c}}\n"


def builtin(kind: str, body: str) -> str:
    return BUILTIN.format(kind=kind) + body


class Field(NamedTuple):
    files: dict[str, str]  # one kustomization directory, the URL as {url}
    shown: str  # the file tagpin's message names ("" for the kustomization)
    path: str  # the field path it names
    value: str = U  # the value it names


# Enumerated from kustomize's source: see the module docstring.
FIELDS: dict[str, Field] = {
    "resources": Field({"kustomization.yaml": "resources: ['{url}']\n"}, "", "resources[0]"),
    "bases": Field({"kustomization.yaml": "bases: ['{url}']\n"}, "", "bases[0]"),
    "components (a git URL)": Field(
        {"kustomization.yaml": "components: ['{url}/org/repo.git//c?ref=main']\n"},
        "",
        "components[0]",
        "{url}/org/repo.git//c?ref=main",
    ),
    "crds": Field({"kustomization.yaml": "crds: ['{url}']\n"}, "", "crds[0]"),
    "configurations": Field(
        {"kustomization.yaml": "configurations: ['{url}']\n"},
        "",
        "configurations[0]",
    ),
    "openapi.path": Field({"kustomization.yaml": "openapi: {path: '{url}'}\n"}, "", "openapi.path"),
    "patches[].path": Field(
        {"kustomization.yaml": "patches: [{path: '{url}'}]\n"},
        "",
        "patches[0].path",
    ),
    "patchesJson6902[].path": Field(
        {
            "kustomization.yaml": (
                "patchesJson6902: [{target: {kind: ConfigMap, name: x}, path: '{url}'}]\n"
            )
        },
        "",
        "patchesJson6902[0].path",
    ),
    "patchesStrategicMerge": Field(
        {"kustomization.yaml": "patchesStrategicMerge: ['{url}']\n"},
        "",
        "patchesStrategicMerge[0]",
    ),
    "replacements[].path": Field(
        {"kustomization.yaml": "replacements: [{path: '{url}'}]\n"},
        "",
        "replacements[0].path",
    ),
    "configMapGenerator files": Field(
        {"kustomization.yaml": "configMapGenerator: [{name: s, files: ['{url}']}]\n"},
        "",
        "configMapGenerator[0].files[0]",
    ),
    "configMapGenerator files key=URL": Field(
        {"kustomization.yaml": "configMapGenerator: [{name: s, files: ['page={url}']}]\n"},
        "",
        "configMapGenerator[0].files[0]",
        "page={url}",
    ),
    "configMapGenerator envs": Field(
        {"kustomization.yaml": "configMapGenerator: [{name: s, envs: ['{url}']}]\n"},
        "",
        "configMapGenerator[0].envs[0]",
    ),
    "configMapGenerator env": Field(
        {"kustomization.yaml": "configMapGenerator: [{name: s, env: '{url}'}]\n"},
        "",
        "configMapGenerator[0].env",
    ),
    "secretGenerator files": Field(
        {"kustomization.yaml": "secretGenerator: [{name: s, files: ['{url}']}]\n"},
        "",
        "secretGenerator[0].files[0]",
    ),
    "secretGenerator envs": Field(
        {"kustomization.yaml": "secretGenerator: [{name: s, envs: ['{url}']}]\n"},
        "",
        "secretGenerator[0].envs[0]",
    ),
    "generators": Field({"kustomization.yaml": "generators: ['{url}']\n"}, "", "generators[0]"),
    "transformers": Field(
        {"kustomization.yaml": "transformers: ['{url}']\n"}, "", "transformers[0]"
    ),
    "validators": Field({"kustomization.yaml": "validators: ['{url}']\n"}, "", "validators[0]"),
    "a ConfigMapGenerator file: files": Field(
        {
            "kustomization.yaml": "generators: [gen.yaml]\n",
            "gen.yaml": builtin("ConfigMapGenerator", "files: ['{url}']\n"),
        },
        "gen.yaml",
        "files[0]",
    ),
    "a SecretGenerator file: envs": Field(
        {
            "kustomization.yaml": "generators: [gen.yaml]\n",
            "gen.yaml": builtin("SecretGenerator", "envs: ['{url}']\n"),
        },
        "gen.yaml",
        "envs[0]",
    ),
    "a PatchTransformer file: path": Field(
        {
            "kustomization.yaml": "transformers: [t.yaml]\n",
            "t.yaml": builtin("PatchTransformer", "path: '{url}'\n"),
        },
        "t.yaml",
        "path",
    ),
    "a PatchJson6902Transformer file: path": Field(
        {
            "kustomization.yaml": "transformers: [t.yaml]\n",
            "t.yaml": builtin(
                "PatchJson6902Transformer", "target: {kind: ConfigMap, name: x}\npath: '{url}'\n"
            ),
        },
        "t.yaml",
        "path",
    ),
    "a PatchStrategicMergeTransformer file: paths": Field(
        {
            "kustomization.yaml": "transformers: [t.yaml]\n",
            "t.yaml": builtin("PatchStrategicMergeTransformer", "paths: ['{url}']\n"),
        },
        "t.yaml",
        "paths[0]",
    ),
    "a ReplacementTransformer file: replacements[].path": Field(
        {
            "kustomization.yaml": "transformers: [t.yaml]\n",
            "t.yaml": builtin("ReplacementTransformer", "replacements: [{path: '{url}'}]\n"),
        },
        "t.yaml",
        "replacements[0].path",
    ),
    "a ValueAddTransformer file: targetFilePath": Field(
        {
            "kustomization.yaml": "transformers: [t.yaml]\n",
            "t.yaml": builtin("ValueAddTransformer", "targetFilePath: '{url}'\n"),
        },
        "t.yaml",
        "targetFilePath",
    ),
    "a validator's configuration file": Field(
        {
            "kustomization.yaml": "validators: [v.yaml]\n",
            "v.yaml": builtin("PatchTransformer", "path: '{url}'\n"),
        },
        "v.yaml",
        "path",
    ),
    "an inline transformer configuration": Field(
        {
            "kustomization.yaml": (
                "transformers:\n- |\n  apiVersion: builtin\n  kind: PatchTransformer\n"
                "  metadata: {name: t}\n  path: '{url}'\n"
            )
        },
        "kustomization.yaml: transformers (inline)",
        "path",
    ),
    "a directory of generator configurations": Field(
        {
            "kustomization.yaml": "generators: [gens]\n",
            "gens/kustomization.yaml": "resources: [gen.yaml]\n",
            "gens/gen.yaml": builtin("ConfigMapGenerator", "files: ['{url}']\n"),
        },
        "gens/gen.yaml",
        "files[0]",
    ),
}

# Every way to name the listener; Go dials some, looks the others up in DNS (a request too).
SPELLINGS = (
    "127.0.0.1",
    "localhost",
    "localhost.",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "2130706433",
    "0x7f.1",
    "0177.0.0.1",
    "127.1",
)


def spelled_urls(recorder: Recorder) -> dict[str, str]:
    urls = {spelling: recorder.url(spelling) for spelling in SPELLINGS}
    urls["HTTPS, upper case"] = f"HTTPS://127.0.0.1:{recorder.port}/metrics"
    urls["a redirect to the listener"] = recorder.redirect_url()
    return urls


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    with recording_listeners() as listening:
        yield listening


def kustomize_dir(root: Path, files: dict[str, str], url: str) -> Path:
    return build_tree(root, {name: text.replace(U, url) for name, text in files.items()})


def runner(app: Path, remote: str, tmp_path: Path) -> str:
    """The kustomize runner alone (none of tagpin's checks): its output, or its error raised."""
    settings = Settings.from_environ(
        {"TAGPIN_KUSTOMIZE": kubectl(), "TAGPIN_KUSTOMIZE_REMOTE": remote}
    )
    environ = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    limits = Limits()
    top = app / "kustomization.yaml"
    files = RepoFiles(app, app, limits)
    built = run_kustomize(files, app, top, KustomizeOptions(), settings, environ, limits)
    return built.text


def test_a_url_in_any_field_kustomize_loads_is_refused_before_it_runs(
    recorder: Recorder, tmp_path: Path
) -> None:
    """Every field × every host spelling (and a redirect), one kustomization each, in one app:
    each value is named with its file and field path, and nothing is fetched."""
    repo = tmp_path / "repo"
    expected, cases = [], []
    for number, field in enumerate(FIELDS.values()):
        for spelling, url in enumerate(spelled_urls(recorder).values()):
            case = f"apps/web/f{number}s{spelling}"
            kustomize_dir(repo / case, field.files, url)
            cases.append(case.removeprefix("apps/web/"))
            shown = f"{case}/{field.shown or 'kustomization.yaml'}"
            value = field.value.replace(U, url)
            expected.append(f"{shown}: {field.path}: {value!r} is a URL; tagpin does not let")
    build_tree(
        repo,
        {
            "apps/web/tagpin.yaml": "kustomize: {}\n",
            "apps/web/kustomization.yaml": f"resources: {cases}\n",
        },
    )
    (repo / ".git").mkdir()

    done = run_cli(["render", str(repo / "apps/web")], env={"TAGPIN_CACHE": "off"})

    stderr = done.stderr.decode()
    assert (done.returncode, done.stdout) == (ExitStatus.SOURCE, b""), stderr
    assert [line for line in expected if line not in stderr] == []
    assert "TAGPIN_KUSTOMIZE_REMOTE=on" in stderr
    assert recorder.hits == []


@pytest.mark.parametrize("files", [field.files for field in FIELDS.values()], ids=list(FIELDS))
def test_kustomize_alone_opens_no_connection_from_any_field(
    recorder: Recorder, tmp_path: Path, files: dict[str, str]
) -> None:
    """tagpin's check bypassed: the filter alone stops every field, so a field nobody listed
    (a new kustomize's) cannot fetch either."""
    app = kustomize_dir(tmp_path / "app", files, recorder.url("127.0.0.1"))

    with pytest.raises(KustomizeError) as failed:
        runner(app, "off", tmp_path)

    assert recorder.hits == []
    message = str(failed.value)
    assert SECRET_PAGE.strip() not in message
    # Go's dial fails on socket(2); git is also held to local repositories.
    assert ("it has no network while TAGPIN_KUSTOMIZE_REMOTE is off" in message) or (
        "transport 'http' not allowed" in message
    ), message


@pytest.mark.parametrize("files", [field.files for field in FIELDS.values()], ids=list(FIELDS))
def test_every_field_in_the_table_fetches_when_the_sidecar_gives_kustomize_the_network(
    recorder: Recorder, tmp_path: Path, files: dict[str, str]
) -> None:
    """The control: each row is a real way kustomize v5.8.1 reaches the network, and the
    listener sees it (TAGPIN_KUSTOMIZE_REMOTE=on turns the filter off)."""
    app = kustomize_dir(tmp_path / "app", files, recorder.url("127.0.0.1"))

    # The page is no patch, schema or git repository: kustomize may well fail after the fetch.
    with contextlib.suppress(TagpinError):
        runner(app, "on", tmp_path)

    assert recorder.hits != []


def test_no_host_spelling_or_redirect_reaches_the_listener(
    recorder: Recorder, tmp_path: Path
) -> None:
    """The kustomize runner alone, one spelling per run (kustomize stops at the first error)."""
    reached: dict[str, list[str]] = {}
    for name, url in spelled_urls(recorder).items():
        files = {"kustomization.yaml": f"configMapGenerator: [{{name: s, files: ['page={url}']}}]"}
        app = kustomize_dir(tmp_path / f"app-{len(reached)}", files, url)
        with pytest.raises(KustomizeError):  # Go refuses to look up all-numeric names itself
            runner(app, "off", tmp_path)
        reached[name] = list(recorder.hits)
    assert reached == {name: [] for name in reached}


def test_a_redirect_is_followed_when_kustomize_has_the_network(
    recorder: Recorder, tmp_path: Path
) -> None:
    """The control for the redirect case: both listeners see it when the network is given."""
    url = recorder.redirect_url()
    files = {"kustomization.yaml": f"configMapGenerator: [{{name: s, files: ['page={url}']}}]"}
    built = runner(kustomize_dir(tmp_path / "app", files, url), "on", tmp_path)
    assert SECRET_PAGE.strip() in built
    assert sorted(recorder.hits) == sorted(
        [f"127.0.0.1:{recorder.redirect_port}", f"127.0.0.1:{recorder.port}"]
    )


def test_a_config_map_generator_cannot_copy_the_sidecars_metrics_page(
    recorder: Recorder, cmp_sidecar: Sidecar, render_mode: dict[str, str], tmp_path: Path
) -> None:
    """The reported attack, through the cmp-server emulator and the shipped plugin.yaml, in
    `tagpin generate` and in a render server's worker: a ConfigMap and a Secret generator
    naming the sidecar's own metrics page."""
    url = recorder.url("127.0.0.1")
    repo = build_tree(
        tmp_path / "repo",
        {
            "apps/web/tagpin.yaml": "kustomize: {}\n",
            "apps/web/kustomization.yaml": (
                f"configMapGenerator: [{{name: s, files: ['{url}']}}]\n"
                f"secretGenerator: [{{name: t, files: ['metrics={url}']}}]\n"
            ),
        },
    )
    (repo / ".git").mkdir()

    result = cmp_sidecar(repo, render_mode)

    assert (result.stdout, result.exit_code) == ("", ExitStatus.SOURCE), result.stderr
    assert (
        f"apps/web/kustomization.yaml: configMapGenerator[0].files[0]: '{url}' is a URL; "
        "tagpin does not let kustomize fetch URLs (a sidecar setting, "
        "TAGPIN_KUSTOMIZE_REMOTE=on, allows it)"
    ) in result.stderr
    assert f"secretGenerator[0].files[0]: 'metrics={url}' is a URL" in result.stderr
    assert recorder.hits == []


def seccomp_filters(status: str) -> int:
    (line,) = [row for row in status.splitlines() if row.startswith("Seccomp_filters:")]
    return int(line.split()[1])


@pytest.mark.parametrize("remote,added", [("off", 1), ("on", 0)])
def test_the_network_filter_is_on_exactly_when_remote_loading_is_off(
    tmp_path: Path, remote: str, added: int
) -> None:
    """A stand-in kustomize reports its own seccomp filters: one more than tagpin's while
    remote loading is off (stacked on whatever the container runtime installed), none added
    when the operator gave kustomize the network."""
    fake = build_tree(
        tmp_path / "bin",
        {
            "kustomize": (
                "#!/bin/sh\nprintf 'apiVersion: v1\\nkind: ConfigMap\\nmetadata: {name: f}\\n"
                'data: {filters: "%s"}\\n\' '
                '"$(grep Seccomp_filters: /proc/self/status | cut -f2)"\n'
            )
        },
    )
    (fake / "kustomize").chmod(0o755)
    repo = build_tree(
        tmp_path / "repo",
        {"apps/web/tagpin.yaml": "kustomize: {}\n", "apps/web/kustomization.yaml": "{}\n"},
    )
    env = {
        "PATH": f"{fake}{os.pathsep}/usr/bin:/bin",
        "TAGPIN_CACHE": "off",
        "TAGPIN_KUSTOMIZE_REMOTE": remote,
    }
    done = run_cli(["render", str(repo / "apps/web")], env=env)
    assert done.returncode == 0, done.stderr.decode()
    ours = seccomp_filters(Path("/proc/self/status").read_text())
    assert f"filters: '{ours + added}'".encode() in done.stdout


def test_programs_kustomize_starts_get_no_connection_either(
    recorder: Recorder, tmp_path: Path
) -> None:
    """git (kustomize's remote bases) under the filter, without GIT_ALLOW_PROTOCOL: the filter
    is inherited, so it cannot connect either."""
    done = subprocess.run(
        [
            *(sys.executable, "-I", "-S", nonetwork.__file__),
            *("/usr/bin/git", "ls-remote", recorder.url("127.0.0.1", "/org/repo.git")),
        ],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0 and done.stdout == b""
    assert recorder.hits == []


def test_a_kustomize_that_cannot_be_kept_off_the_network_is_not_run(tmp_path: Path) -> None:
    """When the filter cannot be installed (no libseccomp: a laptop without it, a distroless
    image) the launcher stops before kustomize, and tagpin says so: exit 3, never kustomize
    unconfined."""
    launch = (
        "import sys; sys.path.insert(0, sys.argv[1]); import nonetwork; "
        "nonetwork.LIBRARY = 'libseccomp-absent.so.9'; nonetwork.main(['/bin/echo', 'ran'])"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", launch, str(Path(nonetwork.__file__).parent)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (nonetwork.UNCONFINED, "")
    with pytest.raises(ConfigError) as refused:
        _raise_if_not_started(done.returncode, done.stderr)
    assert refused.value.problems == (
        "cannot run /bin/echo without network: libseccomp-absent.so.9 not found "
        "(Debian: apt-get install libseccomp2)",
        "tagpin runs kustomize only without network, unless the sidecar setting "
        "TAGPIN_KUSTOMIZE_REMOTE=on gives it the network (docs/kustomize.md)",
    )


def test_a_kustomize_the_launcher_cannot_start_is_a_clear_error(tmp_path: Path) -> None:
    """Not a program execve(2) can start: the launcher's failure, reported as tagpin's."""
    odd = build_tree(tmp_path / "bin", {"kustomize": "no interpreter line\n"}) / "kustomize"
    odd.chmod(0o755)
    app = build_tree(tmp_path / "app", {"kustomization.yaml": "{}\n"})
    settings = Settings.from_environ({"TAGPIN_KUSTOMIZE": str(odd)})
    with pytest.raises(ConfigError, match=f"^cannot run {odd}: Exec format error$"):
        run_kustomize(
            RepoFiles(app, app, Limits()),
            app,
            app / "kustomization.yaml",
            KustomizeOptions(),
            settings,
            {"PATH": "/usr/bin:/bin"},
            Limits(),
        )
