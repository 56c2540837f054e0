"""Errors and warnings that point at the right fix (issue: what a new user trips on), through
the CLI: numbers read from YAML as tags, no AWS credentials off the sidecar, no .git above the
app, ECR Public, an image-list entry naming no image, branch deploys under a strict lock."""

from __future__ import annotations

import os
from pathlib import Path

from cmp.errors import ExitStatus
from tests.support.cli import tagpin
from tests.support.moto_ecr import ACCOUNT, REGION

HOST = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
DIGEST = "sha256:" + "1" * 64
PR_DIGEST = "sha256:" + "2" * 64
DEPLOYMENT = (
    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  template:\n"
    "    spec:\n      containers:\n      - name: {name}\n"
    "        image: {{{{ values.{name}.repository }}}}:{{{{ values.{name}.tag }}}}\n"
)


def write_app(root: Path, values: str, files: dict[str, str] | None = None) -> Path:
    app = root / "app"
    (app / "templates").mkdir(parents=True)
    (app / "tagpin.yaml").write_text("{}\n")
    (app / "values.yaml").write_text(values)
    for name, text in (files or {"templates/web.yaml.j2": DEPLOYMENT.format(name="web")}).items():
        (app / name).write_text(text)
    return app


def lock(*images: tuple[str, str]) -> str:
    listed = "".join(f"- digest: {digest}\n  image: {image}\n" for image, digest in images)
    return f"apiVersion: tagpin.dev/v1\nkind: ImageLock\nimages:\n{listed}"


def offline_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TAGPIN_", "ARGOCD_"))}
    env.update(
        AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        TAGPIN_ECR_MAX_ATTEMPTS="1",
        TAGPIN_CACHE_DIR=str(tmp_path / "cache"),
        TAGPIN_APP_LOOKUP="off",
        **extra,
    )
    return env


def test_a_tag_yaml_read_as_a_number_says_so(tmp_path: Path, moto_ecr) -> None:
    digest = moto_ecr.push("shop/web", "1.10")
    app = write_app(tmp_path, f"web:\n  repository: {HOST}/shop/web\n  tag: 1.10\n")
    env = dict(os.environ, TAGPIN_CACHE_DIR=str(tmp_path / "cache"), TAGPIN_APP_LOOKUP="off")
    said = "values.yaml:3: tag: 1.10 is read by YAML as the number 1.1, so Deployment/web"
    done = tagpin("render", str(app), env=env)
    assert done.returncode == ExitStatus.CONFIG and done.stdout == ""
    assert said in done.stderr and "write tag: '1.10' (quoted, it stays text)" in done.stderr

    locking = tagpin("lock", str(app), env=env)  # `tagpin lock` renders the same values
    assert locking.returncode == ExitStatus.CONFIG and said in locking.stderr
    assert not (app / "tagpin.lock").exists()

    (app / "values.yaml").write_text(f"web:\n  repository: {HOST}/shop/web\n  tag: '1.10'\n")
    quoted = tagpin("render", str(app), env=env)
    assert quoted.returncode == 0, quoted.stderr
    assert f"image: {HOST}/shop/web:1.10@{digest}" in quoted.stdout


def test_no_aws_credentials_offers_the_lock_and_digests_once(tmp_path: Path) -> None:
    files = {f"templates/{n}.yaml.j2": DEPLOYMENT.format(name=n) for n in ("web", "api")}
    app = write_app(
        tmp_path,
        f"web:\n  repository: {HOST}/shop/web\n  tag: v1\n"
        f"api:\n  repository: {HOST}/shop/api\n  tag: v1\n",
        files,
    )
    done = tagpin("render", str(app), env=offline_env(tmp_path))
    assert done.returncode == ExitStatus.REGISTRY and done.stdout == ""
    assert f"no AWS credentials found to ask ECR about {HOST}/shop/api" in done.stderr
    assert f"no AWS credentials found to ask ECR about {HOST}/shop/web" in done.stderr
    assert done.stderr.count("outside the sidecar") == 1  # one hint for both repositories
    for remedy in ("tagpin.lock", "TAGPIN_LOCK=strict", "tagpin render --digests FILE"):
        assert remedy in done.stderr


def test_outside_a_git_repository_says_repo_root_once(tmp_path: Path) -> None:
    include = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {n}\n{{% include 'lib/x.j2' %}}"
    app = write_app(
        tmp_path / "checkout" / "apps",
        "{}\n",
        {f"templates/{n}.yaml.j2": include.format(n=n) for n in ("a", "b", "c")},
    )
    (tmp_path / "checkout" / "lib").mkdir()
    (tmp_path / "checkout" / "lib" / "x.j2").write_text("data:\n  k: v\n")
    done = tagpin("render", str(app), env=offline_env(tmp_path))
    assert done.returncode == ExitStatus.TEMPLATE and done.stdout == ""
    assert done.stderr.count("template 'lib/x.j2' not found") == 3
    assert done.stderr.count("pass --repo-root") == 1
    rooted = tagpin(
        "render", str(app), "--repo-root", str(tmp_path / "checkout"), env=offline_env(tmp_path)
    )
    assert rooted.returncode == 0, rooted.stderr
    (tmp_path / "checkout" / ".git").mkdir()  # inside a repository the hint would mislead
    (tmp_path / "checkout" / "lib" / "x.j2").unlink()
    missing = tagpin("render", str(app), env=offline_env(tmp_path))
    assert missing.returncode == ExitStatus.TEMPLATE
    assert "--repo-root" not in missing.stderr


def test_ecr_public_is_left_as_written_by_design(tmp_path: Path) -> None:
    app = write_app(tmp_path, "web:\n  repository: public.ecr.aws/nginx/nginx\n  tag: '1.27'\n")
    kept = tagpin("render", str(app), env=offline_env(tmp_path))
    assert kept.returncode == 0, kept.stderr
    assert "image: public.ecr.aws/nginx/nginx:1.27\n" in kept.stdout
    (app / "tagpin.yaml").write_text("images:\n  requireDigests: true\n")
    done = tagpin("render", str(app), env=offline_env(tmp_path))
    assert done.returncode == ExitStatus.IMAGE
    assert "is in ECR Public, which tagpin leaves as written by design" in done.stderr
    assert "is not in ECR" not in done.stderr


def test_an_image_list_entry_naming_no_image_is_a_warning(tmp_path: Path) -> None:
    app = write_app(tmp_path, f"web:\n  repository: {HOST}/shop/web\n  tag: v1\n")
    digests = tmp_path / "digests.lock"
    digests.write_text(lock((f"{HOST}/shop/web:v1", DIGEST), (f"{HOST}/shop/web:pr-1", PR_DIGEST)))
    done = tagpin(
        "render",
        str(app),
        "--digests",
        str(digests),
        "--image-updater",
        f"image-list=web={HOST}/shop/web,api={HOST}/shop/apii",
        "--image-updater",
        "web.allow-tags=regexp:^pr-",
        "--image-updater",
        "update-strategy=alphabetical",
        env=offline_env(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    assert f"{HOST}/shop/web:pr-1@{PR_DIGEST}" in done.stdout
    assert (
        f"tagpin: warning: image-updater alias api, strategy alphabetical, from parameter: "
        f"image-list names {HOST}/shop/apii, which no ECR image"
    ) in done.stderr
    assert "alias web" not in done.stderr.split("warning:", 1)[1].split("\n", 1)[0]


def test_a_branch_deploy_under_a_strict_lock_says_where_candidates_came_from(
    tmp_path: Path,
) -> None:
    app = write_app(tmp_path, f"web:\n  repository: {HOST}/shop/web\n  tag: v1\n")
    (app / "tagpin.lock").write_text(lock((f"{HOST}/shop/web:v1", DIGEST)))
    updater = (
        "--image-updater",
        f"image-list=web={HOST}/shop/web",
        "--image-updater",
        "web.allow-tags=regexp:^pr-42-",
    )
    done = tagpin("render", str(app), *updater, env=offline_env(tmp_path, TAGPIN_LOCK="strict"))
    assert done.returncode == ExitStatus.RESOLVE and done.stdout == ""
    assert "no tag satisfies image-updater alias web" in done.stderr
    assert (
        "the candidate tags came from tagpin.lock (TAGPIN_LOCK=strict) only: ECR is never "
        "listed there"
    ) in done.stderr
