"""
main() of every node: start-up errors as one line, Ctrl-C and SIGTERM without tracebacks.

:func:`run` spins a node on a MultiThreadedExecutor. SIGINT and SIGTERM (a terminal sends
SIGINT to the whole process group; tryon_bringup and ros2 launch send their own, then
escalate to SIGTERM) call ``node.prepare_shutdown()`` while the executor still spins, so
running goals can still send their results; then the node is closed and destroyed and the
process exits 0. Under a supervisor that sets ``VTON_SHM_RECORDS``, the node writes down
its Fast DDS shared-memory files once its participant exists, so the supervisor can give
them back if the process is killed (:mod:`vton_ros.supervision.dds_shm`).
"""

import gc
import os
import signal
import threading
from types import TracebackType
from typing import Any, Callable

import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from vton_ros.supervision import dds_shm

SPIN_POLL = 0.25  # seconds; the longest a signal waits for the spinning main thread


class _Signals:
    """
    SIGINT and SIGTERM, as a terminal, tryon_bringup and ros2 launch send them.

    Before the node spins, a signal interrupts start-up (model loading) at once. While it
    spins, the handler only sets :attr:`received`; a helper thread then calls
    ``node.prepare_shutdown()`` with the executor still running, so goals can get their
    results. Repeated signals (Ctrl-C reaches the process group, launch sends its own,
    then SIGTERM) are absorbed.
    """

    def __init__(self) -> None:
        self.received = threading.Event()
        self.name = ''
        self.spinning = False
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.received.is_set():
            return
        self.name = signal.Signals(signum).name
        self.received.set()
        if not self.spinning:
            raise _Interrupted()


class _Interrupted(BaseException):
    """A signal during start-up (BaseException so no ``except Exception`` swallows it)."""


def _stop_on_signal(node: Node, signals: _Signals, done: threading.Event,
                    executor: MultiThreadedExecutor) -> None:
    signals.received.wait()
    if done.is_set():
        return
    node.get_logger().info(f'{signals.name}: shutting down')
    try:
        getattr(node, 'prepare_shutdown', lambda: None)()
    except Exception as err:  # noqa: B902 - the node must still shut down
        node.get_logger().error(f'prepare_shutdown failed: {err!r}')
    done.set()
    executor.wake()


def run(node_factory: Callable[[], Node], args: list[str] | None = None,
        start: Callable[[Node], None] | None = None, threads: int = 4) -> None:
    """
    Init rclpy, build the node, call ``start(node)``, spin, shut down cleanly.

    ``start`` is where an entry point sets process-wide flags and loads models. A start-up
    error (bad parameter, missing model/device/package) is logged as one fatal line under
    the node's name and exits with 1. SIGINT or SIGTERM (Ctrl-C, tryon_bringup, launch)
    calls ``node.prepare_shutdown()`` while the executor still spins, then stops the
    executor, calls ``node.close()`` and destroys the node and exits 0, without a
    traceback (both hooks are SchemaNode's; a plain Node works without them).
    """
    signals = _Signals()
    node = half_built = None
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        try:
            node = node_factory()
            _write_records()
            if start is not None:
                start(node)
            signals.spinning = True  # from here a signal is a shutdown, not an interrupt
        except (ValueError, OSError, RuntimeError, ImportError, ParameterException) as err:
            # Bad parameters, missing models, packages or devices: one clear line, exit 1.
            _logger(node, node_factory).fatal(f'cannot start: {err}')
            if node is None:  # its constructor raised, its DDS participant exists all the same
                half_built = _half_built(err.__traceback__)
                _write_records()
            raise SystemExit(1) from None
        _spin(node, signals, threads)
    except _Interrupted:
        _logger(node, node_factory).info(f'{signals.name} during start-up: stopped')
    finally:
        if node is not None:
            getattr(node, 'close', lambda: None)()
            destroy(node)
        elif half_built is not None:  # not closed: its constructor did not finish
            destroy(half_built)  # else its 64 MB segment outlives the process
        rclpy.try_shutdown()
        ignore_signals()
        # Exiting: the interpreter's final garbage collection over torch's and diffusers'
        # objects took ~7 s on a loaded 2-core machine (past tryon_bringup's SIGINT grace).
        # Everything the node held is released above; skip that walk.
        gc.freeze()


def _write_records() -> None:
    """Under a supervisor, write down this process's Fast DDS files (if it gets killed)."""
    if os.environ.get(dds_shm.RECORDS_ENV):
        dds_shm.record(os.environ[dds_shm.RECORDS_ENV])


def _half_built(trace: TracebackType | None) -> Node | None:
    """Return the node whose constructor raised, found in the traceback (None: not made)."""
    while trace is not None:
        candidate = trace.tb_frame.f_locals.get('self')
        if isinstance(candidate, Node) and hasattr(candidate, 'handle'):
            return candidate
        trace = trace.tb_next
    return None


def destroy(node: Node) -> None:
    """
    Destroy the node, and with the last one its DDS participant and shared memory.

    rclpy's Node.destroy_node() leaves action servers and clients, and LifecycleNode's its
    state machine; each holds the node's handle, so the participant lived on until the
    interpreter's final collection (skipped here, see gc.freeze below): every clean exit
    left its 64 MB Fast DDS segment in /dev/shm (201 MB for the stack at each start of
    make mirror).
    """
    for waitable in list(node.waitables):  # action servers and clients: not destroy_node's
        getattr(waitable, 'destroy', lambda: None)()
    state_machine = getattr(node, '_state_machine', None)
    node.destroy_node()
    if state_machine is not None:
        state_machine.destroy_when_not_in_use()


def ignore_signals() -> None:
    """
    Ignore SIGINT and SIGTERM from now on (the process is exiting anyway).

    Python restores the default handlers while it finalizes, so a late second signal
    (Ctrl-C reaches the process group and launch sends its own) would kill the process
    with -2; an ignored signal stays ignored. SIGKILL still works.
    """
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)


def _logger(node: Node | None, node_factory: Callable) -> Any:
    """Return the node's logger; before the node exists, one named after its module."""
    if node is not None:
        return node.get_logger()
    return rclpy.logging.get_logger(node_factory.__module__.rsplit('.', 1)[-1])


def _spin(node: Node, signals: _Signals, threads: int) -> None:
    """Spin until a signal's shutdown preparation is done (or rclpy is shut down)."""
    executor = MultiThreadedExecutor(num_threads=threads)
    executor.add_node(node)
    done = threading.Event()
    signals.spinning = True
    threading.Thread(target=_stop_on_signal, args=(node, signals, done, executor),
                     name='shutdown', daemon=True).start()
    try:
        spin_until(executor, done)
    finally:
        done.set()
        signals.received.set()  # the helper thread returns
        stop_executor(executor)


def spin_until(executor: MultiThreadedExecutor, done: threading.Event) -> None:
    """Spin until ``done`` is set or rclpy shuts down (back in Python every SPIN_POLL s)."""
    try:
        while not done.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=SPIN_POLL)
    except ExternalShutdownException:
        pass


def stop_executor(executor: MultiThreadedExecutor) -> None:
    """
    Shut an executor down after its callbacks ended; call once nothing spins it.

    rclpy's shutdown() destroys the executor's guard condition before its worker threads
    are done (Humble to Kilted); a callback still queued or running then fails with
    "cannot use Destroyable". Let the queued and running ones end first.
    """
    executor._executor.shutdown(wait=True)
    executor.shutdown()
