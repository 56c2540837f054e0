# syntax=docker/dockerfile:1
# tagpin: the Argo CD CMP sidecar image (deploy/ runs it next to argocd-repo-server).
#   docker build -t tagpin:0.1.0 --build-arg REVISION=$(git rev-parse HEAD) \
#     --build-arg SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) .
# Add --platform linux/arm64 for Graviton nodes. Podman, offline builds and the differences
# between the image CI builds and this default one: docs/install.md, "Build the image".
# The image carries plugin.yaml; argocd-cmp-server comes from the repo-server's copyutil init
# container at run time. Contract checked against deploy/ by tests/e2e/test_deploy.py, and on the
# built image by tests/e2e/image/.

# The base: python:3.11-slim-bookworm pinned by digest for reproducible builds (the multi-arch
# index digest as published on Docker Hub, recorded from public sources in 2026-08; re-check it
# with `docker buildx imagetools inspect python:3.11-slim-bookworm` when you bump it). CI, which
# reaches no registry, passes a Debian bookworm base made by mmdebstrap with the same Python 3.11.
# Every stage uses the same base: the venv's python is a symlink into it.
ARG BASE=docker.io/library/python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

FROM ${BASE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
# Reproducible builds: the wheel build uses it for fixed timestamps instead of the build time.
ARG SOURCE_DATE_EPOCH

WORKDIR /src
RUN python -m venv /opt/tagpin
COPY pyproject.toml constraints.txt README.md ./
COPY cmp/ cmp/
# A regular (not editable) install: the final stage needs only /opt/tagpin, not /src.
# pip/setuptools are dropped afterwards; nothing installs packages at run time.
# Bytecode is compiled once here as unchecked-hash .pyc files (pip compiles none; -f replaces the
# timestamped ones the install's own imports left): they hold no timestamp, and with a fixed
# hash seed set constants are written in one order, so two builds give the same bytes. The root
# filesystem is read-only, so sources never change under them, and every render skips reading
# and hashing ~150 sources. pip's `tagpin` script imports `re` before anything runs; it is
# replaced by cmp.cli's LAUNCHER, which calls the same main() without it (a served render's
# client imports only what it needs; docs/performance.md).
RUN /opt/tagpin/bin/pip install --no-compile -c constraints.txt . \
 && /opt/tagpin/bin/pip uninstall --yes pip setuptools \
 && /opt/tagpin/bin/python -c 'import sys, cmp.cli; cmp.cli.write_launcher(sys.argv[1])' /opt/tagpin/bin/tagpin \
 && PYTHONHASHSEED=0 /opt/tagpin/bin/python -m compileall -q -f --invalidation-mode unchecked-hash /opt/tagpin/lib


# kustomize for Kustomize apps (docs/kustomize.md), for the architecture being built.
# KUSTOMIZE=release (the default) downloads kustomize's release tarball and checks it against the
# sha256 Argo CD records for it (argoproj/argo-cd hack/installers/checksums/
# kustomize_5.8.1_linux_{amd64,arm64}.tar.gz.sha256). sha256sum in a RUN rather than
# `ADD --checksum`, which podman 4.3's buildah refuses. An offline build names an executable it
# put in the build context instead: KUSTOMIZE=kubectl takes image/kubectl-linux-$TARGETARCH, whose
# `kubectl kustomize` tagpin runs when no kustomize is installed (kubectl 1.37 embeds kustomize
# 5.8.1, the same as the release). Installed under /opt/kustomize/bin, copied below.
FROM ${BASE} AS kustomize
ARG TARGETARCH
ARG KUSTOMIZE=release
ARG KUSTOMIZE_VERSION=5.8.1
ARG KUSTOMIZE_SHA256_AMD64=029a7f0f4e1932c52a0476cf02a0fd855c0bb85694b82c338fc648dcb53a819d
ARG KUSTOMIZE_SHA256_ARM64=0953ea3e476f66d6ddfcd911d750f5167b9365aa9491b2326398e289fef2c142
COPY image/ /tmp/image/
RUN set -eu; mkdir -p /opt/kustomize/bin; cd /tmp; \
    case "$TARGETARCH" in \
      amd64) sum="$KUSTOMIZE_SHA256_AMD64" ;; \
      arm64) sum="$KUSTOMIZE_SHA256_ARM64" ;; \
      *) echo "no kustomize checksum for TARGETARCH='$TARGETARCH' (build with BuildKit or podman)" >&2; exit 1 ;; \
    esac; \
    if [ "$KUSTOMIZE" = release ]; then \
      url="https://github.com/kubernetes-sigs/kustomize/releases/download/kustomize%2Fv${KUSTOMIZE_VERSION}/kustomize_v${KUSTOMIZE_VERSION}_linux_${TARGETARCH}.tar.gz"; \
      python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' "$url" kustomize.tar.gz; \
      echo "$sum  kustomize.tar.gz" | sha256sum -c -; \
      tar -xzf kustomize.tar.gz -C /opt/kustomize/bin kustomize; \
      /opt/kustomize/bin/kustomize version; \
    else \
      case "$KUSTOMIZE" in kubectl|kustomize) ;; *) echo "KUSTOMIZE must be release, kubectl or kustomize, not '$KUSTOMIZE'" >&2; exit 1 ;; esac; \
      install -m 0755 "/tmp/image/$KUSTOMIZE-linux-$TARGETARCH" "/opt/kustomize/bin/$KUSTOMIZE"; \
      "/opt/kustomize/bin/$KUSTOMIZE" version --client 2>/dev/null || "/opt/kustomize/bin/$KUSTOMIZE" version; \
    fi


# The software bill of materials of the venv the image ships (CycloneDX JSON), made by
# cyclonedx-bom at the version constraints.txt pins, from the very /opt/tagpin copied below. The
# image carries it at /usr/share/doc/tagpin/sbom.cdx.json; to get the file alone:
#   docker build --target sbom --output type=local,dest=build/image .
FROM builder AS sbom-tool
RUN python -m venv /opt/sbom-tool \
 && /opt/sbom-tool/bin/pip install -c constraints.txt cyclonedx-bom \
 && /opt/sbom-tool/bin/cyclonedx-py environment --output-reproducible --of JSON \
      --pyproject pyproject.toml --mc-type application -o /tagpin.cdx.json /opt/tagpin
FROM scratch AS sbom
COPY --from=sbom-tool /tagpin.cdx.json /


FROM ${BASE}
ARG BASE

# The base's own pip, setuptools and ensurepip go: nothing in the image installs packages, and a
# template or a compromised dependency must not be able to either (the venv has none either).
RUN set -eu; \
    for dir in $(python3 -c 'import sysconfig; print(sysconfig.get_path("stdlib"), sysconfig.get_path("purelib"))'); do \
      rm -rf "$dir"/ensurepip "$dir"/pip "$dir"/pip-*.dist-info "$dir"/setuptools "$dir"/setuptools-*.dist-info \
             "$dir"/_distutils_hack "$dir"/distutils-precedence.pth "$dir"/pkg_resources "$dir"/wheel "$dir"/wheel-*.dist-info; \
    done; \
    rm -rf /usr/local/bin/pip /usr/local/bin/pip3* /usr/local/bin/wheel /usr/share/python-wheels; \
    ! python3 -m pip --version 2>/dev/null

ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="tagpin" \
      org.opencontainers.image.description="Argo CD Config Management Plugin: renders YAML/Jinja2 apps and pins every ECR image tag to its digest" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE}"

COPY --from=builder /opt/tagpin /opt/tagpin
COPY --from=kustomize /opt/kustomize/bin/ /usr/local/bin/
COPY plugin.yaml /home/argocd/cmp-server/config/plugin.yaml
COPY --from=sbom /tagpin.cdx.json /usr/share/doc/tagpin/sbom.cdx.json

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
