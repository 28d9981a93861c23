"""dds_shm: Fast DDS shared-memory files of dead owners are found and removed (real flocks)."""

import os
import subprocess
import sys
import time

from vton_ros.supervision import dds_shm

HOLDER = """
import fcntl, sys
f = open(sys.argv[1], 'a')
fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
print('locked', flush=True)
sys.stdin.read()
"""


def _pair(folder, name, age_s):
    old = time.time() - age_s
    for path in (folder / name, folder / f'{name}_el'):
        path.write_bytes(b'\0' * 4096)
        os.utime(path, (old, old))


def test_only_pairs_whose_lock_nobody_holds_and_that_are_old_enough(tmp_path):
    _pair(tmp_path, 'fastdds_00aa11bb22cc33dd', 60)  # owner dead: stale
    _pair(tmp_path, 'fastdds_port7413', 60)  # a dead owner's port: stale
    _pair(tmp_path, 'fastdds_44ee55ff66aa77bb', 60)  # owner alive (holds the lock)
    _pair(tmp_path, 'fastdds_8899aabbccddeeff', 1)  # too young to tell
    (tmp_path / 'sem.fastdds_port7413_mutex').write_bytes(b'x')  # not ours to judge
    (tmp_path / 'other_el').write_bytes(b'x')
    holder = subprocess.Popen([sys.executable, '-c', HOLDER,
                               str(tmp_path / 'fastdds_44ee55ff66aa77bb_el')],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        stale = sorted(p.name for p in dds_shm.stale_files(tmp_path))
        assert stale == ['fastdds_00aa11bb22cc33dd', 'fastdds_00aa11bb22cc33dd_el',
                         'fastdds_port7413', 'fastdds_port7413_el']
        assert dds_shm.remove_stale(tmp_path) >= 4 * 4096
        left = sorted(p.name for p in tmp_path.iterdir())
        assert left == ['fastdds_44ee55ff66aa77bb', 'fastdds_44ee55ff66aa77bb_el',
                        'fastdds_8899aabbccddeeff', 'fastdds_8899aabbccddeeff_el',
                        'other_el', 'sem.fastdds_port7413_mutex']
    finally:
        holder.stdin.close()
        holder.wait(60)
    # the holder is gone: its pair is stale now
    assert sorted(p.name for p in dds_shm.stale_files(tmp_path)) == [
        'fastdds_44ee55ff66aa77bb', 'fastdds_44ee55ff66aa77bb_el']


def test_held_inodes_reads_proc_locks_lines():
    text = ('1: FLOCK  ADVISORY  WRITE 24320 00:1b:54054 0 EOF\n'
            '2: POSIX  ADVISORY  READ 99 fd:01:7 0 EOF\n')
    assert dds_shm.held_inodes(text) == {54054, 7}
