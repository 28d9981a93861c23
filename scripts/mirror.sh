#!/usr/bin/env bash
# make mirror: the whole stack with the kiosk page (mirror_ui) on the demo model.
# camera_node (CAMERA=..., default the bundled portrait; 0 or /dev/video0 for a webcam),
# segmentation_node, tryon_server with models/demo at 128x96 (--profile cpu,demo:
# config/demo.yaml, and its garments/ catalogue), mirror_ui on
# http://127.0.0.1:$PORT/ (PORT=8080; 0 = a free port, logged). Arguments go to
# tryon_bringup (e.g. --set catvton.num_inference_steps=20). Ctrl-C stops every node cleanly.
set -eo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck disable=SC1091
source scripts/env.sh
PORT=${PORT:-8080}
CAMERA=${CAMERA:-sample:astronaut}
URL="http://127.0.0.1:$PORT/"
[ "$PORT" = 0 ] && URL="the URL that mirror_ui logs below"
echo "================================================================"
echo " mirror: open $URL in a browser (full screen:"
echo " chromium --kiosk URL). DEMO MODEL (128x96,"
echo " models/demo/MODEL_CARD.md), not CatVTON. Ctrl-C stops everything."
echo "================================================================"
exec tryon_bringup --ui --profile cpu,demo --camera-source "$CAMERA" \
  --set camera.fps=15.0 --set camera.width=640 --set camera.height=480 \
  --set segmentation.max_rate=5.0 --set "ui.port=$PORT" "$@"
