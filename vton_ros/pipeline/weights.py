"""
Locating CatVTON's three weight sets: a local folder or a Hugging Face hub id.

Layouts (as published):

- base model ``booksforcharlie/stable-diffusion-inpainting``: ``unet/`` (config.json and
  diffusion_pytorch_model.safetensors or .bin), ``scheduler/scheduler_config.json``;
  optionally ``safety_checker/`` and ``feature_extractor/``.
- VAE ``stabilityai/sd-vae-ft-mse``: config.json and diffusion_pytorch_model.safetensors
  (or .bin) at the root.
- attention ``zhengchong/CatVTON``: ``<version folder>/attention/model.safetensors``.

A hub id is resolved through huggingface_hub's cache. ``HF_HUB_OFFLINE`` and
``HF_HUB_CACHE`` are read when the lookup happens (not only at import), so nothing is
downloaded when offline. Anything missing raises :class:`ModelNotFoundError`, whose
message names where it looked, what is missing and how to get it.
"""

from dataclasses import dataclass
import json
import logging
import os

from vton_ros.settings import choices as names
from vton_ros.settings import package_paths

_LOG = logging.getLogger(__name__)

DEFAULT_BASE_MODEL = 'booksforcharlie/stable-diffusion-inpainting'
DEFAULT_VAE = 'stabilityai/sd-vae-ft-mse'
DEFAULT_ATTN_CKPT = 'zhengchong/CatVTON'
DEFAULT_TINY_VAE = 'madebyollin/taesd'
# version (vton_ros.settings.choices.ATTN_VERSIONS) -> folder in the CatVTON repository
ATTN_VERSIONS = dict(zip(names.ATTN_VERSIONS,
                         ('mix-48k-1024', 'vitonhd-16k-512', 'dresscode-16k-512')))
RANDOM_MARKER = 'RANDOM_TEST_WEIGHTS.txt'  # make_test_weights puts it next to random weights
FETCH_HINT = ('run `fetch_weights` on a machine with internet access (it fills the Hugging '
              'Face cache, or --out DIR) and copy the files here, or pass a local folder path')


def fetch_hint(files: 'ModelFiles') -> str:
    """How to get missing weights: fetch_weights, or the setting that takes a local folder."""
    if not files.setting:
        return FETCH_HINT
    return (f'get them with `fetch_weights` on a machine with internet access (it fills the '
            f'Hugging Face cache, or --out DIR) and copy them here, or set '
            f'{files.setting}=DIR to a local folder holding these files')


class ModelNotFoundError(FileNotFoundError):
    """A model folder or hub repository is missing, or lacks files the pipeline needs."""


class IncompatibleWeightsError(ValueError):
    """Weights were found but do not fit the model (missing/unexpected keys, shapes)."""


class CorruptWeightsError(IncompatibleWeightsError):
    """A weights file is truncated or damaged (an interrupted download or copy)."""


@dataclass(frozen=True)
class ModelFiles:
    """Files one weight set must contain; each entry lists acceptable alternatives."""

    what: str
    required: tuple[tuple[str, ...], ...]
    setting: str = ''  # the setting naming this weight set (hub id or local folder)


def base_model_files(safety_checker: bool = False) -> ModelFiles:
    """Files of the SD1.5-inpainting base model the pipeline reads."""
    required = (
        ('unet/config.json',),
        ('unet/diffusion_pytorch_model.safetensors', 'unet/diffusion_pytorch_model.bin'),
        ('scheduler/scheduler_config.json',),
    )
    if safety_checker:
        required += safety_checker_files().required
    return ModelFiles('base model (SD1.5 inpainting)', required, 'catvton.base_model')


def safety_checker_files() -> ModelFiles:
    """Files of the optional safety checker inside the base model."""
    return ModelFiles('safety checker', (
        ('safety_checker/config.json',),
        ('safety_checker/model.safetensors', 'safety_checker/pytorch_model.bin'),
        ('feature_extractor/preprocessor_config.json',),
    ))


def vae_files() -> ModelFiles:
    """Files of the VAE (config and weights at the folder root)."""
    return ModelFiles('VAE', (
        ('config.json',),
        ('diffusion_pytorch_model.safetensors', 'diffusion_pytorch_model.bin'),
    ), 'catvton.vae')


def tiny_vae_files() -> ModelFiles:
    """Files of the optional tiny autoencoder (TAESD layout: config and weights at the root)."""
    return ModelFiles('tiny VAE (TAESD, diffusers AutoencoderTiny)', (
        ('config.json',),
        ('diffusion_pytorch_model.safetensors', 'diffusion_pytorch_model.bin'),
    ), 'catvton.tiny_vae')


def attn_version_folder(version: str) -> str:
    """Map 'mix' | 'vitonhd' | 'dresscode' (or a folder name) to CatVTON's version folder."""
    if version in ATTN_VERSIONS:
        return ATTN_VERSIONS[version]
    if version in ATTN_VERSIONS.values():
        return version
    raise ValueError(f'unknown attn_version {version!r}; valid: {", ".join(ATTN_VERSIONS)} '
                     f'(or the folder names {", ".join(ATTN_VERSIONS.values())})')


def attn_files(version: str) -> ModelFiles:
    """Return the CatVTON attention file of one version."""
    return ModelFiles(f'CatVTON attention weights ({version})',
                      ((f'{attn_version_folder(version)}/attention/model.safetensors',),),
                      'catvton.attn_ckpt')


def missing_files(folder: str, files: ModelFiles) -> list[str]:
    """Entries of ``files`` with no alternative present in ``folder`` ('a or b' strings)."""
    missing = []
    for alternatives in files.required:
        if not any(os.path.isfile(os.path.join(folder, name)) for name in alternatives):
            missing.append(' or '.join(alternatives))
    return missing


def pick_file(folder: str, alternatives: tuple[str, ...]) -> str:
    """Return the path of the first alternative present in ``folder``."""
    for name in alternatives:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    raise ModelNotFoundError(f'none of {", ".join(alternatives)} in {folder}; {FETCH_HINT}')


def is_random_test_weights(folder: str) -> bool:
    """Return True if ``folder`` holds RANDOM weights written by make_test_weights."""
    return os.path.isfile(os.path.join(os.path.expanduser(folder), RANDOM_MARKER))


def hub_offline() -> bool:
    """Tell whether HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set now or was at import."""
    from huggingface_hub import constants

    env = os.environ.get('HF_HUB_OFFLINE') or os.environ.get('TRANSFORMERS_OFFLINE') or ''
    return constants.HF_HUB_OFFLINE or env.strip().upper() in ('1', 'ON', 'YES', 'TRUE')


def hub_cache_dir(cache_dir: str | None = None) -> str | None:
    """``cache_dir`` or HF_HUB_CACHE as set now; None lets huggingface_hub decide."""
    return cache_dir or os.environ.get('HF_HUB_CACHE') or None


def looks_like_hub_id(source: str) -> bool:
    """Tell whether ``source`` is an 'owner/name' hub id rather than a filesystem path."""
    parts = source.split('/')
    return (len(parts) == 2 and all(parts) and not source.startswith(('.', '~'))
            and not os.path.isabs(source))


def resolve_model(source: str, files: ModelFiles, *, cache_dir: str | None = None,
                  local_files_only: bool = False) -> str:
    """
    Return a local folder holding ``files`` for a folder path or hub id ``source``.

    ``package://PACKAGE/PATH`` names a folder in a package's share (see package_paths).
    A hub id is looked up in the Hugging Face cache and, unless offline
    (HF_HUB_OFFLINE or ``local_files_only``), only the needed files are downloaded.
    Raises ModelNotFoundError naming the place looked at, the missing files and the fix.
    """
    if not isinstance(source, str) or not source:
        raise ValueError(f'{files.what}: expected a hub id or folder path, got {source!r}')
    source = package_paths.resolve(source)  # package://vton_ros/models/demo/base
    expanded = os.path.expanduser(source)
    if os.path.isdir(expanded):
        folder = expanded
        where = f'folder {folder}'
    elif looks_like_hub_id(source):
        folder = _hub_snapshot(source, files, cache_dir=cache_dir,
                               local_files_only=local_files_only)
        where = f'hub repo {source} (cached at {folder})'
    else:
        raise ModelNotFoundError(f'{files.what}: folder {source} does not exist; '
                                 f'{fetch_hint(files)}')
    missing = missing_files(folder, files)
    if missing:
        raise ModelNotFoundError(f'{files.what}: {where} is incomplete, missing '
                                 f'{"; ".join(missing)}; {fetch_hint(files)}')
    for alternatives in files.required:
        path = pick_file(folder, alternatives)
        if path.endswith('.safetensors'):
            check_safetensors(path, files.what)
    _LOG.debug('%s resolved to %s', files.what, folder)
    return folder


def check_safetensors(path: str, what: str = 'weights') -> None:
    """
    Check that a .safetensors file is whole (reads its header only).

    The header must parse and its tensor data must end exactly at the end of the file.
    Raises CorruptWeightsError naming the file, what is wrong and the fix.
    """
    size = os.path.getsize(path)

    def corrupt(problem: str) -> CorruptWeightsError:
        return CorruptWeightsError(f'{what}: {path} is {problem}; delete it and fetch or copy '
                                   f'it again ({FETCH_HINT})')

    with open(path, 'rb') as f:
        prefix = f.read(8)
        length = int.from_bytes(prefix, 'little') if len(prefix) == 8 else -1
        if length < 2 or 8 + length > size:
            raise corrupt(f'not a whole safetensors file ({size} bytes, header length '
                          f'{length} unreadable: truncated or another format)')
        try:
            header = json.loads(f.read(length))
            end = max((int(v['data_offsets'][1]) for k, v in header.items()
                       if k != '__metadata__'), default=0)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as err:
            raise corrupt(f'corrupt (its safetensors header does not parse: {err})') from None
    if 8 + length + end != size:
        state = 'truncated' if 8 + length + end > size else 'corrupt (extra bytes at the end)'
        raise corrupt(f'{state}: {size} bytes, its header describes {8 + length + end}')


def allow_patterns(files: ModelFiles, first_only: bool = True) -> list[str]:
    """Download patterns for ``files`` (the preferred alternative only, or all of them)."""
    if first_only:
        return [alternatives[0] for alternatives in files.required]
    return [name for alternatives in files.required for name in alternatives]


def _hub_snapshot(repo_id: str, files: ModelFiles, *, cache_dir: str | None,
                  local_files_only: bool) -> str:
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    offline = local_files_only or hub_offline()
    cache = hub_cache_dir(cache_dir)
    where = cache or constants.HF_HUB_CACHE
    try:
        folder = snapshot_download(repo_id, cache_dir=cache, local_files_only=offline,
                                   allow_patterns=allow_patterns(files))
        if not offline and missing_files(folder, files):
            # the repo may only have the alternative format (e.g. .bin instead of .safetensors)
            folder = snapshot_download(repo_id, cache_dir=cache,
                                       allow_patterns=allow_patterns(files, first_only=False))
    except LocalEntryNotFoundError as err:
        if hub_offline():
            mode = 'offline mode is on (HF_HUB_OFFLINE)'
        else:
            mode = 'downloads are off' if offline else 'the hub is not reachable'
        raise ModelNotFoundError(
            f'{files.what}: hub repo {repo_id} is not in the Hugging Face cache {where} and '
            f'{mode}; needs {"; ".join(" or ".join(alt) for alt in files.required)}; '
            f'{fetch_hint(files)}') from err
    except OSError as err:  # network or repository errors from huggingface_hub
        raise ModelNotFoundError(f'{files.what}: cannot get hub repo {repo_id}: {err}; '
                                 f'{fetch_hint(files)}') from err
    return folder
