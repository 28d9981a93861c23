"""Helpers for tests that run real ROS 2 processes over loopback DDS."""

import itertools
import os
from pathlib import Path
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

from vton_ros.nodes.waits import SafeActionClient
from vton_ros.supervision import dds_shm

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / 'install' / 'vton_ros' / 'lib' / 'vton_ros'
PROFILE = ROOT / 'config' / 'fastdds_loopback.xml'
HANG_GUARD = 600.0  # seconds: waits only guard against hangs (CI may be loaded)
RESEND = 10.0  # seconds without a reply before Spinner.call sends an idempotent request again
# The node processes of this test process write their Fast DDS files down here; the session
# gives back what killed ones left (conftest.pytest_sessionfinish), and nothing of others'.
SHM_RECORDS = Path(tempfile.mkdtemp(prefix='vton_test_shm_'))


def ros_env(domain_id: int, **extra: str) -> dict:
    """Return the environment for a child ROS process: loopback-only DDS profile, given domain."""
    env = dict(os.environ)
    if env.get('FASTDDS_DEFAULT_PROFILES_FILE') != str(PROFILE):
        raise RuntimeError('tests must run in the loopback-only environment: '
                           'source scripts/env.sh (make test does)')
    if env.get('VTON_TEST_NO_STACK') == '1':  # make check: unit and lint tests only
        raise RuntimeError('this test starts ROS processes, which make check leaves out: '
                           'mark it (or its module) pytest.mark.stack')
    env.update(ROS_DOMAIN_ID=str(domain_id), PYTHONUNBUFFERED='1',
               VTON_SHM_RECORDS=str(SHM_RECORDS), **extra)
    return env


# Domains 1-200 (Fast DDS ports stay well below 65536). Each pytest-xdist worker owns its own
# block of them (gw0 the first, gw1 the next, ...; the whole range without xdist) and hands
# them out in turn from a random start: stacks of one test run never share a domain (a second
# action server there answers a result request UNKNOWN), and concurrent runs rarely meet.
DOMAINS = 200


def _worker_block() -> range:
    """Return the domains of this process: its xdist worker's share of 1..DOMAINS."""
    worker = os.environ.get('PYTEST_XDIST_WORKER', '')
    count = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1') or 1)
    if not worker.startswith('gw') or count <= 1:
        return range(1, DOMAINS + 1)
    size = DOMAINS // count
    start = 1 + int(worker[2:]) % count * size
    return range(start, start + size)


_BLOCK = _worker_block()
_DOMAINS = itertools.count(random.SystemRandom().randrange(len(_BLOCK)))


def free_domain_id() -> int:
    """Return the next ROS domain of this test run (of this xdist worker's block)."""
    return _BLOCK[next(_DOMAINS) % len(_BLOCK)]


def wait_until(condition, timeout: float = HANG_GUARD, what='the condition',
               interval: float = 0.05):
    """Poll ``condition()`` until it returns a true value, and return that value.

    A hang guard, not a speed limit: after ``timeout`` seconds raise AssertionError naming
    ``what`` (a string, or a callable returning one, e.g. a process log, read only then).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = what() if callable(what) else what
            raise AssertionError(f'timed out after {timeout} s waiting for {text}')
        time.sleep(interval)


def group_pids(pgid: int) -> list[int]:
    """Return the processes of process group ``pgid`` (from /proc)."""
    pids = []
    for entry in Path('/proc').iterdir():
        try:
            fields = (entry / 'stat').read_text().rsplit(')', 1)[1].split()
        except (OSError, IndexError):  # not a process, or gone meanwhile
            continue
        if int(fields[2]) == pgid:
            pids.append(int(entry.name))
    return pids


class Proc:
    """A child process whose output goes to a log file; stopped with SIGINT then SIGKILL."""

    def __init__(self, argv: list, env: dict, log_path: Path, cwd: Path = ROOT) -> None:
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        self._log = open(log_path, 'w')
        self.popen = subprocess.Popen(self.argv, env=env, stdout=self._log,
                                      stderr=subprocess.STDOUT, cwd=cwd,
                                      start_new_session=True)

    @property
    def pid(self) -> int:
        """Process id."""
        return self.popen.pid

    def log(self) -> str:
        """Everything the process printed so far."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors='replace')

    def wait_for_log(self, text: str, timeout: float = HANG_GUARD, count: int = 1) -> str:
        """Wait until ``text`` appears ``count`` times in the output; raise with the log if not."""
        def printed():
            out = self.log()
            if out.count(text) >= count:
                return out
            if self.popen.poll() is not None:
                raise AssertionError(f'{self.argv[0]} exited ({self.popen.returncode}) before '
                                     f'printing {text!r} {count}x:\n{out}')
            return None

        return wait_until(printed, timeout, interval=0.1, what=lambda: (
            f'{self.argv[0]} to print {text!r} {count}x:\n{self.log()}'))

    def stop(self, timeout: float = 15.0) -> int:
        """SIGINT, wait, then SIGKILL the whole process group; return the exit code."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGINT)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()
        return self.popen.returncode

    def kill(self) -> None:
        """SIGKILL the whole process group now and reap it.

        Then give back the Fast DDS files its processes held: a killed participant cannot,
        and a plain client or ``fastdds discovery`` (a wrapper and its server) has no
        supervisor that would.
        """
        names = [name for pid in group_pids(self.pid) for name in dds_shm.own_files(pid)]
        os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()
        dds_shm.release(names)


def stop_all(procs: list['Proc']) -> None:
    """Stop the node processes; each must exit 0 (the exit codes by executable if not)."""
    codes = {p.argv[0].rsplit('/', 1)[-1]: p.stop() for p in procs}
    assert set(codes.values()) == {0}, codes


def signal_stop_lines(log: str, node: str, signame: str = 'SIGINT') -> int:
    """
    Count ``node``'s lines in a supervisor's ``log`` that say it stopped on ``signame``.

    A signal that lands between 'configured and activated' and the spin is a start-up one:
    the node says '<SIG> during start-up: stopped' instead of '<SIG>: shutting down'.
    """
    return sum(1 for line in log.splitlines() if line.startswith(f'[{node}] ') and (
        f'{signame}: shutting down' in line or f'{signame} during start-up: stopped' in line))


def start_fails(argv: list, env: dict) -> str:
    """Run a node that must refuse to start; return its output (one FATAL line)."""
    run = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=HANG_GUARD)
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert 'Traceback' not in out and out.count('[FATAL]') == 1, out
    return out


def node_argv(executable: str, params: dict | None = None, params_file: str | None = None,
              extra: list | None = None) -> list:
    """Return argv for an installed node executable with ROS parameters."""
    argv = [LIB / executable, '--ros-args']
    if params_file:
        argv += ['--params-file', params_file]
    for name, value in (params or {}).items():
        if isinstance(value, bool):
            value = 'true' if value else 'false'
        argv += ['-p', f'{name}:={value}']
    return argv + (extra or [])


def script_argv(path: Path, *args: str) -> list:
    """Return argv running a Python script with this interpreter."""
    return [sys.executable, str(path), *args]


def process_udp_addresses(pid: int) -> set:
    """Local IPv4/IPv6 addresses of the UDP sockets a process (and its threads) holds."""
    inodes = set()
    for fd in Path(f'/proc/{pid}/fd').iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith('socket:['):
            inodes.add(target[8:-1])
    addresses = set()
    for table, width in ((f'/proc/{pid}/net/udp', 8), (f'/proc/{pid}/net/udp6', 32)):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                addresses.add(_decode_address(fields[1].split(':')[0], width))
    return addresses


def _decode_address(hex_addr: str, width: int) -> str:
    if width == 8:
        return '.'.join(str(int(hex_addr[i:i + 2], 16)) for i in (6, 4, 2, 0))
    return hex_addr


# The tests' action client: rclpy's Kilted wheel's send_goal_async registers the request's
# future twice, the second time outside its lock; a reply handled in between completed the
# first, and the one returned never did (vton_ros/nodes/waits.py, test_action_race.py). A
# test then waited its whole hang guard for an answer that had come: on a busy machine,
# test_bad_goal_is_aborted_and_the_server_keeps_serving did. SafeActionClient registers once.
ActionClient = SafeActionClient


class Spinner:
    """An rclpy context + node spun on a background thread, for a test-side client."""

    def __init__(self, name: str, domain_id: int) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import MultiThreadedExecutor

        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = MultiThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException
        while True:
            try:
                self.executor.spin()
                return
            except ExternalShutdownException:
                return
            except AttributeError as err:
                # rclpy (this Kilted wheel): ActionClient.__init__ puts the client in the
                # wait set before it makes its _lock, so a client created while this thread
                # spins can raise here once; the executor is fine, spin on. Else: a bug.
                if "'_lock'" not in str(err):
                    raise

    def wait(self, future, timeout: float = HANG_GUARD, what: str = 'an rclpy future'):
        """Wait for an rclpy future completed by the spinning thread (bounded, names ``what``)."""
        wait_until(future.done, timeout, what, interval=0.01)
        return future.result()

    def call(self, client, request, what: str = 'a service reply'):
        """
        Call an idempotent service (get, list or set parameters, get_state); return a reply.

        Sent again every RESEND seconds while no reply came: rmw_fastrtps drops a reply whose
        reader the server has not matched yet (the server logs "failed to send response
        (timeout)"), and nothing else would ever answer it. A hang guard bounds it.
        """
        futures = [client.call_async(request)]
        deadline = time.monotonic() + HANG_GUARD
        while not any(f.done() for f in futures):
            if time.monotonic() >= deadline:
                raise AssertionError(f'timed out after {HANG_GUARD} s waiting for {what}')
            sent = time.monotonic()
            wait_until(lambda: any(f.done() for f in futures)
                       or time.monotonic() - sent >= RESEND, HANG_GUARD, what, interval=0.01)
            if not any(f.done() for f in futures):
                futures.append(client.call_async(request))
        return next(f for f in futures if f.done()).result()

    def close(self) -> None:
        """Shut down the executor, node (its action clients too) and context."""
        import rclpy
        from vton_ros.nodes.runner import destroy
        self.executor.shutdown()
        destroy(self.node)  # else an action client keeps the DDS participant (and its shm)
        rclpy.try_shutdown(context=self.context)
        self._thread.join(5)
