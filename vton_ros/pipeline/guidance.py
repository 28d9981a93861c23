"""
Limited-interval classifier-free guidance (Kynkäänniemi et al., 2024).

Guidance runs the UNet on the batch [uncond, cond]; outside the interval only the cond
row runs (batch 1) and its prediction is used as is. The interval is given as fractions
of the denoising steps: step ``i`` of ``total`` is guided when
``start * total <= i < end * total`` (so 0.0/1.0, the defaults, guide every step).
No rclpy here.
"""

import math


def check_guidance_interval(start: float, end: float) -> None:
    """Raise ValueError (with the valid range) unless 0 <= start <= end <= 1."""
    for name, value in (('guidance_start', start), ('guidance_end', end)):
        if (not isinstance(value, (int, float)) or isinstance(value, bool)
                or not math.isfinite(value) or not 0.0 <= value <= 1.0):
            raise ValueError(f'{name} must be a fraction of the steps in [0, 1], got {value!r}')
    if start > end:
        raise ValueError(f'guidance_start ({start}) must not exceed guidance_end ({end}); '
                         'e.g. 0.0 and 0.5 guide the first half of the steps')


def guided_steps(total: int, guidance_scale: float, start: float = 0.0,
                 end: float = 1.0) -> list[bool]:
    """
    Return, per step (0-based), whether it runs classifier-free guidance.

    No step is guided when ``guidance_scale <= 1`` (guidance off).
    """
    check_guidance_interval(start, end)
    if guidance_scale <= 1.0:
        return [False] * total
    return [start * total <= i < end * total for i in range(total)]
