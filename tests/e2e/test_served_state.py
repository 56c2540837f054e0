"""What a render server keeps between renders, and what it must not.

It keeps what is expensive and the same for every render: imported modules and botocore's
parsed ECR models (cmp.registry.ecr.preload_models). It keeps no render's state: every worker
is forked from a server that has rendered nothing but its built-in warm-up app, and reads its
credentials, settings and the live Application from what its own request brings. Real parts:
the render server as `auto` starts it (a scrubbed environment), moto's ECR over HTTP, which
records the access key that signed each call, and the Kubernetes API stand-in.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cmp.registry.pushes import PUSHES_ANNOTATION, Push, PushRecord, format_record
from tests.support.apptree import build_tree, run_cli
from tests.support.fake_kube import FakeKube
from tests.support.moto_ecr import MotoEcr
from tests.support.push_fleet import HOST, PREFIX, render_server, wait_until

WEB, API = f"{HOST}/shop/web", f"{HOST}/shop/api"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Path]:
    """A render server started as `auto` starts one: PATH and HOME, nothing of AWS."""
    directory = tmp_path / "server"
    directory.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path / "server-home")}
    with render_server(directory, env) as socket:
        yield socket


def write_app(root: Path, name: str, image: str) -> None:
    build_tree(
        root / "apps" / name,
        {
            "tagpin.yaml": "{}\n",
            "templates/deploy.yaml": "apiVersion: apps/v1\nkind: Deployment\n"
            f"metadata: {{name: {name}}}\nspec:\n  template:\n    spec:\n      containers:\n"
            f"      - {{name: {name}, image: '{image}'}}\n",
        },
    )
    (root / ".git").mkdir(exist_ok=True)


def ecr_env(moto_ecr: MotoEcr, tmp_path: Path) -> dict[str, str]:
    """How the sidecar reaches ECR, minus the credentials (each test brings its own)."""
    return {
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL_ECR": moto_ecr.url,
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
    }


def generate(root: Path, name: str, server: Path, env: dict[str, str]) -> tuple[bytes, str]:
    done = run_cli(
        ["generate"],
        cwd=root / "apps" / name,
        env={
            "ARGOCD_APP_NAME": name,
            "ARGOCD_APP_NAMESPACE": "shop",
            "ARGOCD_APP_SOURCE_PATH": f"apps/{name}",
            "TAGPIN_RENDER_SERVER": "on",
            "TAGPIN_RENDER_SERVER_SOCKET": str(server),
            **env,
        },
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout, done.stderr.decode()


def served_renders(server: Path) -> int:
    log = (server.parent / "server.log").read_text()
    return sum(1 for line in log.splitlines() if " worker " in line and " exit 0 after " in line)


# A credential_process (AWS config) that hands out the key in KEYS, expiring in a minute: botocore
# holds it as refreshable credentials that are due for a refresh.
CREDENTIAL_PROCESS = """\
import datetime, json, pathlib, sys
key = pathlib.Path(sys.argv[1]).read_text().strip()
expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=1)
print(json.dumps({"Version": 1, "AccessKeyId": key, "SecretAccessKey": "secret-" + key,
                  "Expiration": expires.isoformat()}))
"""


@pytest.mark.parametrize("source", ["credential_process", "credentials file"])
def test_a_served_render_after_the_keys_rotated_signs_with_the_new_keys(
    server: Path, moto_ecr: MotoEcr, tmp_path: Path, source: str
) -> None:
    """The server keeps ECR's models, never a session: the render after a rotation (expiring
    keys from a credential_process, or a credentials file rewritten) signs with the new key."""
    digest = moto_ecr.push("shop/web", "main")
    root = tmp_path / "repo"
    write_app(root, "web", f"{WEB}:main")
    env = ecr_env(moto_ecr, tmp_path)
    keys = tmp_path / "keys"
    if source == "credential_process":
        script = tmp_path / "credentials.py"
        script.write_text(CREDENTIAL_PROCESS)
        config = tmp_path / "aws-config"
        config.write_text(f"[default]\ncredential_process = {sys.executable} {script} {keys}\n")
        env["AWS_CONFIG_FILE"] = str(config)
    else:
        env["AWS_SHARED_CREDENTIALS_FILE"] = str(keys)

    def rotate(key: str) -> None:
        if source == "credential_process":
            keys.write_text(key)
        else:
            keys.write_text(f"[default]\naws_access_key_id = {key}\naws_secret_access_key = s\n")

    moto_ecr.reset_calls()
    images = []
    for key in ("AKIAFIRSTKEY", "AKIASECONDKEY"):
        rotate(key)
        output, _ = generate(root, "web", server, env)  # TAGPIN_CACHE=off: every render asks
        images.append(f"{WEB}:main@{digest}" in output.decode())
        assert moto_ecr.counter.access_keys()[-1] == key
    assert images == [True, True]
    keys_seen = moto_ecr.counter.access_keys()
    assert set(keys_seen) == {"AKIAFIRSTKEY", "AKIASECONDKEY"}
    assert keys_seen.index("AKIASECONDKEY") > len(keys_seen) - 1 - keys_seen[::-1].index(
        "AKIAFIRSTKEY"
    ), "the first key signed a call after the rotation"
    wait_until(lambda: served_renders(server) == 2)  # both were served, none in-process


def test_no_render_leaves_push_floors_warnings_or_images_to_the_next(
    server: Path, moto_ecr: MotoEcr, fake_kube: FakeKube, kubeconfig: Path, tmp_path: Path
) -> None:
    """Request 1 (`api`) carries a push record for shop/web in its Application, a warning and
    an image of its own; request 2 (`web`), served next by the same server, must see none of
    them: its cached shop/web digest answers (no ECR call), its stderr is empty, its output
    is what it was before request 1."""
    moto_ecr.push("shop/web", "main")
    moto_ecr.push("shop/api", "v1")
    root = tmp_path / "repo"
    write_app(root, "web", f"{WEB}:main")
    write_app(root, "api", f"{API}:v1")
    fake_kube.add("shop", "web")
    future = time.time() + 3600  # a push no cached answer can have seen
    fake_kube.add(
        "shop",
        "api",
        {
            PUSHES_ANNOTATION: format_record(PushRecord({WEB: Push("main", None, future)})),
            f"{PREFIX}image-list": f"api={API}",
            f"{PREFIX}api.update-strategy": "latest",  # an old name: a warning
        },
    )
    env = {
        **ecr_env(moto_ecr, tmp_path),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "TAGPIN_CACHE": "on",
        "TAGPIN_CACHE_DIR": str(tmp_path / "cache"),
        "TAGPIN_APP_LOOKUP": "on",
        "KUBECONFIG": str(kubeconfig),
        "ARGOCD_NAMESPACE": "shop",
    }
    moto_ecr.reset_calls()
    web_before, _ = generate(root, "web", server, env)
    assert moto_ecr.calls("DescribeImages") == 1  # the cache was empty

    moto_ecr.reset_calls()
    api_output, api_errors = generate(root, "api", server, env)
    assert "latest" in api_errors and API.encode() in api_output  # request 1's own
    asked_for_api = moto_ecr.counts()

    moto_ecr.reset_calls()
    web_after, web_errors = generate(root, "web", server, env)
    assert (web_after, web_errors) == (web_before, "")
    assert API.encode() not in web_after
    assert moto_ecr.counts() == {}, "request 1's push record reached request 2"

    # The control: the same record on web's own Application does make it ask ECR again.
    fake_kube.applications[("shop", "web")]["metadata"]["annotations"][PUSHES_ANNOTATION] = (
        format_record(PushRecord({WEB: Push("main", None, future)}))
    )
    generate(root, "web", server, env)
    assert moto_ecr.calls("DescribeImages") == 1
    assert asked_for_api
    wait_until(lambda: served_renders(server) == 4)


def test_the_server_preloads_the_fleet_cache_client_whatever_its_environment(
    tmp_path: Path,
) -> None:
    """`auto` starts the server with a scrubbed environment (no TAGPIN_REDIS_URL, which Argo CD
    gives the sidecar's renders): it must still import the Redis client, or every render
    answered from Redis pays that import in its worker."""
    probe = (
        "import sys\n"
        "from cmp.server.listener import warm_up\n"
        "warm_up()\n"
        "print('cmp.registry.resp' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (done.returncode, done.stdout) == (0, "True\n"), done.stderr
