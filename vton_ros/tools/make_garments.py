"""
make_garments: draw the bundled garment catalogue (flat-lay PNGs + catalog.yaml).

    make_garments --out garments

The demo profile's ``garments.catalog_dir`` (package://vton_ros/garments) is this
catalogue, drawn with the same patterns and outline the demo model was trained on
(vton_ros.training.tryon_data). Deterministic: the same code writes the same pixels.
"""

import argparse
from pathlib import Path
import sys

from vton_ros.media import garments

HEIGHT, WIDTH, PERIOD = 256, 192, 48
WHITE = (245, 245, 245)
# id: (pattern, motif colour, cloth type); the demo model knows upper-body t-shirts only
CATALOG = {
    'red_tshirt': ('solid', (200, 30, 40), 'upper'),
    'red_striped_shirt': ('stripes', (200, 30, 40), 'upper'),
    'green_dotted_shirt': ('dots', (30, 160, 60), 'upper'),
    'blue_checked_shirt': ('checks', (40, 70, 190), 'upper'),
    'yellow_tshirt': ('solid', (235, 190, 40), 'upper'),
}


def write_catalog(out: Path) -> list[Path]:
    """Draw every garment of CATALOG into ``out``, write catalog.yaml; return the files."""
    from vton_ros.training.tryon_data import draw_pattern, flat_lay

    return garments.write_catalog(out, {
        gid: (flat_lay(draw_pattern(pattern, HEIGHT, WIDTH, (colour, WHITE), PERIOD)), kind)
        for gid, (pattern, colour, kind) in CATALOG.items()},
        'garment id (the PNG file stem): cloth type; written by make_garments')


def main(args: list[str] | None = None) -> int:
    """Entry point of the make_garments console script."""
    parser = argparse.ArgumentParser(prog='make_garments',
                                     description=__doc__.strip().split('\n')[0])
    parser.add_argument('--out', required=True, help='catalogue folder (created)')
    opts = parser.parse_args(args)
    try:
        files = write_catalog(Path(opts.out))
    except OSError as err:
        print(f'make_garments: {err}', file=sys.stderr)
        return 2
    print(f'wrote {len(files) - 1} garments and {garments.CATALOG_FILE} to {opts.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
