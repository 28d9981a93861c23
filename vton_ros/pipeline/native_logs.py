"""
Third-party native logging (absl, glog, TF Lite) kept out of the node output.

mediapipe's C++ graph writes INFO/WARNING lines straight to file descriptor 2 when it is
built and on its first frames (``W0000 ... inference_feedback_manager.cc:114] ...``,
``INFO: Created TensorFlow Lite XNNPACK delegate``). Python logging cannot reach them, so
:func:`quiet` points fd 2 at /dev/null for those calls only. ``VTON_NATIVE_LOGS=1`` in the
environment (``tryon_bringup --native-logs``) keeps them.
"""

from contextlib import contextmanager
import os
import sys
import threading
from typing import Iterator

ENV = 'VTON_NATIVE_LOGS'
_LOCK = threading.Lock()


def wanted() -> bool:
    """Tell whether the native logs were asked for (VTON_NATIVE_LOGS=1)."""
    return os.environ.get(ENV, '').strip().lower() in ('1', 'true', 'yes', 'on')


@contextmanager
def quiet(active: bool = True) -> Iterator[None]:
    """Discard what native code writes to fd 2 inside the block (unless logs are wanted)."""
    if not active or wanted():
        yield
        return
    os.environ.setdefault('GLOG_minloglevel', '2')  # glog and TF, where they read it
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    with _LOCK:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
