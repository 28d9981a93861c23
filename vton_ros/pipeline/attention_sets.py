"""
Choosing and switching CatVTON's published attention sets per try-on.

The sets were trained at different sizes: ``mix-48k-1024`` at 1024x768, ``vitonhd-16k-512``
(upper garments) and ``dresscode-16k-512`` (upper, lower and dresses) at 512x384.
:func:`resolve_attn_version` maps the ``auto`` setting to the set that fits a goal;
:class:`AttentionSets` loads each set once (keeping its attn1 tensors in memory, in the UNet's
dtype and device) and copies the one a goal needs into the UNet.
"""

import logging

from torch import nn

from vton_ros.pipeline import attention, weights

_LOG = logging.getLogger(__name__)

AUTO = 'auto'
LARGE_SIDE = 768  # a long side from here up is a 1024-class size (mix), below 512-class


def resolve_attn_version(setting: str, cloth_type: str, height: int, width: int) -> str:
    """
    Return the attention version for a goal: 'mix' | 'vitonhd' | 'dresscode'.

    setting: 'auto' or one of those versions (returned unchanged). With 'auto': 'mix' at
    1024-class sizes (long side >= 768), otherwise 'vitonhd' for 'upper' and 'dresscode' for
    'lower' and 'overall' garments. Raises ValueError for unknown names.
    """
    if setting != AUTO:
        weights.attn_version_folder(setting)
        return setting
    if cloth_type not in ('upper', 'lower', 'overall'):
        raise ValueError(f'unknown cloth_type {cloth_type!r}; valid: upper, lower, overall')
    if max(height, width) >= LARGE_SIDE:
        return 'mix'
    return 'vitonhd' if cloth_type == 'upper' else 'dresscode'


def possible_versions(setting: str, height: int, width: int) -> tuple[str, ...]:
    """Return the versions ``setting`` may pick at this size for any cloth type (sorted)."""
    return tuple(sorted({resolve_attn_version(setting, cloth, height, width)
                         for cloth in ('upper', 'lower', 'overall')}))


class AttentionSets:
    """
    The attn1 weights of several CatVTON versions for one UNet, loaded once, swapped in.

    unet: the pipeline's UNet, already holding ``current``'s weights. attn_ckpt: the hub id
    or folder the pipeline loaded from; other versions are resolved there when first used
    (ModelNotFoundError names what is missing and how to fetch it).
    """

    def __init__(self, unet: nn.Module, attn_ckpt: str, current: str, *,
                 cache_dir: str | None = None, local_files_only: bool = True) -> None:
        self._unet = unet
        self._modules = attention.self_attention_modules(unet)
        self._attn_ckpt = attn_ckpt
        self._lookup = {'cache_dir': cache_dir, 'local_files_only': local_files_only}
        self.current = current
        self._states = {current: self._snapshot()}

    def _snapshot(self) -> dict:
        return {k: v.detach().clone() for k, v in self._modules.state_dict().items()}

    @property
    def loaded(self) -> tuple[str, ...]:
        """Versions held in memory, in load order."""
        return tuple(self._states)

    def use(self, version: str) -> str:
        """Put ``version``'s weights in the UNet (loading the file on first use); return it."""
        if version == self.current:
            return version
        state = self._states.get(version)
        if state is None:
            files = weights.attn_files(version)
            folder = weights.resolve_model(self._attn_ckpt, files, **self._lookup)
            path = weights.pick_file(folder, files.required[0])
            attention.load_attention_weights(self._unet, path)
            self._states[version] = self._snapshot()
            _LOG.info('loaded CatVTON attention %s from %s (%d sets in memory)', version,
                      path, len(self._states))
        else:
            self._modules.load_state_dict(state, strict=True)
        self.current = version
        return version
