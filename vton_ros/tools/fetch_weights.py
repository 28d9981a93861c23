"""
Download the CatVTON weights (only the files the pipeline reads) on an online machine.

    fetch_weights [--out DIR] [--versions mix,vitonhd,dresscode] [--safety-checker] \
        [--tiny-vae]
    fetch_weights --check [--params-file config/cpu.yaml]   # offline: are they here?

Without --out the files go into the Hugging Face cache (HF_HUB_CACHE / HF_HOME), where
``CatVTONPipeline.from_pretrained`` finds them by hub id, also with HF_HUB_OFFLINE=1.
With --out they are written to DIR/<repo name> folders that can be copied to the mirror
and passed as local paths. Licences: CatVTON weights are CC BY-NC-SA 4.0.
"""

import argparse
import importlib
import logging
import os
import sys

from vton_ros.pipeline import weights
from vton_ros.settings.views import CatVTONCall, CatVTONLoad

_LOG = logging.getLogger(__name__)


def _download_errors() -> tuple[type, ...]:
    """Exception types of failed downloads: OS errors and the HTTP client's errors."""
    errors: list[type] = [OSError]
    for module, name in (('httpx2', 'HTTPError'), ('httpx', 'HTTPError'),
                         ('requests', 'RequestException')):
        try:
            errors.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def _download(repo_id: str, files: weights.ModelFiles, out: str | None) -> str:
    from huggingface_hub import HfApi, snapshot_download

    available = set(HfApi().list_repo_files(repo_id))
    patterns = []
    for alternatives in files.required:
        present = [name for name in alternatives if name in available]
        if not present:
            raise weights.ModelNotFoundError(
                f'{files.what}: hub repo {repo_id} has none of {", ".join(alternatives)}')
        patterns.append(present[0])
    local_dir = os.path.join(out, repo_id.split('/')[1]) if out else None
    print(f'downloading {repo_id}: {", ".join(patterns)}', flush=True)
    return snapshot_download(repo_id, allow_patterns=patterns, local_dir=local_dir,
                             cache_dir=weights.hub_cache_dir())


def fetch(out: str | None, versions: list[str], safety_checker: bool,
          tiny_vae: bool = False) -> dict[str, str]:
    """Download the base model, VAE, attention versions [, tiny VAE]; return the folders."""
    jobs = {
        'base_model': (weights.DEFAULT_BASE_MODEL, weights.base_model_files(safety_checker)),
        'vae': (weights.DEFAULT_VAE, weights.vae_files()),
    }
    attn = weights.ModelFiles('CatVTON attention weights', tuple(
        alt for version in versions for alt in weights.attn_files(version).required))
    jobs['attn_ckpt'] = (weights.DEFAULT_ATTN_CKPT, attn)
    if tiny_vae:
        jobs['tiny_vae'] = (weights.DEFAULT_TINY_VAE, weights.tiny_vae_files())
    return {key: _download(repo, files, out) for key, (repo, files) in jobs.items()}


def _attn_files(load: CatVTONLoad, call: CatVTONCall) -> weights.ModelFiles:
    """Return the attention files the configured attn_version may use at its size."""
    from vton_ros.pipeline.attention_sets import possible_versions

    versions = possible_versions(load.attn_version, call.height, call.width)
    return weights.ModelFiles(f'CatVTON attention weights ({", ".join(versions)})', tuple(
        alt for version in versions for alt in weights.attn_files(version).required),
        'catvton.attn_ckpt')


def check(params_file: str | None) -> int:
    """Look for the configured weights without any download; print what is missing."""
    from vton_ros.settings import files as param_files
    from vton_ros.settings import schema as params
    from vton_ros.settings.stack import file_stack

    settings = params.defaults('tryon_server')
    settings.update(param_files.load_files(file_stack(
        'none', [params_file] if params_file else []))['tryon_server'])
    load, call = CatVTONLoad.from_settings(settings), CatVTONCall.from_settings(settings)
    jobs = (('base_model', weights.base_model_files(load.safety_checker)),
            ('vae', weights.vae_files()), ('attn_ckpt', _attn_files(load, call)))
    if 'tiny' in (load.decoder, load.preview_decoder):
        jobs += (('tiny_vae', weights.tiny_vae_files()),)
    missing = 0
    for field, files in jobs:
        name, source = load.key(field), getattr(load, field)
        try:
            folder = weights.resolve_model(source, files, local_files_only=True)
            print(f'{name}: {source} -> {folder}')
        except weights.ModelNotFoundError as err:
            print(f'{name}: MISSING: {err}', file=sys.stderr)
            missing += 1
    return 1 if missing else 0


def main(args: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default=None,
                        help='write plain folders here instead of the Hugging Face cache')
    parser.add_argument('--versions', default='vitonhd,dresscode,mix',
                        help='comma-separated attention versions: '
                             f'{", ".join(weights.ATTN_VERSIONS)} (default all three: '
                             'catvton.attn_version auto picks one per goal)')
    parser.add_argument('--safety-checker', action='store_true',
                        help='also fetch safety_checker/ and feature_extractor/')
    parser.add_argument('--tiny-vae', action='store_true',
                        help=f'also fetch the tiny decoder {weights.DEFAULT_TINY_VAE} '
                             '(catvton.decoder / preview_decoder tiny)')
    parser.add_argument('--check', action='store_true',
                        help='download nothing: check that the weights named in '
                             '--params-file (or the defaults) are available offline')
    parser.add_argument('--params-file', help='profile or parameter file applied after '
                        'config/tryon.yaml whose catvton.* to check')
    opts = parser.parse_args(args)
    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s')
    if opts.check:
        return check(opts.params_file)
    versions = [v.strip() for v in opts.versions.split(',') if v.strip()]
    try:
        for version in versions:
            weights.attn_version_folder(version)
    except ValueError as err:
        parser.error(str(err))
    if weights.hub_offline():
        print('fetch_weights: HF_HUB_OFFLINE is set, nothing can be downloaded; unset it on '
              'a machine with internet access', file=sys.stderr)
        return 2
    try:
        paths = fetch(opts.out, versions, opts.safety_checker, opts.tiny_vae)
    except _download_errors() as err:  # connection errors, missing repos, disk errors
        print(f'fetch_weights: download failed: {err}\nThis machine may have no internet '
              'access: run fetch_weights on one that has, then copy the Hugging Face cache '
              '(or the --out folder) here.', file=sys.stderr)
        return 1
    print('fetched:')
    for key, path in paths.items():
        print(f'  {key}: {path}')
    if opts.out:
        args_text = ', '.join(f"{k}='{v}'" for k, v in paths.items())
    else:
        args_text = (f"base_model='{weights.DEFAULT_BASE_MODEL}', vae='{weights.DEFAULT_VAE}', "
                     f"attn_ckpt='{weights.DEFAULT_ATTN_CKPT}'"
                     + (f", tiny_vae='{weights.DEFAULT_TINY_VAE}'" if opts.tiny_vae else ''))
    print(f"use: CatVTONPipeline.from_pretrained({args_text}, attn_version='{versions[0]}'"
          + (', safety_checker=True)' if opts.safety_checker else ')'))
    return 0


if __name__ == '__main__':
    sys.exit(main())
