"""Reading the app directory: tagpin.yaml, values files, the template list, and file limits."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cmp.errors import ConfigError, SourceError
from cmp.source.appdir import AppConfig, Limits, RepoFiles, decode, load_app, load_config
from tests.support.apptree import MINIMAL_APP, build_tree, cm, manifests_of

LIMITS = Limits()


def config_of(tmp_path: Path, text: str) -> AppConfig:
    build_tree(tmp_path, {"tagpin.yaml": text})
    return load_config(RepoFiles(tmp_path, tmp_path, LIMITS), tmp_path / "tagpin.yaml")


@pytest.mark.parametrize(
    ("text", "config"),
    [
        ("{}\n", AppConfig()),
        ("", AppConfig()),
        ("# only a comment\n", AppConfig()),
        ("valuesFiles: [a.yaml, b/c.yaml]\n", AppConfig(values_files=("a.yaml", "b/c.yaml"))),
        (
            "images:\n  requireDigests: true\n  paths: [spec.image]\n",
            AppConfig(image_paths=["spec.image"], require_digests=True),
        ),
    ],
)
def test_config(tmp_path: Path, text: str, config: AppConfig) -> None:
    assert config_of(tmp_path, text) == config


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        ("[]\n", ("tagpin.yaml: must be a mapping (it may be {}), found a list",)),
        (
            "valuesFile: [a.yaml]\nvalues: {}\n",
            (
                "tagpin.yaml: unknown key 'valuesFile' "
                "(known keys: images, kustomize, templates, valuesFiles)",
                "tagpin.yaml: unknown key 'values' "
                "(known keys: images, kustomize, templates, valuesFiles)",
            ),
        ),
        ("valuesFiles: a.yaml\n", ("tagpin.yaml: valuesFiles must be a list of file paths",)),
        ("valuesFiles: [1]\n", ("tagpin.yaml: valuesFiles must be a list of file paths",)),
        (
            "images: [a]\n",
            (
                "tagpin.yaml: images must be a mapping with keys paths, requireDigests, "
                "allowUnpinned",
            ),
        ),
        (
            "images: {requireDigest: true}\n",
            (
                "tagpin.yaml: unknown key images.requireDigest (known: paths, requireDigests, "
                "allowUnpinned)",
            ),
        ),
        (
            "images: {requireDigests: 'yes'}\n",
            ("tagpin.yaml: images.requireDigests must be true or false",),
        ),
    ],
)
def test_malformed_config_names_every_problem(
    tmp_path: Path, text: str, problems: tuple[str, ...]
) -> None:
    with pytest.raises(ConfigError) as caught:
        config_of(tmp_path, text)
    assert caught.value.problems == problems


def test_config_yaml_errors_name_the_line(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"^tagpin\.yaml:2:1: invalid YAML: duplicate key"):
        config_of(tmp_path, "valuesFiles: []\nvaluesFiles: []\n")


def test_missing_config_says_what_to_do(tmp_path: Path) -> None:
    build_tree(tmp_path, {"templates/c.yaml": cm("c")})
    with pytest.raises(ConfigError) as caught:
        manifests_of(tmp_path)
    assert caught.value.problems == (
        "tagpin.yaml: missing; an app directory needs a tagpin.yaml (it may be {})",
    )


def test_every_problem_in_the_app_is_reported_at_once(tmp_path: Path) -> None:
    build_tree(tmp_path, {"tagpin.yaml": "bogus: 1\n", "values.yaml": "a: [\n"})
    with pytest.raises(ConfigError) as caught:
        load_app(tmp_path, tmp_path, ["extra.yaml"], LIMITS)
    assert [p.split(":")[0] for p in caught.value.problems] == [
        "tagpin.yaml",
        "values.yaml",
        "extra.yaml",
        "templates/",
    ]


def test_app_paths_are_shown_relative_to_the_repository(tmp_path: Path) -> None:
    build_tree(tmp_path, {"apps/web/tagpin.yaml": "{}\n", "apps/web/templates/c.yaml": cm("c")})
    source = load_app(tmp_path / "apps/web", tmp_path, [], LIMITS)
    assert [(t.name, t.app_name) for t in source.templates] == [
        ("apps/web/templates/c.yaml", "templates/c.yaml")
    ]


def test_hidden_directories_are_skipped(tmp_path: Path) -> None:
    build_tree(
        tmp_path,
        {**MINIMAL_APP, "templates/.git/x.yaml": cm("git"), "templates/sub/y.yaml": cm("sub")},
    )
    assert [m.name for m in manifests_of(tmp_path)] == ["cm", "sub"]


def test_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    build_tree(tmp_path, {**MINIMAL_APP, "templates/big.yaml": cm("big") + "#" * 2000 + "\n"})
    with pytest.raises(SourceError) as caught:
        manifests_of(tmp_path, settings_env={"TAGPIN_MAX_FILE_BYTES": "1024"})
    assert caught.value.problems == (
        "templates/big.yaml: larger than 1024 bytes (TAGPIN_MAX_FILE_BYTES); refusing to read it",
    )


def test_values_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    build_tree(tmp_path, {**MINIMAL_APP, "values.yaml": "a: " + "x" * 2000 + "\n"})
    with pytest.raises(SourceError, match=r"^values\.yaml: larger than 1024 bytes"):
        manifests_of(tmp_path, settings_env={"TAGPIN_MAX_FILE_BYTES": "1024"})


def test_output_over_the_output_limit_is_refused(tmp_path: Path) -> None:
    template = cm("c", v="{{ 'x' * 5000 }}")
    build_tree(tmp_path, {"tagpin.yaml": "{}\n", "templates/c.yaml.j2": template})
    with pytest.raises(Exception, match=r"TAGPIN_MAX_OUTPUT_BYTES") as caught:
        manifests_of(tmp_path, settings_env={"TAGPIN_MAX_OUTPUT_BYTES": "4096"})
    assert str(caught.value).startswith("templates/c.yaml.j2")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"a: 1\n\x00\x01", "values.yaml: looks like a binary file (contains NUL bytes)"),
        (b"a: 1\nb: \xff\xfe\n", "values.yaml:2: not valid UTF-8 (byte offset 8)"),
    ],
)
def test_undecodable_files_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(SourceError) as caught:
        decode(data, "values.yaml")
    assert caught.value.problems == (message,)


def test_byte_order_mark_is_ignored() -> None:
    assert decode(b"\xef\xbb\xbfa: 1\n", "values.yaml") == "a: 1\n"


def test_symlinks_inside_the_repository_are_followed(tmp_path: Path) -> None:
    build_tree(
        tmp_path,
        {
            "tagpin.yaml": "{}\n",
            "shared/c.yaml": cm("shared"),
            "shared/dir/d.yaml": cm("linked-dir"),
            "templates/.keep": "",
        },
    )
    os.symlink(tmp_path / "shared/c.yaml", tmp_path / "templates/c.yaml")
    os.symlink(tmp_path / "shared/dir", tmp_path / "templates/dir")
    assert [m.name for m in manifests_of(tmp_path)] == ["shared", "linked-dir"]


def test_symlink_loop_in_templates_terminates(tmp_path: Path) -> None:
    build_tree(tmp_path, MINIMAL_APP)
    os.symlink(tmp_path / "templates", tmp_path / "templates/loop")
    assert [m.name for m in manifests_of(tmp_path)] == ["cm"]


def test_directory_given_as_values_file(tmp_path: Path) -> None:
    build_tree(tmp_path, {**MINIMAL_APP, "tagpin.yaml": "valuesFiles: [templates]\n"})
    with pytest.raises(SourceError, match=r"^templates: is a directory, expected a file"):
        manifests_of(tmp_path)
