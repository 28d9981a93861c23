#!/usr/bin/env bash
# Run the whole test suite (unit, multi-process ROS, lint) in the loopback-only environment.
set -eo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck disable=SC1091
source scripts/env.sh
export HF_HUB_OFFLINE=1
# Keep our modules' bytecode (__pycache__, git-ignored) even where the machine's environment
# sets PYTHONDONTWRITEBYTECODE: every node process of the suite would compile them again.
unset PYTHONDONTWRITEBYTECODE
python -m pytest -p no:cacheprovider "$@"
