"""
vton_soak: its figures (no ROS) and a short real run with faults over loopback DDS.

The short run starts the whole stack under tryon_bringup --respawn with tiny random
weights, sends 30 goals from 3 clients, SIGKILLs camera, segmentation and server nodes,
and must find every accepted goal answered, every goal request responded to, each
client's first goal after the server's kill a success, no crash, and none of the stack's
Fast DDS shared memory left after the stop. A soak client facing a server that withholds
its goal replies takes an accepted goal from the status topic, and has no answer for a
goal that is not listed there either.
"""

import json
from pathlib import Path
import subprocess

import pytest
from rosutil import free_domain_id, HANG_GUARD, LIB, Proc, ros_env, script_argv
from vton_interfaces.action import TryOn
from vton_ros.cli import vton_soak
from vton_ros.nodes.waits import wait_future
from vton_ros.supervision import dds_shm, soak_report

pytestmark = pytest.mark.stack  # node processes: not in make check

NODES = ('camera_node', 'tryon_server')
RAW_SERVER = Path(__file__).resolve().parent / 'processes' / 'raw_action_server.py'


def _goal(index, accepted=True, code='SUCCESS', cause='normal', t=(10.0, 11.0)):
    return {'index': index, 'id': f'{index:08x}' + 'ab' * 12, 'cause': cause,
            'accepted': accepted, 'code': code, 't_start': t[0], 't_end': t[1]}


def _record(goals, kills=(), exits=(), ends=None, samples=()):
    return {'goals': list(goals), 'kills': list(kills), 'exits': list(exits),
            'server_ends': ends or {}, 'samples': list(samples), 'supervisor_exit_code': 0}


def test_answered_by_the_result_or_by_the_server_log_lost_only_to_a_server_kill():
    vanished = _goal(1, code=None, cause='vanish')
    lost = _goal(2, code=None, t=(20.0, 25.0))
    silent = _goal(3, code=None, t=(30.0, 31.0))
    record = _record([_goal(0), vanished, lost, silent, _goal(4, accepted=False)],
                     kills=[{'t': 22.0, 'node': 'tryon_server', 'pid': 7}],
                     exits=[{'node': 'tryon_server', 'code': -9}],
                     ends={vanished['id'][:8]: 'SUCCESS'})
    assert [g['index'] for g in soak_report.unanswered(record)] == [3]
    summary = soak_report.summarize(record, NODES)
    assert summary['accepted'] == 4 and summary['answered'] == 2
    assert summary['lost_to_server_kills'] == 1 and summary['unanswered'] == [silent['id']]
    assert summary['codes_by_cause'] == {'normal': {'LOST': 1, 'REJECTED': 1, 'SUCCESS': 1,
                                                    'UNANSWERED': 1},
                                         'vanish': {'SUCCESS': 1}}
    assert summary['crashes'] == []


def test_no_response_is_a_failure_unless_the_server_was_down():
    down = dict(_goal(0, accepted=False, t=(20.0, 21.0)), note='goal response: given up')
    silent = dict(_goal(1, accepted=False, t=(40.0, 100.0)), note='goal response: no answer')
    check = _goal(2, cause='after_server_kill', t=(30.0, 31.0))
    refused = dict(_goal(3, accepted=False, cause='after_server_kill'), note='no action server')
    record = dict(_record([down, silent, check, refused],
                          kills=[{'t': 19.0, 'node': 'tryon_server', 'pid': 7}]),
                  server_restarts=[{'t': 19.0, 'up': 29.0}])
    assert [soak_report.outcome(record, g) for g in record['goals']] == [
        'LOST', 'NO_RESPONSE', 'SUCCESS', 'NO_RESPONSE']  # never REJECTED
    summary = soak_report.summarize(record, NODES)
    assert summary['no_response'] == [1, 3] and summary['accepted_from_status'] == []
    check['from_status'] = True  # its acceptance read from the status topic
    record['goal_replies_missing'] = [check['id']]  # and its reply never came
    summary = soak_report.summarize(record, NODES)
    assert summary['accepted_from_status'] == [2] and summary['goal_replies_missing'] == [2]
    assert summary['after_server_kill'] == {'goals': 2, 'failed': [
        {'index': 3, 'outcome': 'NO_RESPONSE', 'note': 'no action server'}]}


def test_a_live_client_without_its_result_is_no_response_even_if_the_server_ended_it():
    silent = dict(_goal(0, code=None, t=(40.0, 340.0)), note='result: no answer after 300 s')
    down = dict(_goal(1, code=None, t=(20.0, 25.0)), note='result: no answer after 300 s')
    record = dict(_record([silent, down], kills=[{'t': 22.0, 'node': 'tryon_server', 'pid': 7}],
                          ends={silent['id'][:8]: 'PREEMPTED'}),
                  server_restarts=[{'t': 22.0, 'up': 30.0}])
    assert [soak_report.outcome(record, g) for g in record['goals']] == ['NO_RESPONSE', 'LOST']
    summary = soak_report.summarize(record, NODES)
    assert summary['no_response'] == [0] and summary['answered'] == 0
    assert summary['lost_to_server_kills'] == 1
    # the first goals of clients made after one vanished (new participants) are counted
    silent.update(client='soak_client_1_5', client_goal=0)
    down.update(client='soak_client_2', client_goal=0)
    assert soak_report.first_goal_figures(record) == {'sent': 1, 'no_response': 1}


def test_exits_not_caused_by_a_kill_are_crashes():
    record = _record([], kills=[{'t': 1.0, 'node': 'camera_node', 'pid': 5}],
                     exits=[{'node': 'camera_node', 'code': -9},
                            {'node': 'camera_node', 'code': -9},
                            {'node': 'tryon_server', 'code': 1}])
    assert soak_report.crashes(record) == [{'node': 'camera_node', 'code': -9},
                                           {'node': 'tryon_server', 'code': 1}]


def test_rss_slope_per_100_goals_after_warm_up_and_per_process():
    samples = [{'t': float(i), 'node': 'tryon_server', 'pid': 1, 'rss_mb': 500.0 + 0.2 * i,
                'fds': 40, 'threads': 12, 'goals_done': i} for i in range(0, 400, 4)]
    for sample in samples[:5]:  # starting up: no DDS participant yet, models loading
        sample.update(fds=3, threads=1, rss_mb=50.0)
    samples[-1]['rss_mb'] = 0.0  # exiting: left out
    samples += [{'t': 500.0, 'node': 'tryon_server', 'pid': 2, 'rss_mb': 450.0, 'fds': 41,
                 'threads': 13, 'goals_done': 400}]
    figures = soak_report.node_figures(_record([], samples=samples), 'tryon_server')
    # up from goal 20; steady from the middle of goals 20..392
    assert figures['processes'] == 2 and figures['longest_process_goals'] == 372
    assert figures['steady_goals'] == 184
    assert figures['rss_mb_per_100_goals'] == pytest.approx(20.0)
    assert figures['fds_per_100_goals'] == pytest.approx(0.0, abs=1e-9)
    assert figures['start'] == {'rss_mb': pytest.approx(541.6), 'fds': 40, 'threads': 12}
    assert figures['end'] == {'rss_mb': pytest.approx(578.4), 'fds': 40, 'threads': 12}
    assert soak_report.slope_per_100([(0, 1.0), (1, 2.0)]) is None  # too few to say
    assert figures['steady_s'] == pytest.approx(184.0) and figures['steady_from_goal'] == 208
    # the server keeps finished goals for tryon.result_timeout s: warm-up lasts that long
    held = soak_report.node_figures(_record([], samples=samples), 'tryon_server', hold_s=250.0)
    assert held['steady_from_goal'] == 272 and held['steady_goals'] == 120
    assert held['rss_mb_per_100_goals'] == pytest.approx(20.0)
    # too short a steady window to judge: no slope at all
    short = soak_report.node_figures(_record([], samples=samples), 'tryon_server', hold_s=340.0)
    assert short['steady_goals'] == 32 and short['rss_mb_per_100_goals'] is None
    shm = [{'t': 0.0, 'goals_done': 0, 'mb': 10.0}, {'t': 1.0, 'goals_done': 5, 'mb': 80.0},
           {'t': 2.0, 'goals_done': 9, 'mb': 12.0}]
    assert soak_report.shm_figures(shm) == {'start': 10.0, 'end': 12.0, 'max': 80.0}


def test_short_soak_with_kills(tmp_path):
    out = tmp_path / 'soak'
    run = subprocess.run([LIB / 'vton_soak', '--goals', '30', '--clients', '3', '--kills',
                          '3', '--kill-server', '--seed', '8', '--out', out],
                         env=ros_env(free_domain_id()), capture_output=True, text=True,
                         timeout=HANG_GUARD * 2)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    saved = json.loads((out / 'soak.json').read_text())
    summary = saved['summary']
    assert summary['goals'] == 30 and summary['unanswered'] == [] and not summary['crashes']
    assert summary['no_response'] == []  # every goal request was answered
    # the restarted server is reached by every client: each one's next goal succeeded
    assert summary['after_server_kill'] == {'goals': 3, 'failed': []}, saved['goals']
    assert saved['server_restarts'][0]['up'] > saved['server_restarts'][0]['t']
    assert summary['kills'] == {'camera_node': 1, 'segmentation_node': 1, 'tryon_server': 1}
    # the supervisor reported each kill as that node's exit (and nothing else exited)
    assert sorted(e['node'] for e in saved['exits']) == sorted(k['node'] for k in saved['kills'])
    assert all(e['code'] == soak_report.KILLED for e in saved['exits'])
    assert summary['dds_shm_mb']['max'] > 0  # the stack's own segments, sampled
    assert summary['dds_shm_after_stop_mb'] == 0  # bringup gave back the killed' segments
    assert summary['accepted'] == summary['answered'] + summary['lost_to_server_kills']
    assert summary['codes_by_cause']['normal'].get('SUCCESS', 0) > 0
    # every killed node came back: a new process was sampled after the kill
    for kill in saved['kills']:
        assert any(s['node'] == kill['node'] and s['pid'] != kill['pid'] and s['t'] > kill['t']
                   for s in saved['samples']), kill
    assert (out / 'soak.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_a_soak_client_takes_a_lost_goal_reply_from_the_status_topic(tmp_path):
    domains = {mode: free_domain_id() for mode in ('lost_reply', 'no_reply')}
    servers = {mode: Proc(script_argv(RAW_SERVER, mode), ros_env(domain), tmp_path / f'{mode}.log')
               for mode, domain in domains.items()}
    clients = []
    try:
        for mode, server in servers.items():
            server.wait_for_log('ready')
            clients.append(vton_soak.Client(f'soak_client_{mode}', domains[mode]))
            assert clients[-1].action.wait_for_server(timeout_sec=HANG_GUARD)
        lost, silent = clients
        # the server lists the goal as executing and never answers its request
        handle = lost.send(TryOn.Goal(), None, lambda: False, HANG_GUARD)
        servers['lost_reply'].wait_for_log('goal listed, its reply withheld')
        assert handle is not None and handle.accepted
        assert lost.requests.replies_missing() == {bytes(handle.goal_id.uuid).hex()}
        response = wait_future(handle.get_result_async(), HANG_GUARD, 'result')
        assert response.result.message == 'ended by raw_action_server lost_reply'
        # neither answered nor listed: no handle at the end of the wait (the soak's
        # NO_RESPONSE), and none at once when the soak gives up (its server was killed)
        assert silent.send(TryOn.Goal(), None, lambda: False, 5.0) is None
        servers['no_reply'].wait_for_log('goal neither listed nor answered')
        asked = []
        assert silent.send(TryOn.Goal(), None, lambda: asked.append(1) or True,
                           HANG_GUARD) is None and asked == [1]
        assert not silent.requests.from_status
    finally:
        for client in clients:
            client.close()
            dds_shm.release(client.shm_files)  # the port files Fast DDS leaves on a close
        for server in servers.values():
            server.stop()
