"""Apps full of ECR images and `tagpin generate` processes run the way Argo CD's cmp-server runs
them (working directory = the app, ARGOCD_* variables), for load and fault tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cmp.registry.cache import CachedRepository, DiskCache
from cmp.registry.names import EcrRegistry, EcrRepository
from tests.support.cli import tagpin
from tests.support.moto_ecr import ACCOUNT, REGION

HOST = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
TAGPIN = Path(sys.executable).with_name("tagpin")
ARGOCD_DEADLINE = 60  # seconds: Argo CD's default repo-server/cmp-server request timeout

# Runs tagpin in-process, then reports on stderr whether boto3/botocore were imported at all.
BOTO_PROBE = (
    "import sys\n"
    "from cmp.cli import main\n"
    "try:\n    main(sys.argv[1:])\n"
    "except SystemExit as exit:\n    code = exit.code\n"
    "loaded = sorted(m for m in ('boto3', 'botocore') if m in sys.modules)\n"
    "sys.stderr.write('\\nIMPORTED=' + ','.join(loaded) + '\\n')\n"
    "sys.exit(code)\n"
)

# Credentials no message may ever show; moto and the scripted ECR accept any.
ACCESS_KEY_ID = "AKIATAGPINTESTKEY042"
SECRET_ACCESS_KEY = "tagpin/Secret+Key/must-never-appear-0123456789"


def repository(name: str) -> EcrRepository:
    registry = EcrRegistry(HOST, ACCOUNT, REGION, fips=False, dualstack=False)
    return EcrRepository(registry=registry, name=name)


def write_app(app: Path, images: Mapping[str, str], *, replicas: int = 1) -> Path:
    """An app with `replicas` Deployments per image name → reference, rendered by Jinja."""
    (app / "templates").mkdir(parents=True, exist_ok=True)
    (app / "tagpin.yaml").write_text("{}\n")
    values = {"replicas": replicas, "images": dict(images)}
    (app / "values.yaml").write_text(json.dumps(values, indent=1) + "\n")  # JSON is YAML
    (app / "templates" / "workloads.yaml.j2").write_text(
        "{% for name, image in values.images | dictsort %}{% for n in range(values.replicas) %}\n"
        "---\n"
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ name }}-{{ n }}\nspec:\n"
        "  template:\n    spec:\n      containers:\n      - name: main\n"
        "        image: {{ image }}\n"
        "{% endfor %}{% endfor %}\n"
    )
    return app


def generate_env(cache_dir: Path | None, **extra: str) -> dict[str, str]:
    """The sidecar's environment for one render: the test's AWS settings plus ARGOCD_* ones."""
    env = dict(os.environ)
    env.update(
        ARGOCD_APP_NAME="shop",
        ARGOCD_APP_NAMESPACE="shop",
        ARGOCD_APP_PROJECT_NAME="default",
        ARGOCD_APP_REVISION="0123456789abcdef0123456789abcdef01234567",
        KUBE_VERSION="1.31.0",
        TAGPIN_APP_LOOKUP="off",
        AWS_ACCESS_KEY_ID=ACCESS_KEY_ID,
        AWS_SECRET_ACCESS_KEY=SECRET_ACCESS_KEY,
    )
    if cache_dir is None:
        env["TAGPIN_CACHE"] = "off"
    else:
        env["TAGPIN_CACHE_DIR"] = str(cache_dir)
    env.update(extra)
    return env


def generate(
    app: Path, env: Mapping[str, str], probe: str | None = None
) -> subprocess.CompletedProcess[str]:
    """One `tagpin generate`; a render still running at Argo CD's deadline fails the test."""
    return tagpin("generate", cwd=app, env=env, timeout=ARGOCD_DEADLINE, probe=probe)


def start_generate(app: Path, env: Mapping[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(TAGPIN), "generate"],
        cwd=app,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def images_in(output: str) -> list[str]:
    return [line.split("image:", 1)[1].strip() for line in output.splitlines() if "image:" in line]


def warnings_in(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("tagpin: warning:")]


def assert_no_credentials(*outputs: str) -> None:
    for output in outputs:
        assert SECRET_ACCESS_KEY not in output
        assert ACCESS_KEY_ID not in output


def cache_files(root: Path) -> dict[Path, Any]:
    """Every digest cache file under `root`, parsed as JSON (raises on a torn or corrupt one);
    not the rendered templates kept beside them (cmp/source/rendercache.py)."""
    return {
        path: json.loads(path.read_bytes())
        for path in sorted(root.rglob("*.json"))
        if not path.name.endswith(".rendered.json")
    }


def cached(root: Path, name: str) -> CachedRepository | None:
    """What a later render would trust for repository `name` (None: nothing, or corrupt)."""
    return DiskCache(root).read(repository(name))


def leftover_temp_files(root: Path) -> list[Path]:
    return sorted(root.rglob(".*.tmp"))
