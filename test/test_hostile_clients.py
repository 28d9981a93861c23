"""
tryon_server against hostile and careless clients, in real processes over loopback DDS.

A flood of goals from several processes, clients that die mid-goal, late result requests,
tiny and absurd images, and goal strings that try to forge or flood the server's log.
"""

import json
import os
from pathlib import Path

import pytest
from rosutil import free_domain_id, HANG_GUARD, node_argv, Proc, ROOT, ros_env, script_argv
from stack import server_params
from vton_interfaces.action import TryOn

R = TryOn.Result
SUCCEEDED = 4  # action_msgs GoalStatus
PROCESSES = ROOT / 'test' / 'processes'


class Server:
    """tryon_server alone (goals bring their person images) in its own ROS domain."""

    def __init__(self, tmp: Path, weights: Path, **params) -> None:
        self.tmp = tmp
        self.env = ros_env(free_domain_id())
        self.proc = Proc(node_argv('tryon_server', dict(server_params(weights), **params)),
                         self.env, tmp / 'server.log')
        self.proc.wait_for_log('loaded CatVTON', timeout=HANG_GUARD)

    def usage(self) -> dict:
        """Return the server process's resident memory (MB), open fds and threads now."""
        status = Path(f'/proc/{self.proc.pid}/status').read_text()
        fields = dict(line.split(':', 1) for line in status.splitlines())
        return {'rss_mb': int(fields['VmRSS'].split()[0]) / 1024,
                'fds': len(os.listdir(f'/proc/{self.proc.pid}/fd')),
                'threads': int(fields['Threads'])}


@pytest.fixture()
def queue_server(tmp_path, tiny_weights):  # noqa: F811
    server = Server(tmp_path, tiny_weights, **{'tryon.busy_policy': 'queue',
                                               'tryon.queue_size': 4})
    yield server
    assert server.proc.stop() == 0, server.proc.log()[-3000:]


def test_flood_of_goals_from_four_processes_every_request_answered(queue_server, tmp_path):
    go = tmp_path / 'go'
    before = queue_server.usage()
    clients = [Proc(script_argv(PROCESSES / 'flood_client.py', '50', go), queue_server.env,
                    tmp_path / f'client{i}.log') for i in range(4)]
    try:
        for client in clients:
            client.wait_for_log('ready', timeout=HANG_GUARD)
        go.touch()
        for client in clients:
            assert client.popen.wait(HANG_GUARD) == 0, client.log()
    finally:
        for client in clients:
            client.stop()
    after = queue_server.usage()
    summaries = [json.loads(c.log().strip().splitlines()[-1]) for c in clients]
    totals = {k: sum(s[k] for s in summaries) for k in ('answered', 'accepted', 'rejected')}
    print(f'flood 4 x 50: {totals}, lost {200 - totals["answered"]}; server before '
          f'{before}, after {after}')
    for summary in summaries:
        assert summary['answered'] == 50, summary  # accepted or rejected, none lost
        assert summary['results'] == summary['accepted'], summary
        assert set(summary['codes']) <= {R.SUCCESS}, summary
        assert set(summary['statuses']) <= {SUCCEEDED}, summary
    assert totals['accepted'] >= 5 and totals['rejected'] > 0, totals  # 1 runs, 4 queue
    log = queue_server.proc.log()
    assert log.count('ended SUCCESS') == totals['accepted']
