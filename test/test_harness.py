"""The test harness itself: wait_until, ROS domains per xdist worker, the goal-safe client."""

import time

import pytest
from rclpy.action import ActionServer, GoalResponse
import rosutil
from rosutil import ActionClient, free_domain_id, HANG_GUARD, Spinner, wait_until
from vton_interfaces.action import TryOn


def test_wait_until_returns_the_value_or_names_what_did_not_happen():
    calls = []
    assert wait_until(lambda: calls.append(1) or (len(calls) >= 3 and 'done'),
                      interval=0.001) == 'done'
    start = time.monotonic()
    with pytest.raises(AssertionError, match=r'after 0.2 s waiting for the log line:\nlog'):
        wait_until(lambda: None, 0.2, lambda: 'the log line:\nlog', interval=0.01)
    assert time.monotonic() - start >= 0.2


@pytest.mark.parametrize('worker, count, block', [
    ('', '', range(1, 201)), ('gw0', '1', range(1, 201)), ('gw0', '2', range(1, 101)),
    ('gw1', '2', range(101, 201)), ('gw7', '8', range(176, 201))])
def test_each_xdist_worker_has_its_own_domains(monkeypatch, worker, count, block):
    monkeypatch.setenv('PYTEST_XDIST_WORKER', worker)
    monkeypatch.setenv('PYTEST_XDIST_WORKER_COUNT', count)
    assert rosutil._worker_block() == block


def test_this_process_hands_out_its_block_in_turn():
    domains = [free_domain_id() for _ in range(len(rosutil._BLOCK))]
    assert sorted(domains) == list(rosutil._BLOCK)


class SlowTable(dict):
    """A feedback-callback table that is slow to write (the wheel writes it mid-send)."""

    def __setitem__(self, key, value):
        time.sleep(0.5)
        super().__setitem__(key, value)


def test_the_harness_client_gets_an_answer_that_comes_at_once():
    """The Kilted wheel's send_goal_async loses an answer handled while it registers."""
    domain = free_domain_id()
    server, client = Spinner('harness_server', domain), Spinner('harness_client', domain)
    try:
        ActionServer(server.node, TryOn, 'tryon', execute_callback=lambda h: TryOn.Result(),
                     goal_callback=lambda _goal: GoalResponse.REJECT)
        action = ActionClient(client.node, TryOn, 'tryon')
        assert action.wait_for_server(timeout_sec=HANG_GUARD)
        action._feedback_callbacks = SlowTable()
        for _ in range(3):
            handle = client.wait(action.send_goal_async(TryOn.Goal(), lambda _f: None))
            assert not handle.accepted  # the server's REJECT, received
    finally:
        client.close()
        server.close()
