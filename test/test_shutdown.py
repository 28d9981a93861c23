"""
Ctrl-C and SIGTERM for every process, and a dying node in tryon_bringup.

Real node processes over loopback DDS (tiny random CatVTON weights). Shutdown times are
printed (pytest -s) for the record, never asserted: the machine may be loaded.
"""

import os
from pathlib import Path
import re
import signal
import subprocess
import time

import cv2
import pytest
from rosutil import free_domain_id, LIB, node_argv, Proc, ros_env, wait_until
from stack import server_params
from vton_ros.media import samples

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


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM], ids=['SIGINT', 'SIGTERM'])
def test_every_node_exits_0_on_a_signal(tmp_path, tiny_weights, signum):  # noqa: F811
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
    try:
        for name, proc in procs.items():
            proc.wait_for_log(READY[name], timeout=HANG_GUARD)
        procs['segmentation_node'].wait_for_log('ready on cpu', timeout=HANG_GUARD)
        for name, proc in procs.items():
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
    bringup = Proc([LIB / 'tryon_bringup', '--namespace', 'mirror_x',
                    '--set', f'catvton.base_model={tmp_path / "no_weights"}',
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
    code, seconds = interrupt(bringup, signum)
    print(f'tryon_bringup: {signal.Signals(signum).name} -> exit {code} in {seconds:.2f} s')
    log = bringup.log()
    assert code == 0, log
    assert log.count(': shutting down') == 3 and 'all nodes stopped' in log
    assert not any(Path(f'/proc/{pid}').exists() for pid in pids)
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
