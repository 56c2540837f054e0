#!/usr/bin/env bash
# System packages the tests need beyond PyPI and npm, from Debian: Go and go-yaml's sources, so
# tests/e2e/source/test_yaml_differential.py can build a real go-yaml v2/v3 reader, wired the way
# Argo CD reads plugin output; klog's (with go-logr's), so tests/support/klog.py can print an
# error the way kubectl 1.32 does; podman, runc and mmdebstrap, so tests/e2e/image/ can build and
# run the image (tests/support/build-image.sh); prometheus, for promtool, which checks and
# unit-tests deploy/monitoring's alert rules (tests/e2e/test_alert_rules.py). Installs only what
# is missing (apt-get as root, else through sudo).
set -euo pipefail
packages="golang-go golang-gopkg-yaml.v2-dev golang-gopkg-yaml.v3-dev golang-k8s-sigs-yaml-dev"
packages="$packages golang-k8s-klog-dev podman runc mmdebstrap prometheus"
# shellcheck disable=SC2086
if dpkg -s $packages >/dev/null 2>&1; then
  exit 0
fi
as_root=()
if [ "$(id -u)" != 0 ]; then
  as_root=(sudo)
fi
"${as_root[@]}" apt-get update -q >/dev/null
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -q --no-install-recommends $packages >/dev/null
