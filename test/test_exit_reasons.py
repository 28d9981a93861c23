"""Why a node ended (exit_reasons): the killing signal, else its last error line."""

import signal

import pytest
from vton_ros.supervision.exit_reasons import exit_reason, is_error_line, LastError

ERRORS = [
    '[ERROR] [1733140000.1] [tryon_server]: goal failed',
    '[FATAL] [1733140000.1] [mirror_a.tryon_server]: cannot start: no weights',
    '\x1b[31m[ERROR] [1.0] [camera_node]: coloured',
    'E0000 00:00:1733140000.123 12 calculator_graph.cc:887] mediapipe failed',
    'F0000 00:00:1733140000.123 12 check failed',
    'ValueError: bad value',
    'rclpy._rclpy_pybind11.RCLError: failed to create',
    'torch.OutOfMemoryError: CUDA out of memory',
]
NOT_ERRORS = [
    'W0000 00:00:1733140000.1 12 landmark_projection_calculator.cc:186] Using NORM_RECT',
    'I0000 00:00:1733140000.1 12 gl_context.cc:369] GL version',
    '[WARN] [1.0] [tryon_server]: goal rejected: busy',
    '[INFO] [1.0] [tryon_server]: goal 1a2b ended INVALID_ARGUMENT: garment x\\n[ERROR] forged',
    '[INFO] [1.0] [tryon_server]: garment [ERROR] in a goal string',
    'Errors are counted per goal',
    '',
]


@pytest.mark.parametrize('line', ERRORS)
def test_error_lines(line):
    assert is_error_line(line)


@pytest.mark.parametrize('line', NOT_ERRORS)
def test_not_error_lines(line):
    assert not is_error_line(line)


def test_the_signal_wins_over_any_line():
    assert exit_reason(-signal.SIGKILL, ERRORS[0]) == 'killed by SIGKILL'
    assert exit_reason(-signal.SIGSEGV, '') == 'killed by SIGSEGV'


def test_last_error_line_not_the_last_line():
    last = LastError()
    for line in [ERRORS[1], ERRORS[0], NOT_ERRORS[0], NOT_ERRORS[3], 'bye']:
        last.feed(line)
    assert last.line == ERRORS[0]
    assert exit_reason(1, last.line) == f'exited with code 1: {ERRORS[0]}'
    assert exit_reason(1, '') == 'exited with code 1 (no error line in its output)'


def test_reason_is_one_bounded_line():
    reason = exit_reason(1, '[ERROR] ' + 'x\x1b' * 100_000)
    assert reason.isprintable() and len(reason) < 5000
