"""
Benchmark of the instant shelf (tryon.prerender, not a test): measured in the browser.

Starts `scripts/mirror.sh` (the demo stack; config/demo.yaml turns tryon.prerender shelf on)
like mirror_bench and opens the page in headless Chromium (1080x1920). Then:
- preemption: while the server renders the shelf in the background, tap a garment it has
  not reached; the server logs how many denoising steps the background render ran after the
  goal came (it must be at most 1), and the page gives tap -> first preview and -> result;
- the ready shelf: once every garment is ready, tap each: tap -> result in the page (the
  server answers from the shelf) against a render's own time.
Prints a table, writes shelf.json to --out.

    source scripts/env.sh && python scripts/shelf_bench.py --out out/shelf_bench
"""

import argparse
import json
from pathlib import Path
import re
import sys
import time

from mirror_bench import median, run_in_browser, Stack
from vton_ros.media.garments import GarmentCatalog

ROOT = Path(__file__).resolve().parents[1]
PREEMPTED = re.compile(r'prerender: (\S+) preempted at step (\d+), (\d+) step\(s\) after')


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    parser.add_argument('--out', default='out/shelf_bench', help='folder for the results')
    parser.add_argument('--preempts', type=int, default=3, help='taps during a background '
                        'render')
    parser.add_argument('--steps', type=int, default=30, help='denoising steps per try-on '
                        '(long enough a background render for a tap to land inside)')
    parser.add_argument('--fps', type=float, default=15.0, help='camera frame rate')
    parser.add_argument('--camera', default='sample:astronaut', help='camera.source')
    parser.add_argument('--prerender', default='shelf', choices=('shelf', 'catalogue'),
                        help='tryon.prerender')
    return parser


def tap(driver, garment: str) -> dict:
    """Tap a garment, wait for the result; return the page's and the server's times."""
    js = driver.execute_script
    ends = js('return window.mirrorStats.ends')
    js(f'document.querySelector(\'[data-garment-id="{garment}"]\').click()')
    while js('return window.mirrorStats.ends') <= ends:
        time.sleep(0.01)
    s = js('return window.mirrorStats')
    if s['state']['state'] != 'result':
        raise RuntimeError(f'the try-on of {garment} ended {s["state"]}')
    first = s['firstPreview']
    out = {'garment': garment, 'tap_to_result_s': (s['result'] - s['tap']) / 1000,
           'tap_to_first_preview_s': (first - s['tap']) / 1000 if first else None,
           'server_total_s': s['state']['server_total']}
    js('document.getElementById("live").click()')
    return out


def measure(driver, stack: Stack, args: argparse.Namespace) -> dict:
    """Run both measurements in the open page; return them."""
    shelf = GarmentCatalog(str(ROOT / 'garments')).ids()
    last = shelf[-1]  # the background reaches it last
    while driver.execute_script('return window.mirrorStats.frames') < 10:
        time.sleep(0.2)
    preempts = []
    for _ in range(args.preempts):
        text = stack.log.read_text(errors='replace')
        started, seen = text.count('prerender: rendering'), len(PREEMPTED.findall(text))
        deadline = time.monotonic() + 600
        while stack.log.read_text(errors='replace').count('prerender: rendering') <= started:
            if time.monotonic() > deadline:  # e.g. the whole shelf was ready already
                raise TimeoutError('no background render started in 600 s')
            time.sleep(0.01)
        run = tap(driver, last)  # a garment the background has not rendered
        found = PREEMPTED.findall(stack.log.read_text(errors='replace'))
        run['preempted'] = [{'garment': g, 'at_step': int(k), 'steps_after_goal': int(n)}
                            for g, k, n in found[seen:]]
        preempts.append(run)
    stack.wait_for(rf'prerender: \S+ ready in \S+ s \({len(shelf)} of {len(shelf)}\)', 1800)
    ready = [tap(driver, garment) for garment in shelf]
    renders = [float(t) for t in re.findall(r'prerender: \S+ ready in (\S+) s',
                                            stack.log.read_text(errors='replace'))]
    return {'preempts': preempts, 'ready': ready, 'background_render_s': renders}


def report(results: dict, out: Path) -> None:
    """Print the table, write shelf.json."""
    ready, pre = results['ready'], results['preempts']
    after = [p['steps_after_goal'] for r in pre for p in r['preempted']]
    results['summary'] = summary = {
        'ready_tap_to_result_s': median([r['tap_to_result_s'] for r in ready]),
        'ready_tap_to_result_max_s': max(r['tap_to_result_s'] for r in ready),
        'ready_server_total_s': median([r['server_total_s'] for r in ready]),
        'background_render_s': median(results['background_render_s']),
        'denoising_step_s': median(results['background_render_s']) / results['settings']['steps'],
        'preempt_steps_after_goal_max': max(after) if after else None,
        'preempted_taps': sum(bool(r['preempted']) for r in pre),
        'preempt_tap_to_first_preview_s': median([r['tap_to_first_preview_s'] for r in pre
                                                  if r['tap_to_first_preview_s']] or [0.0]),
        'preempt_tap_to_result_s': median([r['tap_to_result_s'] for r in pre])}
    rows = [('ready garment: tap -> result (median s)', summary['ready_tap_to_result_s']),
            ('ready garment: tap -> result (max s)', summary['ready_tap_to_result_max_s']),
            ("ready garment: server's total (median s)", summary['ready_server_total_s']),
            ('one background render (median s)', summary['background_render_s']),
            ('one denoising step (median s)', summary['denoising_step_s']),
            ('taps that preempted a background render', summary['preempted_taps']),
            ('steps the render ran after the goal (max)',
             summary['preempt_steps_after_goal_max']),
            ('preempting tap -> first preview (median s)',
             summary['preempt_tap_to_first_preview_s']),
            ('preempting tap -> result (median s)', summary['preempt_tap_to_result_s'])]
    print(f'| {"measure":<44} | {"value":>8} |\n|{"-" * 46}|{"-" * 10}|')
    for name, value in rows:
        shown = f'{value:.3f}' if isinstance(value, float) else str(value)
        print(f'| {name:<44} | {shown:>8} |')
    (out / 'shelf.json').write_text(json.dumps(results, indent=2))


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    results, code = run_in_browser(args, 'shelf_bench', measure, report)
    if results:
        print(f'shelf_bench: {Path(args.out) / "shelf.json"}; '
              f'stack exited {results["stack_exit_code"]}')
    return code


if __name__ == '__main__':
    sys.exit(main())
