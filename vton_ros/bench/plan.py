"""
What the benchmark measures: run configurations, sweeps and their plans (no measuring here).

A :class:`RunConfig` names a run in the schema's words: its fields are made from the typed
views of :mod:`vton_ros.settings.views` (every ``CatVTONOptions`` field and every argument of
a pipeline call, by name, with the schema's defaults), plus the bench's precision, memory
fraction and backend; ``steps`` is num_inference_steps and ``memory_fraction``
gpu_memory_fraction. The pipeline's options and call arguments come from the same views,
the server's own mapping, so a new option reaches the bench without an edit here.
"""

from dataclasses import dataclass, field, fields, make_dataclass, replace
from typing import Any

from vton_ros.pipeline.options import PipelineOptions
from vton_ros.settings.schema import param
from vton_ros.settings.views import CatVTONCall, CatVTONOptions, SettingsView


SWEEPS = ('stages', 'precision', 'resolution', 'steps', 'memory')
PRECISIONS = ('fp32', 'fp16', 'bf16')
PAPER_SIZES = ((1024, 768), (512, 384), (256, 192))
CPU_SIZES = ((512, 384), (256, 192), (128, 96))
PAPER_STEPS = (50, 20, 15, 10)
PAPER_SCHEDULERS = ('ddim', 'dpmpp_2m')
PAPER_MEMORY_FRACTION = 0.85
CPU_FP16_REASON = ('fp16 on CPU: this torch has no fast CPU fp16 kernels (a probe UNet forward '
                   'here was ~10x slower than bf16, minutes per configuration); pass '
                   '--cpu-fp16 to measure it anyway')
# RunConfig fields named otherwise than their catvton.* settings
_SETTING = {'steps': 'num_inference_steps', 'memory_fraction': 'gpu_memory_fraction'}
_FIELD = {setting: name for name, setting in _SETTING.items()}
# the bench's own fields (its command line and what it sweeps), first in a RunConfig; a named
# configuration or a profile sets the others
BENCH_OWN = ('height', 'width', 'steps', 'scheduler', 'precision', 'guidance_scale',
             'memory_fraction', 'backend')
_BENCH_DEFAULTS = {'precision': 'bf16'}  # where the bench's default is not the schema's
CPU_FRACTION_REASON = ('N/A on CPU: the memory fraction caps the CUDA caching allocator '
                       '(torch.cuda.set_per_process_memory_fraction); nothing to set on CPU')


def setting_name(field_name: str) -> str:
    """Return the ``catvton.*`` setting of a RunConfig field (``steps``: num_inference_steps)."""
    return f'catvton.{_SETTING.get(field_name, field_name)}'


class _RunMethods:
    """What a run configuration does with its fields (its fields: :data:`RunConfig`)."""

    @property
    def cfg(self) -> bool:
        """Tell whether classifier-free guidance is on (UNet batch 2)."""
        return self.guidance_scale > 1.0

    def view(self, view: type[SettingsView]) -> Any:
        """Return the typed view of this run's settings (schema defaults for the rest)."""
        own = {_SETTING.get(f.name, f.name): getattr(self, f.name) for f in fields(self)}
        return view(**{name: own[name] for name in view.names() if name in own})

    def with_settings(self, settings: tuple[tuple[str, Any], ...]) -> 'RunConfig':
        """Apply ``catvton.*`` settings (checked by the schema) to a copy of this run."""
        values = {}
        for name, value in settings:
            field_name = _FIELD.get(name.split('.', 1)[-1], name.split('.', 1)[-1])
            if field_name not in RUN_FIELDS:
                raise ValueError(f'{name} is no setting of a bench run (its settings: '
                                 f'{", ".join(setting_name(f) for f in RUN_FIELDS)})')
            values[field_name] = param(name).validate(value)
        return replace(self, **values)

    def options(self) -> PipelineOptions:
        """Pipeline memory options of this configuration (the server's mapping)."""
        return PipelineOptions(**{name: getattr(self, name) for name in CatVTONOptions.names()})

    def call_kwargs(self) -> dict[str, Any]:
        """Per-call pipeline arguments of this configuration (the server's mapping)."""
        return self.view(CatVTONCall).pipeline_kwargs()

    def memory_label(self) -> str:
        """Short description of the memory settings ('default' when none is on)."""
        parts = []
        if self.attention_slicing != 'none':
            parts.append(f'attention slicing {self.attention_slicing}')
        if self.vae_slicing:
            parts.append('VAE slicing')
        if self.vae_tiling:
            parts.append('VAE tiling')
        if self.memory_fraction < 1.0:
            parts.append(f'memory fraction {self.memory_fraction:g}')
        if self.offload != 'none':
            parts.append(f'offload {self.offload}')
        return ', '.join(parts) or 'default'

    def speed_label(self) -> str:
        """Short description of the speed options ('' when none is on)."""
        parts = []
        if (self.guidance_start, self.guidance_end) != (0.0, 1.0):
            parts.append(f'guidance [{self.guidance_start:g}, {self.guidance_end:g})')
        if self.cache_interval > 1:
            parts.append(f'cache {self.cache_interval}/branch {self.cache_branch}')
        if self.channels_last:
            parts.append('channels_last')
        if self.decoder != 'full':
            parts.append(f'{self.decoder} decoder')
        if self.encoder != 'full':
            parts.append(f'{self.encoder} encoder')
        if self.backend != 'torch':
            parts.append(self.backend)
        if self.sdpa_backend != 'auto':
            parts.append(f'sdpa {self.sdpa_backend}')
        return ', '.join(parts)

    def label(self) -> str:
        """Short human-readable name, e.g. '512x384 bf16 dpmpp_2m 10 steps'."""
        text = f'{self.height}x{self.width} {self.precision} {self.scheduler} {self.steps} steps'
        extra = [part for part in (self.memory_label(), self.speed_label())
                 if part and part != 'default']
        return f'{text} ({"; ".join(extra)})' if extra else text


def _run_fields() -> list[tuple[str, type, Any]]:
    """Return the bench's own fields, then the views' call arguments and options, by name."""
    call = [_FIELD.get(n, n) for n in CatVTONCall.names()
            if n not in CatVTONCall.NOT_CALL_ARGUMENTS or n == 'scheduler']
    names = dict.fromkeys(BENCH_OWN + tuple(call) + CatVTONOptions.names())
    out = []
    for name in names:
        setting = param(setting_name(name))
        out.append((name, setting.type,
                    field(default=_BENCH_DEFAULTS.get(name, setting.default))))
    return out


RunConfig = make_dataclass('RunConfig', _run_fields(), bases=(_RunMethods,), frozen=True)
RunConfig.__module__ = __name__
RunConfig.__doc__ = """
One measured configuration: a frozen dataclass made from the settings views.

height/width: output pixels (multiples of 8); steps: denoising steps; scheduler: a name
from vton_ros.pipeline.schedulers; precision: fp32 | fp16 | bf16 (default bf16);
guidance_scale: CFG (UNet batch 2 when > 1); memory_fraction: CUDA only; backend: torch
or onnxruntime (the graphs of the bench's ``--onnx-dir``). The other fields are the
pipeline call's arguments (guidance interval, DeepCache, repaint, ...) and
:class:`PipelineOptions` (slicing, decoders, offload, ...), each its ``catvton.*``
setting with the schema's default (the paper's exact path).
"""
RUN_FIELDS = tuple(f.name for f in fields(RunConfig))
# the fields a profile or a named configuration sets (the rest are the bench's own)
PROFILE_FIELDS = tuple(name for name in RUN_FIELDS if name not in BENCH_OWN)


@dataclass(frozen=True)
class SweepPlan:
    """
    Sizes and step counts of the sweeps other than 'stages' (which uses the base config).

    sizes: resolution sweep (height, width); sweep_size/sweep_steps: precision sweep (and
    the steps of the resolution sweep); steps_size: steps sweep (steps_list x schedulers);
    memory_size/memory_steps: memory sweep.
    reduced: the CPU profile (see :func:`describe_plan` for the report's wording).
    """

    sizes: tuple[tuple[int, int], ...]
    sweep_size: tuple[int, int]
    sweep_steps: int
    steps_size: tuple[int, int] = (512, 384)
    steps_list: tuple[int, ...] = PAPER_STEPS
    schedulers: tuple[str, ...] = PAPER_SCHEDULERS
    memory_size: tuple[int, int] = (512, 384)
    memory_steps: int = 10
    reduced: bool = False


def default_plan(base: RunConfig, reduced: bool) -> SweepPlan:
    """
    Paper sizes (``reduced`` False, for GPUs) or sizes a 2-core CPU finishes in minutes.

    Reduced (about 25 minutes for ``--sweep all`` on a 2-core CPU): resolution sweep at
    512x384/256x192/128x96 instead of 1024x768/512x384/256x192; precision sweep at 256x192;
    steps sweep at 128x96; memory sweep at 384x288 (above the VAE tile size, so tiling
    engages) with 2 steps (the options change the per-step cost).
    """
    size = (base.height, base.width)
    if not reduced:
        return SweepPlan(PAPER_SIZES, size, base.steps, steps_size=size, memory_size=size,
                         memory_steps=base.steps)
    return SweepPlan(CPU_SIZES, (256, 192), base.steps, steps_size=(128, 96),
                     memory_size=(384, 288), memory_steps=2, reduced=True)


def describe_plan(plan: SweepPlan, base: RunConfig, sweeps: tuple[str, ...]) -> list[str]:
    """Say, for the report, at which sizes/steps each sweep ran and how that differs."""
    def size(hw: tuple[int, int]) -> str:
        return f'{hw[0]}x{hw[1]}'

    base_size = (base.height, base.width)
    profile = 'reduced (CPU)' if plan.reduced else 'full (paper sizes)'
    notes = [f'profile {profile}; stages sweep at the base configuration {base.label()}']
    if 'precision' in sweeps:
        notes.append(f'precision sweep at {size(plan.sweep_size)}, {plan.sweep_steps} steps'
                     + ('' if plan.sweep_size == base_size else
                        f' (reduced from {size(base_size)})'))
    if 'resolution' in sweeps:
        sizes = ', '.join(size(s) for s in plan.sizes)
        paper = ', '.join(size(s) for s in PAPER_SIZES)
        notes.append(f'resolution sweep at {sizes}, {plan.sweep_steps} steps'
                     + ('' if plan.sizes == PAPER_SIZES else f' (the paper: {paper})'))
    if 'steps' in sweeps:
        steps = ', '.join(str(s) for s in plan.steps_list)
        notes.append(f'steps sweep: {", ".join(plan.schedulers)} at {steps} steps, '
                     f'{size(plan.steps_size)}, every entry measured (none extrapolated)'
                     + ('' if plan.steps_size == base_size else
                        f' (reduced from {size(base_size)})'))
    if 'memory' in sweeps:
        notes.append(f'memory sweep at {size(plan.memory_size)}, {plan.memory_steps} steps'
                     + ('' if plan.memory_steps == base.steps else
                        ' (fewer steps: the options change the per-step cost, and denoise '
                        'time is linear in the steps; compare s/step)')
                     + ('' if plan.memory_size == base_size else
                        f' (reduced from {size(base_size)})'))
    return notes


@dataclass(frozen=True)
class PlannedRun:
    """A configuration of one sweep, with the reason when it is skipped (never silently)."""

    sweep: str
    config: RunConfig
    skip_reason: str | None = None


def plan_runs(sweeps: tuple[str, ...], base: RunConfig, plan: SweepPlan, device_type: str,
              cpu_fp16: bool = False) -> list[PlannedRun]:
    """List every (sweep, configuration) to measure or skip, in sweep order."""
    unknown = set(sweeps) - set(SWEEPS)
    if unknown:
        raise ValueError(f'unknown sweep(s) {sorted(unknown)}; valid: {", ".join(SWEEPS)}')
    on_cpu = device_type == 'cpu'
    runs = []
    h, w = plan.sweep_size
    for sweep in sweeps:
        if sweep == 'stages':
            runs.append(PlannedRun(sweep, base))
        elif sweep == 'precision':
            for precision in PRECISIONS:
                cfg = replace(base, height=h, width=w, steps=plan.sweep_steps,
                              precision=precision)
                skip = CPU_FP16_REASON if on_cpu and precision == 'fp16' and not cpu_fp16 else None
                runs.append(PlannedRun(sweep, cfg, skip))
        elif sweep == 'resolution':
            for sh, sw in plan.sizes:
                runs.append(PlannedRun(sweep, replace(base, height=sh, width=sw,
                                                      steps=plan.sweep_steps)))
        elif sweep == 'steps':
            sh, sw = plan.steps_size
            for scheduler in plan.schedulers:
                for steps in plan.steps_list:
                    runs.append(PlannedRun(sweep, replace(base, height=sh, width=sw,
                                                          steps=steps, scheduler=scheduler)))
        elif sweep == 'memory':
            mh, mw = plan.memory_size
            mem = replace(base, height=mh, width=mw, steps=plan.memory_steps,
                          attention_slicing='none', vae_slicing=False, vae_tiling=False,
                          memory_fraction=1.0)
            runs += [PlannedRun(sweep, mem),
                     PlannedRun(sweep, replace(mem, attention_slicing='auto')),
                     PlannedRun(sweep, replace(mem, attention_slicing='max')),
                     PlannedRun(sweep, replace(mem, vae_slicing=True)),
                     PlannedRun(sweep, replace(mem, vae_tiling=True)),
                     PlannedRun(sweep, replace(mem, attention_slicing='auto', vae_slicing=True,
                                               vae_tiling=True)),
                     PlannedRun(sweep, replace(mem, memory_fraction=PAPER_MEMORY_FRACTION),
                                CPU_FRACTION_REASON if on_cpu else None)]
    return runs
