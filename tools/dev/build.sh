#!/usr/bin/env bash
# Installs missing dependencies, then configures and builds casfs in build/.
# Extra arguments go to the configure step (e.g. -DCASFS_WERROR=OFF).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

tools/dev/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@"
cmake --build build -j"$(nproc)"
