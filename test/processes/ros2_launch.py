"""What `ros2 launch FILE name:=value ...` does: run a launch file in a LaunchService."""

import sys

from launch import LaunchService
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import AnyLaunchDescriptionSource


def main() -> int:
    path, pairs = sys.argv[1], [arg.split(':=', 1) for arg in sys.argv[2:]]
    service = LaunchService(argv=sys.argv[1:])
    service.include_launch_description(IncludeLaunchDescription(
        AnyLaunchDescriptionSource(path), launch_arguments=[tuple(p) for p in pairs]))
    return service.run()


if __name__ == '__main__':
    sys.exit(main())
