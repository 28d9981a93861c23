"""
Private result files: what tryon_server writes when ``tryon.save_dir`` is set.

Each goal writes ``tryon_<UTC time>_<goal id>.png`` (the try-on), ``..._mask.png`` and
``....json`` (seed, timings). Files are created with O_EXCL and mode 0600 (never overwriting
anything) in a folder of mode 0700 owned by this user: the photos show people.
"""

import json
import os
from pathlib import Path
import stat
import time
from typing import Any

import cv2
import numpy as np

FILE_MODE = 0o600
FOLDER_MODE = 0o700


def private_folder(folder: str) -> Path:
    """Create ``folder`` (0700) or make an existing one of ours 0700; OSError if not ours."""
    path = Path(folder).expanduser()
    path.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    info = path.stat()
    if stat.S_IMODE(info.st_mode) != FOLDER_MODE:
        if info.st_uid != os.geteuid():
            raise OSError(f'tryon.save_dir {path} is shared (mode '
                          f'{stat.S_IMODE(info.st_mode):o}) and not owned by this user; '
                          'choose a private folder')
        path.chmod(FOLDER_MODE)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write a new file with mode 0600; FileExistsError rather than overwrite."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    with os.fdopen(fd, 'wb') as f:
        f.write(data)


def save_result(folder: str, goal_id: str, image: np.ndarray, mask: np.ndarray,
                meta: dict[str, Any]) -> Path:
    """Save a try-on (HxWx3 uint8 RGB), its mask (HxW uint8) and meta; return the .png path."""
    stem = private_folder(folder) / time.strftime(f'tryon_%Y%m%d_%H%M%S_{goal_id}',
                                                  time.gmtime())
    files = {stem.with_name(stem.name + '.png'): _png(cv2.cvtColor(image, cv2.COLOR_RGB2BGR)),
             stem.with_name(stem.name + '_mask.png'): _png(mask),
             stem.with_name(stem.name + '.json'): json.dumps(meta).encode()}
    for path, data in files.items():
        write_private(path, data)
    return next(iter(files))


def _png(array: np.ndarray) -> bytes:
    ok, buf = cv2.imencode('.png', array)
    if not ok:
        raise OSError('PNG encoding failed')
    return buf.tobytes()
