"""The live Application lookup (TAGPIN_APP_LOOKUP): a Kubernetes API stand-in for the bench."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from bench.model import Workspace


@contextlib.contextmanager
def kube_api(workspace: Workspace) -> Iterator[dict[str, str]]:
    """A Kubernetes API over TLS on 127.0.0.1 holding the bench Application, and the settings
    that make a render read it, as the sidecar does on every render that pins an ECR image."""
    from tests.support.fake_kube import FakeKube, make_pki, serve, server_tls, write_kubeconfig

    (workspace.root / "pki").mkdir(exist_ok=True)
    pki = make_pki(workspace.root / "pki")
    fake = FakeKube()
    fake.add("argocd", "bench")
    server = serve(fake, tls=server_tls(pki))
    kubeconfig = write_kubeconfig(
        workspace.root / "kubeconfig",
        fake.url,
        {"token": fake.token},
        {"certificate-authority": str(pki.ca_cert)},
    )
    try:
        yield {
            "TAGPIN_APP_LOOKUP": "on",
            "KUBECONFIG": str(kubeconfig),
            "ARGOCD_NAMESPACE": "argocd",
        }
    finally:
        server.shutdown()
        server.server_close()
        if not any(r.path.endswith("/applications/bench") for r in fake.requests):
            raise RuntimeError("no render read the Application: the lookup case measured nothing")
