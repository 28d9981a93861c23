"""
Fast DDS shared-memory files left behind by dead processes. No ROS here.

Every Fast DDS participant maps a 64 MB segment (``/dev/shm/fastdds_<id>``) and a port
file per listening port (``fastdds_port<N>``), each with a ``<name>_el`` lock file that the
owner holds with flock(2) while it lives. A process that exits cleanly removes them; a
SIGKILLed or crashed one does not, and the memory stays taken (RAM on an 8 GB Jetson)
until someone removes the files: what ``fastdds shm clean`` does. Here a pair is stale
when nobody holds its lock file (``/proc/locks``) and the lock file is older than a grace
period (a participant being created has its file before its lock).
"""

import os
from pathlib import Path
import re
import time

SHM_DIR = Path('/dev/shm')
GRACE_S = 5.0  # seconds: a lock file younger than this may belong to a starting process
_LOCK = re.compile(r'\s[0-9a-f]+:[0-9a-f]+:(\d+)\s')
_NAME = re.compile(r'fastdds_(port\d+|[0-9a-f]+)_el')


def held_inodes(locks_text: str) -> set[int]:
    """Return the inode numbers that hold a lock, from the text of /proc/locks."""
    return {int(m[1]) for m in _LOCK.finditer(locks_text)}


def stale_files(shm_dir: Path = SHM_DIR, locks_text: str | None = None,
                grace_s: float = GRACE_S, now: float | None = None) -> list[Path]:
    """Return the Fast DDS segment/port files and lock files whose owner is gone."""
    if locks_text is None:
        try:
            locks_text = Path('/proc/locks').read_text()
        except OSError:  # not Linux: nothing can be told
            return []
    held = held_inodes(locks_text)
    now = time.time() if now is None else now
    stale = []
    try:
        names = os.listdir(shm_dir)
    except OSError:
        return []
    for name in names:
        if not _NAME.fullmatch(name):
            continue
        lock = shm_dir / name
        try:
            info = lock.stat()
        except OSError:  # removed meanwhile
            continue
        if info.st_ino not in held and now - info.st_mtime > grace_s:
            stale += [p for p in (shm_dir / name[:-3], lock) if p.exists()]
    return stale


def used_bytes(shm_dir: Path = SHM_DIR) -> int:
    """Return the memory that Fast DDS files in ``shm_dir`` take (allocated blocks)."""
    total = 0
    for path in shm_dir.glob('fastdds_*'):
        try:
            total += path.stat().st_blocks * 512
        except OSError:  # removed meanwhile
            continue
    return total


def remove_stale(shm_dir: Path = SHM_DIR, grace_s: float = GRACE_S) -> int:
    """Remove the stale files (see :func:`stale_files`); return the bytes given back."""
    freed = 0
    for path in stale_files(shm_dir, grace_s=grace_s):
        try:
            freed += path.stat().st_blocks * 512
            path.unlink()
        except OSError:  # removed by someone else meanwhile, or not ours to remove
            continue
    return freed
