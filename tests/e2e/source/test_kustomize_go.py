"""tagpin's kustomize handling against the Go code it must agree with
(tests/support/kustomizego.py): which values kustomize fetches over HTTP (its loader's
IsRemoteFile, on Go's own url.Parse), and kubectl 1.32's errors, printed by a real klog, read
exactly as kubectl 1.37 prints them."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import pytest

from cmp.source.kustomize import is_url, without_log_prefix
from tests.support.apptree import build_tree, run_cli
from tests.support.kustomize import kubectl
from tests.support.kustomizego import build, classify, logged_error


@pytest.fixture(scope="module")
def kustomizego(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("kustomizego"))


URLISH = [
    "http://127.0.0.1:8084/metrics",
    "HTTP://x/y",
    "hTTpS://x",
    "https:x",  # opaque: url.Parse accepts it, kustomize's GET then fails
    "http:",
    "http://x#\n",  # a control byte after the fragment mark passes url.Parse
    "http://x\n",
    " http://x",
    "\thttp://x",
    "ftp://x",
    "file:///etc/passwd",
    "git@github.com:org/repo",
    "github.com/org/repo//dir?ref=v1",
    "1http://x",
    "+http://x",
    "ht-tp://x",
    "ht.tp://x",
    "./http://x",
    "http",
    "",
    "settings.env",
    "http+unix://x",
    "page=http://127.0.0.1/metrics",
    "page=https://x=y",
    "=http://x",
    "a=b=http://x",
    "http://[::1]:8/x",
    "http://x:99999999/",
    "ｈttp://x",  # a full-width letter is no ASCII letter
    "http\u0130://x",
]
# Values url.Parse rejects after reading the scheme (a bad host or escape): kustomize reads
# them as file names, which do not exist; tagpin calls them URLs too.
REJECTED_AFTER_THE_SCHEME = {"http://[::1", "http://x/%zz", "https://a b/"}


def generated_values(count: int) -> list[str]:
    """URL-like strings from fragments Go's scheme rules treat differently (seeded)."""
    rng = random.Random(22)
    pieces = ["http", "HTTPS", "Http", "h", "x", "ps", ":", "//", "/", "=", "k", "#", "?"]
    pieces += ["1", "+", "-", ".", "[::1]", "127.0.0.1", "%", "é", "@", " ", "\t", "\n", "\x7f"]
    return ["".join(rng.choices(pieces, k=rng.randint(1, 7))) for _ in range(count)]


def test_a_value_is_a_url_exactly_when_kustomize_would_fetch_it(kustomizego: Path) -> None:
    """is_url against kustomize's own IsRemoteFile, on the value and after `key=` (the form
    generators/utils.go ParseFileSource splits): it never misses one, and calls nothing else a
    URL but values url.Parse rejects after the scheme."""
    values = [*URLISH, *REJECTED_AFTER_THE_SCHEME, *generated_values(3000)]
    whole = classify(kustomizego, values)
    after_key = classify(kustomizego, [value.partition("=")[2] for value in values])
    go = {v: {a, b} for v, a, b in zip(values, whole, after_key, strict=True)}

    assert [v for v in values if "remote" in go[v] and not is_url(v)] == []
    extra = {v for v in values if is_url(v) and "remote" not in go[v]}
    assert extra >= REJECTED_AFTER_THE_SCHEME
    assert [v for v in extra if "invalid" not in go[v]] == []
    assert {v for v in URLISH if is_url(v)} == {v for v in URLISH if "remote" in go[v]}


ERRORS = [
    "accumulating resources: accumulation err='accumulating resources from 'missing.yaml': "
    "evalsymlink failure on '/r/apps/shop/missing.yaml' : lstat /r/apps/shop/missing.yaml: "
    "no such file or directory'",
    'a "quoted" name, a back\\slash, a\ttab, \x01, é, \u2028 and \U0001f600',
    "trouble configuring builtin PatchTransformer with config: `\npath: missing.yaml\n`: "
    "failed to get the patch file",
]


@pytest.mark.parametrize("error", ERRORS)
def test_klogs_decoration_of_an_error_is_undone(kustomizego: Path, error: str) -> None:
    logged = logged_error(kustomizego, error)
    assert '"command failed" err=' in logged
    assert without_log_prefix(logged) == error


KUBECTL_FAILURES = {
    "one line": "namePrefix: [x]\n",
    "several lines": "patches: [{path: missing-patch.yaml}]\n",
    'a file name with a " and a tab': (
        "configMapGenerator: [{name: s, files: ['mis\"sing\t.txt']}]\n"
    ),
}


@pytest.mark.parametrize("kustomization", KUBECTL_FAILURES.values(), ids=KUBECTL_FAILURES)
def test_kubectl_1_32s_errors_read_as_kubectl_1_37s(
    kustomizego: Path, tmp_path: Path, kustomization: str
) -> None:
    """The same failure, once from the real kubectl 1.37 and once from a kubectl that prints
    kubectl 1.37's error the way kubectl 1.32 does (through klog): tagpin says the same."""
    repo = build_tree(
        tmp_path / "repo",
        {"apps/shop/tagpin.yaml": "kustomize: {}\n", "apps/shop/kustomization.yaml": kustomization},
    )
    (repo / ".git").mkdir()
    app = Path(os.path.realpath(repo / "apps/shop"))
    direct = subprocess.run(
        [kubectl(), "kustomize", str(app)], cwd=repo, capture_output=True, text=True, check=False
    )
    assert direct.returncode == 1 and direct.stderr.startswith("error: ")
    logged = tmp_path / "kubectl-1.32.stderr"
    logged.write_text(logged_error(kustomizego, direct.stderr.removeprefix("error: ").rstrip()))
    old = (
        build_tree(tmp_path / "bin", {"kubectl": f"#!/bin/sh\ncat '{logged}' >&2\nexit 1\n"})
        / "kubectl"
    )
    old.chmod(0o755)

    as_1_37 = run_cli(["render", str(app)], env={"TAGPIN_KUSTOMIZE": kubectl()})
    as_1_32 = run_cli(["render", str(app)], env={"TAGPIN_KUSTOMIZE": str(old)})

    assert as_1_37.returncode == as_1_32.returncode == 5
    assert as_1_32.stdout == b""
    assert as_1_32.stderr == as_1_37.stderr
    assert b"command failed" not in as_1_32.stderr
