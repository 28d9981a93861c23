"""
Fast DDS shared memory of the processes a supervisor started, and only theirs. No ROS here.

Every Fast DDS participant maps a 64 MB segment (``/dev/shm/fastdds_<16 hex>``) and a port
file per listening port (``fastdds_port<N>``, with ``sem.fastdds_port<N>_mutex``); it holds
an flock on ``<name>_el`` for each while it lives. A clean exit removes them; a SIGKILLed
or crashed process leaves them, and its segment stays in RAM until someone removes it.

Fast DDS's own ``fastdds shm clean`` removes every file whose lock nobody holds, machine
wide. That races with a process that is starting: Fast DDS opens a port file before it
locks it, and a node restarted with the dead one's participant id reopens the dead one's
port file; removing it then cut a restarted tryon_server off from every client. So the
supervisors (tryon_bringup, the launch file, the test session) never sweep: a node they
start writes down its own files (:func:`record`, from ``/proc/self/fd`` once its
participant exists) and the supervisor, once that process is gone, removes what it left
(:func:`release`): its segment (a random name nobody else ever owns), and a port file only
while no live process locks or maps it.
"""

import os
from pathlib import Path
import re

SHM_DIR = Path('/dev/shm')
RECORDS_ENV = 'VTON_SHM_RECORDS'  # folder where supervised nodes write down their files
_LOCK = re.compile(r'\s[0-9a-f]+:[0-9a-f]+:(\d+)\s')
_OWN = re.compile(r'(fastdds_(?:port\d+|[0-9a-f]{16}))_el')


def held_inodes(locks_text: str) -> set[int]:
    """Return the inode numbers that hold a lock, from the text of /proc/locks."""
    return {int(m[1]) for m in _LOCK.finditer(locks_text)}


def own_files(pid: int | str = 'self', shm_dir: Path = SHM_DIR) -> list[str]:
    """Return the Fast DDS segments and ports a live process owns (holds ``<name>_el`` of)."""
    names = set()
    fd_dir = Path(f'/proc/{pid}/fd')
    try:
        fds = os.listdir(fd_dir)
    except OSError:  # gone, or not Linux
        return []
    for fd in fds:
        try:
            target = Path(os.readlink(fd_dir / fd))
        except OSError:  # closed meanwhile
            continue
        match = _OWN.fullmatch(target.name)
        if match and target.parent == shm_dir:
            names.add(match[1])
    return sorted(names)


def record(folder: str | Path, pid: int | None = None) -> Path | None:
    """Write this process's Fast DDS files to ``folder/<pid>`` (one name a line)."""
    pid = os.getpid() if pid is None else pid
    names = own_files(pid)
    if not names:
        return None
    Path(folder).mkdir(parents=True, exist_ok=True)
    path = Path(folder) / str(pid)
    path.write_text(''.join(f'{name}\n' for name in names))
    return path


def _files(shm_dir: Path, name: str) -> list[Path]:
    files = [shm_dir / name, shm_dir / f'{name}_el']
    if name.startswith('fastdds_port'):
        files.append(shm_dir / f'sem.{name}_mutex')
    return files


def mapped_paths(shm_dir: Path = SHM_DIR) -> set[str]:
    """Return the Fast DDS paths in ``shm_dir`` that a live process maps or holds open."""
    prefix = f'{shm_dir}/fastdds_'
    paths = set()
    for entry in os.scandir('/proc'):
        if not entry.name.isdigit():
            continue
        try:
            with open(f'/proc/{entry.name}/maps', encoding='utf-8', errors='replace') as maps:
                paths.update(line.split(None, 5)[5].strip() for line in maps
                             if '/dev/shm/fastdds_' in line)
            for fd in os.listdir(f'/proc/{entry.name}/fd'):
                target = os.readlink(f'/proc/{entry.name}/fd/{fd}')
                if target.startswith(prefix):
                    paths.add(target)
        except (OSError, IndexError):  # gone meanwhile, or not ours to read
            continue
    return paths


def release(names: list[str], shm_dir: Path = SHM_DIR, locks_text: str | None = None,
            in_use: set[str] | None = None) -> int:
    """
    Remove the files of a dead owner's ``names``; return the bytes given back.

    A segment goes when nobody holds its lock (its owner, the only one who ever locks it,
    is dead). A port file also needs that no live process maps or holds it open (a peer
    still sending to it, or a new participant reopening it before it locks it); else it
    stays for Fast DDS to reuse.
    """
    if locks_text is None:
        locks_text = Path('/proc/locks').read_text()
    held = held_inodes(locks_text)
    freed = 0
    for name in names:
        lock = shm_dir / f'{name}_el'
        try:
            if lock.stat().st_ino in held:
                continue
        except OSError:  # no lock file: the owner removed it, or never made it
            pass
        files = _files(shm_dir, name)
        if name.startswith('fastdds_port'):
            if in_use is None:
                in_use = mapped_paths(shm_dir)
            if any(str(path) in in_use for path in files):
                continue
        for path in files:
            try:
                freed += path.stat().st_blocks * 512
                path.unlink()
            except OSError:  # not there (a clean exit removed it)
                continue
    return freed


def release_dead(folder: str | Path, pid: int, shm_dir: Path = SHM_DIR) -> int:
    """Release what process ``pid`` (ended) wrote down in ``folder``; return the bytes."""
    path = Path(folder) / str(pid)
    try:
        names = path.read_text().split()
    except OSError:  # it wrote nothing (ended before its participant existed)
        return 0
    freed = release(names, shm_dir)
    if not any(f.exists() for name in names for f in _files(shm_dir, name)):
        path.unlink()  # else a port still in use: kept for release_all_dead
    return freed


def release_all_dead(folder: str | Path, shm_dir: Path = SHM_DIR) -> int:
    """Release the records in ``folder`` of every process that has ended; return bytes."""
    freed = 0
    for path in sorted(Path(folder).glob('[0-9]*')):
        if not Path(f'/proc/{path.name}').exists():
            freed += release_dead(folder, int(path.name), shm_dir)
    return freed


def is_segment(name: str) -> bool:
    """Whether ``name`` is a participant's segment (else a port file, a shared mailbox)."""
    return not name.startswith('fastdds_port')


def recorded_bytes(folder: str | Path, shm_dir: Path = SHM_DIR,
                   segments: bool = True) -> int:
    """
    Return the memory that the files written down in ``folder`` take (allocated).

    ``segments``: the participants' segments (MBs each); False: the port files (KBs; a
    port number is shared by every domain on the machine, so another process may hold it).
    """
    total = 0
    for path in Path(folder).glob('[0-9]*'):
        try:
            names = path.read_text().split()
        except OSError:  # released meanwhile
            continue
        total += names_bytes([n for n in names if is_segment(n) == segments], shm_dir)
    return total


def files_bytes(paths: list[Path]) -> list[int]:
    """Return the allocated bytes of each path (0 where it does not exist)."""
    sizes = []
    for path in paths:
        try:
            sizes.append(path.stat().st_blocks * 512)
        except OSError:
            sizes.append(0)
    return sizes


def names_bytes(names: list[str], shm_dir: Path = SHM_DIR) -> int:
    """Return the memory that Fast DDS files ``names`` (and their locks) take now."""
    return sum(files_bytes([f for n in names for f in _files(shm_dir, n)]))
