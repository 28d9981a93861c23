"""
Console-script entry points of the nodes: Ctrl-C is handled from the first moment.

Importing a node module pulls in torch, diffusers or mediapipe, which takes seconds (more
on a Jetson). A SIGINT or SIGTERM during those imports ends the process quietly with exit
code 0 instead of a KeyboardInterrupt traceback; from its first line on,
:func:`vton_ros.nodes.runner.run` handles the signals itself.
"""

import importlib
import signal
import sys
from typing import Any


class _Stopped(BaseException):
    """A signal before the node's own handling started."""


def _stop(_signum: int, _frame: Any) -> None:
    raise _Stopped()


def _main(node: str) -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _stop)
    try:
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
