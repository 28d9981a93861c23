"""
Why a node process ended, in one line, for tryon_bringup and the launch file. No ROS here.

A node killed by a signal is named by it (``killed by SIGKILL``): its output says nothing
about that. Otherwise the reason is the node's last error line: a ROS ``[FATAL]`` or
``[ERROR]`` line, an absl/glog ``E``/``F`` line, or a Python exception line ending a
traceback. Warnings (mediapipe's ``W0000 ...``), info and any other last line are not
reasons. Lines are matched at their start (after colour codes), so a goal string inside a
log line cannot pose as an error, and the reason is escaped and truncated.
"""

import re
import signal

from vton_ros.goals.strings import escape

SHOWN = 400  # characters of an error line kept in the reason
_COLOUR = re.compile(r'\x1b\[[0-9;]*m')
_ERROR = re.compile(
    r'\[(FATAL|ERROR)\]'  # rcutils console: [ERROR] [stamp] [node]: message
    r'|[EF]\d{4} \d\d:\d\d:\d\d'  # absl / glog: E0000 00:00:00.000 ...
    r'|([A-Za-z_][\w.]*)?(Error|Exception|Interrupt)\b[^:]*:')  # Python: ValueError: ...


def is_error_line(line: str) -> bool:
    """Return True if a line of a node's output reports an error (FATAL/ERROR/exception)."""
    return _ERROR.match(_COLOUR.sub('', line).lstrip()) is not None


class LastError:
    """Feed a node's output lines; keeps the last error line."""

    def __init__(self) -> None:
        self.line = ''

    def feed(self, line: str) -> None:
        """Look at one line of output (without its newline)."""
        if is_error_line(line):
            self.line = _COLOUR.sub('', line).strip()


def exit_reason(returncode: int, error_line: str) -> str:
    """Return why a process ended: the signal that killed it, else its last error line."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f'signal {-returncode}'
        return f'killed by {name}'
    if error_line:
        return f'exited with code {returncode}: {escape(error_line, SHOWN)}'
    return f'exited with code {returncode} (no error line in its output)'
