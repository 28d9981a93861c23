#!/usr/bin/env bash
# One command for the day a GPU is there: the CUDA tests (test/test_cuda.py, `pytest -m cuda`)
# and `vton_bench --compare paper,exact-fastest,fast` on full-size RANDOM weights at 512x384
# and 1024x768. Writes OUT (default out/gpu_check): summary.md, cuda_tests.log/.xml and one
# folder per bench size; prints the summary. Exit 0 when all passed, 1 on any failure.
# Without CUDA it says so in one line and exits 0 (setup is not run then).
#
#   bash scripts/gpu_check.sh [OUT]
# Environment: GPU_CHECK_REPEATS (bench rounds, default 2).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=$(realpath -m "${1:-out/gpu_check}")
REPEATS=${GPU_CHECK_REPEATS:-2}
PY=$ROOT/.venv/bin/python

cuda_torch() {  # the venv's torch sees a GPU
  [ -x "$PY" ] && "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' \
    2>/dev/null
}
gpu_present() {  # an NVIDIA driver (desktop/server) or a Jetson
  [ -e /proc/driver/nvidia/version ] || [ -e /etc/nv_tegra_release ] \
    || command -v nvidia-smi >/dev/null 2>&1
}
if ! cuda_torch && ! gpu_present; then
  echo "gpu_check: no CUDA GPU on this machine (no NVIDIA driver, torch sees none): nothing to check"
  exit 0
fi

bash scripts/setup.sh >/dev/null || { echo "gpu_check: setup failed (make setup)"; exit 1; }
if ! cuda_torch; then
  echo "gpu_check: FAILED: a GPU is here but the venv's torch cannot use it ($("$PY" -c \
    'import torch; print(torch.__version__)')): install a CUDA torch into .venv (Jetson:" \
    "VTON_SYSTEM_SITE=1 make setup with JetPack's torch) and run again"
  exit 1
fi
# shellcheck disable=SC1091
source scripts/env.sh
export HF_HUB_OFFLINE=1 PYTHONDONTWRITEBYTECODE=1
mkdir -p "$OUT"
failed=0
start=$SECONDS

echo "gpu_check: CUDA tests (test/test_cuda.py) ..."
python -m pytest -p no:cacheprovider -m cuda -ra test/test_cuda.py \
  --junitxml="$OUT/cuda_tests.xml" >"$OUT/cuda_tests.log" 2>&1
tests_rc=$?
[ $tests_rc -eq 0 ] || failed=1

bench_rc=()
for size in 512x384 1024x768; do
  echo "gpu_check: vton_bench --compare paper,exact-fastest,fast at $size ..."
  python -m vton_ros.tools.vton_bench --random-weights --device cuda --precision fp16 \
    --height "${size%x*}" --width "${size#*x}" --steps 10 --repeats "$REPEATS" \
    --segmentation none --compare paper,exact-fastest,fast --out "$OUT/compare_$size" \
    >"$OUT/compare_$size.log" 2>&1
  rc=$?
  bench_rc+=("$size:$rc")
  [ $rc -eq 0 ] || failed=1
done

python - "$OUT" "$tests_rc" "$((SECONDS - start))" "${bench_rc[@]}" <<'EOF' >"$OUT/summary.md"
import json, sys, xml.etree.ElementTree as ET
from pathlib import Path

out, tests_rc, seconds = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
print(f'# gpu_check: {"PASSED" if tests_rc == 0 and all(a.endswith(":0") for a in sys.argv[4:]) else "FAILED"} ({seconds} s)\n')
print('| CUDA test | outcome |\n|---|---|')
try:
    for case in ET.parse(out / 'cuda_tests.xml').getroot().iter('testcase'):
        tags = {child.tag for child in case}
        outcome = ('FAILED' if tags & {'failure', 'error'} else
                   'skipped' if 'skipped' in tags else 'passed')
        print(f'| {case.get("name")} | {outcome} |')
except (OSError, ET.ParseError):
    print(f'| (no test report: see cuda_tests.log) | FAILED (exit {tests_rc}) |')
print('\n| size | config | total s (median) | speed-up vs paper | peak MB | max diff |')
print('|---|---|---|---|---|---|')
for arg in sys.argv[4:]:
    size, rc = arg.split(':')
    path = out / f'compare_{size}' / 'compare.json'
    if not path.exists():
        print(f'| {size} | (bench failed, exit {rc}: see compare_{size}.log) | | | | |')
        continue
    for r in json.loads(path.read_text())['results']:
        speedup = r.get('speedup', {}).get('median')
        dev = r.get('vs_paper') or {}
        print(f'| {size} | {r["name"]} | {r["timings"]["total"]["median"]:.3f} | '
              f'{speedup:.2f} | {r["memory"]["peak_mb"]:.0f} | {dev.get("max_abs_diff", "-")} |')
EOF
cat "$OUT/summary.md"
echo "gpu_check: results in $OUT"
exit $failed
