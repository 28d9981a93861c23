"""
Live follow's map and composite: the try-on warped onto a new frame, laid into its mask.

A :class:`WarpMap` maps new-frame pixels to try-on-frame pixels: the global move (an
affine) and, where a body point moved non-rigidly, a piecewise-affine mesh evaluated on a
coarse grid. A frame between two posed frames is mapped through the last posed frame's map
after its own registered move back to that frame (:meth:`WarpMap.after`): one map, so the
try-on is resampled once. :func:`composite` warps the try-on with the map (``cv2.remap``)
and lays it into the new frame's mask, opaque inside and feathered outwards. No ROS.
"""

from dataclasses import dataclass

import cv2
import numpy as np

GRID_STEP = 8  # pixels between the points where a mesh map is evaluated


def compose(first: np.ndarray, then: np.ndarray) -> np.ndarray:
    """Return the 2x3 affine that applies ``first`` and then ``then`` (both 2x3)."""
    return np.hstack([then[:, :2] @ first[:, :2], (then[:, :2] @ first[:, 2:]) + then[:, 2:]])


def _field(affine: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Return HxWx2 float32: the affine (2x3) at the pixels of the xs row and ys column."""
    m = affine.astype(np.float32)
    return np.dstack([m[0, 0] * xs + m[0, 1] * ys + m[0, 2],
                      m[1, 0] * xs + m[1, 1] * ys + m[1, 2]])


@dataclass(frozen=True)
class WarpMap:
    """
    A map from a frame's pixels to the try-on frame's.

    sim: 2x3 float64, the global move (posed frame -> try-on frame); coarse: (gh+2, gw+2, 2)
    float32, the mesh map of the posed frame on a grid of GRID_STEP cells with one cell past
    each edge (None: the map is ``sim``); size: (height, width) of the frames; pre: 2x3,
    this frame -> the posed frame (None: this frame is the posed frame).
    """

    sim: np.ndarray
    coarse: np.ndarray | None
    size: tuple[int, int]
    pre: np.ndarray | None = None

    @classmethod
    def from_mesh(cls, mesh, sim: np.ndarray, size: tuple[int, int]) -> 'WarpMap':
        """Evaluate ``mesh`` ((N, 2) points -> (N, 2), e.g. scipy's LinearNDInterpolator)."""
        h, w = size
        gh, gw = max(2, round(h / GRID_STEP)), max(2, round(w / GRID_STEP))
        xs = (np.arange(-1, gw + 1) + 0.5) * (w / gw) - 0.5
        ys = (np.arange(-1, gh + 1) + 0.5) * (h / gh) - 0.5
        gx, gy = np.meshgrid(xs, ys)
        coarse = mesh(np.column_stack([gx.ravel(), gy.ravel()]))
        return cls(sim, coarse.reshape(gh + 2, gw + 2, 2).astype(np.float32), size)

    def after(self, back: np.ndarray) -> 'WarpMap':
        """Return the map of a frame whose pixels ``back`` (2x3) takes to this map's frame."""
        return WarpMap(self.sim, self.coarse, self.size,
                       back if self.pre is None else compose(back, self.pre))

    def sample(self, box: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
        """
        Return the map and the global move's map on box (x0, y0, x1, y1) of the frame.

        Both (y1-y0)x(x1-x0)x2 float32 try-on-frame coordinates for cv2.remap; the same
        array when the map is the global move itself.
        """
        x0, y0, x1, y1 = box
        xs = np.arange(x0, x1, dtype=np.float32)[None, :]
        ys = np.arange(y0, y1, dtype=np.float32)[:, None]
        steady = _field(self.sim if self.pre is None else compose(self.pre, self.sim), xs, ys)
        if self.coarse is None:
            return steady, steady
        (h, w), (gh, gw) = self.size, (self.coarse.shape[0] - 2, self.coarse.shape[1] - 2)
        shape = (y1 - y0, x1 - x0)
        if self.pre is not None:  # box pixel -> posed pixel -> grid point: one affine
            to_grid = np.array([[gw / w, 0.0, 0.5 * gw / w + 0.5],
                                [0.0, gh / h, 0.5 * gh / h + 0.5]])
            grid = compose(compose(np.array([[1.0, 0.0, x0], [0.0, 1.0, y0]]), self.pre),
                           to_grid)
            return cv2.warpAffine(self.coarse, grid, shape[::-1],
                                  flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                  borderMode=cv2.BORDER_REPLICATE), steady
        # the grid cells of the pixels (bilinear between grid points)
        ix = np.broadcast_to(((xs + 0.5) * (gw / w) + 0.5), shape)
        iy = np.broadcast_to(((ys + 0.5) * (gh / h) + 0.5), shape)
        coords = cv2.remap(self.coarse, ix, iy, cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
        return coords, steady


def garment_box(mask: np.ndarray, margin: int) -> tuple[int, int, int, int]:
    """Return (x0, y0, x1, y1): the mask's bounding box grown by margin, inside the frame."""
    x, y, w, h = cv2.boundingRect((mask > 127).astype(np.uint8))
    height, width = mask.shape
    return (max(0, x - margin), max(0, y - margin), min(width, x + w + margin),
            min(height, y + h + margin))


def moved_mask(mask: np.ndarray, move: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Return mask (HxW uint8) moved by move (2x3), warped only inside the moved corners."""
    h, w = mask.shape
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int) - 1, 0)
    x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + 2, (w, h))
    out = np.zeros_like(mask)
    if x1 > x0 and y1 > y0:
        offset = move - np.array([[0.0, 0.0, x0], [0.0, 0.0, y0]])
        out[y0:y1, x0:x1] = cv2.warpAffine(mask, offset, (int(x1 - x0), int(y1 - y0)),
                                           flags=cv2.INTER_LINEAR)
    return out


def composite(frame: np.ndarray, mask: np.ndarray, layer: np.ndarray, coords: np.ndarray,
              feather_px: float, box: tuple[int, int, int, int] | None = None,
              band_px: float = 0.0, steady: np.ndarray | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    Warp the try-on with ``coords`` and lay it into ``frame`` inside ``mask``.

    frame: HxWx3 uint8 RGB; mask: HxW uint8 (>127 = garment region of this frame); layer:
    the try-on result and its mask as one HxWx4 uint8 (RGB, mask: one remap warps both),
    at the try-on frame's size; coords: float32 map (:meth:`WarpMap.sample`) for ``box``
    (x0, y0, x1, y1; default the whole frame, which must then hold mask, band and feather);
    band_px: the warped garment is also laid where it reaches within this many pixels of
    the mask, where ``coords`` is within a pixel of ``steady`` (the global move's map: not
    where an arm's move stretched the mesh). Returns (composite HxWx3 uint8 (a new array),
    warped result mask HxW uint8, HxW bool region laid opaque).
    """
    x0, y0, x1, y1 = box or (0, 0, frame.shape[1], frame.shape[0])
    warped = cv2.remap(layer, coords[..., 0], coords[..., 1], cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
    warped_mask = np.zeros(mask.shape, np.uint8)
    warped_mask[y0:y1, x0:x1] = warped[..., 3]
    inside = (mask[y0:y1, x0:x1] > 127).astype(np.uint8)
    if band_px > 0.0:
        near = cv2.distanceTransform(1 - inside, cv2.DIST_L2, 3) <= band_px
        near &= warped_mask[y0:y1, x0:x1] > 127
        if steady is not None and steady is not coords:
            off = cv2.absdiff(coords, steady)
            near &= np.maximum(off[..., 0], off[..., 1]) <= 1.0
        inside |= near.astype(np.uint8)
    if feather_px >= 1.0:  # 1 inside, falling to 0 over feather_px outside
        outside = cv2.distanceTransform(1 - inside, cv2.DIST_L2, 3)
        alpha = np.clip(1.0 - outside / feather_px, 0.0, 1.0)
    else:
        alpha = inside.astype(np.float32)
    out = frame.copy()
    part = out[y0:y1, x0:x1]
    cv2.blendLinear(cv2.cvtColor(warped, cv2.COLOR_RGBA2RGB), part, alpha, 1.0 - alpha,
                    dst=part)
    region = np.zeros(mask.shape, bool)
    region[y0:y1, x0:x1] = inside > 0
    return out, warped_mask, region
