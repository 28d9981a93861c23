"""
Framing: which box of a person frame the model sees, and how its result goes back.

Two framings (``catvton.framing``):

- ``centre``: the paper's path. The largest centre crop at the model's aspect
  (:func:`vton_ros.pipeline.preprocess.centre_crop_box`); with a landscape camera, a
  person off-centre or with wide arms loses the part of the garment outside the crop.
- ``person``: the box of the person (their silhouette, or the repaint mask's box grown
  by the body around it when nothing else is known), plus a margin, grown to the model's
  aspect (height:width) around its centre and moved inside the frame. Where the frame is
  too small for it at that aspect, the largest box the frame holds is used if the mask fits
  in it (the person's head kept, the person cut elsewhere); else the box reaches past the
  frame and the missing part is padded with the frame's edge pixels: never stretched. The
  person fills the model's input from head to hem, as in the paper's training photos;
  nothing zooms in on the torso.

The box always holds the whole repaint mask, so :func:`paste` repaints every mask pixel of
the frame: the result, resized to the box, replaces the mask region with a feathered edge
that lies inside the mask (pixels outside the mask stay the frame's own).

A mask maker that knows the person marks it in the mask it publishes
(:func:`mark_person`): its pixels outside the repaint region get :data:`PERSON_LEVEL`
(< 128, so every consumer that thresholds at 128 still sees the same repaint region).
:func:`split_mask` takes the mark off again and returns the person's box; a plain binary
mask (e.g. one sent in a goal) has no mark and is framed by its own box, grown.

Boxes are :class:`~vton_ros.pipeline.preprocess.CropBox` objects; in ``person`` framing
``top``/``left`` may be negative and the box may end past the frame (padding).
"""

import math

import cv2
import numpy as np

from vton_ros.pipeline.preprocess import centre_crop_box, CropBox, resize
from vton_ros.settings.choices import check_choice, FRAMINGS

# (top, left, bottom, right) in frame pixels, bottom/right exclusive
Bounds = tuple[int, int, int, int]

PERSON_LEVEL = 64  # mask value of person pixels outside the repaint region (mark_person)
MARGIN = 0.06  # room around the person, a fraction of their height on every side
# The body around a bare mask (no person known): fractions of the mask box's height above
# and below it (head, legs) and of its width on either side.
GROW_UP, GROW_DOWN, GROW_SIDE = 0.45, 0.2, 0.1
FEATHER = 50  # the paste's feathered band is the box height / FEATHER pixels wide


def bounds_of(pixels: np.ndarray) -> Bounds | None:
    """Return the bounds of the non-zero pixels of an HxW array (None: there are none)."""
    rows = np.flatnonzero(pixels.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(pixels.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def union(a: Bounds | None, b: Bounds | None) -> Bounds | None:
    """Return the smallest bounds holding both (None counts as empty)."""
    if a is None or b is None:
        return a or b
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def mark_person(mask: np.ndarray, person: np.ndarray) -> np.ndarray:
    """
    Mark the person in a mask: a new HxW uint8 of 255 (repaint), PERSON_LEVEL, 0.

    mask: HxW uint8, >= 128 = repaint. person: HxW bool (or 0/non-0) silhouette.
    """
    if person.shape != mask.shape:
        raise ValueError(f'person silhouette {person.shape} != mask {mask.shape}')
    repaint = mask >= 128
    out = np.where(repaint, 255, 0).astype(np.uint8)
    out[(person != 0) & ~repaint] = PERSON_LEVEL
    return out


def split_mask(mask: np.ndarray) -> tuple[np.ndarray, Bounds | None]:
    """
    Take a :func:`mark_person` mark off a mask: (mask without it, the person's bounds).

    A mask without the mark is returned as it is, with None. The person is the marked and
    repaint pixels connected to the repaint region (a second person apart from it or stray
    pixels do not count). A soft mask (grey edges) is not taken for a marked one: most of
    its values under 128 must be PERSON_LEVEL.
    """
    marked = mask == PERSON_LEVEL
    count = int(np.count_nonzero(marked))
    if count == 0 or 2 * count <= int(np.count_nonzero((mask > 0) & (mask < 128))):
        return mask, None
    repaint = mask >= 128
    clean = np.where(repaint, mask, 0).astype(np.uint8)
    n, labels = cv2.connectedComponents((marked | repaint).astype(np.uint8), connectivity=8)
    keep = np.zeros(n, bool)
    keep[np.unique(labels[repaint])] = True
    keep[0] = False
    return clean, bounds_of(keep[labels])


def grow_mask_bounds(bounds: Bounds, src_height: int, src_width: int) -> Bounds:
    """Return the person's likely bounds around a bare mask's bounds, clipped to the frame."""
    top, left, bottom, right = bounds
    h, w = bottom - top, right - left
    return (max(0, math.floor(top - GROW_UP * h)), max(0, math.floor(left - GROW_SIDE * w)),
            min(src_height, math.ceil(bottom + GROW_DOWN * h)),
            min(src_width, math.ceil(right + GROW_SIDE * w)))


def frame_box(src_height: int, src_width: int, height: int, width: int, framing: str,
              mask: np.ndarray | None = None, person: Bounds | None = None,
              margin: float = MARGIN) -> CropBox:
    """
    Return the box of a src_height x src_width frame that the model sees (height x width).

    framing 'centre': the largest centre crop (the paper's). 'person': the person's bounds
    (``person``, or else those of the mask's repaint region (>= 128) grown by
    :func:`grow_mask_bounds`), unioned with the repaint region, plus ``margin`` times their
    height on each side where the frame has room, grown to height:width and moved inside the
    frame. Where the frame cannot hold that box, the largest box at the aspect that it can
    hold is used if the repaint region (plus margin, or else alone) fits in it: whole, with the
    person's top (the head) where possible, the person cut elsewhere; otherwise the box
    covers the frame and is padded. An empty mask and no person: the centre crop.
    """
    check_choice('framing', framing, FRAMINGS)
    if framing == 'centre':
        return centre_crop_box(src_height, src_width, height, width)
    repaint = None if mask is None else bounds_of(mask >= 128)
    if person is None and repaint is not None:
        person = grow_mask_bounds(repaint, src_height, src_width)
    bounds = union(person, repaint)
    if bounds is None:
        return centre_crop_box(src_height, src_width, height, width)
    top, left, bottom, right = _grow(bounds, margin, src_height, src_width)
    box_h, box_w = bottom - top, right - left
    scale = max(box_h / height, box_w / width)
    out_h = max(box_h, round(scale * height))
    out_w = max(box_w, round(scale * width))
    if repaint is not None and (out_h > src_height or out_w > src_width):
        fit = centre_crop_box(src_height, src_width, height, width)
        need = _grow(repaint, margin, src_height, src_width)
        if need[2] - need[0] > fit.height or need[3] - need[1] > fit.width:
            need = repaint  # the mask alone, without the margin
        if need[2] - need[0] <= fit.height and need[3] - need[1] <= fit.width:
            out_top = _contain(top, need[0], need[2], fit.height, src_height)
            out_left = _contain(left - (fit.width - box_w) // 2, need[1], need[3], fit.width,
                                src_width)
            return CropBox(out_top, out_left, fit.height, fit.width, src_height, src_width)
    out_top = _place(top - (out_h - box_h) // 2, out_h, src_height)
    out_left = _place(left - (out_w - box_w) // 2, out_w, src_width)
    return CropBox(out_top, out_left, out_h, out_w, src_height, src_width)


def _grow(bounds: Bounds, margin: float, src_height: int, src_width: int) -> Bounds:
    """Return bounds plus ``margin`` times their height on each side, clipped to the frame."""
    top, left, bottom, right = bounds
    pad = margin * (bottom - top)
    return (max(0, math.floor(top - pad)), max(0, math.floor(left - pad)),
            min(src_height, math.ceil(bottom + pad)), min(src_width, math.ceil(right + pad)))


def _contain(start: int, low: int, high: int, size: int, extent: int) -> int:
    """Return ``start`` moved so [start, start + size) holds [low, high) inside [0, extent)."""
    return min(max(start, high - size, 0), low, extent - size)


def _place(start: int, size: int, extent: int) -> int:
    """Return the start of a span of ``size`` moved inside [0, extent), or covering it."""
    if size <= extent:
        return min(max(start, 0), extent - size)
    return min(max(start, extent - size), 0)


def crop(image: np.ndarray, box: CropBox, height: int, width: int,
         nearest: bool = False) -> np.ndarray:
    """
    Cut the box out of ``image`` (HxW or HxWxC) and resize it to height x width.

    Parts of the box past the frame are padded: an image with its edge pixels, a mask
    (``nearest``) with 0 (keep). Inside the frame this is exactly preprocess.cover_resize.
    """
    top, left = max(box.top, 0), max(box.left, 0)
    bottom = min(box.top + box.height, box.src_height)
    right = min(box.left + box.width, box.src_width)
    part = image[top:bottom, left:right]
    pads = (top - box.top, box.top + box.height - bottom, left - box.left,
            box.left + box.width - right)
    if any(pads):
        if nearest:
            part = cv2.copyMakeBorder(part, *pads, cv2.BORDER_CONSTANT, value=0)
        else:
            part = cv2.copyMakeBorder(part, *pads, cv2.BORDER_REPLICATE)
        part = part.reshape((box.height, box.width) + image.shape[2:])
    return resize(part, height, width, nearest)


def paste_alpha(mask: np.ndarray, box_height: int) -> np.ndarray:
    """
    Return the weight of the result per pixel: HxW float32, 0 outside the mask (>= 128).

    It rises from 0.5 on the mask's edge pixels to 1 at ``band`` pixels in, band = box
    height / FEATHER (at least 1): the inner half of a feather centred on the edge (the
    outer half would change pixels outside the mask). Every mask pixel is at least half
    the result.
    """
    binary = (mask >= 128).astype(np.uint8)
    band = max(1.0, box_height / FEATHER)
    if not binary.any():
        return np.zeros(mask.shape, np.float32)
    inside = cv2.distanceTransform(np.pad(binary, 1, constant_values=0), cv2.DIST_L2,
                                   cv2.DIST_MASK_PRECISE)
    alpha = 0.5 + (inside[1:-1, 1:-1] - 1.0) / (2.0 * band)
    return np.where(binary > 0, np.clip(alpha, 0.5, 1.0), 0.0).astype(np.float32)


def paste(result: np.ndarray, box: CropBox, frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """
    Put a try-on ``result`` (hxwx3 uint8, the box's content) back into ``frame`` (HxWx3).

    mask: HxW uint8 of the frame, >= 128 = repaint; every one of its pixels must lie in
    the box. Returns a new HxWx3 uint8: the frame's own pixels outside the mask, the result
    (resized to the box) inside it, blended over :func:`paste_alpha`'s band at its edge.
    Centre framing in the node keeps the older paste (preprocess.uncrop) bit for bit.
    """
    if frame.shape[:2] != (box.src_height, box.src_width) or mask.shape != frame.shape[:2]:
        raise ValueError(f'frame {frame.shape[:2]} and mask {mask.shape} must be the box '
                         f'source size {(box.src_height, box.src_width)}')
    top, left = max(box.top, 0), max(box.left, 0)
    bottom = min(box.top + box.height, box.src_height)
    right = min(box.left + box.width, box.src_width)
    outside = (mask >= 128).copy()
    outside[top:bottom, left:right] = False
    if outside.any():
        raise ValueError('the mask reaches past the box: frame it with frame_box(mask=...)')
    full = resize(result, box.height, box.width, False)
    full = full[top - box.top:bottom - box.top, left - box.left:right - box.left]
    alpha = paste_alpha(mask[top:bottom, left:right], box.height)[..., None]
    out = frame.copy()
    region = out[top:bottom, left:right].astype(np.float32)
    blend = region * (1.0 - alpha) + full.astype(np.float32) * alpha
    out[top:bottom, left:right] = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
    return out
