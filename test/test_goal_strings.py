"""Client strings bounded and inert (goal_strings) and the action's QoS (action_qos)."""

import pytest
from rclpy.qos import HistoryPolicy, qos_profile_services_default
from vton_ros.goals.strings import check_id, escape, MAX_ID_LENGTH, SHOWN
from vton_ros.nodes import action_qos

FORGERIES = ['red\n[ERROR] [tryon_server]: forged', 'x\r[FATAL] y', '\x1b[31mred\x1b[0m',
             'a\x00b', 'del\x7f', 'c1\x85next', 'bidi\u202egnp.exe', 'line\u2028sep',
             'para\u2029sep', 'zero\u200bwidth', 'tab\there']


@pytest.mark.parametrize('text', FORGERIES)
def test_escape_leaves_one_printable_line(text):
    shown = escape(text)
    assert shown.isprintable() and '\n' not in shown and '\x1b' not in shown
    assert escape(text) != text


def test_escape_is_unambiguous_and_keeps_plain_text():
    assert escape('red_tshirt') == 'red_tshirt'
    assert escape('Übergröße ✓') == 'Übergröße ✓'
    assert escape('a\nb') == 'a\\nb'
    assert escape('a\\nb') == 'a\\\\nb'  # a literal backslash-n stays distinguishable
    assert escape('\x1b') == '\\x1b' and escape('\u202e') == '\\u202e'


def test_escape_truncates_a_flood():
    text = 'A' * 100_000
    shown = escape(text)
    assert shown.startswith('A' * SHOWN) and shown.endswith('... (100000 characters)')
    assert len(shown) < SHOWN + 30
    worst = escape('\x00' * 100_000)
    assert len(worst) <= 10 * SHOWN + 30
    assert len(escape('x' * 5000, limit=10)) < 40


def test_check_id_accepts_printable_names():
    for name in ('red_tshirt', 'blue skirt', 'Jacke-Größe_M', 'a' * MAX_ID_LENGTH, ''):
        check_id('garment_id', name)


@pytest.mark.parametrize('text', FORGERIES)
def test_check_id_refuses_control_characters(text):
    with pytest.raises(ValueError, match='control character') as err:
        check_id('garment_id', text)
    message = str(err.value)
    assert message.isprintable() and 'garment_id' in message


def test_check_id_refuses_a_long_id_with_a_short_message():
    with pytest.raises(ValueError, match=f'100000 characters long \\(at most {MAX_ID_LENGTH}') \
            as err:
        check_id('garment_id', 'A' * 100_000)
    assert len(str(err.value)) < 200


def test_action_qos_holds_a_burst():
    options = action_qos.server_options(0, 900.0)
    for key in ('goal_service_qos_profile', 'cancel_service_qos_profile',
                'result_service_qos_profile'):
        qos = options[key]
        assert qos.history == HistoryPolicy.KEEP_ALL
        assert qos.reliability == qos_profile_services_default.reliability
        assert qos.durability == qos_profile_services_default.durability
        assert action_qos.client_options()[key].history == HistoryPolicy.KEEP_ALL
    assert options['result_timeout'] == 900
    deep = action_qos.server_options(500, 0.2)
    assert deep['goal_service_qos_profile'].history == HistoryPolicy.KEEP_LAST
    assert deep['goal_service_qos_profile'].depth == 500
    assert deep['result_timeout'] == action_qos.MIN_RESULT_TIMEOUT
