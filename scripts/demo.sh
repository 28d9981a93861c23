#!/usr/bin/env bash
# make demo [WEIGHTS=real|random]: the whole system end to end on this machine.
# camera_node replays a bundled portrait, segmentation_node runs the pose masker,
# tryon_server loads CatVTON, tryon_client sends one goal and saves a panel.
set -eo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck disable=SC1091
source scripts/env.sh
MODE=${1:-real}
OUT=$ROOT/out/demo
mkdir -p "$OUT/garments"
overrides=()
case "$MODE" in
  random)
    make_test_weights --out "$OUT/random_weights" > "$OUT/make_test_weights.log"
    overrides+=(--set "catvton.base_model=$OUT/random_weights/stable-diffusion-inpainting"
                --set "catvton.vae=$OUT/random_weights/sd-vae-ft-mse"
                --set "catvton.attn_ckpt=$OUT/random_weights/CatVTON"
                --set catvton.height=128 --set catvton.width=96)
    echo "================================================================"
    echo " RANDOM WEIGHTS (WEIGHTS=random): tiny untrained models; the"
    echo " try-on result is noise. It shows the system working, not CatVTON."
    echo "================================================================" ;;
  real)
    if ! fetch_weights --check --params-file config/cpu.yaml; then
      echo "demo: the real CatVTON weights are not on this machine (see above)." >&2
      echo "demo: run 'fetch_weights' on a machine with internet, or run" >&2
      echo "demo: 'make demo WEIGHTS=random' to see the system work with random weights." >&2
      exit 1
    fi ;;
  *) echo "demo: WEIGHTS must be real or random, got '$MODE'" >&2; exit 2 ;;
esac
python - "$OUT/garments" <<'PY'
import sys, cv2
from vton_ros import samples
rgb = samples.garment('tshirt', color=(200, 30, 40))
cv2.imwrite(f'{sys.argv[1]}/red_tshirt.png', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
PY
tryon_bringup --params-file config/cpu.yaml --log-dir "$OUT/logs" \
  --set "garments.catalog_dir=$OUT/garments" "${overrides[@]}" &
BRINGUP=$!
trap 'kill -INT $BRINGUP 2>/dev/null; wait $BRINGUP 2>/dev/null' EXIT
status=0
tryon_client --garment "$OUT/garments/red_tshirt.png" --out "$OUT/result.png" --server-timeout 600 \
  --timeout 1800 || status=$?
if [ $status -ne 0 ]; then
  echo "demo: the try-on failed (exit $status); node logs in $OUT/logs" >&2
  exit $status
fi
[ "$MODE" = random ] && echo "demo: RANDOM WEIGHTS: the result above is noise by design."
exit 0
