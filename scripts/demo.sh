#!/usr/bin/env bash
# make demo [WEIGHTS=demo|real|random]: the whole system end to end on this machine.
# camera_node replays a bundled portrait, segmentation_node runs the pose masker,
# tryon_server loads CatVTON, tryon_client sends one goal and saves a panel.
# demo (default): the small model in models/demo, trained here on synthetic data;
# real: the published CatVTON weights (fetch_weights); random: untrained, for timing.
set -eo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck disable=SC1091
source scripts/env.sh
MODE=${1:-demo}
case "$MODE" in
  demo|real|random) ;;
  *) echo "demo: WEIGHTS must be demo, real or random, got '$MODE'" >&2; exit 2 ;;
esac
OUT=$ROOT/out/demo/$MODE  # each WEIGHTS mode its own folder
mkdir -p "$OUT"
params=(--profile cpu)
overrides=(--set garments.catalog_dir=package://vton_ros/garments)
case "$MODE" in
  demo)
    params=(--profile cpu,demo)
    # tryon_client captions the panel with the model itself (tryon/model); this adds how to go on
    caption="See models/demo/MODEL_CARD.md. Real weights: fetch_weights, then make demo WEIGHTS=real"
    echo "================================================================"
    echo " DEMO MODEL (WEIGHTS=demo): a small CatVTON trained on this kind"
    echo " of CPU on synthetic people and procedural garments (128x96 px)."
    echo " It shows what the package does, not CatVTON's quality. For the"
    echo " real weights: run 'fetch_weights' on a machine with internet,"
    echo " then 'make demo WEIGHTS=real'. See models/demo/MODEL_CARD.md."
    echo "================================================================" ;;
  random)
    make_test_weights --out "$OUT/random_weights" > "$OUT/make_test_weights.log"
    overrides+=(--set "catvton.base_model=$OUT/random_weights/stable-diffusion-inpainting"
                --set "catvton.vae=$OUT/random_weights/sd-vae-ft-mse"
                --set "catvton.attn_ckpt=$OUT/random_weights/CatVTON"
                --set catvton.height=128 --set catvton.width=96)
    caption="Written by make_test_weights: the result is noise by design."
    echo "================================================================"
    echo " RANDOM WEIGHTS (WEIGHTS=random): tiny untrained models; the"
    echo " try-on result is noise. It shows the system working, not CatVTON."
    echo "================================================================" ;;
  real)
    if ! fetch_weights --check --params-file config/cpu.yaml; then
      echo "demo: the real CatVTON weights are not on this machine (see above)." >&2
      echo "demo: run 'fetch_weights' on a machine with internet, or run" >&2
      echo "demo: 'make demo' (WEIGHTS=demo) to see it work with the small demo model." >&2
      exit 1
    fi ;;
esac
tryon_bringup "${params[@]}" --log-dir "$OUT/logs" "${overrides[@]}" &
BRINGUP=$!
trap 'kill -INT $BRINGUP 2>/dev/null; wait $BRINGUP 2>/dev/null || true' EXIT  # it says why
status=0
tryon_client --garment garments/red_striped_shirt.png --out "$OUT/result.png" --server-timeout 600 \
  --timeout 1800 --caption "${caption:-}" || status=$?
if [ $status -ne 0 ]; then
  echo "demo: the try-on failed (exit $status); node logs in $OUT/logs" >&2
  exit $status
fi
[ "$MODE" = random ] && echo "demo: RANDOM WEIGHTS: the result above is noise by design."
[ "$MODE" = demo ] && echo "demo: DEMO MODEL trained on synthetic data (models/demo/MODEL_CARD.md);" \
  "for CatVTON itself run 'fetch_weights' (internet), then 'make demo WEIGHTS=real'"
exit 0
