"""
What an ONNX export was made from, and the check that it fits the settings at start.

``export_onnx`` writes ``manifest.json`` next to the graphs: the weight files' SHA-256
hashes, the attention version, the try-on size, precision, opset, the DeepCache branch,
the graphs with their input/output shapes, and the scheduler/VAE constants the pipeline
needs without the torch models. :func:`check_manifest` refuses an export that does not fit
the settings (the typed views of :mod:`vton_ros.settings.views`), naming the setting and the
command that fixes it. No torch, no rclpy here.
"""

import hashlib
import json
import logging
import os
from typing import Any, Mapping

from vton_ros.pipeline import weights
from vton_ros.pipeline.attention_sets import possible_versions
from vton_ros.settings.views import CatVTONCall, CatVTONLoad

_LOG = logging.getLogger(__name__)

MANIFEST = 'manifest.json'
FORMAT = 1
OPSET = 17
EXPORT_PRECISIONS = ('fp32', 'fp16')  # no bf16: ONNX Runtime and TensorRT 8.x lack it
FIX = ('export again with the same settings: export_onnx --params-file <your params file> '
       '--out {dir}')


class ExportMismatchError(ValueError):
    """The ONNX export in catvton.onnx_dir does not fit the settings (message: the fix)."""


def export_precision(setting: str) -> str:
    """Map catvton.precision to a graph precision ('auto' -> 'fp32'); bf16 raises."""
    precision = 'fp32' if setting == 'auto' else setting
    if precision not in EXPORT_PRECISIONS:
        raise ValueError(f'catvton.precision {setting!r} cannot be exported: ONNX Runtime and '
                         'TensorRT run fp32 or fp16 graphs; set catvton.precision fp16 (GPU) '
                         'or fp32')
    return precision


def export_attn_version(load: CatVTONLoad, call: CatVTONCall) -> str:
    """Return the one attention version an export holds; raise if 'auto' may pick several."""
    versions = possible_versions(load.attn_version, call.height, call.width)
    if len(versions) != 1:
        raise ValueError(f'catvton.attn_version auto picks {" or ".join(versions)} per goal at '
                         f'{call.height}x{call.width}; an ONNX export holds one set: set '
                         'catvton.attn_version to one of them')
    return versions[0]


def source_files(version: str) -> dict[str, weights.ModelFiles]:
    """
    Return the weight files each source contributes to an export, by CatVTONLoad field.

    The manifest records each under its setting's name (``CatVTONLoad.key(field)``).
    """
    return {'base_model': weights.base_model_files(), 'vae': weights.vae_files(),
            'attn_ckpt': weights.attn_files(version), 'tiny_vae': weights.tiny_vae_files()}


def file_sha256(path: str) -> str:
    """Hex SHA-256 of a file, read in 8 MB chunks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(8 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(folder: str, files: weights.ModelFiles) -> dict[str, str]:
    """{relative path: sha256} of the files of one weight set in ``folder``."""
    out = {}
    for alternatives in files.required:
        path = weights.pick_file(folder, alternatives)
        out[os.path.relpath(path, folder)] = file_sha256(path)
    return out


def read_manifest(onnx_dir: str) -> dict:
    """Read ``onnx_dir``/manifest.json; ExportMismatchError naming the fix if absent/unknown."""
    path = os.path.join(onnx_dir, MANIFEST)
    if not os.path.isfile(path):
        raise ExportMismatchError(f'no ONNX export in {onnx_dir} ({MANIFEST} missing): '
                                  + FIX.format(dir=onnx_dir))
    with open(path, encoding='utf-8') as f:
        manifest = json.load(f)
    if manifest.get('format') != FORMAT:
        raise ExportMismatchError(f'{path} has format {manifest.get("format")!r}, this version '
                                  f'reads {FORMAT}: ' + FIX.format(dir=onnx_dir))
    return manifest


def check_manifest(manifest: Mapping[str, Any], load: CatVTONLoad, call: CatVTONCall,
                   onnx_dir: str) -> None:
    """
    Raise ExportMismatchError unless the export fits the settings.

    Size, precision ('auto' takes the export's), attention version, the DeepCache branch
    (when catvton.cache_interval > 1) and the graphs the decoders and encoder need are
    compared; each weight source found on this machine (without download) is hashed and
    compared too; one that is not here cannot be checked and is logged.
    """
    problems = []
    for name in ('height', 'width'):
        if getattr(call, name) != manifest[name]:
            problems.append(f'{call.key(name)} is {getattr(call, name)}, the export '
                            f'{manifest[name]}')
    if load.precision not in ('auto', manifest['precision']):
        problems.append(f'catvton.precision is {load.precision}, the export '
                        f'{manifest["precision"]}')
    try:
        version = export_attn_version(load, call)
    except ValueError as err:
        problems.append(str(err))
        version = manifest['attn_version']
    if version != manifest['attn_version']:
        problems.append(f'catvton.attn_version is {version}, the export '
                        f'{manifest["attn_version"]}')
    if call.cache_interval > 1:
        if manifest['cache_branch'] is None:
            problems.append('catvton.cache_interval > 1 needs the DeepCache graphs, which the '
                            'export lacks (it was made with cache_interval 1)')
        elif call.cache_branch != manifest['cache_branch']:
            problems.append(f'catvton.cache_branch is {call.cache_branch}, the export '
                            f'{manifest["cache_branch"]}')
    graphs = manifest['graphs']
    for name, graph in (('decoder', 'taesd_decoder'), ('preview_decoder', 'taesd_decoder'),
                        ('encoder', 'taesd_encoder')):
        if getattr(load, name) == 'tiny' and graph not in graphs:
            problems.append(f'{load.key(name)} tiny needs {graph}.onnx, which the export '
                            'lacks (the tiny VAE was not found when it was made)')
    problems += _weight_problems(manifest, load, version)
    if problems:
        raise ExportMismatchError(f'the ONNX export in {onnx_dir} does not fit the settings: '
                                  + '; '.join(problems) + '. ' + FIX.format(dir=onnx_dir))


def _weight_problems(manifest: Mapping[str, Any], load: CatVTONLoad,
                     version: str) -> list[str]:
    """List the sources whose local files differ from the export's hashes."""
    problems = []
    for field, files in source_files(version).items():
        name, source = load.key(field), getattr(load, field)
        recorded = manifest['sources'].get(name)
        if recorded is None:
            continue
        try:
            folder = weights.resolve_model(source, files, local_files_only=True)
        except (weights.ModelNotFoundError, ValueError):
            _LOG.info('%s %s is not on this machine: the export (from %s) cannot be checked '
                      'against it', name, source, recorded['source'])
            continue
        if fingerprint(folder, files) != recorded['files']:
            problems.append(f'the weights of {name} ({folder}) differ from those exported '
                            f'(from {recorded["source"]})')
    return problems
