"""
Strings a client sends (goal fields, mirror page inputs): bounded and inert.

An id (``garment_id``, ``cloth_type``) is at most :data:`MAX_ID_LENGTH` characters and
holds no control or format character (newline, ESC, DEL, C1 controls, bidi overrides, line
and paragraph separators): :func:`check_id` refuses it. Every client string that reaches a
log line or a result message goes through :func:`escape` first, which writes those
characters (and the backslash) as escapes and truncates, so no client can forge a log line
(a newline, then ``[ERROR] ...``) or flood one. No ROS here: the server and the mirror page
share it.
"""

import unicodedata

MAX_ID_LENGTH = 128  # characters of a garment id or cloth type
SHOWN = 64  # characters of a client string kept in a log line or message
# Unicode categories written as escapes: controls, format (bidi), surrogates, separators.
_UNSAFE = frozenset(('Cc', 'Cf', 'Cs', 'Zl', 'Zp'))
_NAMED = {'\n': '\\n', '\r': '\\r', '\t': '\\t', '\\': '\\\\'}


def is_unsafe(char: str) -> bool:
    """Return True for a character a log line must not carry raw (one character)."""
    return unicodedata.category(char) in _UNSAFE


def escape(text: str, limit: int = SHOWN) -> str:
    """
    Return ``text`` safe for one log line: unsafe characters escaped, at most ``limit`` kept.

    A newline becomes a backslash and an n, ESC the four characters of its hex escape; a
    longer text ends with ``... (N characters)``. At most ``10 * limit + 30`` characters.
    """
    out = []
    for char in text[:limit]:
        if char in _NAMED:
            out.append(_NAMED[char])
        elif is_unsafe(char):
            code = ord(char)
            out.append(f'\\x{code:02x}' if code < 0x100 else
                       f'\\u{code:04x}' if code < 0x10000 else f'\\U{code:08x}')
        else:
            out.append(char)
    if len(text) > limit:
        out.append(f'... ({len(text)} characters)')
    return ''.join(out)


def check_id(name: str, value: str, max_length: int = MAX_ID_LENGTH) -> None:
    """Raise ValueError (with an inert message) if ``value`` is too long or holds a control."""
    if len(value) > max_length:
        raise ValueError(f'{name} is {len(value)} characters long (at most {max_length}): '
                         f'{escape(value)}')
    for char in value:
        if is_unsafe(char):
            raise ValueError(f"{name} '{escape(value)}' holds the control character "
                             f'U+{ord(char):04X}; use printable text')
