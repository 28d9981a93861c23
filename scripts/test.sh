#!/usr/bin/env bash
# Run the whole test suite (unit, multi-process ROS, lint) in the loopback-only environment.
set -eo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck disable=SC1091
source scripts/env.sh
export HF_HUB_OFFLINE=1
python -m pytest -p no:cacheprovider "$@"
