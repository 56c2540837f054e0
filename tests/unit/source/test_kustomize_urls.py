"""tagpin's check for URLs in kustomizations (the message; the network filter is the
guarantee, tests/e2e/source/test_kustomize_network.py): a rule over every value, not a list of
fields, that leaves data kustomize never loads alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmp.errors import SourceError
from cmp.source.appdir import Limits, RepoFiles
from cmp.source.kustomize import check_tree, url_values
from tests.support.apptree import build_tree


def check(tmp_path: Path, files: dict[str, str], *, allow_remote: bool = False) -> None:
    repo = build_tree(tmp_path / "repo", files)
    check_tree(RepoFiles(repo, repo / "app", Limits()), repo / "app", allow_remote=allow_remote)


def test_annotations_literals_and_metadata_may_hold_urls(tmp_path: Path) -> None:
    check(
        tmp_path,
        {
            "app/kustomization.yaml": (
                "metadata: {name: x, annotations: {docs: 'https://wiki.example.com'}}\n"
                "commonAnnotations: {link.argocd.argoproj.io/external-link: 'https://x.example'}\n"
                "generatorOptions: {annotations: {source: 'https://git.example.com/r'}}\n"
                "configMapGenerator:\n- name: s\n  literals: ['API=https://api.example.com']\n"
                "  options: {annotations: {a: 'http://b'}}\n"
                "transformers: [t.yaml]\n"
            ),
            "app/t.yaml": (
                "apiVersion: builtin\nkind: AnnotationsTransformer\n"
                "metadata: {name: t, annotations: {a: 'http://b'}}\n"
                "annotations: {docs: 'https://wiki.example.com'}\nfieldSpecs: [{path: metadata}]\n"
            ),
        },
    )


def test_a_url_in_a_field_no_list_names_is_refused(tmp_path: Path) -> None:
    """A field a later kustomize might add is a path until known to be data."""
    with pytest.raises(SourceError) as refused:
        check(tmp_path, {"app/kustomization.yaml": "futureField: {deep: [a, 'HTTPS://x/y']}\n"})
    assert str(refused.value) == (
        "app/kustomization.yaml: futureField.deep[1]: 'HTTPS://x/y' is a URL; tagpin does not "
        "let kustomize fetch URLs (a sidecar setting, TAGPIN_KUSTOMIZE_REMOTE=on, allows it)"
    )


def test_with_remote_loading_on_urls_are_kustomizes_business(tmp_path: Path) -> None:
    check(
        tmp_path,
        {"app/kustomization.yaml": "configMapGenerator: [{name: s, files: ['http://x/y']}]\n"},
        allow_remote=True,
    )


def test_a_flood_of_urls_is_named_ten_times_and_counted(tmp_path: Path) -> None:
    urls = [f"http://127.0.0.1/{n}" for n in range(500)]
    with pytest.raises(SourceError) as refused:
        check(tmp_path, {"app/kustomization.yaml": f"crds: {urls}\n"})
    assert len(refused.value.problems) == 11
    assert refused.value.problems[-1] == "app/kustomization.yaml: and 490 more URLs"


def test_a_huge_url_is_shortened_in_the_message(tmp_path: Path) -> None:
    url = "http://x/" + "a" * 100_000
    with pytest.raises(SourceError) as refused:
        check(tmp_path, {"app/kustomization.yaml": f"crds: ['{url}']\n"})
    assert len(str(refused.value)) < 500


def test_a_self_referencing_alias_is_refused_before_it_is_walked(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"kustomization.yaml:1: an anchor holds an alias to"):
        check(tmp_path, {"app/kustomization.yaml": "crds: &loop [*loop, 'http://x']\n"})


def test_a_deep_structure_is_walked_without_recursion() -> None:
    document: object = "http://x"
    for _ in range(100_000):
        document = [document]
    ((path, value),) = url_values({"k": document})
    assert value == "http://x" and path.startswith("k[0][0]")
