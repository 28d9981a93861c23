"""
The stack under test of vton_soak: ``tryon_bringup --respawn`` in the background. No ROS.

It follows bringup's output for each node's current pid and every exit, SIGKILLs nodes on
request (bringup restarts them) and stops the whole stack with SIGINT (bounded waits).
"""

import os
from pathlib import Path
import re
import signal
import subprocess
import sys
import threading
import time

from vton_ros.supervision import dds_shm
from vton_ros.supervision import procstat

STARTED = re.compile(r'started (\w+) \(pid (\d+)\)')
EXITED = re.compile(r'tryon_bringup: (\w+) (?:killed by (SIG\w+)|exited with code (-?\d+))')


class Stack:
    """tryon_bringup --respawn in the background: current pids, exits, kills."""

    def __init__(self, params_file: Path, out: Path, env: dict) -> None:
        argv = [sys.executable, '-m', 'vton_ros.cli.tryon_bringup', '--params-file',
                str(params_file), '--respawn', '--respawn-delay', '1.0',
                '--log-dir', str(out / 'logs')]
        self.popen = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        self.records = env[dds_shm.RECORDS_ENV]  # the nodes' Fast DDS files (bringup's)
        self.pids: dict[str, int] = {}
        self.exits: list[dict] = []
        self.kills: list[dict] = []
        self.stop_notes: list[str] = []  # nodes that needed SIGTERM/SIGKILL to stop
        self._lock = threading.Lock()
        self._log = open(out / 'bringup.log', 'w', encoding='utf-8')
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for raw in self.popen.stdout:
            line = raw.decode('utf-8', errors='replace')
            self._log.write(line)
            self._log.flush()
            with self._lock:
                if (m := STARTED.search(line)):
                    self.pids[m[1]] = int(m[2])
                elif (m := EXITED.search(line)):
                    code = -signal.Signals[m[2]] if m[2] else int(m[3])
                    self.exits.append({'t': time.time(), 'node': m[1], 'code': code})
                elif 'still running' in line or 'stopped with' in line:
                    self.stop_notes.append(line.strip())

    def current(self) -> dict[str, int]:
        """Return {node: pid} of the processes started last."""
        with self._lock:
            return dict(self.pids)

    def kill(self, node: str) -> bool:
        """SIGKILL a node's current process (bringup restarts it); tell whether one was."""
        pid = self.current().get(node)
        if pid is None or procstat.stats(pid) is None:
            return False
        with self._lock:
            if any(k['pid'] == pid for k in self.kills):  # dead, not yet restarted
                return False
            self.kills.append({'t': time.time(), 'node': node, 'pid': pid})
        os.kill(pid, signal.SIGKILL)
        return True

    def stop(self) -> int:
        """SIGINT the supervisor (it stops every node); return its exit code."""
        self.popen.send_signal(signal.SIGINT)
        try:
            return self.popen.wait(120.0)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            return self.popen.wait()
