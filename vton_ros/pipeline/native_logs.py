"""
Third-party native logging (absl, glog, TF Lite) kept out of the node output.

mediapipe's C++ graph writes INFO/WARNING lines straight to file descriptor 2 when it is
built and on its first frames (``W0000 ... inference_feedback_manager.cc:114] ...``,
``INFO: Created TensorFlow Lite XNNPACK delegate``). Python logging cannot reach them, so
:func:`quiet` points fd 2 at a pipe for those calls only and copies every other line (the
node's own log lines from other threads, tracebacks) to the real fd 2: nothing else is
lost. ``VTON_NATIVE_LOGS=1`` in the environment (``tryon_bringup --native-logs``) keeps them.
"""

from contextlib import contextmanager
import os
import re
import sys
import threading
from typing import Iterator

ENV = 'VTON_NATIVE_LOGS'
# glog/absl (W0000 00:00:...), TF Lite (INFO: Created ...), absl before InitializeLog
NATIVE = re.compile(rb'[IWEF]\d{4} |INFO: |WARNING: All log messages before absl::')
_LOCK = threading.Lock()


def wanted() -> bool:
    """Tell whether the native logs were asked for (VTON_NATIVE_LOGS=1)."""
    return os.environ.get(ENV, '').strip().lower() in ('1', 'true', 'yes', 'on')


def is_native(line: bytes) -> bool:
    """Tell whether a line written to fd 2 is a third-party native log line."""
    return NATIVE.match(line) is not None


def _relay(read_end: int, out: int) -> None:
    """Copy the lines of the pipe to ``out``, leaving out native log lines; close both."""
    with os.fdopen(read_end, 'rb') as pipe:
        for line in pipe:
            if not is_native(line):
                os.write(out, line)
    os.close(out)


@contextmanager
def quiet(active: bool = True) -> Iterator[None]:
    """Drop the native log lines written to fd 2 inside the block (unless logs are wanted)."""
    if not active or wanted():
        yield
        return
    os.environ.setdefault('GLOG_minloglevel', '2')  # glog and TF, where they read it
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
    with _LOCK:
        sys.stderr.flush()
        saved = os.dup(2)
        read_end, write_end = os.pipe()
        relay = threading.Thread(target=_relay, args=(read_end, os.dup(saved)), daemon=True,
                                 name='native_logs')
        relay.start()
        try:
            os.dup2(write_end, 2)
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            os.close(write_end)
            relay.join(timeout=5.0)  # the pipe ends once no writer is left
