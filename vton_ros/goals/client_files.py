"""
The files tryon_client reads and writes, checked before a goal is sent (no ROS here).

Every problem with an input is an :class:`InputError` with a one-line message (the client
prints it and exits 2, before it waits for anything): a path that does not exist, a
folder, an unreadable file or one that is no image, a value out of range. The panel is
person | mask overlay | garment | result, each tile labelled.
"""

import os
from pathlib import Path

import cv2
import numpy as np

from vton_ros.media.image_files import IMAGE_SUFFIXES

PANEL_LABELS = ('person', 'mask', 'garment', 'result')


class InputError(ValueError):
    """A command-line input the client cannot use; the message is one line."""


def looks_like_path(arg: str) -> bool:
    """Tell whether a --garment argument names a file rather than a catalogue id."""
    return ('/' in arg or arg.startswith(('.', '~'))
            or Path(arg).suffix.lower() in IMAGE_SUFFIXES)


def could_be_id(arg: str) -> bool:
    """Tell whether the argument could also be a catalogue id (ids are file stems)."""
    return '/' not in arg and not arg.startswith('~')


def read_rgb(arg: str, what: str) -> np.ndarray:
    """Read an image file as HxWx3 uint8 RGB; InputError saying what is wrong with it."""
    bgr = _read(arg, what, cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_gray(arg: str, what: str) -> np.ndarray:
    """Read an image file as HxW uint8; InputError saying what is wrong with it."""
    return _read(arg, what, cv2.IMREAD_GRAYSCALE)


def _read(arg: str, what: str, flags: int) -> np.ndarray:
    path = Path(arg).expanduser()
    if path.is_dir():
        raise InputError(f'{what} {arg} is a folder, not an image file')
    if not path.exists():
        raise InputError(f'file not found: {arg} ({what})')
    if not os.access(path, os.R_OK):
        raise InputError(f'cannot read {what} {arg}: permission denied')
    image = cv2.imread(str(path), flags)
    if image is None:
        raise InputError(f'{what} {arg} is not an image OpenCV can read '
                         f'({", ".join(s[1:] for s in IMAGE_SUFFIXES)})')
    return image


def missing_garment(arg: str) -> InputError:
    """
    Return the error for a --garment that looks like a file and is none (before any wait).

    A name such as ``red_tshirt.png`` may have meant the catalogue id ``red_tshirt``: the
    message says how an id is written (the server checks ids: UNKNOWN_GARMENT lists them).
    """
    text = f'file not found: {arg}'
    if could_be_id(arg) and Path(arg).stem:
        text += (" (a garment id of the server's catalogue has no suffix: --garment "
                 f'{Path(arg).stem})')
    return InputError(text)


def check_values(steps: int, timeout: float, server_timeout: float) -> None:
    """Check the numbers of the command line; InputError naming the option and the fix."""
    if steps < 0:
        raise InputError(f'--steps {steps}: give a number of denoising steps >= 1, or 0 for '
                         "the server's default (catvton.num_inference_steps)")
    if not timeout > 0:
        raise InputError(f'--timeout {timeout:g}: give the seconds to wait for the result, > 0')
    if not server_timeout >= 0:
        raise InputError(f'--server-timeout {server_timeout:g}: give the seconds to wait for '
                         'the server, >= 0')


def check_output(arg: str, what: str) -> None:
    """Check that an image can be written at ``arg`` (format by extension, folder)."""
    path = Path(arg).expanduser()
    if path.is_dir():
        raise InputError(f'{what} {arg} is a folder; give a file name such as result.png')
    if not path.suffix or not cv2.haveImageWriter(str(path)):
        raise InputError(f'{what} {arg}: cannot write this image format; use .png or .jpg')
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise InputError(f'{what} {arg}: cannot create it in {parent} (not a writable folder)')


def save_rgb(path: str, rgb: np.ndarray) -> None:
    """Write an RGB image (PNG/JPEG by extension), creating its folder."""
    Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(Path(path).expanduser()), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f'cannot write {path}')


def panel(person: np.ndarray | None, mask: np.ndarray, garment: np.ndarray | None,
          result: np.ndarray, height: int = 384, caption: str = '',
          garment_label: str = '') -> np.ndarray:
    """
    Side by side: person | mask overlay | garment | result, each scaled to ``height``.

    Each tile carries its name (top left; ``garment_label`` is added to the garment's, e.g.
    its catalogue id); a missing person or garment is a blank tile saying so. A non-empty
    ``caption`` is written in a white band under the images.
    """
    from vton_ros.pipeline.masks import overlay_mask

    blank = np.full_like(result, 255)
    labels = list(PANEL_LABELS)
    if person is None:
        labels[0] += ' (not received)'
    if garment_label or garment is None:
        labels[2] += f' ({garment_label or "not received"})'
    base = person if person is not None else blank
    tiles = [base, overlay_mask(base, mask), garment if garment is not None else blank, result]
    scaled = [cv2.resize(t, (max(1, round(t.shape[1] * height / t.shape[0])), height),
                         interpolation=cv2.INTER_AREA) for t in tiles]
    for tile, label in zip(scaled, labels):
        _label(tile, label)
    image = np.concatenate(scaled, axis=1)
    return _caption(image, caption) if caption else image


def _label(tile: np.ndarray, text: str) -> None:
    """Write ``text`` in black on a white box at the tile's top left (in place)."""
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.5
    (w, h), base = cv2.getTextSize(text, font, scale, 1)
    cv2.rectangle(tile, (0, 0), (min(tile.shape[1] - 1, w + 8), h + base + 6),
                  (255, 255, 255), -1)
    cv2.putText(tile, text, (4, h + 3), font, scale, (0, 0, 0), 1, cv2.LINE_AA)


def _caption(image: np.ndarray, caption: str) -> np.ndarray:
    """Append a white band with ``caption`` wrapped to the image width."""
    font, scale, line = cv2.FONT_HERSHEY_SIMPLEX, 0.6, 26
    lines: list[str] = []
    for word in caption.split():
        if lines and cv2.getTextSize(f'{lines[-1]} {word}', font, scale, 1)[0][0] < \
                image.shape[1] - 20:
            lines[-1] += f' {word}'
        else:
            lines.append(word)
    band = np.full((line * len(lines) + 12, image.shape[1], 3), 255, np.uint8)
    for i, text in enumerate(lines):
        cv2.putText(band, text, (10, line * (i + 1)), font, scale, (160, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([image, band], axis=0)
