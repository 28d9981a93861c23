"""
Benchmark of the framing (not a test): how much of the model's input shows the person.

A person (the bundled astronaut portrait, cut out with the pose masker's own silhouette)
stands in a 1280x720 frame, scaled so their silhouette is a third of the frame wide, at
three places (left, centre, right). The pose masker makes the upper-body mask of each frame
as segmentation_node would (the person marked in it); then for catvton.framing centre and
person: the box the model sees, the share of the model's 512x384 input that falls on the
person, and the share of the mask's pixels that the box holds (the rest is the seam).
Prints a table, writes framing_bench.json and framing_bench.png to --out.

    source scripts/env.sh && python scripts/framing_bench.py --out docs
"""

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from vton_ros.media import samples
from vton_ros.pipeline.framing import crop, frame_box, split_mask
from vton_ros.pipeline.masks import PoseMaskGenerator
from vton_ros.settings.choices import FRAMINGS

FRAME = (720, 1280)
MODEL = (512, 384)
PLACES = {'left': 0.22, 'centre': 0.5, 'right': 0.8}  # silhouette centre / frame width
COLOURS = {'centre': (230, 40, 40), 'person': (40, 200, 60)}
TILE = 240  # panel rows' height in pixels


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip())
    parser.add_argument('--out', default='docs', help='folder for the JSON and the PNG')
    parser.add_argument('--portrait', default='astronaut', choices=samples.PORTRAITS)
    parser.add_argument('--share', type=float, default=1 / 3,
                        help='silhouette width / frame width (default: a third)')
    return parser


def cut_out(masker: PoseMaskGenerator, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Return the portrait cropped to its person and that person's silhouette (bool)."""
    rgb = samples.portrait(name)
    person = masker(rgb, 'upper').person
    if person is None:
        raise RuntimeError(f'the pose masker found no person in the {name} portrait')
    rows, cols = np.flatnonzero(person.any(1)), np.flatnonzero(person.any(0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    return rgb[box], person[box]


def compose(rgb: np.ndarray, person: np.ndarray, share: float,
            place: float) -> tuple[np.ndarray, np.ndarray]:
    """Put the person on a plain wall, share of the frame wide, bottom-aligned at place."""
    h, w = FRAME
    scale = share * w / person.shape[1]
    size = (round(person.shape[1] * scale), round(person.shape[0] * scale))
    rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    sil = cv2.resize(person.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    wall = np.linspace(205, 165, h, dtype=np.float32)[:, None, None]
    frame = np.broadcast_to(wall * np.array([1.0, 0.97, 0.92], np.float32),
                            (h, w, 3)).astype(np.uint8).copy()
    truth = np.zeros(FRAME, bool)
    top = max(0, h - size[1])
    left = round(place * w - size[0] / 2)
    part_h = min(size[1], h)
    src = (slice(size[1] - part_h, size[1]), slice(max(0, -left), min(size[0], w - left)))
    dst = (slice(top, top + part_h), slice(max(0, left), min(w, left + size[0])))
    frame[dst][sil[src]] = rgb[src][sil[src]]
    truth[dst] = sil[src]
    return frame, truth


def measure(frame: np.ndarray, truth: np.ndarray, marked: np.ndarray) -> dict:
    """Box, share of the model's input on the person, and share of the mask the box holds."""
    mask, bounds = split_mask(marked)
    out = {}
    for mode in FRAMINGS:
        box = frame_box(*FRAME, *MODEL, mode, mask, bounds)
        seen = crop(truth.astype(np.uint8), box, *MODEL, nearest=True)
        held = np.zeros(FRAME, bool)
        held[max(box.top, 0):box.top + box.height, max(box.left, 0):box.left + box.width] = True
        repaint = mask >= 128
        out[mode] = {'box': [box.top, box.left, box.height, box.width],
                     'input_on_person': float(np.count_nonzero(seen) / seen.size),
                     'person_pixels_in_input': int(np.count_nonzero(seen)),
                     'mask_held': float(np.count_nonzero(repaint & held) /
                                        max(1, np.count_nonzero(repaint))),
                     'input': crop(frame, box, *MODEL)}
    return out


def panel(rows: list[tuple[str, np.ndarray, dict]], path: Path) -> None:
    """Write a PNG: per place the frame with both boxes, then the centre and person inputs."""
    tiles = []
    for place, frame, res in rows:
        view = frame.copy()
        for mode, colour in COLOURS.items():
            top, left, h, w = res[mode]['box']
            cv2.rectangle(view, (left, top), (left + w - 1, top + h - 1), colour, 6)
        view = cv2.resize(view, (round(FRAME[1] * TILE / FRAME[0]), TILE),
                          interpolation=cv2.INTER_AREA)
        cells = [_label(view, f'{place}: centre box red, person box green')]
        for mode in ('centre', 'person'):
            share = res[mode]['input_on_person']
            small = cv2.resize(res[mode]['input'], (TILE * MODEL[1] // MODEL[0], TILE),
                               interpolation=cv2.INTER_AREA)
            cells.append(_label(small, f'{mode}: {100 * share:.0f}% person'))
        tiles.append(np.hstack([np.pad(c, ((4, 4), (4, 4), (0, 0)), constant_values=255)
                                for c in cells]))
    image = np.vstack(tiles)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def _label(image: np.ndarray, text: str) -> np.ndarray:
    out = image.copy()
    cv2.rectangle(out, (0, 0), (min(out.shape[1], 8 + 7 * len(text)), 18), (255, 255, 255), -1)
    cv2.putText(out, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table; write the JSON and the panel."""
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, doc = [], {'frame': list(FRAME), 'model_input': list(MODEL),
                     'portrait': args.portrait, 'silhouette_share_of_width': args.share,
                     'places': {}}
    with PoseMaskGenerator() as masker:
        rgb, person = cut_out(masker, args.portrait)
        for place, x in PLACES.items():
            frame, truth = compose(rgb, person, args.share, x)
            result = masker(frame, 'upper')
            if not result.person_found:
                raise RuntimeError(f'the pose masker found no person in the {place} frame')
            res = measure(frame, truth, result.marked_mask())
            rows.append((place, frame, res))
            doc['places'][place] = {m: {k: v for k, v in r.items() if k != 'input'}
                                    for m, r in res.items()}
    print(f'{"place":8} {"framing":8} {"box (top, left, h, w)":26} {"input on person":>16} '
          f'{"mask held":>10}')
    for place, _, res in rows:
        for mode in ('centre', 'person'):
            r = res[mode]
            print(f'{place:8} {mode:8} {str(tuple(r["box"])):26} '
                  f'{100 * r["input_on_person"]:15.1f}% {100 * r["mask_held"]:9.1f}%')
    gain = [r['person']['person_pixels_in_input'] / max(1, r['centre']['person_pixels_in_input'])
            for _, _, r in rows]
    doc['person_over_centre'] = dict(zip(PLACES, gain))
    print('person pixels in the model input, person / centre framing: ' +
          ', '.join(f'{p} {g:.2f}x' for p, g in zip(PLACES, gain)))
    (out / 'framing_bench.json').write_text(json.dumps(doc, indent=2) + '\n')
    panel(rows, out / 'framing_bench.png')
    print(f'wrote {out / "framing_bench.json"} and {out / "framing_bench.png"}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
