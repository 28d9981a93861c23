"""
Console-script entry points of the nodes: Ctrl-C is handled from the first moment.

Importing a node module pulls in torch, diffusers or mediapipe, which takes seconds (more
on a Jetson). A SIGINT or SIGTERM during those imports ends the process quietly with exit
code 0 instead of a KeyboardInterrupt traceback; from its first line on,
:func:`vton_ros.nodes.runner.run` handles the signals itself.

A node started by a supervisor (tryon_bringup, the launch file) does not outlive it: the
supervisor names itself in ``VTON_SUPERVISOR_PID`` and the node asks the kernel for a
SIGTERM when that parent dies (``PR_SET_PDEATHSIG``), however it dies (SIGKILL, a closed
terminal), so its goals end with SHUTTING_DOWN and it exits cleanly. A node started by
hand (no such variable, or another parent) is unaffected.
"""

import ctypes
import importlib
import os
import signal
import sys
from typing import Any

SUPERVISOR_ENV = 'VTON_SUPERVISOR_PID'
_PR_SET_PDEATHSIG = 1


class _Stopped(BaseException):
    """A signal before the node's own handling started."""


def _stop(_signum: int, _frame: Any) -> None:
    raise _Stopped()


def die_with_supervisor(environ: dict | None = None) -> bool:
    """
    Get SIGTERM when the supervisor in ``VTON_SUPERVISOR_PID`` dies; tell whether armed.

    Armed only when that process is our parent. If it is already gone (it died before we
    could ask), stop now: SIGTERM to ourselves, as the kernel would have sent.
    """
    wanted = (os.environ if environ is None else environ).get(SUPERVISOR_ENV, '')
    if not wanted.isdigit() or not sys.platform.startswith('linux'):
        return False
    if os.getppid() == int(wanted):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))
        if os.getppid() == int(wanted):
            return True
    try:
        os.kill(int(wanted), 0)
    except ProcessLookupError:  # the supervisor is gone already
        os.kill(os.getpid(), signal.SIGTERM)
    except PermissionError:  # alive, someone else's: a wrapper (prefix) started us
        pass
    return False


def _main(node: str) -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stop)
    try:
        die_with_supervisor()
        importlib.import_module(f'vton_ros.nodes.{node}').main()
    except _Stopped:
        sys.exit(0)


def camera_node() -> None:
    """Run camera_node."""
    _main('camera_node')


def segmentation_node() -> None:
    """Run segmentation_node."""
    _main('segmentation_node')


def tryon_server() -> None:
    """Run tryon_server."""
    _main('tryon_server')


def mirror_ui() -> None:
    """Run mirror_ui."""
    _main('mirror_ui')


def metrics_exporter() -> None:
    """Run metrics_exporter."""
    _main('metrics_exporter')
