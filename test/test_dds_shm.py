"""
dds_shm: a supervisor gives back only what its dead node left (real files, flocks, mmaps).

The files live in a tmp folder named like /dev/shm's; the lock and the mapping are held by
real helper processes, as a live Fast DDS participant holds them.
"""

import os
from pathlib import Path
import subprocess
import sys

import pytest
from vton_ros.nodes.entry import die_with_supervisor, SUPERVISOR_ENV
from vton_ros.supervision import dds_shm

# Holds an flock on argv[1] (as a participant holds <name>_el), maps argv[2] if given.
HOLDER = """
import fcntl, mmap, sys
lock = open(sys.argv[1], 'a')
fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
if len(sys.argv) > 2:
    f = open(sys.argv[2], 'r+b')
    view = mmap.mmap(f.fileno(), 4096)
print('ready', flush=True)
sys.stdin.read()
"""


def _files(folder: Path, name: str) -> None:
    for path in (folder / name, folder / f'{name}_el'):
        path.write_bytes(b'\1' * 8192)
    if name.startswith('fastdds_port'):
        (folder / f'sem.{name}_mutex').write_bytes(b'\1' * 32)


def _hold(*paths: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, '-c', HOLDER, *map(str, paths)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == 'ready'
    return proc


def _end(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    proc.wait(60)


def test_a_dead_owners_segment_goes_a_port_that_someone_maps_stays(tmp_path):
    dead_segment, dead_port = 'fastdds_00aa11bb22cc33dd', 'fastdds_port7413'
    live_segment, mapped_port = 'fastdds_44ee55ff66aa77bb', 'fastdds_port7415'
    for name in (dead_segment, dead_port, live_segment, mapped_port):
        _files(tmp_path, name)
    (tmp_path / 'fastdds_8899aabbccddeeff').write_bytes(b'x')  # someone else's: unnamed
    owner = _hold(tmp_path / f'{live_segment}_el')  # a live owner holds its lock
    peer = _hold(tmp_path / 'other_el', tmp_path / mapped_port)  # a peer maps the port
    try:
        assert str(tmp_path / mapped_port) in dds_shm.mapped_paths(tmp_path)  # /proc
        freed = dds_shm.release([dead_segment, dead_port, live_segment, mapped_port], tmp_path)
        assert freed >= 4 * 8192
        left = sorted(p.name for p in tmp_path.iterdir())
        assert left == sorted([live_segment, f'{live_segment}_el', mapped_port,
                               f'{mapped_port}_el', f'sem.{mapped_port}_mutex',
                               'fastdds_8899aabbccddeeff', 'other_el'])
    finally:
        _end(owner)
        _end(peer)
    # both gone: now their files go too, and the unnamed file still stays
    assert dds_shm.release([live_segment, mapped_port], tmp_path, in_use=set()) > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ['fastdds_8899aabbccddeeff',
                                                          'other_el']


def test_records_name_a_process_own_files_and_are_released_after_it_ends(tmp_path):
    shm, records = tmp_path / 'shm', tmp_path / 'records'
    shm.mkdir()
    records.mkdir()
    for name in ('fastdds_0123456789abcdef', 'fastdds_port7000'):
        _files(shm, name)
    node = _hold(shm / 'fastdds_0123456789abcdef_el')
    try:
        assert dds_shm.own_files(node.pid, shm) == ['fastdds_0123456789abcdef']
        (records / str(node.pid)).write_text('fastdds_0123456789abcdef\n')
        assert dds_shm.release_all_dead(records, shm) == 0  # alive: nothing is touched
        assert dds_shm.recorded_bytes(records, shm) >= 2 * 8192
    finally:
        _end(node)
    assert dds_shm.release_dead(records, node.pid, shm) >= 2 * 8192
    assert not (records / str(node.pid)).exists()
    assert sorted(p.name for p in shm.iterdir()) == [  # not in its record: not its to free
        'fastdds_port7000', 'fastdds_port7000_el', 'sem.fastdds_port7000_mutex']
    assert dds_shm.release_dead(records, 999999999, shm) == 0  # wrote nothing


def test_held_inodes_reads_proc_locks_lines():
    text = ('1: FLOCK  ADVISORY  WRITE 24320 00:1b:54054 0 EOF\n'
            '2: POSIX  ADVISORY  READ 99 fd:01:7 0 EOF\n')
    assert dds_shm.held_inodes(text) == {54054, 7}


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='PR_SET_PDEATHSIG is Linux')
def test_die_with_supervisor_only_under_the_named_parent():
    assert not die_with_supervisor({})  # started by hand: unaffected
    assert not die_with_supervisor({SUPERVISOR_ENV: str(os.getpid())})  # not our parent
    code = ('import os, sys; from vton_ros.nodes.entry import die_with_supervisor as d; '
            'sys.exit(0 if d() else 3)')
    armed = subprocess.run([sys.executable, '-c', code], env=dict(
        os.environ, **{SUPERVISOR_ENV: str(os.getpid())}), timeout=120)
    assert armed.returncode == 0
