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
# The suite runs a worker more than cores beside its node processes: torch's OpenMP threads
# that spin while they wait for work (GNU OpenMP's default) take CPU the others need; passive
# ones sleep. Behaviour and images are the same (test_bench + test_demo_model, one worker:
# 92.8 -> 80.8 CPU s). Not for speed measurements: those keep the default.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
python -m pytest -p no:cacheprovider "$@"
