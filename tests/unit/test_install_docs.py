"""What a new user copies: the sidecar image pinned by digest with one line to edit, the CI
example installing tagpin from a reviewed commit (never `pip install tagpin` from an index),
and docs/reliability.md naming no known bug that the tests say is fixed."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from packaging.requirements import Requirement

from tests.support.kustomize import kustomize_build

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DIGEST_LINE = re.compile(
    r"^\s*digest: sha256:[0-9a-f]{64}\s+# edit: your image's digest", re.MULTILINE
)


def test_the_sidecar_image_is_pinned_by_digest_with_one_line_to_edit() -> None:
    text = (DEPLOY / "kustomization.yaml").read_text()
    assert len(DIGEST_LINE.findall(text)) == 1
    assert "newTag" not in text
    deployment = next(o for o in kustomize_build(DEPLOY) if o["kind"] == "Deployment")
    (sidecar,) = [
        c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "tagpin"
    ]
    digest = DIGEST_LINE.search(text).group(0).split()[1]  # type: ignore[union-attr]
    assert sidecar["image"] == f"111122223333.dkr.ecr.eu-west-1.amazonaws.com/tagpin@{digest}"
    for other in ("remote/kustomization.yaml", "webhook/kustomization.yaml"):
        assert (
            len(
                re.findall(
                    r"^\s*digest: sha256:[0-9a-f]{64}\s+# edit",
                    (DEPLOY / other).read_text(),
                    re.MULTILINE,
                )
            )
            == 1
        ), other
    helm = (DEPLOY / "helm" / "values-argo-cd.yaml").read_text()
    assert re.search(r"^\s*image: \S+/tagpin@sha256:[0-9a-f]{64}$", helm, re.MULTILINE)


def test_the_ci_example_installs_tagpin_from_a_pinned_commit() -> None:
    workflow = yaml.safe_load((REPO / "examples" / "ci" / "github-actions-diff.yaml").read_text())
    steps = workflow["jobs"]["diff"]["steps"]
    (install,) = [s for s in steps if "pip install" in s.get("run", "")]
    commit = install["env"]["TAGPIN_COMMIT"]
    assert re.fullmatch(r"[0-9a-f]{40}", commit)  # a full id: a short one or a branch can move
    command = install["run"].replace("${TAGPIN_REPOSITORY}", install["env"]["TAGPIN_REPOSITORY"])
    command = command.replace("${TAGPIN_COMMIT}", commit)
    quoted = re.fullmatch(r'python -m pip install "([^"]+)"', command.strip())
    assert quoted, install["run"]
    requirement = Requirement(quoted.group(1))  # the parser pip uses
    assert requirement.name == "tagpin"
    assert requirement.url is not None and requirement.url.startswith("git+https://")
    assert requirement.url.endswith(f"@{commit}")


def test_reliability_lists_no_known_bug_the_tests_do_not_expect_to_fail() -> None:
    text = (REPO / "docs" / "reliability.md").read_text()
    expected_failures = [
        p for p in (REPO / "tests").glob("test_*.py") if "mark.xfail" in p.read_text()
    ]
    if "known bug" in text or "xfail" in text:
        assert expected_failures, "docs/reliability.md names a known bug no test marks xfail"
