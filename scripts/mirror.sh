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
# A port in use is said at once (not after every node has loaded), and no URL is printed
# before mirror_ui serves it: on a taken port that URL would be someone else's page.
if [ "$PORT" != 0 ] && ! python -c 'import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))' "$PORT" 2>/dev/null; then
  echo "mirror: port $PORT is already in use (another mirror page or program): pick another," \
    "e.g. PORT=$((PORT + 1)) make mirror (ui.port; PORT=0: a free port)" >&2
  exit 2
fi
echo "================================================================"
echo " mirror: open the page that mirror_ui logs below ('mirror page at"
echo " http://...') in a browser (full screen: chromium --kiosk URL)."
echo " DEMO MODEL (128x96, models/demo/MODEL_CARD.md), not CatVTON."
echo " Ctrl-C stops everything."
echo "================================================================"
exec tryon_bringup --ui --profile cpu,demo --camera-source "$CAMERA" \
  --set camera.fps=15.0 --set camera.width=640 --set camera.height=480 \
  --set segmentation.max_rate=5.0 --set "ui.port=$PORT" "$@"
