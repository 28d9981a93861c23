"""
Bring up camera_node, segmentation_node and tryon_server (ros2 launch vton_ros tryon.launch.py).

Parameters: config/tryon.yaml (the paper's Jetson profile, every setting), then the
overlay of ``profile`` (config/<profile>.yaml: cpu, fast, fast_cpu, ...; empty: none), then
``params_file`` (your own file; empty: none); later files win. Other launch arguments:
namespace (default empty; e.g. mirror_a puts every node, topic and the tryon action under
/mirror_a, and the config's /**/NODE keys still apply), camera_source (overrides
camera.source), device (overrides catvton.device and segmentation.device; empty keeps
the file's value) and ui (true: also start mirror_ui, the kiosk page). autostart (default
true) configures and activates the managed nodes; false leaves them unconfigured for a
lifecycle manager (ros2 lifecycle, nav2). When a node exits, the launch shuts the others
down; a node that failed (exit code not 0) makes ros2 launch exit 1 with an error naming
it and why: the signal that killed it ("killed by SIGKILL"), else its last FATAL/ERROR
line. respawn:=true instead restarts a node that dies, after respawn_delay seconds
(default 2), while the others keep running. Where the ros2 CLI is not installed,
``tryon_bringup`` starts the same nodes from the same file.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, RegisterEventHandler, \
    Shutdown
from launch.event_handlers import OnProcessExit, OnProcessIO
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from vton_ros.supervision import dds_shm
from vton_ros.supervision.exit_reasons import exit_reason, LastError


class NodeFailed(RuntimeError):
    """A node exited with an error: launch logs it, shuts down and exits 1."""


def _on_output(last_error):
    def handler(event):
        for line in event.text.decode('utf-8', errors='replace').splitlines():
            last_error.feed(line)
    return handler


def _on_exit(name, last_error):
    def handler(event, _context):
        if event.returncode != 0:
            raise NodeFailed(f'{name} {exit_reason(event.returncode, last_error.line)}; '
                             'stopping the other nodes')
        return [Shutdown(reason=f'{name} exited')]
    return handler


def _free_shm(_event, _context):
    dds_shm.remove_stale()  # a killed node leaves its 64 MB Fast DDS segment behind


def _nodes(context):
    share = get_package_share_directory('vton_ros')
    files = [os.path.join(share, 'config', 'tryon.yaml')]
    profile = LaunchConfiguration('profile').perform(context)
    if profile:
        files.append(profile if profile.endswith('.yaml') else
                     os.path.join(share, 'config', f'{profile}.yaml'))
    params_file = LaunchConfiguration('params_file').perform(context)
    if params_file:
        files.append(params_file)
    namespace = LaunchConfiguration('namespace').perform(context)
    source = LaunchConfiguration('camera_source').perform(context)
    device = LaunchConfiguration('device').perform(context)
    ui = LaunchConfiguration('ui').perform(context).lower() in ('true', '1')
    autostart = LaunchConfiguration('autostart').perform(context).lower() in ('true', '1')
    respawn = LaunchConfiguration('respawn').perform(context).lower() in ('true', '1')
    delay = float(LaunchConfiguration('respawn_delay').perform(context))

    def text(value):  # launch parses plain strings as YAML: keep '0' a string
        return ParameterValue(value, value_type=str)

    overrides = {
        'camera_node': {'camera.source': text(source)} if source else {},
        'segmentation_node': {'segmentation.device': text(device)} if device else {},
        'tryon_server': ({'catvton.device': text(device), 'segmentation.device': text(device)}
                         if device else {}),
    }
    for extra in overrides.values():  # the managed nodes
        extra['lifecycle.autostart'] = autostart
    if ui:
        overrides['mirror_ui'] = {}
    actions = []
    for name, extra in overrides.items():
        node = Node(package='vton_ros', executable=name, name=name, namespace=namespace,
                    output='screen', emulate_tty=True, parameters=[*files, extra],
                    respawn=respawn, respawn_delay=delay)
        actions += [node, RegisterEventHandler(OnProcessExit(target_action=node,
                                                             on_exit=_free_shm))]
        if not respawn:  # one node ends: all stop, naming why
            last_error = LastError()
            actions += [RegisterEventHandler(OnProcessIO(target_action=node,
                                                         on_stdout=_on_output(last_error),
                                                         on_stderr=_on_output(last_error))),
                        RegisterEventHandler(OnProcessExit(target_action=node,
                                                           on_exit=_on_exit(name, last_error)))]
    return actions


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument('profile', default_value='',
                              description='overlay of config/tryon.yaml: cpu, fast, fast_cpu, '
                                          '... (config/<profile>.yaml) or a file path'),
        DeclareLaunchArgument('params_file', default_value='',
                              description='your own ROS parameter file, applied last'),
        DeclareLaunchArgument('namespace', default_value='',
                              description='namespace of the whole stack, e.g. mirror_a '
                                          '(several mirrors on one ROS graph)'),
        DeclareLaunchArgument('camera_source', default_value='',
                              description='camera.source override: device index or path, '
                                          'GStreamer pipeline, video, folder or image'),
        DeclareLaunchArgument('device', default_value='',
                              description='catvton.device and segmentation.device override'),
        DeclareLaunchArgument('ui', default_value='false',
                              description='true: also start mirror_ui, the kiosk page '
                                          '(http://127.0.0.1:8080/ by default; ui.* settings)'),
        DeclareLaunchArgument('autostart', default_value='true',
                              description='configure and activate every node at start; false '
                                          'leaves them unconfigured for a lifecycle manager'),
        DeclareLaunchArgument('respawn', default_value='false',
                              description='restart a node that dies (after respawn_delay) '
                                          'while the others keep running'),
        DeclareLaunchArgument('respawn_delay', default_value='2.0',
                              description='seconds before a dead node is restarted'),
        OpaqueFunction(function=_nodes),
    ])
