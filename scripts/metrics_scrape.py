"""
A real scrape series of a mirror's /metrics, and the dashboard's panels drawn from it.

Starts ``tryon_bringup --profile cpu --metrics-port 0 --respawn`` with the demo model (the
bundled portrait as the camera, pose masks, live follow on) on this machine's loopback,
scrapes ``/metrics`` every --period seconds with prometheus_client's parser while a plain
rclpy client sends try-ons (catalogue garments on the camera frame; an unknown garment
and a canceled goal for the error codes) and camera_node is killed once (a restart).
Writes the series as JSON and a PNG with the panels of docs/grafana_dashboard.json worked
out from it (the same PromQL, computed here). Ends by itself.

    source scripts/env.sh && python scripts/metrics_scrape.py --png docs/metrics_scrape.png
"""

import argparse
import json
import os
from pathlib import Path
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / 'install' / 'vton_ros' / 'lib' / 'vton_ros'
WAIT = 600.0  # seconds: the bound of every wait
GARMENTS = ('red_tshirt', 'blue_checked_shirt', 'green_dotted_shirt', 'yellow_tshirt')
DEMO = 'package://vton_ros/models/demo'
STACK = {  # the demo model over the cpu profile, live follow on, no prerender (each tap runs)
    'camera_node': {'camera.fps': 4.0},
    'segmentation_node': {'live.enabled': True, 'segmentation.max_rate': 4.0},
    'tryon_server': {'catvton.base_model': f'{DEMO}/base', 'catvton.vae': f'{DEMO}/vae',
                     'catvton.attn_ckpt': f'{DEMO}/catvton', 'catvton.precision': 'fp32',
                     'catvton.height': 128, 'catvton.width': 96, 'catvton.repaint': True,
                     'garments.catalog_dir': 'package://vton_ros/garments',
                     'tryon.busy_policy': 'queue'}}
DOMAIN = 216 + os.getpid() % 15  # a domain of its own (tests: 1-200; the highest is 232)


def scrape(url: str) -> dict:
    """Return {'name{label=value,...}': value} of one scrape."""
    with urllib.request.urlopen(url, timeout=30) as reply:
        text = reply.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ','.join(f'{k}={v}' for k, v in sorted(s.labels.items()))
            out[f'{s.name}{{{labels}}}'] = s.value
    return out


def drive(stop: threading.Event, log: list, goals: int) -> None:
    """Send ``goals`` rounds of try-ons (some two at once, some failing on purpose)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from vton_interfaces.action import TryOn

    from vton_ros.nodes.runner import destroy
    from vton_ros.nodes.waits import SafeActionClient

    rclpy.init()
    node = rclpy.create_node('metrics_scrape_client')
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    client = SafeActionClient(node, TryOn, 'tryon')

    def wait(future):
        done = threading.Event()
        future.add_done_callback(lambda _f: done.set())
        if not done.wait(WAIT):
            raise TimeoutError(f'no answer from tryon_server in {WAIT:g} s')
        return future.result()
    try:
        if not client.wait_for_server(timeout_sec=WAIT):
            raise TimeoutError(f'no tryon action server in {WAIT:g} s')
        for i in range(goals):
            if stop.is_set():
                break
            garment = 'no_such_garment' if i % 5 == 3 else GARMENTS[i % len(GARMENTS)]
            batch = [garment] + ([GARMENTS[(i + 1) % len(GARMENTS)]] if i % 4 == 1 else [])
            handles = [wait(client.send_goal_async(TryOn.Goal(garment_id=g))) for g in batch]
            if i % 7 == 5:  # the second of a batch waits in the queue meanwhile
                time.sleep(1.0)
                wait(handles[0].cancel_goal_async())
            for name, handle in zip(batch, handles):
                log.append((time.time(), name, wait(handle.get_result_async()).result.error_code))
            time.sleep(2.0)
    finally:
        executor.shutdown()
        destroy(node)  # its action client too: else its Fast DDS segment stays in /dev/shm
        rclpy.try_shutdown()


def run(args) -> list:
    """Start the stack, scrape it while goals run, stop it; return the series."""
    logfile = Path(args.json).with_suffix('.log')
    log = open(logfile, 'w', encoding='utf-8')
    from vton_ros.settings import files as param_files

    params = Path(args.json).with_suffix('.yaml')
    params.write_text(param_files.dump_yaml(STACK))
    bringup = subprocess.Popen([LIB / 'tryon_bringup', '--profile', 'cpu', '--params-file',
                                params, '--metrics-port', '0', '--respawn',
                                '--respawn-delay', '1'],
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                               env=dict(os.environ, PYTHONUNBUFFERED='1'))  # main: DOMAIN
    series: list = []
    stop = threading.Event()
    try:
        deadline = time.monotonic() + WAIT
        while not re.search(r'metrics at (http://\S+/metrics)', logfile.read_text()) or \
                'model loaded' not in logfile.read_text():
            if time.monotonic() > deadline or bringup.poll() is not None:
                raise RuntimeError('the stack did not start: ' + logfile.read_text()[-2000:])
            time.sleep(0.5)
        url = re.search(r'metrics at (http://\S+/metrics)', logfile.read_text())[1]
        ended: list = []
        driver = threading.Thread(target=drive, args=(stop, ended, args.goals), daemon=True)
        driver.start()
        start = time.monotonic()
        killed = False
        while driver.is_alive() and time.monotonic() - start < WAIT:
            series.append({'t': time.monotonic() - start, 'values': scrape(url)})
            if not killed and len(ended) >= args.goals // 2:
                pid = re.search(r'started camera_node \(pid (\d+)\)', logfile.read_text())[1]
                os.kill(int(pid), signal.SIGKILL)
                killed = True
            time.sleep(args.period)
        for _ in range(3):  # the last goal's outcome and the gauges settle
            time.sleep(args.period)
            series.append({'t': time.monotonic() - start, 'values': scrape(url)})
    finally:
        stop.set()
        os.killpg(bringup.pid, signal.SIGINT)
        try:
            bringup.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(bringup.pid, signal.SIGKILL)
            bringup.wait(30)
        log.close()
    return series


def rate(series: list, key: str, window: float) -> tuple[list, list]:
    """Per-second rate of a counter over a trailing window (PromQL rate, roughly)."""
    ts, vs = [], []
    for i, point in enumerate(series):
        old = next(p for p in series[:i + 1] if point['t'] - p['t'] <= window)
        if point['t'] > old['t']:
            ts.append(point['t'])
            vs.append((point['values'].get(key, 0.0) - old['values'].get(key, 0.0))
                      / (point['t'] - old['t']))
    return ts, vs


def quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """histogram_quantile over cumulative (le, count) buckets."""
    total = buckets[-1][1]
    if total == 0:
        return float('nan')
    rank, prev_le, prev_count = q * total, 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float('inf'):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_count) / max(count - prev_count, 1e-9)
        prev_le, prev_count = le, count
    return prev_le


def plot(series: list, path: str) -> None:
    """Draw the dashboard's panels from the series."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    last = series[-1]['values']
    t = [p['t'] for p in series]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    ax = axes[0][0]
    codes = sorted({k for k in last if k.startswith('vton_tryons_total{') and last[k] > 0})
    for key in codes:
        ax.step(t, [p['values'].get(key, 0.0) for p in series], where='post',
                label=key.split('=')[1].rstrip('}'))
    ax.set_title('vton_tryons_total by code')
    ax.set_xlabel('s')
    ax.legend()
    ax = axes[0][1]
    for key in codes:
        ts, vs = rate(series, key, 60.0)
        ax.plot(ts, [v * 60 for v in vs], label=key.split('=')[1].rstrip('}'))
    ax.set_title('try-ons per minute by code (rate over 60 s)')
    ax.set_xlabel('s')
    ax.legend()
    ax = axes[0][2]
    stages = ['preprocess', 'segmentation', 'vae_encode', 'denoise', 'vae_decode',
              'safety_check', 'total', 'camera_wait']
    p50, p95 = [], []
    for stage in stages:
        buckets = sorted((float(k.split('le=')[1].rstrip('}').split(',')[0]), v)
                         for k, v in last.items()
                         if k.startswith('vton_stage_duration_seconds_bucket{')
                         and f'stage={stage}' in k)
        p50.append(quantile(buckets, 0.5))
        p95.append(quantile(buckets, 0.95))
    x = range(len(stages))
    ax.bar([i - 0.2 for i in x], p50, 0.4, label='p50')
    ax.bar([i + 0.2 for i in x], p95, 0.4, label='p95')
    ax.set_xticks(list(x), stages, rotation=35, ha='right')
    ax.set_yscale('log')
    ax.set_title('stage duration (histogram_quantile), s')
    ax.legend()
    ax = axes[1][0]
    ax.step(t, [p['values'].get('vton_queue_depth{}', 0.0) for p in series], where='post',
            label='vton_queue_depth')
    ax.step(t, [p['values'].get('vton_busy{}', 0.0) for p in series], where='post',
            label='vton_busy')
    ax.set_title('queue depth and busy')
    ax.set_xlabel('s')
    ax.legend()
    ax = axes[1][1]
    ax.plot(t, [p['values'].get('vton_live_fps{}', 0.0) for p in series])
    ax.set_title('vton_live_fps')
    ax.set_xlabel('s')
    ax = axes[1][2]
    restarts = {k: v for k, v in last.items() if k.startswith('vton_node_restarts_total{')}
    ax.bar([k.split('=')[1].rstrip('}') for k in restarts] or ['none'],
           list(restarts.values()) or [0])
    model = next((k for k in last if k.startswith('vton_model_info{')), '')
    profile = next((k for k in last if k.startswith('vton_settings_info{')), '')
    ax.set_title('vton_node_restarts_total')
    ax.set_xlabel(f'{model}\n{profile}', fontsize=8, family='monospace')
    fig.suptitle('A real scrape series of one mirror (the demo model on a loaded 2-core CPU), '
                 'drawn as docs/grafana_dashboard.json draws it')
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main() -> int:
    """Scrape a real stack (or only redraw --json with --plot-only)."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    parser.add_argument('--goals', type=int, default=16, help='try-ons to send (16)')
    parser.add_argument('--period', type=float, default=2.0, help='seconds between scrapes')
    parser.add_argument('--json', default='out/metrics_scrape.json', help='the series')
    parser.add_argument('--png', help='draw the panels here')
    parser.add_argument('--plot-only', action='store_true', help='redraw --json only')
    args = parser.parse_args()
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    os.environ['ROS_DOMAIN_ID'] = str(DOMAIN)  # the stack's and the client's
    if args.plot_only:
        series = json.loads(Path(args.json).read_text())
    else:
        series = run(args)
        Path(args.json).write_text(json.dumps(series))
    last = series[-1]['values']
    print(json.dumps({k: v for k, v in last.items() if not k.startswith(
        ('vton_stage_duration_seconds_bucket', 'vton_stage_duration_seconds_created',
         'vton_tryons_created', 'vton_node_restarts_created'))}, indent=1))
    if args.png:
        plot(series, args.png)
    return 0


if __name__ == '__main__':
    sys.exit(main())
