# syntax=docker/dockerfile:1
# tagpin: the Argo CD CMP sidecar image (deploy/ runs it next to argocd-repo-server).
#   docker build -t tagpin:0.1.0 --build-arg REVISION=$(git rev-parse HEAD) \
#     --build-arg SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) .
# The image carries plugin.yaml; argocd-cmp-server comes from the repo-server's copyutil init
# container at run time. Contract checked against deploy/ by tests/e2e/test_deploy.py.

# Base pinned by digest for reproducible builds. This is the digest of
# python:3.11-slim-bookworm as published on Docker Hub, recorded from public sources in 2026-08;
# re-check it (docker buildx imagetools inspect python:3.11-slim-bookworm) when you bump it.
# Both stages must use the same base: the venv's python is a symlink into it.
FROM python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91 AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
# Reproducible builds: when set, py_compile writes hash-based .pyc files and the wheel build
# uses fixed timestamps instead of the build time.
ARG SOURCE_DATE_EPOCH

WORKDIR /src
RUN python -m venv /opt/tagpin
COPY pyproject.toml constraints.txt README.md ./
COPY cmp/ cmp/
# A regular (not editable) install: the final stage needs only /opt/tagpin, not /src.
# pip/setuptools are dropped afterwards; nothing installs packages at run time.
# Bytecode is compiled once here as unchecked-hash .pyc files: the root filesystem is read-only,
# so sources never change under them, and every render skips reading and hashing ~150 sources.
RUN /opt/tagpin/bin/pip install -c constraints.txt . \
 && /opt/tagpin/bin/pip uninstall --yes pip setuptools \
 && /opt/tagpin/bin/python -m compileall -q --invalidation-mode unchecked-hash /opt/tagpin/lib


# kustomize for Kustomize apps (docs/kustomize.md). BuildKit checks the release tarball against
# the sha256 Argo CD records for it (argoproj/argo-cd hack/installers/checksums/
# kustomize_5.8.1_linux_amd64.tar.gz.sha256); 5.8.1 is also the kustomize kubectl 1.37 embeds,
# which the tests run. linux/amd64 only: an arm64 image needs kustomize_v5.8.1_linux_arm64.tar.gz,
# sha256 0953ea3e476f66d6ddfcd911d750f5167b9365aa9491b2326398e289fef2c142 (same source).
FROM python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91 AS kustomize
ADD --checksum=sha256:029a7f0f4e1932c52a0476cf02a0fd855c0bb85694b82c338fc648dcb53a819d \
    https://github.com/kubernetes-sigs/kustomize/releases/download/kustomize%2Fv5.8.1/kustomize_v5.8.1_linux_amd64.tar.gz \
    /tmp/kustomize.tar.gz
RUN tar -xzf /tmp/kustomize.tar.gz -C /usr/local/bin kustomize \
 && /usr/local/bin/kustomize version

FROM python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="tagpin" \
      org.opencontainers.image.description="Argo CD Config Management Plugin: renders YAML/Jinja2 apps and pins every ECR image tag to its digest" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-bookworm"

COPY --from=builder /opt/tagpin /opt/tagpin
COPY --from=kustomize /usr/local/bin/kustomize /usr/local/bin/kustomize
COPY plugin.yaml /home/argocd/cmp-server/config/plugin.yaml

# The root filesystem is read-only in the pod; /tmp is the only writable place (the sidecar's
# cmp-tmp emptyDir), so every home, cache and work directory lives under it. The first render
# starts a render server there (TAGPIN_RENDER_SERVER=auto, docs/server.md); later renders are
# answered by its warm workers.
ENV PATH=/opt/tagpin/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    TAGPIN_CACHE_DIR=/tmp/tagpin-cache \
    TAGPIN_RENDER_SERVER=auto

# UID 999 is what Argo CD's cmp-server expects (the argocd user of its own image); no passwd
# entry is needed because nothing looks the user up and HOME is set above.
USER 999:999
WORKDIR /tmp
# Mounted from the repo-server's var-files volume; deploy/ also sets it as the container command.
# To try the CLI alone: docker run --rm --entrypoint tagpin IMAGE --help
ENTRYPOINT ["/var/run/argocd/argocd-cmp-server"]
