"""
Typed, frozen configurations built once from the validated settings.

The schema (:mod:`vton_ros.settings.schema`) stays the one source of names, types, ranges and
descriptions; each dataclass here is a view of one component's settings, built with
:meth:`SettingsView.from_settings` from a node's (or a tool's) settings and handed down
explicitly. A field ``x`` of a view whose ``COMPONENT`` is ``catvton`` is the setting
``catvton.x``; every value is checked by the schema when the view is built, so a per-goal
override is ``dataclasses.replace(call, num_inference_steps=...)`` and is range-checked
in that one place. No torch and no ROS import here.
"""

from dataclasses import dataclass, Field, fields
import typing
from typing import Any, ClassVar, Mapping, TypeVar

from vton_ros.settings import schema as params
V = TypeVar('V', bound='SettingsView')
NOT_A_SETTING = {'setting': False}  # field metadata of a view subclass' own fields


@dataclass(frozen=True)
class SettingsView:
    """
    Base of the typed views: fields named after ``<COMPONENT>.<field>`` settings.

    A field's default is its setting's schema default (filled in when the class is made),
    so a new setting needs one line here: ``name: type``. A subclass may add fields of its
    own with ``field(default=..., metadata=NOT_A_SETTING)``.
    """

    COMPONENT: ClassVar[str] = ''

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Give each new field without a default its setting's schema default."""
        super().__init_subclass__(**kwargs)
        for name, hint in cls.__dict__.get('__annotations__', {}).items():
            if typing.get_origin(hint) is not ClassVar and name not in cls.__dict__:
                setattr(cls, name, params.param(cls.key(name)).default)

    @classmethod
    def key(cls, field_name: str) -> str:
        """Return the schema name of a field (``catvton.height`` for CatVTONCall.height)."""
        return f'{cls.COMPONENT}.{field_name}'

    @classmethod
    def setting_fields(cls) -> tuple[Field, ...]:
        """Return the fields that are settings (all but a subclass' own)."""
        return tuple(f for f in fields(cls) if f.metadata.get('setting', True))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Return the field names of the settings, in order."""
        return tuple(f.name for f in cls.setting_fields())

    @classmethod
    def from_settings(cls: type[V], settings: Mapping[str, Any]) -> V:
        """Build the view from {setting name: value} (extra settings are ignored)."""
        return cls(**{name: settings[cls.key(name)] for name in cls.names()})

    @classmethod
    def defaults(cls: type[V]) -> V:
        """Build the view from the schema's defaults."""
        return cls()

    def __post_init__(self) -> None:
        """Check every value against the schema (ValueError naming the setting)."""
        for name in self.names():
            object.__setattr__(self, name,
                               params.param(self.key(name)).validate(getattr(self, name)))

    def settings(self) -> dict[str, Any]:
        """Return {setting name: value}, e.g. for a parameter file."""
        return {self.key(name): getattr(self, name) for name in self.names()}

    def values(self, view: 'type[SettingsView]') -> dict[str, Any]:
        """Return {field: value} of the fields of ``view`` (a view these fields include)."""
        return {name: getattr(self, name) for name in view.names()}


@dataclass(frozen=True)
class CatVTONOptions(SettingsView):
    """
    The pipeline's memory and speed options (read-only ``catvton.*`` settings).

    ``vton_ros.pipeline.options.PipelineOptions`` is this view (plus the garment cache
    size), and ``CatVTONPipeline.from_pretrained`` takes these fields by name: a new option
    is one field here and its setting in the schema.
    """

    COMPONENT: ClassVar[str] = 'catvton'

    attention_slicing: str
    vae_slicing: bool
    vae_tiling: bool
    channels_last: bool
    compile_unet: bool
    decoder: str
    preview_decoder: str
    offload: str
    sdpa_backend: str
    encoder: str


@dataclass(frozen=True)
class CatVTONLoad(CatVTONOptions):
    """What loading CatVTON needs: the read-only ``catvton.*`` settings (restart to change)."""

    base_model: str
    vae: str
    attn_ckpt: str
    attn_version: str
    tiny_vae: str
    allow_download: bool
    device: str
    precision: str
    gpu_memory_fraction: float
    cudnn_benchmark: bool
    safety_checker: bool
    backend: str
    onnx_dir: str
    onnx_providers: str

    def option_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the pipeline's ``PipelineOptions`` (memory and speed)."""
        return self.values(CatVTONOptions)

    def onnx_refusals(self) -> list[str]:
        """
        Say why backend onnxruntime cannot run these settings (empty: it can).

        The torch-only process settings and the device; the torch-only pipeline options are
        refused by ``CatVTONPipeline.from_onnx``.
        """
        refused = [f'{self.key(name)} is for the torch backend: set it to {default}'
                   for name, default in (('cudnn_benchmark', False),
                                         ('gpu_memory_fraction', 1.0),
                                         ('safety_checker', False))
                   if getattr(self, name) != default]
        if not self.onnx_dir:
            refused.append('catvton.onnx_dir is empty: set catvton.onnx_dir to an export_onnx '
                           'folder')
        if self.device not in ('auto', 'cpu'):
            refused.append(f'catvton.device is {self.device}: with backend onnxruntime the '
                           'providers choose the device (set catvton.device auto and '
                           'catvton.onnx_providers tensorrt,cuda,cpu)')
        return refused

    def pipeline_kwargs(self, attn_version: str, scheduler: str) -> dict[str, Any]:
        """Keyword arguments of ``CatVTONPipeline.from_pretrained`` for one attention set."""
        return {'base_model': self.base_model, 'vae': self.vae, 'attn_ckpt': self.attn_ckpt,
                'attn_version': attn_version, 'device': self.device, 'dtype': self.precision,
                'scheduler': scheduler, 'tiny_vae': self.tiny_vae,
                'safety_checker': self.safety_checker,
                'local_files_only': not self.allow_download, **self.option_kwargs()}


@dataclass(frozen=True)
class CatVTONCall(SettingsView):
    """
    What one try-on takes: the ``catvton.*`` settings that may change between goals.

    A goal's overrides (steps, guidance, seed) are ``dataclasses.replace`` of the
    server's call config. seed -1: a random seed per goal. Pairs (guidance_start <=
    guidance_end, a cache branch the UNet has) are the pipeline's to check: parameters
    change one at a time, and a goal meanwhile ends INVALID_ARGUMENT, not the node.
    """

    COMPONENT: ClassVar[str] = 'catvton'
    # applied by the server, not arguments of CatVTONPipeline.__call__
    NOT_CALL_ARGUMENTS: ClassVar[tuple[str, ...]] = ('scheduler', 'seed', 'mask_blur')

    height: int
    width: int
    scheduler: str
    num_inference_steps: int
    guidance_scale: float
    seed: int
    repaint: bool
    mask_blur: float
    guidance_start: float
    guidance_end: float
    cache_interval: int
    cache_branch: int
    framing: str

    def pipeline_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``CatVTONPipeline.__call__`` (all but images, seed, callback)."""
        return {name: getattr(self, name) for name in self.names()
                if name not in self.NOT_CALL_ARGUMENTS}


@dataclass(frozen=True)
class MaskerConfig(SettingsView):
    """The agnostic-mask generator (segmentation_node, and tryon_server for bare photos)."""

    COMPONENT: ClassVar[str] = 'segmentation'

    backend: str
    checkpoint: str
    threshold: float
    cloth_type: str
    device: str
    precision: str
