"""
Write tiny RANDOM CatVTON weights in the three published layouts (tests and demos).

    make_test_weights --out DIR [--full-size]

writes DIR/stable-diffusion-inpainting/{unet,scheduler}, DIR/sd-vae-ft-mse,
DIR/CatVTON/<version>/attention/model.safetensors for all three versions and the tiny
decoder DIR/taesd (AutoencoderTiny, TAESD layout). The weights are
random: the try-on output is noise. They only exercise loading and the algorithm, or, with
--full-size (the real shapes, bf16), time the whole system without the real weights.
"""

import argparse
import json
import logging
import os
import sys

import torch

from vton_ros.pipeline import weights

_LOG = logging.getLogger(__name__)
README = ('RANDOM TEST WEIGHTS written by vton_ros make_test_weights (seed {seed}). '
          'Not a trained model: try-on results are noise.\n')


def write_test_weights(out_dir: str, seed: int = 0, full_size: bool = False) -> dict[str, str]:
    """
    Write tiny random weights under ``out_dir``; return the from_pretrained arguments.

    Returns {'base_model': ..., 'vae': ..., 'attn_ckpt': ..., 'tiny_vae': ...} (folders).
    Deterministic for a given seed. Each CatVTON version gets different random attention
    weights.
    """
    from safetensors.torch import save_file

    from vton_ros.pipeline.attention import (PUBLISHED_STRIDE, renumber_attention_state,
                                             self_attention_modules)
    from vton_ros.pipeline.random_weights import (build_random, random_tiny_components,
                                                  random_tiny_vae, tiny_unet_config)

    if full_size:  # the real shapes (~1.7 GB in bf16): for end-to-end timing, not tests
        from vton_ros.pipeline.random_weights import random_full_size_components
        unet, vae, scheduler_config = random_full_size_components('bf16', seed)
    else:
        unet, vae, scheduler_config = random_tiny_components(seed)
    paths = {
        'base_model': os.path.join(out_dir, 'stable-diffusion-inpainting'),
        'vae': os.path.join(out_dir, 'sd-vae-ft-mse'),
        'attn_ckpt': os.path.join(out_dir, 'CatVTON'),
        'tiny_vae': os.path.join(out_dir, 'taesd'),
    }
    unet.save_pretrained(os.path.join(paths['base_model'], 'unet'))
    os.makedirs(os.path.join(paths['base_model'], 'scheduler'), exist_ok=True)
    with open(os.path.join(paths['base_model'], 'scheduler', 'scheduler_config.json'),
              'w') as f:
        json.dump(scheduler_config, f, indent=2)
    vae.save_pretrained(paths['vae'])
    random_tiny_vae('bf16' if full_size else 'fp32', seed + 2, full_size).save_pretrained(
        paths['tiny_vae'])
    for i, (version, folder) in enumerate(sorted(weights.ATTN_VERSIONS.items())):
        if full_size:  # fresh random values for attn1 only, same shapes as the UNet's
            generator = torch.Generator().manual_seed(seed + 10 + i)
            state = {k: (torch.randn(v.shape, generator=generator) * 0.02).to(v.dtype)
                     for k, v in self_attention_modules(unet).state_dict().items()}
        else:
            other = build_random(type(unet), tiny_unet_config(), torch.float32, seed + 10 + i)
            state = {k: v.contiguous()
                     for k, v in self_attention_modules(other).state_dict().items()}
        target = os.path.join(paths['attn_ckpt'], folder, 'attention')
        os.makedirs(target, exist_ok=True)
        state = renumber_attention_state(state, PUBLISHED_STRIDE)  # the published numbering
        save_file(state, os.path.join(target, 'model.safetensors'),
                  metadata={'random_test_weights': 'true', 'version': version})
    for path in paths.values():
        with open(os.path.join(path, weights.RANDOM_MARKER), 'w') as f:
            f.write(README.format(seed=seed))
    _LOG.warning('wrote tiny RANDOM test weights to %s', out_dir)
    return paths


def main(args: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', required=True, help='output folder (created)')
    parser.add_argument('--seed', type=int, default=0, help='random seed (default 0)')
    parser.add_argument('--full-size', action='store_true',
                        help='the real model shapes in bf16 (~1.8 GB on disk) instead of tiny '
                             'ones: end-to-end timing of the system without the real weights')
    opts = parser.parse_args(args)
    logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(name)s: %(message)s')
    paths = write_test_weights(opts.out, opts.seed, opts.full_size)
    print('=' * 72)
    print('RANDOM TEST WEIGHTS (not a trained model; try-on output will be noise)')
    print('=' * 72)
    for key, path in paths.items():
        print(f'  {key}: {path}')
    print('use: CatVTONPipeline.from_pretrained('
          + ', '.join(f"{k}='{v}'" for k, v in paths.items()) + ')')
    return 0


if __name__ == '__main__':
    sys.exit(main())
