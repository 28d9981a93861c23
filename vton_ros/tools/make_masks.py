"""
make_masks: write agnostic masks (and overlays to look at) for photos.

    make_masks --backend pose --input photo.jpg --out masks/
    make_masks --backend unet --checkpoint runs/seg/best.pt --input photos/ --out masks/

For each input ``<stem>.<ext>`` writes ``<stem>_mask.png`` (uint8 0/255, the input's own
size) and ``<stem>_overlay.png`` (the mask tinted over the photo). Exit status 1 when an
input could not be read or processed, 0 otherwise (a photo with no person is not an error).
"""

import argparse
import logging
import os
import sys

import cv2

from vton_ros.pipeline.masks import CLOTH_TYPES, MASK_BACKENDS

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')


def list_inputs(path: str) -> list[str]:
    """One image file, or every image in a folder (sorted, not recursive)."""
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if n.lower().endswith(IMAGE_EXTENSIONS))
        return [os.path.join(path, n) for n in names]
    if os.path.isfile(path):
        return [path]
    raise FileNotFoundError(f'--input {path}: no such file or folder')


def build_parser() -> argparse.ArgumentParser:
    """Command-line flags."""
    ap = argparse.ArgumentParser(prog='make_masks', description=__doc__.strip().split('\n')[0])
    ap.add_argument('--backend', choices=MASK_BACKENDS, default='pose')
    ap.add_argument('--checkpoint', help='unet checkpoint (.pt from train_segmentation)')
    ap.add_argument('--cloth-type', choices=CLOTH_TYPES, default='upper')
    ap.add_argument('--threshold', type=float, default=None,
                    help='probability threshold in (0, 1) (default: checkpoint / 0.5)')
    ap.add_argument('--device', default='auto', help='auto | cpu | cuda[:N] (unet)')
    ap.add_argument('--precision', default='auto', help='auto | fp32 | fp16 | bf16 (unet)')
    ap.add_argument('--input', required=True, help='an image file or a folder of images')
    ap.add_argument('--out', required=True, help='output folder')
    return ap


def main(args: list[str] | None = None) -> int:
    """Entry point of the make_masks console script."""
    opts = build_parser().parse_args(args)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    from vton_ros.pipeline.masks import create_mask_generator, overlay_mask
    try:
        inputs = list_inputs(opts.input)
        gen = create_mask_generator(opts.backend, opts.checkpoint, opts.threshold,
                                    opts.device, opts.precision)
    except (ValueError, FileNotFoundError, ImportError) as err:
        print(f'make_masks: error: {err}', file=sys.stderr)
        return 2
    if not inputs:
        print(f'make_masks: no images in {opts.input}', file=sys.stderr)
        return 2
    os.makedirs(opts.out, exist_ok=True)
    failed = 0
    with gen:
        for path in inputs:
            stem = os.path.splitext(os.path.basename(path))[0]
            bgr = cv2.imread(path, cv2.IMREAD_COLOR)
            if bgr is None:
                print(f'{path}: cannot read as an image', file=sys.stderr)
                failed += 1
                continue
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            try:
                res = gen(rgb, cloth_type=opts.cloth_type)
            except ValueError as err:
                print(f'{path}: {err}', file=sys.stderr)
                failed += 1
                continue
            mask_path = os.path.join(opts.out, f'{stem}_mask.png')
            overlay_path = os.path.join(opts.out, f'{stem}_overlay.png')
            cv2.imwrite(mask_path, res.mask)
            cv2.imwrite(overlay_path,
                        cv2.cvtColor(overlay_mask(rgb, res.mask), cv2.COLOR_RGB2BGR))
            frac = float((res.mask > 0).mean())
            print(f'{path}: {res.status}, {frac:.1%} masked -> {mask_path}')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
