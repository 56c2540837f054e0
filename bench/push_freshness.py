"""Push to correct render: from a push event to the first render that pins the pushed digest.

    .venv/bin/python -m bench.push_freshness            # 50 pushes, two replicas
    .venv/bin/python -m bench.push_freshness --pushes 5 # quicker

Real parts, as in tests/e2e/test_push_freshness.py: moto's ECR server, the `tagpin webhook`
process, the Kubernetes API stand-in, and two sidecar replicas (the cmp-server emulator running
`tagpin generate`, each with its own cache directory), warm before every push. Pushes alternate
between a moved mutable tag (`main` of an app matched through `status.summary.images`) and a new
branch build (`pr-42-NNNN` of an app following `^pr-42-` by Image Updater annotations).

For each push it measures the time from sending the event to the end of replica a's first render
that shows the new digest (the event's acceptance, the webhook's patch and one `tagpin generate`),
counts the ECR calls each replica's first render made, and renders once more on each replica to
check that the caches answer again (zero ECR calls).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cmp.registry.pushes import PUSHES_ANNOTATION, parse_record
from tests.support import push_fleet
from tests.support.cmpserver import AppSpec, CmpServer
from tests.support.fake_kube import FakeKube, serve, write_kubeconfig
from tests.support.moto_ecr import REGION, CountingMotoServer
from tests.support.push_fleet import (
    HOST,
    Webhook,
    add_applications,
    manifest,
    running_webhook,
    write_gitops,
)

SECRET = "bench-push-freshness-" + "0" * 16
APPS = {"api": ("shop/api", "main"), "web-staging": ("shop/web", "pr-42-0000")}


@dataclass
class Result:
    latencies_ms: list[float] = field(default_factory=list)
    patch_ms: list[float] = field(default_factory=list)
    warm_ms: list[float] = field(default_factory=list)  # replica a's next render, no push
    calls: dict[str, list[int]] = field(default_factory=lambda: {"a": [], "b": []})
    warm_calls: int = 0
    wrong: int = 0


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


class Ecr:
    def __init__(self, url: str) -> None:
        import boto3  # type: ignore[import-untyped,unused-ignore]

        self.client = boto3.client(
            "ecr",
            region_name=REGION,
            endpoint_url=url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def push(self, repository: str, tag: str, seed: str) -> str:
        import hashlib

        with contextlib.suppress(self.client.exceptions.RepositoryAlreadyExistsException):
            self.client.create_repository(repositoryName=repository)
        body = manifest(seed)
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        self.client.put_image(
            repositoryName=repository, imageManifest=body.decode(), imageDigest=digest, imageTag=tag
        )
        return digest


def replica(workdir: Path, name: str, kubeconfig: Path, moto_url: str) -> CmpServer:
    aws_env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(workdir / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(workdir / "no-aws-credentials"),
        "AWS_ENDPOINT_URL_ECR": moto_url,
    }
    return push_fleet.replica(workdir, name, kubeconfig, aws_env)


def image(server: CmpServer, root: Path, app: str) -> str:
    result = server.generate(
        root, AppSpec(name=app, source_path=f"apps/{app}", plugin={"name": "tagpin"})
    )
    if not result.ok:
        raise RuntimeError((result.error or "") + result.stderr)
    found: str = result.objects[0]["spec"]["template"]["spec"]["containers"][0]["image"]
    return found


def measure(pushes: int) -> Result:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    result = Result()
    with tempfile.TemporaryDirectory(prefix="tagpin-bench-push-") as temp:
        workdir = Path(temp)
        moto = CountingMotoServer()
        moto.start()
        fake = FakeKube()
        kube_server = serve(fake)
        try:
            kubeconfig = write_kubeconfig(workdir / "kubeconfig", fake.url, {"token": fake.token})
            add_applications(fake, f"{HOST}/shop/web", "pr-42-0000", f"{HOST}/shop/api")
            ecr = Ecr(moto.url)
            for repository, tag in APPS.values():
                ecr.push(repository, tag, f"{repository}:{tag}:0")
            images = {app: f"{HOST}/{repository}:{tag}" for app, (repository, tag) in APPS.items()}
            root = write_gitops(workdir / "gitops", images)
            replicas = {n: replica(workdir, n, kubeconfig, moto.url) for n in ("a", "b")}
            with running_webhook(kubeconfig, workdir, SECRET) as webhook:
                for server in replicas.values():  # warm both
                    for app in APPS:
                        image(server, root, app)
                for n in range(1, pushes + 1):
                    one_push(n, ecr, moto, fake, webhook, root, replicas, result)
        finally:
            kube_server.shutdown()
            kube_server.server_close()
            moto.stop()
    return result


def one_push(
    n: int,
    ecr: Ecr,
    moto: CountingMotoServer,
    fake: FakeKube,
    webhook: Webhook,
    root: Path,
    replicas: dict[str, CmpServer],
    result: Result,
) -> None:
    app = "api" if n % 2 else "web-staging"
    repository = APPS[app][0]
    tag = "main" if app == "api" else f"pr-42-{n:04d}"
    digest = ecr.push(repository, tag, f"{repository}:{tag}:{n}")
    expected = f"{HOST}/{repository}:{tag}@{digest}"
    send = webhook.generic if n % 4 < 2 else webhook.eventbridge  # both endpoints
    started = time.perf_counter()
    send(repository, tag, digest)
    while True:
        annotations = fake.applications[("argocd", app)]["metadata"]["annotations"]
        text = annotations.get(PUSHES_ANNOTATION)
        if text and parse_record(text).pushes[f"{HOST}/{repository}"].digest == digest:
            break
        time.sleep(0.001)
    patched = time.perf_counter()
    for name, server in replicas.items():
        moto.counter.clear()
        shown = image(server, root, app)
        if name == "a":
            result.latencies_ms.append((time.perf_counter() - started) * 1000)
            result.patch_ms.append((patched - started) * 1000)
        result.calls[name].append(sum(moto.counter.snapshot().values()))
        result.wrong += shown != expected
    moto.counter.clear()
    for name, server in replicas.items():
        started = time.perf_counter()
        result.wrong += image(server, root, app) != expected
        if name == "a":
            result.warm_ms.append((time.perf_counter() - started) * 1000)
    result.warm_calls += sum(moto.counter.snapshot().values())


def table(result: Result) -> str:
    lines = [
        f"{len(result.latencies_ms)} pushes, 2 replicas; {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} CPUs",
        "",
        "| measure | p50 | p95 | max |",
        "|---|---:|---:|---:|",
    ]
    for label, values in (
        ("event sent → patch seen (ms)", result.patch_ms),
        ("event sent → first render shows the digest (ms)", result.latencies_ms),
        ("the next render, no push: cache only (ms)", result.warm_ms),
    ):
        lines.append(
            f"| {label} | {percentile(values, 0.5):.0f} | "
            f"{percentile(values, 0.95):.0f} | {max(values):.0f} |"
        )
    for name, calls in result.calls.items():
        lines.append(
            f"| ECR calls, replica {name}'s first render after a push | "
            f"{percentile(calls, 0.5):.0f} | {percentile(calls, 0.95):.0f} | "
            f"{max(calls)} |"
        )
    lines.append("")
    lines.append(
        f"renders showing a wrong image: {result.wrong}; ECR calls by the renders "
        f"after the first (both replicas, all pushes): {result.warm_calls}"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pushes", type=int, default=50)
    args = parser.parse_args(argv)
    result = measure(args.pushes)
    print(table(result))
    return 1 if result.wrong or result.warm_calls else 0


if __name__ == "__main__":
    sys.exit(main())
