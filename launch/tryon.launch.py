"""
Bring up camera_node, segmentation_node and tryon_server (ros2 launch vton_ros tryon.launch.py).

Parameters: config/tryon.yaml (the paper's Jetson profile, every setting), then the
overlays of ``profile`` left to right (config/<profile>.yaml, comma-separated: cpu, demo,
fast, fast_cpu, ...; default cpu, as tryon_bringup; none or empty: tryon.yaml alone), then
``params_file`` (your own file; empty: none); later files win. The stack, its overrides and
the DDS environment (loopback-only unless the environment names a Fast DDS profile) come
from vton_ros.settings.stack, as tryon_bringup's do. Other launch arguments:
namespace (default empty; e.g. mirror_a puts every node, topic and the tryon action under
/mirror_a, and the config's /**/NODE keys still apply), camera_source (overrides
camera.source), device (overrides catvton.device and segmentation.device; empty keeps
the file's value) and ui (true: also start mirror_ui, the kiosk page). autostart (default
true) configures and activates the managed nodes; false leaves them unconfigured for a
lifecycle manager (ros2 lifecycle, nav2). When a node exits, the launch shuts the others
down; a node that failed (exit code not 0) makes ros2 launch exit 1 with an error naming
it and why: the signal that killed it ("killed by SIGKILL"), else its last FATAL/ERROR
line. metrics_port:=N also starts metrics_exporter (Prometheus metrics at
http://127.0.0.1:N/metrics; empty: none). lan_interface:=IFACE opens the nodes to that
interface's LAN (plus loopback, no multicast; lan_peers: addresses to announce to;
config/fastdds_lan.xml). respawn:=true instead restarts a node that dies, after
respawn_delay seconds (default 2), while the others keep running. The nodes do not
outlive ros2 launch: each gets SIGTERM when it dies, even by SIGTERM or SIGKILL (upstream
launch would orphan them). A killed node's Fast DDS shared memory is given back, that
node's own files and nothing else (vton_ros.supervision.dds_shm). Where the ros2 CLI is
not installed, ``tryon_bringup`` starts the same nodes from the same file.
"""

import os
from pathlib import Path
import tempfile

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction, \
    RegisterEventHandler, Shutdown
from launch.event_handlers import OnProcessExit, OnProcessIO
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from vton_ros.nodes.entry import SUPERVISOR_ENV
from vton_ros.settings import dds
from vton_ros.settings import stack as param_stack
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


def _free_shm(records):
    def handler(event, _context):  # a killed node leaves its 64 MB Fast DDS segment
        freed = dds_shm.release_dead(records, event.pid)
        if os.path.isdir(records) and not os.listdir(records):  # a restart makes it again
            os.rmdir(records)
        if freed >= 2 ** 20:
            return [LogInfo(msg=f'removed {freed / 2 ** 20:.0f} MB of Fast DDS shared memory '
                                f'left by {event.action.name} (pid {event.pid}, '
                                f'{exit_reason(event.returncode, "")})')]
        return None
    return handler


def _nodes(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    params_file = arg('params_file')
    namespace = arg('namespace')
    ui = arg('ui').lower() in ('true', '1')
    metrics_port = arg('metrics_port') or None  # the schema parses it (or says what is wrong)
    stack = param_stack.build(arg('profile'), [params_file] if params_file else [], namespace,
                              camera_source=arg('camera_source'), device=arg('device'),
                              autostart=arg('autostart').lower() in ('true', '1'),
                              metrics_port=metrics_port)
    files = [str(path) for path in stack.files]
    lan = arg('lan_interface')
    profile = None
    if lan:  # an explicit operator choice: loopback plus that interface's LAN
        peers = tuple(p.strip() for p in arg('lan_peers').split(',') if p.strip())
        folder = Path(tempfile.mkdtemp(prefix='vton_launch_'))
        profile = str(dds.write_lan_profile(folder, lan, peers))
    env = param_stack.dds_environment(os.environ, profile)
    records = tempfile.mkdtemp(prefix='vton_launch_shm_')  # the nodes' Fast DDS files
    env = {**env, SUPERVISOR_ENV: str(os.getpid()), dds_shm.RECORDS_ENV: records,
           **param_stack.profile_environment(arg('profile'))}
    respawn = LaunchConfiguration('respawn').perform(context).lower() in ('true', '1')
    delay = float(LaunchConfiguration('respawn_delay').perform(context))

    def text(value):  # launch parses plain strings as YAML: keep '0' a string
        return ParameterValue(value, value_type=str)

    overrides = {name: {key: text(value) if isinstance(value, str) else value
                        for key, value in stack.node_overrides(name).items()}
                 for name in ('camera_node', 'segmentation_node', 'tryon_server')
                 + (('mirror_ui',) if ui else ())
                 + (('metrics_exporter',) if metrics_port is not None else ())}
    actions = []
    for name, extra in overrides.items():
        node = Node(package='vton_ros', executable=name, name=name, namespace=namespace,
                    output='screen', emulate_tty=True, parameters=[*files, extra],
                    additional_env=env, respawn=respawn, respawn_delay=delay)
        actions += [node, RegisterEventHandler(OnProcessExit(target_action=node,
                                                             on_exit=_free_shm(records)))]
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
        DeclareLaunchArgument('profile', default_value=param_stack.DEFAULT_PROFILE,
                              description='overlays of config/tryon.yaml, comma-separated, '
                                          'left to right: cpu, demo, fast, fast_cpu, ... '
                                          '(config/<profile>.yaml) or file paths, e.g. '
                                          'cpu,demo; none: tryon.yaml alone'),
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
        DeclareLaunchArgument('metrics_port', default_value='',
                              description='also start metrics_exporter: Prometheus metrics '
                                          'at http://127.0.0.1:N/metrics (0: a free port); '
                                          'empty: none (the page serves /metrics itself)'),
        DeclareLaunchArgument('autostart', default_value='true',
                              description='configure and activate every node at start; false '
                                          'leaves them unconfigured for a lifecycle manager'),
        DeclareLaunchArgument('respawn', default_value='false',
                              description='restart a node that dies (after respawn_delay) '
                                          'while the others keep running'),
        DeclareLaunchArgument('respawn_delay', default_value='2.0',
                              description='seconds before a dead node is restarted'),
        DeclareLaunchArgument('lan_interface', default_value='',
                              description='open the nodes to the LAN of this network '
                                          'interface, plus loopback (config/fastdds_lan.xml); '
                                          'empty: this machine only'),
        DeclareLaunchArgument('lan_peers', default_value='',
                              description='with lan_interface: comma-separated IPv4 peers to '
                                          'announce to (peers that announce themselves are '
                                          'answered without it)'),
        OpaqueFunction(function=_nodes),
    ])
