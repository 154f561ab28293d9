#!/usr/bin/env bash
# Installs missing dependencies, builds, and runs every test (unit and CLI tests,
# each once per io engine). Extra arguments go to ctest, e.g. `-R cli_` or `-V`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

tools/dev/build.sh
ctest --test-dir build --output-on-failure -j2 "$@"
