"""
Noise schedulers by name, built from the base model's scheduler config.

The paper replaces CatVTON's 50-step DDIM with DPM-Solver++ at 10-20 steps; all names map
to diffusers schedulers sharing the base model's training noise schedule (betas).
"""

import inspect

from diffusers import (DDIMScheduler, DPMSolverMultistepScheduler,
                       EulerAncestralDiscreteScheduler, EulerDiscreteScheduler,
                       UniPCMultistepScheduler)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from vton_ros.settings.choices import SCHEDULERS

# name (settings.choices.SCHEDULERS) -> (scheduler class, settings overriding the base config)
_SCHEDULERS = {
    'ddim': (DDIMScheduler, {}),
    'dpmpp_2m': (DPMSolverMultistepScheduler,
                 {'algorithm_type': 'dpmsolver++', 'solver_order': 2}),
    'dpmpp_2m_karras': (DPMSolverMultistepScheduler,
                        {'algorithm_type': 'dpmsolver++', 'solver_order': 2,
                         'use_karras_sigmas': True}),
    'euler': (EulerDiscreteScheduler, {}),
    'euler_a': (EulerAncestralDiscreteScheduler, {}),
    'unipc': (UniPCMultistepScheduler, {}),
}


def check_scheduler_name(name: str) -> str:
    """Return ``name`` if it is a known scheduler, else raise ValueError listing them."""
    if name not in SCHEDULERS:
        raise ValueError(f'unknown scheduler {name!r}; valid: {", ".join(SCHEDULERS)}')
    return name


def make_scheduler(name: str, base_config: dict) -> SchedulerMixin:
    """
    Build scheduler ``name`` from ``base_config`` (the base model's scheduler_config.json).

    Keys of the base config that the chosen class does not use are ignored.
    """
    cls, overrides = _SCHEDULERS[check_scheduler_name(name)]
    accepted = set(inspect.signature(cls.__init__).parameters)
    config = {k: v for k, v in base_config.items() if k in accepted}
    config.update(overrides)
    return cls(**config)


def step_kwargs(scheduler: SchedulerMixin, eta: float, generator) -> dict:
    """Extra ``scheduler.step`` arguments: ``eta`` (DDIM only) and ``generator`` if used."""
    params = inspect.signature(scheduler.step).parameters
    kwargs = {}
    if 'eta' in params:
        kwargs['eta'] = eta
    if 'generator' in params:
        kwargs['generator'] = generator
    return kwargs
