"""
Ctrl-C and SIGTERM for every process, and a dying node in tryon_bringup.

Real node processes over loopback DDS (tiny random CatVTON weights). Shutdown times are
printed (pytest -s) for the record, never asserted: the machine may be loaded.
"""

import fcntl
import os
from pathlib import Path
import pty
import re
import select
import shutil
import signal
import subprocess
import termios
import threading
import time

import cv2
import pytest
from rclpy.qos import qos_profile_sensor_data
from rosutil import ActionClient, free_domain_id, LIB, node_argv, Proc, ros_env, \
    signal_stop_lines, Spinner, wait_until
from sensor_msgs.msg import Image
from stack import person_goal, server_params
from vton_interfaces.action import TryOn
from vton_ros.media import samples
from vton_ros.supervision import dds_shm

pytestmark = pytest.mark.stack  # node processes: not in make check

HANG_GUARD = 300.0  # seconds: only against a hang on a loaded machine
READY = {name: f'[{name}]: configured and activated'  # lifecycle.autostart is done
         for name in ('camera_node', 'segmentation_node', 'tryon_server')}


def interrupt(proc: Proc, signum: int) -> tuple[int, float]:
    """Send ``signum`` to the process group (as a terminal does); return (exit code, s)."""
    start = time.monotonic()
    os.killpg(proc.pid, signum)
    code = proc.popen.wait(HANG_GUARD)
    return code, time.monotonic() - start


def assert_quiet(log: str) -> None:
    """No traceback, no KeyboardInterrupt, no rclpy 'never retrieved' noise."""
    for word in ('Traceback', 'KeyboardInterrupt', 'never retrieved', 'Exception'):
        assert word not in log, log


def test_every_node_exits_0_on_a_signal(tmp_path, tiny_weights):  # noqa: F811
    """Each node on one stack, each signal on some node (bringup's test sends SIGINT to all)."""
    env = ros_env(free_domain_id())
    procs = {
        'camera_node': Proc(node_argv('camera_node', {'camera.fps': 20.0}), env,
                            tmp_path / 'camera.log'),
        'segmentation_node': Proc(node_argv('segmentation_node', {
            'segmentation.device': 'cpu', 'segmentation.max_rate': 10.0}), env,
            tmp_path / 'segmentation.log'),
        'tryon_server': Proc(node_argv('tryon_server', server_params(tiny_weights)), env,
                             tmp_path / 'server.log'),
    }
    signals = {'camera_node': signal.SIGTERM, 'segmentation_node': signal.SIGINT,
               'tryon_server': signal.SIGTERM}
    try:
        for name, proc in procs.items():
            proc.wait_for_log(READY[name], timeout=HANG_GUARD)
        procs['segmentation_node'].wait_for_log('ready on cpu', timeout=HANG_GUARD)
        for name, proc in procs.items():
            signum = signals[name]
            code, seconds = interrupt(proc, signum)
            print(f'{name}: {signal.Signals(signum).name} -> exit {code} in {seconds:.2f} s')
            log = proc.log()
            assert code == 0, log
            assert f'{signal.Signals(signum).name}: shutting down' in log
            assert_quiet(log)
    finally:
        for proc in procs.values():
            proc.stop()


@pytest.mark.parametrize('moment', ['importing torch', 'loading the models'])
def test_ctrl_c_during_start_up_is_quiet(tmp_path, tiny_weights, moment):  # noqa: F811
    server = Proc(node_argv('tryon_server', server_params(tiny_weights)),
                  ros_env(free_domain_id()), tmp_path / 'server.log')
    if moment == 'importing torch':
        maps = Path(f'/proc/{server.pid}/maps')
        wait_until(lambda: 'libtorch' in maps.read_text(), HANG_GUARD, 'torch loading',
                   interval=0.01)
    else:
        server.wait_for_log('RANDOM TEST WEIGHTS', timeout=HANG_GUARD)  # load() runs
    code, seconds = interrupt(server, signal.SIGINT)
    print(f'tryon_server: SIGINT while {moment} -> exit {code} in {seconds:.2f} s')
    assert code == 0, server.log()
    assert_quiet(server.log())


def test_a_node_that_cannot_start_stops_bringup_naming_it(tmp_path):
    env = ros_env(free_domain_id())
    weights = []
    for name in ('no_weights', 'vae', 'attention'):  # folders there, models not: the
        (tmp_path / name).mkdir()  # server itself fails (bringup checks presence only)
        weights.append(tmp_path / name)
    bringup = Proc([LIB / 'tryon_bringup', '--namespace', 'mirror_x',
                    '--set', f'catvton.base_model={weights[0]}',
                    '--set', f'catvton.vae={weights[1]}',
                    '--set', f'catvton.attn_ckpt={weights[2]}',
                    '--set', 'segmentation.device=cpu', '--set', 'catvton.device=cpu'],
                   env, tmp_path / 'bringup.log')
    code = bringup.popen.wait(HANG_GUARD)
    log = bringup.log()
    pids = [int(p) for p in re.findall(r'pid (\d+)', log)]
    assert code == 1, log
    failure = re.search(r'tryon_server exited with code 1: (.*)', log)
    assert failure and 'FATAL' in failure.group(1) and 'no_weights' in failure.group(1), log
    assert '[mirror_x.tryon_server]' in failure.group(1)  # logged under the node's name
    assert 'all nodes stopped' in log and len(pids) == 3
    assert not any(Path(f'/proc/{pid}').exists() for pid in pids)
    assert_quiet(log.replace('FATAL', ''))


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM], ids=['SIGINT', 'SIGTERM'])
def test_bringup_stops_the_stack_on_a_signal(tmp_path, tiny_weights, signum):  # noqa: F811
    env = ros_env(free_domain_id())
    argv = [LIB / 'tryon_bringup', '--set', 'segmentation.device=cpu']
    for name, value in server_params(tiny_weights).items():
        argv += ['--set', f'{name}={value}']
    bringup = Proc(argv, env, tmp_path / 'bringup.log')
    for text in READY.values():
        bringup.wait_for_log(text, timeout=HANG_GUARD)
    pids = [int(p) for p in re.findall(r'pid (\d+)', bringup.log())]
    names = [name for pid in pids for name in dds_shm.own_files(pid)  # the stack's segments
             if dds_shm.is_segment(name)]
    before = dds_shm.names_bytes(names)
    code, seconds = interrupt(bringup, signum)
    after = dds_shm.names_bytes(names)
    print(f'tryon_bringup: {signal.Signals(signum).name} -> exit {code} in {seconds:.2f} s; '
          f"the stack's Fast DDS segments {before} -> {after} bytes")
    log = bringup.log()
    assert code == 0, log
    assert all(signal_stop_lines(log, node) == 1 for node in READY), log  # SIGINT each
    assert 'all nodes stopped' in log
    assert not any(Path(f'/proc/{pid}').exists() for pid in pids)
    assert len(names) >= 3 and before > 0 and after == 0  # a segment each, all given back
    assert 'removed' not in log  # no dead process's memory to speak of after a clean stop
    assert_quiet(log)


def test_tryon_client_sigterm_cancels_its_goal(tmp_path, tiny_weights):  # noqa: F811
    env = ros_env(free_domain_id())
    server = Proc(node_argv('tryon_server', server_params(tiny_weights)), env,
                  tmp_path / 'server.log')
    try:
        server.wait_for_log('model loaded', timeout=HANG_GUARD)
        person, garment = tmp_path / 'person.png', tmp_path / 'garment.png'
        cv2.imwrite(str(person), cv2.cvtColor(samples.portrait('astronaut')[::4, ::4],
                                              cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(garment), cv2.cvtColor(samples.garment('tshirt'), cv2.COLOR_RGB2BGR))
        client = Proc([LIB / 'tryon_client', '--garment', garment, '--person', person,
                       '--steps', '1000', '--out', tmp_path / 'never.png'], env,
                      tmp_path / 'client.log')
        client.wait_for_log('/1000', timeout=HANG_GUARD)  # the goal runs
        code, seconds = interrupt(client, signal.SIGTERM)
        print(f'tryon_client: SIGTERM mid-goal -> exit {code} in {seconds:.2f} s')
        log = client.log()
        assert code == 0, log
        assert 'canceling the goal' in log and 'CANCELED' in log, log
        assert_quiet(log)
        assert not (tmp_path / 'never.png').exists()
        run = subprocess.run([LIB / 'tryon_client', '--garment', garment, '--person', person,
                              '--steps', '2', '--out', tmp_path / 'ok.png'], env=env,
                             capture_output=True, text=True, timeout=HANG_GUARD)
        assert run.returncode == 0, run.stdout + run.stderr  # the server serves on
    finally:
        assert server.stop() == 0, server.log()


class Terminal:
    """A process on a pseudo-terminal of its own (its controlling terminal), output kept."""

    def __init__(self, argv: list, env: dict) -> None:
        self.master, slave = pty.openpty()
        self.popen = subprocess.Popen(
            [str(a) for a in argv], env=env, stdin=slave, stdout=slave, stderr=slave,
            start_new_session=True, preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        os.close(slave)
        self.text = ''
        self._closing = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._closing.is_set():
            if not select.select([self.master], [], [], 0.1)[0]:
                continue
            try:
                data = os.read(self.master, 65536)
            except OSError:  # hung up
                return
            if not data:
                return
            self.text += data.decode('utf-8', errors='replace')

    def close(self) -> None:
        """Close the terminal window: the kernel hangs up its session (SIGHUP)."""
        self._closing.set()
        self._reader.join(HANG_GUARD)  # a read in progress would keep the terminal open
        os.close(self.master)


@pytest.mark.parametrize('how', ['SIGKILL', 'SIGTERM', 'terminal closed'])
def test_the_nodes_end_with_bringup_and_their_goals_with_shutting_down(tmp_path, tiny_weights,
                                                                       how):
    env = ros_env(free_domain_id())
    argv = [LIB / 'tryon_bringup', '--nodes', 'tryon_server']
    for name, value in server_params(tiny_weights).items():
        argv += ['--set', f'{name}={value}']
    if how == 'terminal closed':
        bringup = Terminal(argv, env)
        output = lambda: bringup.text  # noqa: E731
    else:
        bringup = Proc(argv, env, tmp_path / 'bringup.log')
        output = bringup.log
    wait_until(lambda: READY['tryon_server'] in output(), HANG_GUARD,
               lambda: f'tryon_server to start:\n{output()}')
    server = int(re.search(r'started tryon_server \(pid (\d+)\)', output())[1])
    names = [n for n in dds_shm.own_files(server) if dds_shm.is_segment(n)]
    argv = Path(f'/proc/{server}/cmdline').read_text().split('\0')
    folder = Path(argv[argv.index('--params-file') + 1]).parent  # bringup's temp folder
    client = Spinner('supervisor_death_client', int(env['ROS_DOMAIN_ID']))
    try:
        action = ActionClient(client.node, TryOn, 'tryon')
        assert action.wait_for_server(timeout_sec=HANG_GUARD)
        running = threading.Event()
        handle = client.wait(action.send_goal_async(
            person_goal(num_inference_steps=1000), lambda _f: running.set()), HANG_GUARD)
        assert handle.accepted
        result = handle.get_result_async()
        assert running.wait(HANG_GUARD)  # the goal runs
        start = time.monotonic()
        if how == 'terminal closed':
            bringup.close()
        else:
            os.kill(bringup.pid, getattr(signal, how))
        wait_until(lambda: not Path(f'/proc/{server}').exists(), HANG_GUARD,
                   f'tryon_server (pid {server}) to end after bringup got {how}')
        seconds = time.monotonic() - start
        response = client.wait(result, HANG_GUARD)
        print(f'tryon_bringup {how}: tryon_server ended {seconds:.2f} s later, goal '
              f'{response.result.error_code}: {response.result.message}')
        assert response.result.error_code == TryOn.Result.SHUTTING_DOWN, response.result
        assert bringup.popen.wait(HANG_GUARD) is not None
        assert names and dds_shm.names_bytes(names) == 0  # it exited cleanly: segment gone
    finally:
        client.close()
        if bringup.popen.poll() is None:
            os.killpg(bringup.popen.pid, signal.SIGKILL)
        if Path(f'/proc/{server}').exists():
            os.kill(server, signal.SIGKILL)
        shutil.rmtree(folder, ignore_errors=True)  # a SIGKILLed bringup cannot remove it


def test_a_node_started_by_hand_outlives_the_shell_that_started_it(tmp_path):
    env = ros_env(free_domain_id())
    log = tmp_path / 'camera.log'
    argv = ' '.join(str(a) for a in node_argv('camera_node', {'camera.fps': 5.0}))
    shell = subprocess.Popen(['sh', '-c', f'{argv} > {log} 2>&1 & echo $!; read _'], env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    camera = int(shell.stdout.readline())
    client = Spinner('by_hand_client', int(env['ROS_DOMAIN_ID']))
    stamps: list = []
    try:
        wait_until(lambda: READY['camera_node'] in log.read_text(), HANG_GUARD,
                   lambda: f'camera_node to start:\n{log.read_text()}')
        shell.stdin.close()  # the shell ends: the node's parent is gone
        shell.wait(HANG_GUARD)
        gone = time.time()
        client.node.create_subscription(Image, 'image_raw', lambda m: stamps.append(
            m.header.stamp.sec + m.header.stamp.nanosec * 1e-9), qos_profile_sensor_data)
        wait_until(lambda: stamps and stamps[-1] > gone, HANG_GUARD,
                   lambda: f'a frame after its parent ended:\n{log.read_text()}')
        assert Path(f'/proc/{camera}').exists()
    finally:
        client.close()
        os.kill(camera, signal.SIGINT)
        wait_until(lambda: not Path(f'/proc/{camera}').exists(), HANG_GUARD,
                   'camera_node to stop on SIGINT')
    assert 'SIGINT: shutting down' in log.read_text()


def test_lifecycle_shutdown_then_exit_leaves_no_segment(tmp_path):
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    env = ros_env(free_domain_id())
    camera = Proc(node_argv('camera_node', {'camera.fps': 5.0}), env, tmp_path / 'camera.log')
    client = Spinner('lifecycle_shutdown_client', int(env['ROS_DOMAIN_ID']))
    try:
        camera.wait_for_log(READY['camera_node'], timeout=HANG_GUARD)
        names = [n for n in dds_shm.own_files(camera.pid) if dds_shm.is_segment(n)]
        before = dds_shm.names_bytes(names)
        service = client.node.create_client(ChangeState, '/camera_node/change_state')
        assert service.wait_for_service(timeout_sec=HANG_GUARD)
        request = ChangeState.Request(
            transition=Transition(id=Transition.TRANSITION_ACTIVE_SHUTDOWN))
        assert client.wait(service.call_async(request), HANG_GUARD, 'change_state').success
        camera.wait_for_log('lifecycle state: finalized', timeout=HANG_GUARD)
    finally:
        client.close()
        code = camera.stop(HANG_GUARD)
    after = dds_shm.names_bytes(names)
    print(f'camera_node: lifecycle shutdown, then SIGINT -> exit {code}; its Fast DDS '
          f'segment {before} -> {after} bytes')
    assert code == 0, camera.log()
    assert names and before > 0 and after == 0
