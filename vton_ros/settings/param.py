"""
One setting of the schema: its name, default, type and constraints, and its checks.

:mod:`vton_ros.settings.schema` lists every setting as a :class:`Param`. No ROS here.
"""

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Param:
    """One setting: a name, its default (which fixes its type) and its constraints."""

    name: str
    default: bool | int | float | str
    description: str
    nodes: tuple[str, ...]
    choices: tuple[str, ...] = ()
    min: float | None = None  # noqa: A003 (schema field name)
    max: float | None = None  # noqa: A003 (schema field name)
    multiple_of: int = 0
    read_only: bool = False

    @property
    def type(self) -> type:  # noqa: A003 (schema field name)
        """Python type of the value (bool, int, float or str)."""
        return type(self.default)

    def validate(self, value: Any) -> Any:
        """Return ``value`` coerced to this parameter's type, or raise ValueError with why."""
        value = _coerce(self, value)
        if self.choices and value not in self.choices:
            raise ValueError(f'{self.name}={value!r} is not one of: {", ".join(self.choices)}')
        if self.min is not None and value < self.min:
            raise ValueError(f'{self.name}={value} is below its minimum {self.min}')
        if self.max is not None and value > self.max:
            raise ValueError(f'{self.name}={value} is above its maximum {self.max}')
        if self.multiple_of and value % self.multiple_of:
            raise ValueError(f'{self.name}={value} must be a multiple of {self.multiple_of}')
        return value

    def constraint_text(self) -> str:
        """Human-readable constraints for descriptors and --help."""
        parts = []
        if self.choices:
            parts.append('one of: ' + ', '.join(self.choices))
        if self.min is not None or self.max is not None:
            parts.append(f'range [{self.min}, {self.max}]')
        if self.multiple_of:
            parts.append(f'multiple of {self.multiple_of}')
        if self.read_only:
            parts.append('read-only after start (needs a restart)')
        return '; '.join(parts)


TYPE_WORDS = {bool: 'a bool', int: 'an integer', float: 'a double', str: 'a string'}


def type_word(value: Any) -> str:
    """Name the ROS parameter type of a value: bool, integer, double, string (or Python's)."""
    for kind, word in TYPE_WORDS.items():
        if type(value) is kind:
            return word.split(' ', 1)[1]
    return type(value).__name__


def type_mismatch(param: Param, value: Any) -> str:
    """Say in ROS type words why ``value`` is not of the parameter's type ('' if it is)."""
    kind = param.type
    if type(value) is kind:
        return ''
    fix = ''
    if kind is float and type(value) is int:
        fix = f'; write {float(value)!r}'
    elif kind is int and type(value) is float and value.is_integer():
        fix = f'; write {int(value)}'
    elif kind is str and param.choices:
        fix = f'; write one of: {", ".join(param.choices)}'
    elif kind is str and type(value) in (bool, int, float):
        fix = f"; quote it: '{value}'"
    elif kind is bool:
        fix = '; write true or false'
    return f'{param.name} expects {TYPE_WORDS[kind]}, got {type_word(value)} {value!r}{fix}'


def _coerce(param: Param, value: Any) -> Any:
    """Return ``value`` as the parameter's type; strings (command line) are parsed."""
    kind = param.type
    if type(value) is kind:
        return value
    if isinstance(value, str):
        text = value.strip()
        if kind is bool and text.lower() in ('true', 'false', '1', '0'):
            return text.lower() in ('true', '1')
        if kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
    raise ValueError(type_mismatch(param, value))
