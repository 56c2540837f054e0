"""Typos in Image Updater keys: the key table and its suggestions, in-process (the sidecar failing
the render on them, through Argo CD's plugin mechanics, is
tests/e2e/imageupdater/test_updater_typos_sidecar.py)."""

from __future__ import annotations

import json

import pytest

from cmp.errors import ConfigError
from cmp.imageupdater.keys import check_keys, check_sources

PREFIX = "argocd-image-updater.argoproj.io/"


# --- the key table itself --------------------------------------------------------------------


def test_every_key_image_updater_defines_is_valid() -> None:
    keys = [
        "image-list",
        "allow-tags",
        "ignore-tags",
        "force-update",
        "update-strategy",
        "pull-secret",
        "write-back-method",
        "write-back-target",
        "git-branch",
        "git-repository",
        *(
            f"argoproj_argocd.{option}"
            for option in (
                "allow-tags",
                "ignore-tags",
                "force-update",
                "update-strategy",
                "pull-secret",
                "platforms",
                "helm.image-name",
                "helm.image-tag",
                "helm.image-spec",
                "kustomize.image-name",
                "tag-match",
            )
        ),
    ]
    check_keys([(key, "annotation", PREFIX) for key in keys], {"argoproj_argocd"})


@pytest.mark.parametrize(
    ("key", "aliases", "suggestion"),
    [
        ("web.allowtags", {"web"}, "web.allow-tags"),
        ("web.allow_tags", None, "web.allow-tags"),
        ("update-strategy.web", {"web"}, "update-strategy"),
        ("web.helm.image-nam", {"web"}, "web.helm.image-name"),
        ("platforms", {"web"}, "web.platforms"),  # per-alias only, as upstream
    ],
)
def test_unknown_keys_name_the_closest_valid_key(
    key: str, aliases: set[str] | None, suggestion: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        check_keys([(key, "annotation", PREFIX)], aliases)
    assert f"did you mean '{PREFIX}{suggestion}'?" in str(caught.value)


def test_every_typo_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        check_keys(
            [
                ("web.allow-tag", "image-updater parameter key", ""),
                ("imagelist", "annotation", PREFIX),
            ],
            {"web"},
        )
    assert len(caught.value.problems) == 2
    assert json.dumps(caught.value.problems)  # plain strings, one per key


@pytest.mark.parametrize(
    ("parameter_name", "where"),
    [
        ("image-updater parameter", "image-updater parameter key"),  # under Argo CD
        ("--image-updater", "--image-updater key"),  # at the CLI
    ],
)
def test_a_parameter_key_with_the_annotation_prefix_is_told_to_drop_it(
    parameter_name: str, where: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        check_sources(
            {},
            {f"{PREFIX}image-list": "web=repo", f"{PREFIX}web.helm.image-tag": "x"},
            None,
            PREFIX,
            parameter_name,
        )
    assert caught.value.problems == (
        f"{where} '{PREFIX}image-list' carries the annotation prefix; drop '{PREFIX}' and write "
        "'image-list'",
        f"{where} '{PREFIX}web.helm.image-tag' carries the annotation prefix; drop '{PREFIX}' "
        "and write 'web.helm.image-tag'",
    )
    assert "did you mean" not in str(caught.value)
