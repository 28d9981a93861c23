#!/usr/bin/env bash
# make mirror: the whole stack with the kiosk page (mirror_ui) on the demo model.
# camera_node (CAMERA=..., default the bundled portrait; 0 or /dev/video0 for a webcam),
# segmentation_node, tryon_server with models/demo at 128x96, mirror_ui on
# http://127.0.0.1:$PORT/ (PORT=8080; 0 = a free port, logged). Arguments go to
# tryon_bringup (e.g. --set catvton.num_inference_steps=20). Ctrl-C stops every node cleanly.
set -eo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck disable=SC1091
source scripts/env.sh
PORT=${PORT:-8080}
CAMERA=${CAMERA:-sample:astronaut}
OUT=$ROOT/out/mirror
mkdir -p "$OUT/garments"
python - "$OUT/garments" <<'PY'
import sys
from vton_ros.compat import ensure_torchvision
ensure_torchvision()  # this script is an entry point: the drawing code imports timm
from vton_ros.ui.catalog import write_demo_catalog
write_demo_catalog(sys.argv[1])
PY
URL="http://127.0.0.1:$PORT/"
[ "$PORT" = 0 ] && URL="the URL that mirror_ui logs below"
echo "================================================================"
echo " mirror: open $URL in a browser (full screen:"
echo " chromium --kiosk URL). DEMO MODEL (128x96,"
echo " models/demo/MODEL_CARD.md), not CatVTON. Ctrl-C stops everything."
echo "================================================================"
exec tryon_bringup --ui --params-file config/cpu.yaml --camera-source "$CAMERA" \
  --set camera.fps=15.0 --set camera.width=640 --set camera.height=480 \
  --set segmentation.max_rate=5.0 --set "garments.catalog_dir=$OUT/garments" \
  --set "ui.port=$PORT" \
  --set "catvton.base_model=$ROOT/models/demo/base" --set "catvton.vae=$ROOT/models/demo/vae" \
  --set "catvton.attn_ckpt=$ROOT/models/demo/catvton" --set catvton.precision=fp32 \
  --set catvton.repaint=true --set catvton.height=128 --set catvton.width=96 "$@"
