"""
tryon_bringup: start camera_node, segmentation_node and tryon_server without ros2 launch.

The same config as launch/tryon.launch.py: a ROS parameter file validated against the
settings schema (an unknown key is an error), plus ``--set NAME=VALUE`` overrides. ROS
traffic is loopback-only unless the environment already names a Fast DDS profile. Ctrl-C
or SIGTERM stops every node (SIGINT, then SIGKILL after a grace period); a node that dies
stops the others; children die with this process, so none is left orphaned.
"""

import argparse
import ctypes
import os
from pathlib import Path
import signal
import subprocess
import sys
import tempfile
import time

from vton_ros import params as schema

GRACE_SECONDS = 10.0


def package_share() -> Path:
    """Return this package's share folder (installed) or the source tree's root."""
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory('vton_ros'))
    except (ImportError, LookupError):
        return Path(__file__).resolve().parents[2]


def executable(name: str) -> list[str]:
    """Return the argv that runs an installed node (``python -m`` as a fallback)."""
    try:
        from ament_index_python.packages import get_package_prefix
        path = Path(get_package_prefix('vton_ros')) / 'lib' / 'vton_ros' / name
        if path.exists():
            return [str(path)]
    except (ImportError, LookupError):
        pass
    return [sys.executable, '-m', f'vton_ros.nodes.{name}']


def loopback_env() -> dict:
    """Return the environment for the nodes: loopback-only DDS unless a profile is set."""
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    if not env.get('FASTDDS_DEFAULT_PROFILES_FILE'):
        env['FASTDDS_DEFAULT_PROFILES_FILE'] = str(package_share() / 'config' /
                                                   'fastdds_loopback.xml')
        env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'SYSTEM_DEFAULT'
    return env


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: the kernel stops us if bringup dies


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    parser.add_argument('--params-file', default=str(package_share() / 'config' / 'cpu.yaml'),
                        help='ROS parameter file (default: config/cpu.yaml)')
    parser.add_argument('--nodes', default=','.join(schema.NODES),
                        help='comma-separated subset of nodes to start')
    parser.add_argument('--camera-source', help='shortcut for --set camera.source=...')
    parser.add_argument('--device', help='shortcut for catvton.device and segmentation.device')
    parser.add_argument('--log-dir', help="write each node's output to LOG_DIR/<node>.log")
    schema.add_override_argument(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Start the nodes and supervise them until Ctrl-C / SIGTERM or a node exits."""
    args = build_parser().parse_args(argv)
    nodes = [n.strip() for n in args.nodes.split(',') if n.strip()]
    try:
        unknown = set(nodes) - set(schema.NODES)
        if unknown:
            raise ValueError(f'unknown node(s) {sorted(unknown)}; valid: {schema.NODES}')
        config = schema.load_yaml(args.params_file)
        overrides = schema.parse_overrides(args.overrides)
        if args.camera_source:
            overrides['camera.source'] = args.camera_source
        if args.device:
            overrides.update({'catvton.device': args.device, 'segmentation.device': args.device})
        config = schema.merge(config, overrides)
    except (OSError, ValueError) as err:
        print(f'tryon_bringup: {err}', file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix='vton_bringup_') as tmp:
        merged = Path(tmp) / 'params.yaml'
        merged.write_text(schema.dump_yaml({n: config[n] for n in nodes if config[n]}))
        return supervise(nodes, merged, loopback_env(), args.log_dir)


def supervise(nodes: list[str], params_file: Path, env: dict, log_dir: str | None) -> int:
    """Run the node processes; stop all of them when one exits or on a signal."""
    stop = {'signal': None}

    def on_signal(signum, _frame):
        stop['signal'] = signum

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    procs = {}
    for name in nodes:
        out = None
        if log_dir:
            Path(log_dir).mkdir(parents=True, exist_ok=True)
            out = open(Path(log_dir) / f'{name}.log', 'w')
        argv = executable(name) + ['--ros-args', '--params-file', str(params_file)]
        procs[name] = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT
                                       if out else None, start_new_session=True,
                                       preexec_fn=_die_with_parent)
        print(f'tryon_bringup: started {name} (pid {procs[name].pid})', flush=True)
    code = 0
    while stop['signal'] is None:
        exited = {n: p.returncode for n, p in procs.items() if p.poll() is not None}
        if exited:
            for name, rc in exited.items():
                print(f'tryon_bringup: {name} exited with {rc}; stopping the others',
                      file=sys.stderr, flush=True)
            code = 1
            break
        time.sleep(0.2)
    for proc in procs.values():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
    deadline = time.monotonic() + GRACE_SECONDS
    for name, proc in procs.items():
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f'tryon_bringup: {name} did not stop in {GRACE_SECONDS} s; killing it',
                  file=sys.stderr, flush=True)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    print('tryon_bringup: all nodes stopped', flush=True)
    return code


if __name__ == '__main__':
    sys.exit(main())
