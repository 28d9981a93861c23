"""
make_tryon_data: write a synthetic paired try-on dataset (VITON-HD layout).

    make_tryon_data --out data/tryon --train 4000 --test 64 --height 128 --width 96 --seed 0

People from the bundled portraits (pose masks computed once) and drawn figures, procedural
garments, targets dressed in them. Seeded: the same options give the same files.
"""

import argparse
import sys
import time
from typing import Iterable

from tqdm import tqdm


def build_parser() -> argparse.ArgumentParser:
    """Command-line flags."""
    ap = argparse.ArgumentParser(prog='make_tryon_data',
                                 description=__doc__.strip().split('\n')[0])
    ap.add_argument('--out', required=True, help='dataset root (created)')
    ap.add_argument('--train', type=int, default=4000, help='training pairs (default 4000)')
    ap.add_argument('--test', type=int, default=64, help='test pairs (default 64)')
    ap.add_argument('--height', type=int, default=128, help='image height (default 128)')
    ap.add_argument('--width', type=int, default=96, help='image width (default 96)')
    ap.add_argument('--seed', type=int, default=0, help='random seed (default 0)')
    return ap


def _tqdm(iterable: Iterable, desc: str, total: int) -> Iterable:
    return tqdm(iterable, desc=desc, total=total, dynamic_ncols=True)


def main(args: list[str] | None = None) -> int:
    """Entry point of the make_tryon_data console script."""
    opts = build_parser().parse_args(args)
    if min(opts.train, opts.test) < 0 or min(opts.height, opts.width) < 16:
        print('make_tryon_data: error: counts must be >= 0 and sizes >= 16', file=sys.stderr)
        return 2
    from vton_ros.training.tryon_data import make_tryon_dataset
    start = time.perf_counter()
    counts = make_tryon_dataset(opts.out, opts.train, opts.test, opts.height, opts.width,
                                opts.seed, progress=_tqdm)
    print(f'wrote {counts} pairs to {opts.out} in {time.perf_counter() - start:.1f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
