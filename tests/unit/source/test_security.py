"""Template attacks: templates come from repositories many people can push to, while the
sidecar holds AWS credentials. Each attack must fail with a template/source error, quickly,
and without showing anything from outside the repository."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from cmp.errors import ExitStatus, ManifestError, SourceError, TagpinError, TemplateError
from cmp.output import Output
from cmp.request import from_argocd_environment
from cmp.source.render import render_app
from tests.support.apptree import build_tree, cm, manifests_of, parameters, run_cli

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
OUTSIDE_YAML = f"secret: {SECRET}\n"
OUTSIDE_MANIFEST = cm("stolen", secret=SECRET)


def attack(tmp_path: Path, expression: str) -> TemplateError:
    """Render `expression` on line 5 of a template; the render must fail."""
    app = build_tree(
        tmp_path,
        {
            "tagpin.yaml": "{}\n",
            "values.yaml": "image: {tag: v1}\nlist: [1]\n",
            "templates/attack.yaml.j2": cm("attack") + "data:\n  v: " + expression + "\n",
        },
    )
    with pytest.raises(TemplateError) as caught:
        manifests_of(app, params=parameters(values={"image.tag": "v2"}))
    return caught.value


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository with an app at apps/web, next to a directory of secrets outside it."""
    build_tree(
        tmp_path / "outside",
        {
            "secret.yaml": OUTSIDE_YAML,
            "manifests/stolen.yaml": OUTSIDE_MANIFEST,
            "secret.j2": SECRET,
        },
    )
    return build_tree(
        tmp_path / "repo", {"apps/web/tagpin.yaml": "{}\n", "apps/web/templates/cm.yaml": cm("web")}
    )


def render_repo(repo: Path, **request: Any) -> list[str]:
    return [m.name for m in manifests_of(repo / "apps/web", repo, **request)]


# --- reaching Python internals -------------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ ().__class__.__base__.__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os.environ }}",
        "{{ joiner.__init__.__globals__ }}",
        "{{ namespace.__init__.__globals__ }}",
        "{{ joiner().__call__.__globals__ }}",
        "{{ values.__class__ }}",
        "{{ values | attr('__class__') }}",
        "{{ '' | attr('\\x5f\\x5fclass\\x5f\\x5f') }}",
        "{{ '{0.__class__}'.format(values) }}",
        "{{ self._TemplateReference__context }}",
        "{{ self.__init__ }}",
        "{{ range.__self__ }}",
        "{{ range.__call__ }}",
        "{{ dict.mro() }}",
        "{{ kube.__dict__ }}",
        "{{ kube.has.__func__.__globals__ }}",
        "{{ kube._apis }}",
        "{{ os }}",
        "{{ os.environ }}",
        "{{ __builtins__ }}",
        "{{ __import__('os') }}",
        "{{ config }}",
        "{{ request }}",
        "{{ values.update({'image': 'evil'}) }}",
        "{{ values.list.append(2) }}",
    ],
)
def test_python_internals_are_unreachable(tmp_path: Path, expression: str) -> None:
    error = attack(tmp_path, expression)
    assert error.problems[0].startswith("templates/attack.yaml.j2:6: ")
    reasons = ("not allowed in a template: access to attribute", "is undefined", "no attribute")
    assert any(reason in error.problems[0] for reason in reasons), error.problems
    assert "<module" not in str(error) and "<function" not in str(error)


def test_environment_secrets_are_unreachable_from_any_context_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    for expression in (
        "{{ env.AWS_SECRET_ACCESS_KEY }}",
        "{{ AWS_SECRET_ACCESS_KEY }}",
        "{{ environ }}",
        "{{ app.env }}",
        "{{ kube.environ }}",
    ):
        error = attack(tmp_path, expression)
        assert SECRET not in str(error)


# --- reading files outside the repository --------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/etc/passwd",
        "../../etc/passwd",
        "../../../outside/secret.j2",
        "templates/../../../outside/secret.j2",
    ],
)
def test_include_cannot_leave_the_repository(repo: Path, target: str) -> None:
    build_tree(repo, {"apps/web/templates/inc.yaml.j2": f"{{% include {target!r} %}}\n"})
    with pytest.raises(TemplateError) as caught:
        render_repo(repo)
    assert caught.value.problems[0].startswith(
        f"apps/web/templates/inc.yaml.j2:1: template {target!r} not found"
    )
    assert SECRET not in str(caught.value) and "root:" not in str(caught.value)


def test_import_cannot_leave_the_repository(repo: Path) -> None:
    build_tree(repo, {"apps/web/templates/inc.yaml.j2": "{% import '/etc/passwd' as p %}\n"})
    with pytest.raises(TemplateError, match=r"template '/etc/passwd' not found"):
        render_repo(repo)


def test_symlinked_template_pointing_outside(repo: Path) -> None:
    os.symlink(repo.parent / "outside/manifests/stolen.yaml", repo / "apps/web/templates/x.yaml")
    with pytest.raises(SourceError) as caught:
        render_repo(repo)
    assert caught.value.problems == (
        "apps/web/templates/x.yaml: resolves outside the repository (a symlink or '..'); "
        "tagpin only reads files inside the app's repository",
    )


def test_symlinked_include_target_pointing_outside(repo: Path) -> None:
    os.symlink(repo.parent / "outside/secret.j2", repo / "apps/web/link.j2")
    build_tree(repo, {"apps/web/templates/inc.yaml.j2": "{% include 'link.j2' %}\n"})
    with pytest.raises(TemplateError) as caught:
        render_repo(repo)
    assert caught.value.problems[0].startswith(
        "apps/web/templates/inc.yaml.j2:1: apps/web/link.j2: resolves outside the repository"
    )
    assert SECRET not in str(caught.value)


def test_symlinked_values_file_pointing_outside(repo: Path) -> None:
    os.symlink(repo.parent / "outside/secret.yaml", repo / "apps/web/values.yaml")
    with pytest.raises(SourceError, match=r"^apps/web/values\.yaml: resolves outside"):
        render_repo(repo)


def test_symlinked_templates_subdirectory_pointing_outside(repo: Path) -> None:
    os.symlink(repo.parent / "outside/manifests", repo / "apps/web/templates/more")
    with pytest.raises(SourceError, match=r"^apps/web/templates/more: resolves outside"):
        render_repo(repo)


def test_symlinked_templates_directory_pointing_outside(tmp_path: Path) -> None:
    build_tree(tmp_path / "outside", {"stolen.yaml": OUTSIDE_MANIFEST})
    repo = build_tree(tmp_path / "repo", {"tagpin.yaml": "{}\n"})
    os.symlink(tmp_path / "outside", repo / "templates")
    with pytest.raises(SourceError, match=r"^templates: resolves outside"):
        manifests_of(repo)


@pytest.mark.parametrize(
    "path",
    ["../../../outside/secret.yaml", "/etc/hostname", str(Path("/tmp") / ".." / "etc" / "passwd")],
)
def test_values_file_parameter_cannot_leave_the_repository(repo: Path, path: str) -> None:
    with pytest.raises(SourceError) as caught:
        render_repo(repo, params=parameters(values_files=[path]))
    assert "resolves outside the repository" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_values_files_in_tagpin_yaml_cannot_leave_the_repository(repo: Path) -> None:
    build_tree(repo, {"apps/web/tagpin.yaml": "valuesFiles: [../../../outside/secret.yaml]\n"})
    with pytest.raises(SourceError, match=r"resolves outside the repository"):
        render_repo(repo)


def test_dot_dot_inside_the_repository_is_fine(repo: Path) -> None:
    build_tree(
        repo,
        {
            "apps/common.yaml": "name: shared\n",
            "apps/web/templates/cm.yaml.j2": cm("{{ values.name }}"),
        },
    )
    names = render_repo(repo, params=parameters(values_files=["../common.yaml"]))
    assert names == ["web", "shared"]


# --- resource exhaustion -------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression",
    [
        "{{ 'a' * 10**9 }}",
        "{{ 10**9 * 'a' }}",
        "{{ [0] * 10**9 }}",
        "{{ ('a' * 1000) * 1000000 }}",
        "{{ 2 ** (10**8) }}",
        "{{ (10**10000) ** 10000 }}",
        "{{ (2 ** 10000) * (2 ** 10000) * (2 ** 10000) * (2 ** 10000) * (2 ** 10000) "
        "* (2 ** 10000) * (2 ** 10000) * (2 ** 10000) * (2 ** 10000) * (2 ** 10000) * 3 }}",
        "{% for i in range(10**9) %}{% endfor %}",
    ],
)
def test_huge_values_are_refused(tmp_path: Path, expression: str) -> None:
    error = attack(tmp_path, expression)
    assert error.problems[0].startswith("templates/attack.yaml.j2:6: ")


def test_huge_file_is_refused_before_it_is_read(repo: Path) -> None:
    big = repo / "apps/web/templates/big.yaml"
    with open(big, "wb") as handle:
        handle.truncate(64 * 1024 * 1024)  # sparse: 64 MiB of NULs without writing them
    with pytest.raises(SourceError, match=r"larger than 33554432 bytes \(TAGPIN_MAX_FILE_BYTES\)"):
        render_repo(repo)


def test_yaml_alias_bomb_in_a_plain_template_is_refused(tmp_path: Path) -> None:
    lines = [cm("bomb").rstrip("\n"), "data:", "  a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"  {name}: &{name} [" + ", ".join([f"*{previous}"] * 10) + "]")
    app = build_tree(tmp_path, {"tagpin.yaml": "{}\n", "templates/bomb.yaml": "\n".join(lines)})
    with pytest.raises(ManifestError) as caught:
        manifests_of(app)
    assert caught.value.problems[0].startswith("templates/bomb.yaml:1: YAML document expands to")
    assert "alias bomb" in caught.value.problems[0]


def test_yaml_alias_bomb_in_a_values_file_is_refused(tmp_path: Path) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 10) + "]\n"
        for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
    )
    app = build_tree(
        tmp_path, {"tagpin.yaml": "{}\n", "values.yaml": bomb, "templates/cm.yaml": cm("cm")}
    )
    with pytest.raises(SourceError, match=r"^values\.yaml:1: .*alias bomb"):
        manifests_of(app)


# --- determinism ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expression", ["{{ lipsum() }}", "{{ [1, 2, 3] | random }}", "{{ range(3) | random }}"]
)
def test_randomness_is_unavailable(tmp_path: Path, expression: str) -> None:
    error = attack(tmp_path, expression)
    assert error.problems[0].startswith("templates/attack.yaml.j2:")


def test_errors_never_show_absolute_sidecar_paths(repo: Path) -> None:
    build_tree(repo, {"apps/web/templates/bad.yaml.j2": "{{ values.missing }}"})
    with pytest.raises(TagpinError) as caught:
        render_repo(repo)
    assert str(repo) not in str(caught.value)


def test_secret_in_the_sidecar_environment_never_reaches_the_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("ARGOCD_ENV_LOG_LEVEL", "debug")
    template = cm(
        "dump",
        env="{{ env | to_json | quote }}",
        app="{{ app | to_json | quote }}",
        params="{{ params | to_json | quote }}",
        values="{{ values | to_json | quote }}",
        kube="{{ kube.api_versions | to_json | quote }}",
    )
    app = build_tree(tmp_path, {"tagpin.yaml": "{}\n", "templates/dump.yaml.j2": template})
    request = from_argocd_environment(dict(os.environ), app)
    [body] = [m.body for m in render_app(request, None, Output()).manifests]
    assert body["data"]["env"] == '{"LOG_LEVEL":"debug"}'
    assert SECRET not in json.dumps(body)


def test_generate_in_a_subprocess_keeps_the_environment_out(tmp_path: Path) -> None:
    template = cm("dump", env="{{ env | to_json | quote }}")
    app = build_tree(
        tmp_path,
        {
            "tagpin.yaml": "{}\n",
            "templates/dump.yaml.j2": template,
            "templates/steal.yaml.j2": "{{ env.AWS_SECRET_ACCESS_KEY }}",
        },
    )
    environment = {"AWS_SECRET_ACCESS_KEY": SECRET, "ARGOCD_ENV_MODE": "x", "ARGOCD_APP_NAME": "w"}
    done = run_cli(["generate"], cwd=app, env=environment)
    assert (done.returncode, done.stdout) == (ExitStatus.TEMPLATE, b"")
    assert (
        "templates/steal.yaml.j2:1: env.AWS_SECRET_ACCESS_KEY is not defined"
        in done.stderr.decode()
    )
    (app / "templates/steal.yaml.j2").unlink()
    done = run_cli(["generate"], cwd=app, env=environment)
    assert done.returncode == 0, done.stderr.decode()
    assert b'env: \'{"MODE":"x"}\'' in done.stdout
    assert SECRET.encode() not in done.stdout + done.stderr


@pytest.mark.parametrize(
    "expression",
    [
        "'a' | center(10**10)",
        "'x'.ljust(10**10)",
        "'{:>10000000000}'.format('a')",
    ],
)
def test_memory_bombs_fail_with_the_template_line_not_an_oom_kill(
    tmp_path: Path, expression: str
) -> None:
    """The sandbox cannot intercept every builtin that allocates; the address-space cap
    (TAGPIN_MAX_MEMORY_MB) turns those into a clear template error."""
    app = build_tree(
        tmp_path,
        {"tagpin.yaml": "{}\n", "templates/attack.yaml.j2": cm("x", a="{{ " + expression + " }}")},
    )
    done = run_cli(["generate"], cwd=app, env={"TAGPIN_MAX_MEMORY_MB": "1024"})
    assert (done.returncode, done.stdout) == (ExitStatus.TEMPLATE, b"")
    assert "templates/attack.yaml.j2" in done.stderr.decode()
    assert "more memory than tagpin allows" in done.stderr.decode()
