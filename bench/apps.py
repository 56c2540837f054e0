"""Synthetic apps for the benchmarks: the example app, large plain-YAML apps, many images.

Each builder writes a small repository under `root` and returns a `BenchApp` saying where the
app is and which ECR images it uses, so the runner can prime the digest cache or push to moto.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ACCOUNT = "123456789012"  # moto's default account, so the same apps work against moto
REGIONS = ("eu-west-1", "us-east-1")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
OBJECTS_PER_FILE = 100


@dataclass(frozen=True)
class Image:
    """One ECR image tag an app uses."""

    region: str
    repository: str
    tag: str

    @property
    def host(self) -> str:
        return f"{ACCOUNT}.dkr.ecr.{self.region}.amazonaws.com"

    @property
    def reference(self) -> str:
        return f"{self.host}/{self.repository}:{self.tag}"

    @property
    def digest(self) -> str:
        """A stable made-up digest for priming the cache (moto computes its own on push)."""
        return "sha256:" + hashlib.sha256(self.reference.encode()).hexdigest()


@dataclass(frozen=True)
class BenchApp:
    name: str
    repo_root: Path
    source_path: str  # ARGOCD_APP_SOURCE_PATH: the app directory relative to repo_root
    objects: int
    images: tuple[Image, ...]

    @property
    def app_dir(self) -> Path:
        return self.repo_root / self.source_path

    @property
    def repositories(self) -> int:
        return len({(image.region, image.repository) for image in self.images})


def example_app(root: Path, *, keep_lock: bool = False) -> BenchApp:
    """The repository's examples/web app. Without its tagpin.lock digests come from the cache."""
    name = "example-lock" if keep_lock else "example"
    repo_root = root / f"{name}-repo"  # each variant its own copy: one keeps the lock
    shutil.rmtree(repo_root, ignore_errors=True)
    shutil.copytree(EXAMPLES, repo_root / "examples")
    if not keep_lock:
        (repo_root / "examples" / "web" / "tagpin.lock").unlink()
    images = (
        Image(REGIONS[0], "shop/web", "v1.4.2"),
        Image(REGIONS[0], "shop/worker", "2024.11.3"),
    )
    return BenchApp(name, repo_root, "examples/web", 4, images)


def large_app(root: Path, objects: int, *, repositories: int = 20, tags: int = 5) -> BenchApp:
    """`objects` plain-YAML objects (no .j2), a quarter of them Deployments using ECR images.

    The objects carry what makes canonical YAML work: strings that need quoting, block
    literals, nested resources, labels and annotations.
    """
    images = [
        Image(REGIONS[i % len(REGIONS)], f"team{i}/svc{i}", f"v1.{t}.0")
        for i in range(repositories)
        for t in range(tags)
    ]
    documents = [_object(index, images[index % len(images)]) for index in range(objects)]
    used = {images[index % len(images)] for index in range(0, objects, 4)}
    repo_root = _write_app(root / f"large-{objects}", documents)
    return BenchApp(
        f"large-{objects}",
        repo_root,
        "apps/bench",
        objects,
        tuple(sorted(used, key=_image_key)),
    )


def many_images_app(root: Path, *, images: int = 200, repositories: int = 40) -> BenchApp:
    """One Deployment per image, `images` tags spread over `repositories` repositories in
    two regions: what a cold render has to ask ECR about."""
    per_repo = max(1, images // repositories)
    wanted = [
        Image(REGIONS[r % len(REGIONS)], f"fleet/app{r}", f"2025.{t}.{r}")
        for r in range(repositories)
        for t in range(per_repo)
    ][:images]
    documents = [_deployment(index, image) for index, image in enumerate(wanted)]
    repo_root = _write_app(root / f"images-{images}", documents)
    return BenchApp(f"images-{images}", repo_root, "apps/bench", len(documents), tuple(wanted))


def kustomize_app(root: Path, objects: int = 100) -> BenchApp:
    """A Kustomize app (`kustomize: {}`): a base of `objects` plain objects and an overlay
    with images: newTag, namePrefix, commonLabels and a configMapGenerator."""
    images = [
        Image(REGIONS[i % len(REGIONS)], f"team{i}/svc{i}", f"v1.{t}.0")
        for i in range(20)
        for t in range(5)
    ]
    documents = [_object(index, images[index % len(images)]) for index in range(objects)]
    bumped = images[0]
    new_tag = Image(bumped.region, bumped.repository, "v2.0.0")
    used = {images[index % len(images)] for index in range(0, objects, 4)}
    used = {image for image in used if image.repository != bumped.repository} | {new_tag}
    repo_root = root / f"kustomize-{objects}"
    shutil.rmtree(repo_root, ignore_errors=True)
    base = repo_root / "bases" / "bench"
    base.mkdir(parents=True)
    (base / "resources.yaml").write_text(_stream(documents))
    (base / "kustomization.yaml").write_text("resources: [resources.yaml]\n")
    app_dir = repo_root / "apps" / "bench"
    app_dir.mkdir(parents=True)
    (app_dir / "tagpin.yaml").write_text("kustomize: {}\n")
    (app_dir / "kustomization.yaml").write_text(
        "resources: [../../bases/bench]\nnamePrefix: prod-\nlabels:\n- pairs: {tier: bench}\n"
        f"images:\n- name: {bumped.host}/{bumped.repository}\n  newTag: {new_tag.tag}\n"
        "configMapGenerator:\n- name: settings\n  literals: [MODE=prod, LEVEL=info]\n"
    )
    return BenchApp(
        f"kustomize-{objects}",
        repo_root,
        "apps/bench",
        objects + 1,
        tuple(sorted(used, key=_image_key)),
    )


def _image_key(image: Image) -> tuple[str, str, str]:
    return image.region, image.repository, image.tag


def _write_app(repo_root: Path, documents: Sequence[str]) -> Path:
    shutil.rmtree(repo_root, ignore_errors=True)
    app_dir = repo_root / "apps" / "bench"
    (app_dir / "templates").mkdir(parents=True)
    (app_dir / "tagpin.yaml").write_text("{}\n")
    for number, start in enumerate(range(0, len(documents), OBJECTS_PER_FILE)):
        chunk = documents[start : start + OBJECTS_PER_FILE]
        (app_dir / "templates" / f"part-{number:04d}.yaml").write_text(_stream(chunk))
    return repo_root


def _stream(documents: Iterable[str]) -> str:
    return "".join(f"---\n{document}" for document in documents)


def _object(index: int, image: Image) -> str:
    kind = index % 4
    if kind == 0:
        return _deployment(index, image)
    if kind == 1:
        return _service(index)
    if kind == 2:
        return _config_map(index)
    return _service_account(index)


def _labels(index: int, indent: int) -> str:
    pad = " " * indent
    return (
        f"{pad}app.kubernetes.io/name: svc-{index}\n"
        f"{pad}app.kubernetes.io/part-of: bench\n"
        f'{pad}app.kubernetes.io/version: "1.10"\n'
        f"{pad}team: team-{index % 7}\n"
    )


def _deployment(index: int, image: Image) -> str:
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: svc-{index}
  namespace: bench
  labels:
{_labels(index, 4)}  annotations:
    deployment.kubernetes.io/revision: "3"
spec:
  replicas: {index % 5 + 1}
  revisionHistoryLimit: 3
  selector:
    matchLabels:
      app.kubernetes.io/name: svc-{index}
  template:
    metadata:
      labels:
{_labels(index, 8)}    spec:
      serviceAccountName: svc-{index}
      containers:
        - name: app
          image: {image.reference}
          imagePullPolicy: IfNotPresent
          args: ["--port=8080", "--log-level=info"]
          env:
            - {{name: FEATURE_FLAG, value: "on"}}
            - {{name: FILE_MODE, value: "0755"}}
            - {{name: RATIO, value: "1.5"}}
          ports:
            - {{containerPort: 8080, name: http, protocol: TCP}}
          readinessProbe:
            httpGet: {{path: /healthz, port: http}}
            periodSeconds: 10
          resources:
            requests: {{cpu: 100m, memory: 128Mi}}
            limits: {{memory: 256Mi}}
          securityContext:
            runAsNonRoot: true
            readOnlyRootFilesystem: true
            allowPrivilegeEscalation: false
"""


def _service(index: int) -> str:
    return f"""apiVersion: v1
kind: Service
metadata:
  name: svc-{index}
  namespace: bench
  labels:
{_labels(index, 4)}spec:
  type: ClusterIP
  selector:
    app.kubernetes.io/name: svc-{index}
  ports:
    - {{name: http, port: 80, targetPort: 8080, protocol: TCP}}
"""


def _config_map(index: int) -> str:
    return f"""apiVersion: v1
kind: ConfigMap
metadata:
  name: config-{index}
  namespace: bench
  labels:
{_labels(index, 4)}data:
  ENABLED: "yes"
  LEVEL: "{index}"
  settings.ini: |
    [server]
    port = 8080
    workers = {index % 8 + 1}
    [cache]
    ttl = 300s
"""


def _service_account(index: int) -> str:
    return f"""apiVersion: v1
kind: ServiceAccount
metadata:
  name: sa-{index}
  namespace: bench
  labels:
{_labels(index, 4)}  annotations:
    eks.amazonaws.com/role-arn: arn:aws:iam::{ACCOUNT}:role/svc-{index}
automountServiceAccountToken: false
"""
