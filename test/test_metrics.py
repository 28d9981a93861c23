"""
The Prometheus metrics: the ROS-free registry, the page's /metrics route, and a real stack.

The stack test starts one tryon_bringup (tryon_server with tiny random weights, the page
with a token, metrics_exporter on a free port) over loopback DDS, drives it with a plain
rclpy action client and scrapes both endpoints over HTTP on 127.0.0.1 with
prometheus_client's own text parser while goals run and end, and after tryon_server is
killed and respawned.
"""

import asyncio
import os
import re
import signal
import urllib.error
import urllib.request

from aiohttp import ClientSession
import numpy as np
from prometheus_client.parser import text_string_to_metric_families
import pytest
from rosutil import ActionClient, free_domain_id, HANG_GUARD, LIB, Proc, ros_env, Spinner, \
    wait_until
from sensor_msgs.msg import Image
from stack import person_goal, server_params
from vton_interfaces.action import TryOn
from vton_ros.cli.tryon_bringup import build_parser
from vton_ros.nodes import image_conv
from vton_ros.nodes.outcome import CODE_NAMES
from vton_ros.settings import files as param_files
from vton_ros.settings import stack as param_stack
from vton_ros.supervision.metrics import CONTENT_TYPE, diagnostic_values, MirrorMetrics, \
    STAGES
from vton_ros.supervision.rates import RateMeter
from vton_ros.ui.app import build_app, WebServer
from vton_ros.ui.catalog import Garments
from vton_ros.ui.hub import Hub

R = TryOn.Result
CODES = sorted(CODE_NAMES.values())
TOKEN = 'metrics-s3cret'


def samples(text: str) -> dict:
    """Parse a scrape: {(sample name, frozenset of labels): value}."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(scrape: dict, sample: str, **labels) -> float | None:
    """Return one sample of a parsed scrape (None if absent)."""
    return scrape.get((sample, frozenset(labels.items())))


class Clock:
    """A settable monotonic clock."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# ---- the registry (no ROS) ---------------------------------------------------------------
def test_every_code_starts_at_zero_and_goals_count_by_code_with_their_stages():
    metrics = MirrorMetrics(CODES, 'cpu,demo')
    first = samples(metrics.render().decode())
    for code in CODES + ['UNKNOWN']:
        assert value(first, 'vton_tryons_total', code=code) == 0.0, code
    assert value(first, 'vton_settings_info', profile='cpu,demo') == 1.0
    assert value(first, 'vton_model_info', kind='unknown', name='') == 1.0
    assert value(first, 'vton_queue_depth') == 0.0 and value(first, 'vton_busy') == 0.0
    metrics.outcome('SUCCESS', {'preprocess': 0.02, 'denoise': 3.0, 'total': 3.5,
                                'made_up_stage': 1.0})
    metrics.outcome('SUCCESS', {'denoise': 30.0, 'total': 31.0})
    metrics.outcome('INVALID_IMAGE', {})
    metrics.outcome('NOT_A_CODE', {'total': -1.0})
    after = samples(metrics.render().decode())
    assert value(after, 'vton_tryons_total', code='SUCCESS') == 2.0
    assert value(after, 'vton_tryons_total', code='INVALID_IMAGE') == 1.0
    assert value(after, 'vton_tryons_total', code='UNKNOWN') == 1.0  # no new label
    assert value(after, 'vton_stage_duration_seconds_count', stage='denoise') == 2.0
    assert value(after, 'vton_stage_duration_seconds_sum', stage='denoise') == 33.0
    assert value(after, 'vton_stage_duration_seconds_bucket', stage='denoise', le='5.0') == 1.0
    assert value(after, 'vton_stage_duration_seconds_count', stage='preprocess') == 1.0
    assert value(after, 'vton_stage_duration_seconds_count', stage='total') == 2.0  # not -1
    assert not any(dict(labels).get('stage') == 'made_up_stage' for _, labels in after)


def test_stages_are_the_servers():
    from vton_ros.goals import tryon_job

    assert set(tryon_job.STAGES) | {'total', 'camera_wait'} == set(STAGES)


def test_queue_model_restarts_and_live_fps():
    clock = Clock()
    metrics = MirrorMetrics(CODES, '', clock=clock)
    metrics.queue(2, True)
    metrics.model('random', 'models/test/' + 'x' * 200)
    assert not metrics.seen('tryon_server', 'host/10')  # first sight: no restart
    assert not metrics.seen('tryon_server', 'host/10')
    assert metrics.seen('tryon_server', 'host/11')
    assert not metrics.seen('camera_node', 'host/12')
    for _ in range(20):  # 20 frames over the last 2 s of the 5 s window
        clock.now += 0.1
        metrics.live_frame()
    scrape = samples(metrics.render().decode())
    assert value(scrape, 'vton_queue_depth') == 2.0 and value(scrape, 'vton_busy') == 1.0
    assert value(scrape, 'vton_settings_info', profile='unknown') == 1.0
    model, = [dict(labels) for sample, labels in scrape if sample == 'vton_model_info']
    assert model['kind'] == 'random' and len(model['name']) == 80
    assert value(scrape, 'vton_node_restarts_total', node='tryon_server') == 1.0
    assert value(scrape, 'vton_node_restarts_total', node='camera_node') is None
    assert value(scrape, 'vton_live_fps') == pytest.approx(4.0)
    clock.now += 10.0
    assert samples(metrics.render().decode())[('vton_live_fps', frozenset())] == 0.0


def test_each_registry_is_its_own():
    a, b = MirrorMetrics(CODES), MirrorMetrics(CODES)  # no duplicate names: not the global one
    a.outcome('SUCCESS', {})
    assert value(samples(b.render().decode()), 'vton_tryons_total', code='SUCCESS') == 0.0


def test_rate_meter_and_diagnostic_values():
    clock = Clock()
    window = RateMeter(2.0, clock)
    assert window.rate() == 0.0 and window.latency() == 0.0
    window.tick(0.2)
    clock.now += 1.0
    window.tick(0.4)
    assert window.rate() == 1.0 and window.latency() == pytest.approx(0.3)
    clock.now += 1.5
    assert window.rate() == 0.5 and window.latency() == pytest.approx(0.4)
    assert diagnostic_values([('pid', '42'), ('queue_depth', '3'), ('busy', '1')]) == \
        ('42', 3, True)
    assert diagnostic_values([('queue_depth', 'many'), ('busy', '')]) == (None, 0, False)


def test_bringup_and_the_stack_builder_carry_the_port_and_the_profile():
    args = build_parser().parse_args(['--metrics-port', '0', '--profile', 'cpu,demo'])
    assert args.metrics_port == 0
    built = param_stack.build('cpu,demo', metrics_port=9999)
    assert built.settings['metrics_exporter']['metrics.port'] == 9999
    assert built.settings['metrics_exporter']['metrics.host'] == '127.0.0.1'
    assert built.node_overrides('metrics_exporter') == {'metrics.port': 9999}
    assert 'metrics.port' not in built.settings['tryon_server']
    assert param_stack.build('cpu').settings['metrics_exporter']['metrics.port'] == 9477
    with pytest.raises(ValueError, match='metrics.port'):
        param_stack.build('cpu', metrics_port=70000)
    # launch's metrics_port:= is text: the schema reads it, or says what is wrong
    assert param_stack.build('cpu', metrics_port='9999').overrides == {'metrics.port': 9999}
    with pytest.raises(ValueError, match="metrics.port expects an integer, got string 'abc'"):
        param_stack.build('cpu', metrics_port='abc')
    assert param_stack.profile_environment(' cpu, demo') == {'VTON_PROFILE': 'cpu,demo'}
    assert param_stack.profile_environment('none') == {'VTON_PROFILE': 'none'}


def test_the_pages_metrics_route_keeps_the_pages_host_rules(tmp_path):
    metrics = MirrorMetrics(CODES, 'cpu')
    metrics.outcome('CANCELED', {})
    hub = Hub()
    app = build_app(None, Garments(str(tmp_path)), hub, metrics=metrics.render)
    server = WebServer(app, hub)
    url = f'http://127.0.0.1:{server.start("127.0.0.1", 0)}/metrics'
    try:
        async def check():
            async with ClientSession() as http:
                async with http.get(url) as r:
                    assert r.status == 200 and r.headers['Content-Type'] == CONTENT_TYPE
                    scrape = samples(await r.text())
                    assert value(scrape, 'vton_tryons_total', code='CANCELED') == 1.0
                async with http.get(url, headers={'Host': 'evil.example:80'}) as r:
                    assert r.status == 403  # DNS rebinding: no token, not a loopback name
        asyncio.run(check())
    finally:
        server.stop()


# ---- the real stack ----------------------------------------------------------------------
def scrape(url: str, token: str | None = None) -> dict:
    """GET a /metrics URL (with the page's token header) and parse it."""
    request = urllib.request.Request(url, headers={'X-Mirror-Token': token} if token else {})
    with urllib.request.urlopen(request, timeout=30) as reply:
        assert reply.status == 200
        return samples(reply.read().decode())


def status_of(url: str) -> int:
    """Return the HTTP status of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=30) as reply:
            return reply.status
    except urllib.error.HTTPError as err:
        return err.code


@pytest.mark.stack
def test_a_real_stack_is_scraped_as_goals_end(tmp_path, tiny_weights):
    server = {k: str(v) if not isinstance(v, (int, float)) else v
              for k, v in server_params(tiny_weights).items()}
    server.update({'tryon.busy_policy': 'queue', 'tryon.pair_wait': 600.0})
    params = tmp_path / 'params.yaml'
    params.write_text(param_files.dump_yaml({'tryon_server': server}))
    env = ros_env(free_domain_id(), VTON_MIRROR_TOKEN=TOKEN)
    bringup = Proc([LIB / 'tryon_bringup', '--nodes', 'tryon_server', '--ui',
                    '--metrics-port', '0', '--params-file', params, '--set', 'ui.port=0',
                    '--respawn', '--respawn-delay', '0.5'], env, tmp_path / 'bringup.log')
    client = None
    try:
        exporter = 'http://127.0.0.1:{}/metrics'.format(re.search(
            r'metrics at http://127\.0\.0\.1:(\d+)/metrics',
            bringup.wait_for_log('metrics at http', timeout=HANG_GUARD)).group(1))
        page = 'http://127.0.0.1:{}/metrics'.format(re.search(
            r'mirror page at http://127\.0\.0\.1:(\d+)/',
            bringup.wait_for_log('mirror page at http', timeout=HANG_GUARD)).group(1))
        bringup.wait_for_log('model loaded', timeout=HANG_GUARD)
        client = Spinner('metrics_test_client', int(env['ROS_DOMAIN_ID']))
        action = ActionClient(client.node, TryOn, 'tryon')
        assert action.wait_for_server(timeout_sec=HANG_GUARD)

        def both(check, what: str) -> dict:
            """Wait until ``check(scrape)`` holds on the exporter and on the page."""
            def ok():
                assert bringup.popen.poll() is None, bringup.log()
                found = {url: scrape(url, TOKEN if url == page else None)
                         for url in (exporter, page)}
                return found if all(check(s) for s in found.values()) else None
            return wait_until(ok, HANG_GUARD, what, interval=0.2)

        first = both(lambda s: any(name == 'vton_model_info' and ('kind', 'random') in labels
                                   for name, labels in s), 'the model on tryon/model')
        for found in first.values():
            assert value(found, 'vton_settings_info', profile='cpu') == 1.0
            assert all(value(found, 'vton_tryons_total', code=c) == 0.0 for c in CODES)
        # the page's rules: its token, by header, query or nothing (401)
        assert status_of(page) == 401 and status_of(page + '?token=wrong') == 401
        assert status_of(page + f'?token={TOKEN}') == 200

        def send(goal):
            handle = client.wait(action.send_goal_async(goal), HANG_GUARD)
            assert handle.accepted
            return handle

        waiting = send(TryOn.Goal(garment_id='', garment_image=person_goal().garment_image,
                                  cloth_type='upper'))  # no person, no camera: it waits
        queued = send(person_goal())
        both(lambda s: value(s, 'vton_busy') == 1.0 and value(s, 'vton_queue_depth') == 1.0,
             'busy with one goal queued')
        client.wait(waiting.cancel_goal_async(), HANG_GUARD)
        assert client.wait(waiting.get_result_async(), HANG_GUARD).result.error_code == \
            R.CANCELED
        assert client.wait(queued.get_result_async(), HANG_GUARD).result.error_code == \
            R.SUCCESS
        bad = person_goal()
        bad.mask = image_conv.from_mono(np.zeros((10, 10), np.uint8))  # not the person's size
        failed = client.wait(send(bad).get_result_async(), HANG_GUARD).result
        assert failed.error_code != R.SUCCESS
        code = [n for n in CODES if getattr(R, n) == failed.error_code][0]
        ended = both(lambda s: value(s, 'vton_tryons_total', code=code) == 1.0 and
                     value(s, 'vton_tryons_total', code='SUCCESS') == 1.0 and
                     value(s, 'vton_tryons_total', code='CANCELED') == 1.0 and
                     value(s, 'vton_busy') == 0.0 and value(s, 'vton_queue_depth') == 0.0,
                     f'SUCCESS, CANCELED and {code} counted, idle')
        for found in ended.values():
            assert sum(value(found, 'vton_tryons_total', code=c) for c in CODES) == 3.0
            for stage in ('preprocess', 'vae_encode', 'denoise', 'vae_decode', 'total'):
                assert value(found, 'vton_stage_duration_seconds_count', stage=stage) == 1.0
            assert value(found, 'vton_stage_duration_seconds_sum', stage='total') > 0.0
        # the live view: frames on tryon/live make the fps move
        live = client.node.create_publisher(Image, 'tryon/live', 10)
        frame = image_conv.from_rgb(np.zeros((48, 64, 3), np.uint8))

        def live_fps(s):
            live.publish(frame)
            return (value(s, 'vton_live_fps') or 0.0) > 0.0
        both(live_fps, 'a live fps above 0')
        # a restart: tryon_server killed, respawned by bringup, seen with another pid
        pid = int(re.search(r'started tryon_server \(pid (\d+)\)', bringup.log()).group(1))
        os.kill(pid, signal.SIGKILL)
        bringup.wait_for_log('model loaded', timeout=HANG_GUARD, count=2)
        restarted = both(lambda s: value(s, 'vton_node_restarts_total',
                                         node='tryon_server') == 1.0, 'the restart counted')
        for found in restarted.values():
            assert value(found, 'vton_tryons_total', code='SUCCESS') == 1.0  # kept
    finally:
        if client is not None:
            client.close()
        exit_code = bringup.stop()
    assert exit_code == 0, bringup.log()
