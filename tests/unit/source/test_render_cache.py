"""Rendered Jinja2 output kept between renders (cmp/source/rendercache.py): used only while
nothing the templates read changed, never an error, never kept for a failed render."""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cmp.errors import ManifestError, TemplateError
from cmp.output import Output
from cmp.request import AppInfo, KubeInfo
from cmp.source import rendercache, templates
from cmp.source.render import render_app
from tests.support.apptree import build_tree, make_request, parameters

LIB = "{% macro labels(name) %}app: {{ name }}{% endmacro %}\n"
WEB = (
    "{% import 'lib/labels.j2' as lib %}\n"
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n"
    "  labels:\n    {{ lib.labels('web') }}\n"
    "data:\n"
    "{% for key, value in values.data.items() %}\n"
    "  {{ key }}: {{ value | quote }}\n"
    "{% endfor %}\n"
    "  include: {% include ['apps/web/extra.j2', 'shared/extra.j2'] %}\n"
    "  order: {{ values.data | join(',') | quote }}\n"
    "  revision: {{ app.revision_short | quote }}\n"
    "  env: {{ env.ARGOCD_ENV_STAGE | default('none') | quote }}\n"
    "  kube: {{ kube.version | quote }}\n"
    "  cron: {{ kube.has('batch/v1/CronJob') | string | quote }}\n"
)
REPO = {
    "lib/labels.j2": LIB,
    "shared/extra.j2": "from-shared\n",
    "apps/web/tagpin.yaml": "{}\n",
    "apps/web/values.yaml": "data:\n  a: '1'\n  b: '2'\n",
    "apps/web/templates/web.yaml.j2": WEB,
}


def render(
    repo: Path, cache: Path | None, **request: Any
) -> tuple[list[dict[str, Any]], list[str]]:
    said = Output()
    app = render_app(make_request(repo / "apps/web", repo, **request), cache, said)
    return [manifest.body for manifest in app.manifests], said.warnings


def entries(cache: Path) -> list[Path]:
    return sorted(cache.glob(f"*{rendercache.SUFFIX}"))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return build_tree(tmp_path / "repo", REPO)


@pytest.fixture
def no_jinja(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Makes building a Jinja2 environment fail: a render that still succeeds used kept output."""

    def forbid() -> None:
        def refuse(*_: Any, **__: Any) -> Any:
            raise AssertionError("Jinja2 ran")

        monkeypatch.setattr(templates, "build_environment", refuse)

    return forbid


def test_a_render_with_unchanged_inputs_uses_the_kept_output_without_running_jinja(
    repo: Path, tmp_path: Path, no_jinja: Callable[[], None]
) -> None:
    cache = tmp_path / "cache"
    first = render(repo, cache)
    assert len(entries(cache)) == 1
    no_jinja()
    assert render(repo, cache) == first
    assert first[0][0]["data"]["include"] == "from-shared"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


# Each change alters what the template prints; the kept output must not survive it.
CHANGES: dict[str, tuple[Callable[[Path], None], dict[str, Any]]] = {
    "the template": (
        lambda r: write(r / "apps/web/templates/web.yaml.j2", WEB + "  more: 'x'\n"),
        {},
    ),
    "a macro file above the app": (
        lambda r: write(r / "lib/labels.j2", LIB.replace("app:", "team:")),
        {},
    ),
    "an included file above the app": (lambda r: write(r / "shared/extra.j2", "edited\n"), {}),
    "a new file in the app that now shadows the repository's": (
        lambda r: write(r / "apps/web/lib/labels.j2", LIB.replace("app:", "shadow:")),
        {},
    ),
    "a new first choice of an include list": (
        lambda r: write(r / "apps/web/extra.j2", "first-choice\n"),
        {},
    ),
    "a new template": (
        lambda r: write(
            r / "apps/web/templates/more.yaml.j2",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: more\n"
            "data: {{ values.data | to_json }}\n",
        ),
        {},
    ),
    "values.yaml": (lambda r: write(r / "apps/web/values.yaml", "data:\n  a: '9'\n"), {}),
    "the order of values": (
        lambda r: write(r / "apps/web/values.yaml", "data:\n  b: '2'\n  a: '1'\n"),
        {},
    ),
    "a values parameter": (lambda r: None, {"params": parameters(values={"data.a": "set"})}),
    "the revision": (lambda r: None, {"app": AppInfo(revision="fedcba9876543210")}),
    "an ARGOCD_ENV_ variable": (lambda r: None, {"env": {"ARGOCD_ENV_STAGE": "prod"}}),
    "the cluster version": (lambda r: None, {"kube": KubeInfo(version="1.32.0")}),
    "the cluster's APIs": (
        lambda r: None,
        {"kube": KubeInfo(api_versions=("batch/v1/CronJob",))},
    ),
}


@pytest.mark.parametrize("change", CHANGES, ids=list(CHANGES))
def test_a_change_to_anything_the_templates_read_renders_again(
    repo: Path, tmp_path: Path, change: str
) -> None:
    cache = tmp_path / "cache"
    before = render(repo, cache)
    edit, request = CHANGES[change]
    edit(repo)
    after = render(repo, cache, **request)
    assert after == render(repo, None, **request)  # what a render without any cache gives
    assert after != before  # the change is one the output shows


def fifo_instead(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


@pytest.mark.parametrize(
    "damage",
    [
        lambda path: path.write_text(path.read_text()[:40]),
        lambda path: path.write_text("[]"),
        lambda path: path.write_text(json.dumps({"format": "tagpin-rendered-1", "texts": [1]})),
        lambda path: path.write_text(
            json.dumps({"format": "tagpin-rendered-1", "texts": ["x"], "lookups": [[["a"]]]})
        ),
        lambda path: path.write_bytes(b"\xff\xfe" * 10),
        lambda path: path.write_text("[" * 100_000),
        lambda path: (path.unlink(), path.mkdir()),
        lambda path: fifo_instead(path),  # reading it must not block
    ],
    ids=[
        *("truncated", "not-an-entry", "wrong-types", "short-lookup", "not-utf8", "deep"),
        *("a-dir", "a-fifo"),
    ],
)
def test_a_damaged_entry_is_a_miss_never_an_error(
    repo: Path, tmp_path: Path, damage: Callable[[Path], Any]
) -> None:
    cache = tmp_path / "cache"
    first = render(repo, cache)
    [entry] = entries(cache)
    damage(entry)
    assert render(repo, cache) == first


def test_a_planted_entry_in_a_directory_others_can_write_is_not_read(
    repo: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    first = render(repo, cache)
    [entry] = entries(cache)
    kept = json.loads(entry.read_text())
    kept["texts"] = [text.replace("from-shared", "planted") for text in kept["texts"]]
    entry.write_text(json.dumps(kept))
    os.chmod(cache, 0o777)
    assert render(repo, cache) == first


def test_a_failed_render_is_not_kept(repo: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    write(repo / "apps/web/templates/web.yaml.j2", "{{ fail('not today') }}\n")
    for _ in range(2):
        with pytest.raises(TemplateError, match="not today"):
            render(repo, cache)
    assert entries(cache) == []


def test_a_yaml_error_in_kept_output_names_the_template_line_as_the_first_render_did(
    repo: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    bad = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n"
        "{% for i in range(5) %}\n  k{{ i }}: v\n{% endfor %}\n"
        "  bad: [unclosed\n  next: x\n"
    )
    write(repo / "apps/web/templates/web.yaml.j2", bad)
    with pytest.raises(ManifestError) as first:
        render(repo, cache)
    assert entries(cache)  # the templates rendered; only their YAML is wrong
    with pytest.raises(ManifestError) as second:
        render(repo, cache)
    assert second.value.problems == first.value.problems
    # the template's line, found by rendering again (rendered, the line is further down)
    assert "web.yaml.j2:10: invalid YAML" in first.value.problems[0]
    assert "(rendered line 12" in first.value.problems[0]


def test_warnings_about_the_rendered_text_are_said_on_every_render(
    repo: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    write(repo / "apps/web/templates/web.yaml.j2", WEB.rstrip("\n") + "\n  tail: |\n    end")
    first_warnings = render(repo, cache)[1]
    assert first_warnings
    assert render(repo, cache)[1] == first_warnings


def test_a_kept_render_over_the_output_limit_fails_as_a_render_does(
    repo: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    render(repo, cache)
    limit = {"TAGPIN_MAX_OUTPUT_BYTES": "100"}
    with pytest.raises(TemplateError) as kept:
        render(repo, cache, settings_env=limit)
    with pytest.raises(TemplateError) as fresh:
        render(repo, None, settings_env=limit)
    assert kept.value.problems == fresh.value.problems


def test_a_copy_of_the_repository_elsewhere_uses_the_kept_output(
    repo: Path, tmp_path: Path, no_jinja: Callable[[], None]
) -> None:
    """Argo CD's cmp-server hands each render a fresh copy of the repository in a new
    directory: the key holds no absolute path."""
    cache = tmp_path / "cache"
    first = render(repo, cache)
    copy = tmp_path / "elsewhere" / "checkout"
    shutil.copytree(repo, copy)
    no_jinja()
    assert render(copy, cache) == first


def test_the_kept_renders_are_bounded(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rendercache, "MAX_ENTRIES", 4)
    cache = tmp_path / "cache"
    for revision in range(10):
        render(repo, cache, app=AppInfo(revision=f"{revision:040x}"))
        assert len(entries(cache)) <= 4
    latest = render(repo, cache, app=AppInfo(revision=f"{9:040x}"))
    assert latest == render(repo, None, app=AppInfo(revision=f"{9:040x}"))


def test_an_upgraded_jinja2_renders_again(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jinja2 upgraded in place (same tagpin version) may print differently: its files are part
    of the key, so the render runs again."""
    installed = tmp_path / "site-packages" / "jinja2" / "__init__.py"
    write(installed, '__version__ = "3.1.6"\n')
    real = rendercache._package_init
    monkeypatch.setattr(
        rendercache, "_package_init", lambda name: installed if name == "jinja2" else real(name)
    )
    built: list[str] = []
    build = templates.build_environment

    def counted(*args: Any, **kwargs: Any) -> Any:
        built.append("jinja2")
        return build(*args, **kwargs)

    monkeypatch.setattr(templates, "build_environment", counted)
    cache = tmp_path / "cache"
    first = render(repo, cache)
    render(repo, cache)
    assert len(built) == 1
    write(installed, '__version__ = "3.2.0"\n')
    assert render(repo, cache) == first
    assert len(built) == 2


PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(st.text(max_size=3) | st.integers(), inner, max_size=3)
    ),
    max_leaves=12,
)


@given(PLAIN, PLAIN)
def test_two_contexts_share_a_key_only_when_a_template_could_not_tell_them_apart(
    left: Any, right: Any
) -> None:
    """The key's text of a context is the same exactly when the values are: same types (a
    tuple is not a list, True is not 1), same values, same key order (repr tells all three)."""
    same_text = rendercache._context_text({"values": left}) == rendercache._context_text(
        {"values": right}
    )
    assert same_text == (repr(left) == repr(right))
    assert rendercache._context_text({"values": left}) == rendercache._context_text(
        {"values": copy.deepcopy(left)}
    )
