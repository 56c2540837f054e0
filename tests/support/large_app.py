"""A large app (2,000 Deployments using 200 images in 40 ECR repositories) for load tests, and
a smoke measurement of one cold-cache render of it against moto:

    .venv/bin/python -m tests.support.large_app

prints the wall time and peak memory (max RSS) of the `tagpin generate` process.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.renders import HOST, TAGPIN, generate_env

OBJECTS = 2000
REPOSITORIES = 40
TAGS_PER_REPOSITORY = 5  # 40 x 5 = 200 images


def push_images(push: Callable[[str, str], str]) -> dict[str, str]:
    """Push every image; returns image reference → the pinned reference tagpin must print."""
    pinned: dict[str, str] = {}
    for number in range(REPOSITORIES):
        name = f"fleet/service-{number:02d}"
        for tag_number in range(TAGS_PER_REPOSITORY):
            tag = f"1.{tag_number}.0"
            image = f"{HOST}/{name}:{tag}"
            pinned[image] = f"{image}@{push(name, tag)}"
    return pinned


def write_large_app(app: Path, images: list[str]) -> Path:
    """`OBJECTS` Deployments from one template, image n % len(images) in Deployment n."""
    (app / "templates").mkdir(parents=True, exist_ok=True)
    (app / "tagpin.yaml").write_text("{}\n")
    values = {"objects": OBJECTS, "images": sorted(images)}
    (app / "values.yaml").write_text(json.dumps(values, indent=1) + "\n")
    (app / "templates" / "fleet.yaml.j2").write_text(
        "{% for n in range(values.objects) %}\n"
        "---\n"
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n"
        "  name: fleet-{{ '%04d' | format(n) }}\n"
        "  labels: {app: fleet, shard: '{{ n % 16 }}'}\n"
        "spec:\n  replicas: 2\n  selector: {matchLabels: {app: fleet}}\n"
        "  template:\n    metadata: {labels: {app: fleet}}\n    spec:\n      containers:\n"
        "      - name: main\n        image: {{ values.images[n % (values.images | length)] }}\n"
        "        ports: [{containerPort: 8080}]\n"
        "{% endfor %}\n"
    )
    return app


def measure() -> None:
    from tests.support.moto_ecr import CountingMotoServer, MotoEcr

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request else
    server = CountingMotoServer()
    server.start()
    try:
        os.environ.update(
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="eu-west-1",
            AWS_EC2_METADATA_DISABLED="true",
            AWS_ENDPOINT_URL_ECR=server.url,
        )
        moto = MotoEcr(url=server.url, counter=server.counter)
        pinned = push_images(moto.push)
        with tempfile.TemporaryDirectory() as scratch:
            app = write_large_app(Path(scratch) / "app", list(pinned))
            server.counter.clear()
            started = time.monotonic()
            done = subprocess.run(
                [str(TAGPIN), "generate"],
                cwd=app,
                env=generate_env(Path(scratch) / "cache"),
                capture_output=True,
                text=True,
                check=False,
            )
            elapsed = time.monotonic() - started
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # Linux: KiB
        calls = dict(server.counter.snapshot())
        print(
            f"exit={done.returncode} objects={done.stdout.count('kind: Deployment')} "
            f"images={len(pinned)} repositories={REPOSITORIES} ecr_calls={calls} "
            f"wall={elapsed:.2f}s peak_rss={peak_mib:.0f}MiB"
        )
        if done.returncode:
            sys.stderr.write(done.stderr)
    finally:
        server.stop()


if __name__ == "__main__":
    measure()
