"""A TryOn goal crosses two processes over loopback DDS: feedback, images and result."""

import json
import subprocess

import pytest
from rosutil import free_domain_id, HANG_GUARD, Proc, process_udp_addresses, ROOT, ros_env, \
    script_argv

pytestmark = pytest.mark.stack  # node processes: not in make check

PROCS = ROOT / 'test' / 'processes'


def test_goal_feedback_result_between_processes(tmp_path):
    env = ros_env(free_domain_id())
    server = Proc(script_argv(PROCS / 'echo_tryon_server.py'), env, tmp_path / 'server.log')
    try:
        server.wait_for_log('echo server ready', timeout=HANG_GUARD)
        client = subprocess.run(script_argv(PROCS / 'tryon_goal_client.py'), env=env,
                                capture_output=True, text=True, timeout=HANG_GUARD,
                                cwd=ROOT)
        assert client.returncode == 0, client.stdout + client.stderr
        summary = json.loads(client.stdout.strip().splitlines()[-1])
        # While the server is up and has talked to a client, every UDP socket it holds is
        # bound to loopback: no discovery or data socket on another interface.
        addresses = process_udp_addresses(server.pid)
    finally:
        assert server.stop() == 0, server.log()
    assert summary['accepted'] is True
    assert [f['step'] for f in summary['feedback']] == [1, 2, 3, 4, 5]
    assert all(f['total'] == 5 for f in summary['feedback'])
    assert summary['feedback'][-1]['preview'] == [16, 16]  # 128x128 person, every 8th pixel
    assert summary['error_code'] == 0 and summary['seed'] == 1234
    assert summary['shape'] == [128, 128, 3]
    assert summary['sha'] == summary['expected_sha']  # bgr8 in, rgb8 out, inverted exactly
    assert summary['timings'] == ['total']
    assert addresses, 'the server holds no UDP socket: DDS did not start'
    assert addresses <= {'127.0.0.1'}, f'non-loopback UDP sockets: {addresses}'
