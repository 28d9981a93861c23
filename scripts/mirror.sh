#!/usr/bin/env bash
# make mirror: the whole stack with the kiosk page (mirror_ui) on the demo model.
# camera_node (CAMERA=..., default the bundled portrait; 0 or /dev/video0 for a webcam),
# segmentation_node, tryon_server with models/demo at 128x96, mirror_ui on
# http://127.0.0.1:$PORT/ (PORT=8080). Ctrl-C stops every node cleanly.
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
import sys, cv2
from vton_ros.training.tryon_data import draw_pattern, flat_lay
shop = {'red_striped_shirt': ('stripes', (200, 30, 40)), 'green_dotted_shirt': ('dots', (30, 160, 60)),
        'blue_checked_shirt': ('checks', (40, 70, 190)), 'yellow_shirt': ('solid', (235, 190, 40))}
for name, (pattern, colour) in shop.items():
    rgb = flat_lay(draw_pattern(pattern, 256, 192, (colour, (245, 245, 245)), 48))
    cv2.imwrite(f'{sys.argv[1]}/{name}.png', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
open(f'{sys.argv[1]}/catalog.yaml', 'w').write(''.join(f'{n}: upper\n' for n in shop))
PY
echo "================================================================"
echo " mirror: open http://127.0.0.1:$PORT/ in a browser (full screen:"
echo " chromium --kiosk http://127.0.0.1:$PORT/). DEMO MODEL (128x96,"
echo " models/demo/MODEL_CARD.md), not CatVTON. Ctrl-C stops everything."
echo "================================================================"
exec tryon_bringup --ui --params-file config/cpu.yaml --camera-source "$CAMERA" \
  --set camera.fps=15.0 --set camera.width=640 --set camera.height=480 \
  --set segmentation.max_rate=5.0 --set "garments.catalog_dir=$OUT/garments" \
  --set "ui.port=$PORT" \
  --set "catvton.base_model=$ROOT/models/demo/base" --set "catvton.vae=$ROOT/models/demo/vae" \
  --set "catvton.attn_ckpt=$ROOT/models/demo/catvton" --set catvton.precision=fp32 \
  --set catvton.repaint=true --set catvton.height=128 --set catvton.width=96
