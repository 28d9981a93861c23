"""
Benchmark of the mirror page (not a test): what a shopper sees, measured in the browser.

Starts `scripts/mirror.sh` (the whole stack with mirror_ui on the demo model) on a free port
in its own ROS domain, opens the page in headless Chromium (1080x1920) and measures:
- the live view's frame rate in the page, idle and while try-ons run;
- tap -> first preview and tap -> result in the page, against the server's own total;
- CPU used by mirror_ui (user + system time of its process, in % of one core).
Prints a table, writes bench.json and bench.png to --out.

    source scripts/env.sh && python scripts/mirror_bench.py --out out/mirror_bench
"""

import argparse
import json
import os
from pathlib import Path
import random
import re
import signal
import subprocess
import sys
import time

from vton_ros.ui import browser

ROOT = Path(__file__).resolve().parents[1]
TICKS = os.sysconf('SC_CLK_TCK')


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    parser.add_argument('--out', default='out/mirror_bench', help='folder for the results')
    parser.add_argument('--idle', type=float, default=20.0, help='seconds of idle live view')
    parser.add_argument('--runs', type=int, default=5, help='try-ons to time')
    parser.add_argument('--steps', type=int, default=10, help='denoising steps per try-on')
    parser.add_argument('--fps', type=float, default=15.0, help='camera frame rate')
    parser.add_argument('--camera', default='sample:astronaut', help='camera.source')
    return parser


class Stack:
    """scripts/mirror.sh in a process group; the page URL and mirror_ui's pid from its log."""

    def __init__(self, args: argparse.Namespace, log: Path) -> None:
        env = dict(os.environ, PORT='0', CAMERA=args.camera,
                   ROS_DOMAIN_ID=str(random.SystemRandom().randint(1, 200)))
        self.log = log
        self._file = open(log, 'w')
        self.popen = subprocess.Popen(
            ['bash', str(ROOT / 'scripts' / 'mirror.sh'), '--set',
             f'catvton.num_inference_steps={args.steps}', '--set', f'camera.fps={args.fps}',
             # renders, not the shelf's ready results (shelf_bench turns it on)
             '--set', f'tryon.prerender={getattr(args, "prerender", "off")}'],
            env=env, stdout=self._file, stderr=subprocess.STDOUT, start_new_session=True)
        text = self.wait_for(r'mirror page at (http://\S+/)')
        self.url = re.search(r'mirror page at (http://\S+/)', text).group(1)
        self.ui_pid = int(re.search(r'started mirror_ui \(pid (\d+)\)', text).group(1))
        self.wait_for('model loaded')

    def wait_for(self, pattern: str, timeout: float = 600.0) -> str:
        """Wait until the log matches ``pattern``; return the log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_text(errors='replace')
            if re.search(pattern, text):
                return text
            if self.popen.poll() is not None:
                raise RuntimeError(f'the stack exited:\n{text[-3000:]}')
            time.sleep(0.2)
        raise TimeoutError(f'{pattern!r} not in the log after {timeout} s')

    def cpu_seconds(self) -> float:
        """Return mirror_ui's user + system CPU seconds so far."""
        fields = Path(f'/proc/{self.ui_pid}/stat').read_text().rsplit(')', 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def stop(self) -> int:
        """Ctrl-C the stack, as a person would; return its exit code."""
        os.killpg(self.popen.pid, signal.SIGINT)
        code = self.popen.wait(120)
        self._file.close()
        return code


def page_fps(times: list[float], start: float, end: float) -> float:
    """Frames per second of the page's frame times (ms) within [start, end]."""
    inside = [t for t in times if start <= t <= end]
    return (len(inside) - 1) * 1000.0 / (inside[-1] - inside[0]) if len(inside) > 2 else 0.0


def measure(driver, stack: Stack, args: argparse.Namespace) -> dict:
    """Run the measurements in the open page; return them."""
    js = driver.execute_script
    while js('return window.mirrorStats.frames') < 10:
        time.sleep(0.2)
    cpu0, wall0, t0 = stack.cpu_seconds(), time.monotonic(), js('return performance.now()')
    time.sleep(args.idle)
    idle = {'fps': page_fps(js('return window.mirrorStats.frameTimes'), t0,
                            js('return performance.now()')),
            'cpu_percent': 100 * (stack.cpu_seconds() - cpu0) / (time.monotonic() - wall0)}
    runs = []
    cpu0, wall0, busy_ms = stack.cpu_seconds(), time.monotonic(), 0.0
    frames_busy = 0
    for i in range(args.runs):
        garment = ('red_striped_shirt', 'green_dotted_shirt', 'blue_checked_shirt')[i % 3]
        ends = js('return window.mirrorStats.ends')
        js(f'document.querySelector(\'[data-garment-id="{garment}"]\').click()')
        while js('return window.mirrorStats.ends') <= ends:
            time.sleep(0.02)
        s = js('return window.mirrorStats')
        state = js('return window.mirrorStats.state')
        if state['state'] != 'result':
            raise RuntimeError(f'try-on {i} ended {state}')
        inside = [t for t in s['frameTimes'] if s['tap'] <= t <= s['result']]
        frames_busy += len(inside)
        busy_ms += s['result'] - s['tap']
        runs.append({'garment': garment,
                     'tap_to_first_preview_s': (s['firstPreview'] - s['tap']) / 1000,
                     'tap_to_result_s': (s['result'] - s['tap']) / 1000,
                     'server_total_s': state['server_total'],
                     'fps': page_fps(s['frameTimes'], s['tap'], s['result'])})
        js('document.getElementById("live").click()')
        time.sleep(1.0)
    busy = {'fps': frames_busy * 1000.0 / busy_ms if busy_ms else 0.0,
            'cpu_percent': 100 * (stack.cpu_seconds() - cpu0) / (time.monotonic() - wall0)}
    return {'idle': idle, 'during_tryon': busy, 'runs': runs}


def median(values: list[float]) -> float:
    """Median of a non-empty list."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def report(results: dict, out: Path) -> None:
    """Print the table, write bench.json and bench.png."""
    runs = results['runs']
    page = median([r['tap_to_result_s'] for r in runs])
    server = median([r['server_total_s'] for r in runs])
    results['summary'] = {
        'idle_fps': results['idle']['fps'], 'tryon_fps': results['during_tryon']['fps'],
        'tap_to_first_preview_s': median([r['tap_to_first_preview_s'] for r in runs]),
        'tap_to_result_s': page, 'server_total_s': server,
        'page_adds_percent': 100 * (page - server) / server,
        'mirror_ui_cpu_idle_percent': results['idle']['cpu_percent'],
        'mirror_ui_cpu_tryon_percent': results['during_tryon']['cpu_percent']}
    rows = [('live view fps, idle', f'{results["idle"]["fps"]:.1f}'),
            ('live view fps, during try-ons', f'{results["during_tryon"]["fps"]:.1f}'),
            ('tap -> first preview (median s)',
             f'{results["summary"]["tap_to_first_preview_s"]:.2f}'),
            ('tap -> result in the page (median s)', f'{page:.2f}'),
            ("server's own total (median s)", f'{server:.2f}'),
            ('page + ROS add (%)', f'{results["summary"]["page_adds_percent"]:.1f}'),
            ('mirror_ui CPU idle (% of a core)', f'{results["idle"]["cpu_percent"]:.1f}'),
            ('mirror_ui CPU during try-ons (%)',
             f'{results["during_tryon"]["cpu_percent"]:.1f}')]
    print(f'| {"measure":<40} | {"value":>8} |\n|{"-" * 42}|{"-" * 10}|')
    for name, value in rows:
        print(f'| {name:<40} | {value:>8} |')
    (out / 'bench.json').write_text(json.dumps(results, indent=2))
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 3.5))
    x = range(len(runs))
    ax.bar([i - 0.2 for i in x], [r['server_total_s'] for r in runs], 0.4, label='server total')
    ax.bar([i + 0.2 for i in x], [r['tap_to_result_s'] for r in runs], 0.4,
           label='tap -> result (page)')
    ax.set_xlabel('try-on')
    ax.set_ylabel('seconds')
    ax.set_title(f'mirror page: idle {results["idle"]["fps"]:.1f} fps, during try-ons '
                 f'{results["during_tryon"]["fps"]:.1f} fps')
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / 'bench.png', dpi=100)


def run_in_browser(args: argparse.Namespace, name: str, measure, report) -> tuple[dict, int]:
    """Start the stack, open the page in portrait Chromium, ``measure(driver, stack, args)``.

    Returns the results (with the settings, the load and the stack's exit code, also given
    to ``report(results, out)``) and 0, or ({}, 2) without a browser.
    """
    reason = browser.missing()
    if reason:
        print(f'{name}: {reason}', file=sys.stderr)
        return {}, 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stack = Stack(args, out / 'stack.log')
    driver = None
    try:
        driver = browser.chrome(1080, 1920)
        driver.get(stack.url)
        results = measure(driver, stack, args)
    finally:
        if driver is not None:
            driver.quit()
        code = stack.stop()
    results['settings'] = vars(args)
    results['load_average_1_5_15'] = os.getloadavg()
    results['stack_exit_code'] = code
    report(results, out)
    return results, 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    results, code = run_in_browser(args, 'mirror_bench', measure, report)
    if results:
        out = Path(args.out)
        print(f'mirror_bench: {out / "bench.json"}, {out / "bench.png"}; '
              f'stack exited {results["stack_exit_code"]}')
    return code


if __name__ == '__main__':
    sys.exit(main())
