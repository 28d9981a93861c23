"""
Process figures without ROS: resident memory, open file descriptors, threads; memory return.

Used by managed nodes (RSS before/after cleanup) and by ``vton_soak`` (each node over time).
Linux /proc only; a process that is gone reads as None.
"""

import ctypes
import gc
import os
from pathlib import Path
import sys

PAGE = os.sysconf('SC_PAGE_SIZE')


def stats(pid: int | str = 'self') -> dict[str, float] | None:
    """Return {'rss_mb', 'fds', 'threads'} of a process, or None if it does not exist."""
    try:
        rss_pages = int(Path(f'/proc/{pid}/statm').read_text().split()[1])
        status = Path(f'/proc/{pid}/status').read_text()
        fds = len(os.listdir(f'/proc/{pid}/fd'))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    threads = next(int(line.split()[1]) for line in status.splitlines()
                   if line.startswith('Threads:'))
    return {'rss_mb': rss_pages * PAGE / 2 ** 20, 'fds': fds, 'threads': threads}


def rss_mb() -> float:
    """Resident memory of this process in MiB."""
    return stats()['rss_mb']


def release_memory() -> None:
    """
    Give freed memory back to the system: collect garbage, empty the CUDA cache, trim malloc.

    After a model is dropped, glibc keeps much of the freed heap for reuse (freed large
    blocks raise its mmap threshold, so later tensors come from the heap); ``malloc_trim``
    returns those pages, so the resident size really goes down.
    """
    gc.collect()
    torch = sys.modules.get('torch')  # only if the process uses torch at all
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to trim
        pass


def cuda_mb() -> float | None:
    """CUDA memory this process has allocated through torch, in MiB (None without CUDA)."""
    torch = sys.modules.get('torch')
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return torch.cuda.memory_allocated() / 2 ** 20
