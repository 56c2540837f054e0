"""An image must not depend on how YAML read a value: `tag: 1.10` is the number 1.1 and used
to deploy `:1.1` (#23 item 1). Every way a template can print a value is covered by rendering
again with the values as written; these tests try the routes and the readings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cmp.errors import ConfigError, ExitStatus
from cmp.registry.names import EcrRepository
from cmp.source.aswritten import WrittenFloat, WrittenInt, as_data, as_written
from cmp.source.yamlread import Misread
from tests.support.apptree import build_tree, parameters, render_dir
from tests.support.ecr_repos import ecr_repository

REPO = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/web"
WEB = ecr_repository("shop/web")
DIGEST = "sha256:" + "0" * 64

POD = (
    "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n"
    "  - name: web\n    image: IMAGE\n"
)


def app(
    tmp_path: Path, values: str, image: str = '"{{ values.repo }}:{{ values.tag }}"', **files: str
) -> Path:
    tree = {
        "tagpin.yaml": "{}\n",
        "values.yaml": f"repo: {REPO}\n{values}",
        "templates/pod.yaml.j2": POD.replace("IMAGE", image),
    }
    tree.update({name.replace("__", "/").replace("_", "."): text for name, text in files.items()})
    return build_tree(tmp_path, tree)


def image_of(tmp_path: Path, registry: dict[EcrRepository, dict[str, str]], **request: Any) -> str:
    text = render_dir(tmp_path, registry=registry, **request).text
    return text.split("image: ", 1)[1].split("\n", 1)[0]


def refusal(tmp_path: Path, **request: Any) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as caught:
        render_dir(tmp_path, registry={WEB: {}}, **request)
    assert caught.value.exit_status == ExitStatus.CONFIG
    return caught.value.problems


def test_the_issue_s_case_is_refused_naming_file_line_and_the_text_as_written(
    tmp_path: Path,
) -> None:
    app(tmp_path, "image:\n  tag: 1.10\n", '"{{ values.repo }}:{{ values.image.tag }}"')
    assert refusal(tmp_path) == (
        "values.yaml:3: tag: 1.10 is read by YAML as the number 1.1, so Pod/web in "
        "templates/pod.yaml.j2:1 at spec.containers[0].image would deploy "
        f'"{REPO}:1.1", not "{REPO}:1.10"; write tag: \'1.10\' (quoted, it stays text)',
    )


@pytest.mark.parametrize(
    ("written", "printed", "read_as"),
    [
        ("1.10", "1.1", "the number 1.1"),
        ("1.20", "1.2", "the number 1.2"),
        ("010", "8", "the number 8"),
        ("0o10", "8", "the number 8"),
        ("0x1F", "31", "the number 31"),
        ("1e3", "1000.0", "the number 1000.0"),
        ("1_000", "1000", "the number 1000"),
        (".5", "0.5", "the number 0.5"),
        ("+7", "7", "the number 7"),
        ("yes", "True", "the boolean true"),
        ("no", "False", "the boolean false"),
        ("on", "True", "the boolean true"),
        ("off", "False", "the boolean false"),
        ("true", "True", "the boolean true"),
        ("y", "True", "the boolean true"),
    ],
)
def test_every_reading_that_prints_unlike_its_text_is_refused(
    tmp_path: Path, written: str, printed: str, read_as: str
) -> None:
    app(tmp_path, f"tag: {written}\n")
    [problem] = refusal(tmp_path)
    assert problem.startswith(f"values.yaml:2: tag: {written} is read by YAML as {read_as}, ")
    assert f'would deploy "{REPO}:{printed}", not "{REPO}:{written}"' in problem
    assert problem.endswith(f"write tag: '{written}' (quoted, it stays text)")


@pytest.mark.parametrize(
    ("written", "tag"),
    [
        ("'1.10'", "1.10"),
        ('"010"', "010"),
        ("2024-01-01", "2024-01-01"),  # a string to go-yaml v2, and so to tagpin
        ("v1.10", "v1.10"),
        ("1.5", "1.5"),  # prints as written
        ("1.0", "1.0"),
        ("42", "42"),
        ("True", "True"),
        ("!!str 1.10", "1.10"),
    ],
)
def test_values_that_print_as_written_pin(tmp_path: Path, written: str, tag: str) -> None:
    app(tmp_path, f"tag: {written}\n")
    assert image_of(tmp_path, {WEB: {tag: DIGEST}}) == f"{REPO}:{tag}@{DIGEST}"


@pytest.mark.parametrize(
    "image",
    [
        "{{ values.repo ~ ':' ~ values.tag }}",
        "\"{{ '{}:{}'.format(values.repo, values.tag) }}\"",
        "\"{{ '%s:%s' % (values.repo, values.tag) }}\"",
        '"{{ values.repo }}:{{ values.tag | string }}"',
        "\"{{ [values.repo, values.tag] | join(':') }}\"",
        '"{{ values.repo }}:{{ values.tag | to_yaml }}"',
        '"{{ values.repo }}:{{ values.tag | to_json }}"',
        '"{{ values.repo }}:v{{ values.tag }}"',
        '"{{ values.repo }}:{{ values.tag }}-alpine"',
        '"{{ values.repo }}:{{ values.tags[0] }}"',
        '"{{ values.repo }}:{% for t in values.tags %}{{ t }}{% endfor %}"',
        "\"{{ values.repo }}:{{ values.image['tag'] }}\"",
    ],
)
def test_every_way_a_template_prints_the_value_is_seen(tmp_path: Path, image: str) -> None:
    app(tmp_path, "tag: 1.10\ntags: [1.10]\nimage: {tag: 1.10}\n", image)
    problems = refusal(tmp_path)
    # to_json quotes the text, which breaks the YAML of the second render: then the image is
    # refused because it holds 1.1, without the second render's confirmation.
    assert all("tag: 1.10 is" in p and "the number 1.1" in p for p in problems)


def test_a_macro_and_an_include_are_seen_too(tmp_path: Path) -> None:
    app(tmp_path, "tag: 1.10\n")
    (tmp_path / "templates/_lib.j2").write_text(
        "{% macro image(v) %}{{ v.repo }}:{% include 'templates/_tag.j2' %}{% endmacro %}"
    )
    (tmp_path / "templates/_tag.j2").write_text("{{ values.tag }}")
    (tmp_path / "templates/pod.yaml.j2").write_text(
        "{% import 'templates/_lib.j2' as lib with context %}\n"
        + POD.replace("IMAGE", '"{{ lib.image(values) }}"')
    )
    assert "tag: 1.10 is read by YAML as the number 1.1" in refusal(tmp_path)[0]


@pytest.mark.parametrize(
    ("values", "image"),
    [
        # 1.10 is used elsewhere, and the image holds 1.1 written as text.
        ("tag: '1.1'\nversion: 1.10\n", '"{{ values.repo }}:{{ values.tag }}"'),
        # A boolean decides a branch: printing it differently changes nothing here.
        (
            "tag: v1\ndebug: true\n",
            '"{{ values.repo }}:{% if values.debug is true %}True{% else %}x{% endif %}"',
        ),
        # Arithmetic on the number: a number was meant.
        ("tag: v1\nminor: 010\n", '"{{ values.repo }}:{{ values.tag }}.{{ values.minor * 1 }}"'),
    ],
)
def test_what_does_not_depend_on_the_reading_is_left_alone(
    tmp_path: Path, values: str, image: str
) -> None:
    app(tmp_path, values, image)
    pinned = image_of(tmp_path, {WEB: {"1.1": DIGEST, "True": DIGEST, "v1.8": DIGEST}})
    assert pinned.endswith(f"@{DIGEST}")


def test_a_later_layer_is_named_and_a_quoted_later_layer_makes_it_right(tmp_path: Path) -> None:
    app(tmp_path, "tag: v1\n", tagpin_yaml="valuesFiles: [prod.yaml]\n", prod_yaml="tag: 1.10\n")
    assert refusal(tmp_path)[0].startswith("prod.yaml:1: tag: 1.10 is read by YAML")
    (tmp_path / "prod.yaml").write_text("tag: '1.10'\n")
    (tmp_path / "values.yaml").write_text(f"repo: {REPO}\ntag: 1.10\n")
    assert image_of(tmp_path, {WEB: {"1.10": DIGEST}}) == f"{REPO}:1.10@{DIGEST}"


def test_the_values_files_parameter_is_a_layer_like_any(tmp_path: Path) -> None:
    app(tmp_path, "tag: v1\n", staging_yaml="tag: 0x1F\n")
    problems = refusal(tmp_path, params=parameters(**{"values-files": ["staging.yaml"]}))
    assert problems[0].startswith("staging.yaml:1: tag: 0x1F is read by YAML as the number 31")


def test_the_values_parameter_types_booleans_and_says_how_to_keep_text(tmp_path: Path) -> None:
    app(tmp_path, "tag: v1\n")
    problems = refusal(tmp_path, params=parameters(values={"tag": "true"}))
    assert problems[0].startswith(
        "plugin parameter 'values': tag=true is read as the boolean true, so Pod/web"
    )
    assert problems[0].endswith("set tag: 'true' in a values file instead")
    # 1.10 stays text there (helm --set typing): pinned as written.
    tagged = image_of(tmp_path, {WEB: {"1.10": DIGEST}}, params=parameters(values={"tag": "1.10"}))
    assert tagged == f"{REPO}:1.10@{DIGEST}"


def test_custom_image_paths_are_checked_too(tmp_path: Path) -> None:
    app(tmp_path, "tag: 1.10\n", tagpin_yaml="images:\n  paths: [{kind: Job, path: spec.img}]\n")
    (tmp_path / "templates/job.yaml.j2").write_text(
        "apiVersion: example.com/v1\nkind: Job\nmetadata: {name: j}\n"
        'spec: {img: "{{ values.repo }}:{{ values.tag }}"}\n'
    )
    problems = refusal(tmp_path)
    assert any("Job/j in templates/job.yaml.j2:1 at spec.img" in p for p in problems)


def test_when_the_second_render_fails_images_holding_the_printed_value_are_refused(
    tmp_path: Path,
) -> None:
    # A template that insists on a real boolean: the second render (with `yes` printing as
    # written, an integer) fails it, so tagpin cannot be sure, and says so.
    image = (
        "\"{% if values.tag is not boolean %}{{ fail('no') }}{% endif %}"
        '{{ values.repo }}:{{ values.tag }}"'
    )
    app(tmp_path, "tag: yes\n", image)
    [problem] = refusal(tmp_path)
    assert problem.startswith(
        f'Pod/web in templates/pod.yaml.j2:1 at spec.containers[0].image: the image "{REPO}:True" '
        "holds what a template prints for values YAML reads unlike their text (values.yaml:2: "
        "tag: yes is the boolean true); quote them so they stay text (tagpin could not render "
        "the app again with them as written to be sure: "
    )


def test_lock_refuses_as_render_does(tmp_path: Path) -> None:
    from cmp.commands.lock import lock_app
    from cmp.output import Output
    from tests.support.apptree import make_request
    from tests.support.static_registry import StaticRegistry

    app(tmp_path, "tag: 1.10\n")
    registry = StaticRegistry.of_digests({WEB: {"1.1": DIGEST, "1.10": DIGEST}})
    with pytest.raises(ConfigError, match="tag: 1.10 is read by YAML as the number 1.1"):
        lock_app(make_request(tmp_path), lambda: registry, Output())


# --- the values a second render sees ---------------------------------------------------------


def test_values_as_written_print_as_written_and_compute_as_read() -> None:
    misread = [
        Misread("v.yaml", 1, "a", "1.10", 1.1),
        Misread("v.yaml", 2, "b", "010", 8),
        Misread("v.yaml", 3, "c", "yes", True),
    ]
    values = {"a": 1.1, "list": [8, 1.1, "1.1", 8.0], "c": True, "d": False, "e": 1}
    written = as_written(values, misread)
    a, c = written["a"], written["c"]
    assert isinstance(a, WrittenFloat) and isinstance(c, WrittenInt)
    assert (str(a), f"{a}", f"{a:.3f}", a + 1, a == 1.1) == ("1.10", "1.10", "1.100", 2.1, True)
    assert [str(item) for item in written["list"]] == ["010", "1.10", "1.1", "8.0"]
    assert (str(c), bool(c), c == True, written["d"], written["e"]) == ("yes", True, True, False, 1)  # noqa: E712
    assert as_data(written) == {
        "a": "1.10",
        "list": ["010", "1.10", "1.1", 8.0],
        "c": "yes",
        "d": False,
        "e": 1,
    }
