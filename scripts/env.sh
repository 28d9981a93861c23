# Source me (bash): `source scripts/env.sh`. Gives a shell with the project's venv active,
# vton_interfaces and vton_ros importable, their executables on PATH, and ROS 2 traffic
# restricted to this machine (loopback-only Fast DDS profile, no multicast).
#
# To open the nodes to a LAN (an explicit operator choice, see README.md), set
# VTON_DDS_PROFILE to your own Fast DDS profile, or to "none" for Fast DDS defaults,
# before sourcing.
_vton_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ ! -f "$_vton_root/install/setup.bash" ]; then
  echo "vton_ros: not built yet; run 'make setup' in $_vton_root first" >&2
  return 1 2>/dev/null || exit 1
fi
# shellcheck disable=SC1091
source "$_vton_root/.venv/bin/activate"
if [ -z "${ROS_DISTRO:-}" ]; then
  export AMENT_PREFIX_PATH=$VIRTUAL_ENV  # ROS 2 from the venv's wheels
fi
_vton_nounset=$([[ $- == *u* ]] && echo 1 || echo 0)
set +u  # colcon's setup scripts read unset variables
# shellcheck disable=SC1091
source "$_vton_root/install/setup.bash"
[ "$_vton_nounset" = 1 ] && set -u
export PATH=$_vton_root/install/vton_ros/lib/vton_ros:$PATH
export RMW_IMPLEMENTATION=${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}
export VTON_ROOT=$_vton_root
case "${VTON_DDS_PROFILE:-}" in
  none)
    unset FASTDDS_DEFAULT_PROFILES_FILE
    echo "vton_ros: WARNING: loopback-only DDS profile disabled (VTON_DDS_PROFILE=none)" >&2 ;;
  '')
    export ROS_AUTOMATIC_DISCOVERY_RANGE=SYSTEM_DEFAULT
    export FASTDDS_DEFAULT_PROFILES_FILE=$_vton_root/config/fastdds_loopback.xml ;;
  *)
    export ROS_AUTOMATIC_DISCOVERY_RANGE=SYSTEM_DEFAULT
    export FASTDDS_DEFAULT_PROFILES_FILE=$VTON_DDS_PROFILE
    echo "vton_ros: using DDS profile $VTON_DDS_PROFILE" >&2 ;;
esac
unset _vton_root _vton_nounset
