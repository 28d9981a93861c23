"""
Bring up camera_node, segmentation_node and tryon_server (ros2 launch vton_ros tryon.launch.py).

Launch arguments: params_file (default config/tryon.yaml, the paper's Jetson profile),
camera_source (overrides camera.source) and device (overrides catvton.device and
segmentation.device); empty keeps the file's value. Where the ros2 CLI is not installed,
``tryon_bringup`` starts the same nodes from the same file.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def _nodes(context):
    params_file = LaunchConfiguration('params_file').perform(context)
    source = LaunchConfiguration('camera_source').perform(context)
    device = LaunchConfiguration('device').perform(context)

    def text(value):  # launch parses plain strings as YAML: keep '0' a string
        return ParameterValue(value, value_type=str)

    overrides = {
        'camera_node': {'camera.source': text(source)} if source else {},
        'segmentation_node': {'segmentation.device': text(device)} if device else {},
        'tryon_server': ({'catvton.device': text(device), 'segmentation.device': text(device)}
                         if device else {}),
    }
    return [Node(package='vton_ros', executable=name, name=name, output='screen',
                 emulate_tty=True, parameters=[params_file, extra])
            for name, extra in overrides.items()]


def generate_launch_description():
    share = get_package_share_directory('vton_ros')
    return LaunchDescription([
        DeclareLaunchArgument('params_file',
                              default_value=os.path.join(share, 'config', 'tryon.yaml'),
                              description='ROS parameter file (see config/)'),
        DeclareLaunchArgument('camera_source', default_value='',
                              description='camera.source override: device index or path, '
                                          'GStreamer pipeline, video, folder or image'),
        DeclareLaunchArgument('device', default_value='',
                              description='catvton.device and segmentation.device override'),
        OpaqueFunction(function=_nodes),
    ])
