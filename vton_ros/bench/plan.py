"""
What the benchmark measures: run configurations, sweeps and their plans (no measuring here).

A :class:`RunConfig` names a run in the schema's words: its fields are ``catvton.*`` settings
(``steps`` is num_inference_steps, ``memory_fraction`` gpu_memory_fraction, ``attention_slicing``
a slice size where the schema has on/off), and the pipeline's options and call arguments come
from the typed views of :mod:`vton_ros.settings.views`, the server's own mapping.
"""

from dataclasses import dataclass, fields, replace
from typing import Any

from vton_ros.pipeline.options import PipelineOptions
from vton_ros.settings.views import CatVTONCall, CatVTONLoad, SettingsView


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
CPU_FRACTION_REASON = ('N/A on CPU: the memory fraction caps the CUDA caching allocator '
                       '(torch.cuda.set_per_process_memory_fraction); nothing to set on CPU')


@dataclass(frozen=True)
class RunConfig:
    """
    One measured configuration.

    height/width: output pixels (multiples of 8); steps: denoising steps; scheduler: a
    name from vton_ros.pipeline.schedulers; precision: fp32 | fp16 | bf16; guidance_scale:
    CFG (UNet batch 2 when > 1); attention_slicing: None | 'auto' | 'max' | heads per
    slice; vae_slicing/vae_tiling: diffusers VAE options; memory_fraction: CUDA only.
    channels_last, decoder, encoder, offload, sdpa_backend: :class:`PipelineOptions`;
    guidance_start/guidance_end/cache_interval/cache_branch: per-call acceleration
    arguments of CatVTONPipeline (defaults: the paper's exact path). backend: torch or
    onnxruntime (the graphs of the bench's ``--onnx-dir``).
    """

    height: int = 512
    width: int = 384
    steps: int = 10
    scheduler: str = 'dpmpp_2m'
    precision: str = 'bf16'
    guidance_scale: float = 2.5
    attention_slicing: int | str | None = None
    vae_slicing: bool = False
    vae_tiling: bool = False
    memory_fraction: float = 1.0
    channels_last: bool = False
    decoder: str = 'full'
    encoder: str = 'full'
    backend: str = 'torch'
    offload: str = 'none'
    sdpa_backend: str = 'auto'
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    cache_interval: int = 1
    cache_branch: int = 0

    @property
    def cfg(self) -> bool:
        """Tell whether classifier-free guidance is on (UNet batch 2)."""
        return self.guidance_scale > 1.0

    def view(self, view: type[SettingsView]) -> Any:
        """Return the typed view of this run's settings (schema defaults for the rest)."""
        own = {_SETTING.get(f.name, f.name): getattr(self, f.name) for f in fields(self)}
        return replace(view.defaults(), **{f.name: own[f.name] for f in fields(view)
                                           if f.name in own and f.name != 'attention_slicing'})

    def with_settings(self, settings: tuple[tuple[str, Any], ...]) -> 'RunConfig':
        """Apply ``catvton.*`` settings (checked by the schema) to a copy of this run."""
        call, load = self.view(CatVTONCall), self.view(CatVTONLoad)
        fields_ = {}
        for name, value in settings:
            field = name.split('.', 1)[1]
            view = call if hasattr(call, field) else load
            value = getattr(replace(view, **{field: value}), field)  # the schema's check
            if field == 'attention_slicing':
                value = 'auto' if value else None
            field = {v: k for k, v in _SETTING.items()}.get(field, field)
            if field in {f.name for f in fields(self)}:
                fields_[field] = value
        return replace(self, **fields_)

    def options(self) -> PipelineOptions:
        """Pipeline memory options of this configuration (the server's mapping)."""
        return PipelineOptions(**dict(self.view(CatVTONLoad).option_kwargs(),
                                      attention_slicing=self.attention_slicing))

    def call_kwargs(self) -> dict[str, Any]:
        """Per-call pipeline arguments of this configuration (the server's mapping)."""
        return self.view(CatVTONCall).pipeline_kwargs()

    def memory_label(self) -> str:
        """Short description of the memory settings ('default' when none is on)."""
        parts = []
        if self.attention_slicing not in (None, 'off'):
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
                          attention_slicing=None, vae_slicing=False, vae_tiling=False,
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
