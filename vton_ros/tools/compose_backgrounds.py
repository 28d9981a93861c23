"""
compose_backgrounds: paste the people of a VITON-HD-layout dataset on random backgrounds.

    compose_backgrounds --data VITON_HD --backgrounds BG-20k/train --out VITON_HD_BG --seed 0

Person cut-out with SAM when --sam-checkpoint is given and segment_anything is installed,
otherwise with mediapipe's bundled person segmenter (no download). Writes OUT/<split>/image,
OUT/<split>/agnostic-mask (copied), OUT/<split>/person-mask and OUT/compose.json.
"""

import argparse
import logging
import sys
from typing import Iterable

from tqdm import tqdm


def build_parser() -> argparse.ArgumentParser:
    """Command-line flags."""
    ap = argparse.ArgumentParser(prog='compose_backgrounds',
                                 description=__doc__.strip().split('\n')[0])
    ap.add_argument('--data', required=True, help='VITON-HD root (train/ and test/ splits)')
    ap.add_argument('--backgrounds', required=True, help='folder of background images')
    ap.add_argument('--out', required=True, help='new dataset root (same layout)')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--splits', default='train,test', help='comma-separated splits')
    ap.add_argument('--sam-checkpoint', help='Segment Anything checkpoint (optional)')
    ap.add_argument('--device', default='cpu', help='device for SAM')
    return ap


def _tqdm(iterable: Iterable, desc: str, total: int) -> Iterable:
    return tqdm(iterable, desc=desc, total=total, dynamic_ncols=True)


def main(args: list[str] | None = None) -> int:
    """Entry point of the compose_backgrounds console script."""
    opts = build_parser().parse_args(args)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    from vton_ros.training.compose import compose_dataset, create_matter
    try:
        matter = create_matter(opts.sam_checkpoint, opts.device)
        try:
            counts = compose_dataset(opts.data, opts.backgrounds, opts.out, matter,
                                     seed=opts.seed, splits=tuple(opts.splits.split(',')),
                                     progress=_tqdm)
        finally:
            matter.close()
    except (ValueError, FileNotFoundError) as err:
        print(f'compose_backgrounds: error: {err}', file=sys.stderr)
        return 2
    print(f'wrote {counts} images to {opts.out} (person cut-out: {matter.name})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
