"""CatVTON pipeline tests on tiny RANDOM weights written in the published layouts."""

import glob
import hashlib
import importlib.util
import os
import re
import shutil

import cv2
from helpers import H, load_catvton as load, run_catvton as run, W
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vton_ros.media import samples
from vton_ros.pipeline import weights
from vton_ros.pipeline.attention import (self_attention_modules, SkipAttnProcessor,
                                         SlicedSelfAttnProcessor)
from vton_ros.pipeline.catvton import CatVTONPipeline
from vton_ros.pipeline.options import TIMING_KEYS, TryOnCancelled
from vton_ros.pipeline.previews import latents_to_preview
from vton_ros.pipeline.weights import IncompatibleWeightsError, ModelNotFoundError
from vton_ros.settings.choices import SCHEDULERS

from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: I100 (after the shim)
from safetensors.torch import load_file, save_file

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def pipe(tiny):
    return load(tiny)


@pytest.fixture(scope='module')
def exact_inputs():
    """Return inputs already at HxW, so the pipeline's geometry is the identity."""
    person = samples.portrait('grace_hopper')  # 600x512
    side = person.shape[1] * H // W
    top = (person.shape[0] - side) // 2
    person = cv2.resize(person[top:top + side], (W, H), interpolation=cv2.INTER_AREA)
    garment = samples.garment('dress', (200, 40, 40), H, W)
    mask = np.zeros((H, W), np.uint8)
    mask[20:56, 8:40] = 255
    return person, garment, mask


# ---------------------------------------------------------------- loading


def test_loads_local_layout_with_skip_and_attn1_weights(tiny, pipe):
    processors = pipe.unet.attn_processors
    attn2 = [k for k in processors if 'attn2' in k]
    assert attn2 and all(isinstance(processors[k], SkipAttnProcessor) for k in attn2)
    assert all(not isinstance(p, SkipAttnProcessor) for k, p in processors.items()
               if 'attn1' in k)
    state = load_file(os.path.join(tiny['attn_ckpt'], 'mix-48k-1024/attention/model.safetensors'))
    loaded = self_attention_modules(pipe.unet).state_dict()
    # the published numbering: attn1 module i is stored under index 8 * i
    published = {f'{8 * int(k.split(".")[0])}.{k.split(".", 1)[1]}': k for k in loaded}
    assert set(state) == set(published) and '8.to_out.0.bias' in state
    for key, value in state.items():
        torch.testing.assert_close(loaded[published[key]], value, rtol=0, atol=0)
    # the versions differ, so the right file must have been read
    other = load_file(os.path.join(tiny['attn_ckpt'],
                                   'vitonhd-16k-512/attention/model.safetensors'))
    assert not torch.equal(other['0.to_q.weight'], state['0.to_q.weight'])
    assert pipe.random_weights  # make_test_weights' marker is seen: outputs are noise


def test_random_weights_only_when_marked(tiny, tmp_path):
    unmarked = tmp_path / 'vae'
    shutil.copytree(tiny['vae'], unmarked)
    os.remove(unmarked / weights.RANDOM_MARKER)
    assert weights.is_random_test_weights(tiny['vae'])
    assert not weights.is_random_test_weights(str(unmarked))
    assert not weights.is_random_test_weights(weights.DEFAULT_VAE)  # a hub id


def _to_hub_cache(cache, repo_id, folder):
    root = os.path.join(cache, 'models--' + repo_id.replace('/', '--'))
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    os.makedirs(os.path.join(root, 'refs'))
    with open(os.path.join(root, 'refs', 'main'), 'w') as f:
        f.write(commit)
    shutil.copytree(folder, os.path.join(root, 'snapshots', commit))


def test_loads_hub_ids_from_offline_cache(tiny, tmp_path, monkeypatch):
    cache = str(tmp_path / 'hub')
    _to_hub_cache(cache, weights.DEFAULT_BASE_MODEL, tiny['base_model'])
    _to_hub_cache(cache, weights.DEFAULT_VAE, tiny['vae'])
    _to_hub_cache(cache, weights.DEFAULT_ATTN_CKPT, tiny['attn_ckpt'])
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setenv('HF_HUB_CACHE', cache)
    pipe = CatVTONPipeline.from_pretrained(attn_version='vitonhd', device='cpu', dtype='fp32')
    state = load_file(os.path.join(tiny['attn_ckpt'],
                                   'vitonhd-16k-512/attention/model.safetensors'))
    torch.testing.assert_close(self_attention_modules(pipe.unet).state_dict()['3.to_v.weight'],
                               state['24.to_v.weight'], rtol=0, atol=0)
    # a repo missing from the cache: clear error naming it and the fix
    with pytest.raises(ModelNotFoundError, match='someone/missing.*fetch_weights'):
        CatVTONPipeline.from_pretrained(vae='someone/missing', device='cpu')


def test_missing_and_partial_models_raise_clear_errors(tiny, tmp_path):
    with pytest.raises(ModelNotFoundError, match=r'/no/such/folder does not exist.*fetch_weights'):
        load(dict(tiny, base_model='/no/such/folder'))
    partial = str(tmp_path / 'sd')
    shutil.copytree(tiny['base_model'], partial)
    os.remove(os.path.join(partial, 'unet', 'diffusion_pytorch_model.safetensors'))
    with pytest.raises(ModelNotFoundError) as err:
        load(dict(tiny, base_model=partial))
    message = str(err.value)
    assert partial in message and 'unet/diffusion_pytorch_model.safetensors' in message
    assert 'fetch_weights' in message
    assert isinstance(err.value, FileNotFoundError)
    attn = str(tmp_path / 'catvton')
    shutil.copytree(tiny['attn_ckpt'], attn)
    shutil.rmtree(os.path.join(attn, 'dresscode-16k-512'))
    with pytest.raises(ModelNotFoundError, match='dresscode-16k-512/attention/model.safetensors'):
        load(dict(tiny, attn_ckpt=attn), attn_version='dresscode')
    if importlib.util.find_spec('transformers') is None:  # safety checker asked, not possible
        with pytest.raises(ImportError, match='needs the transformers package'):
            load(tiny, safety_checker=True)


def test_attention_weights_with_contiguous_numbering_load_too(tiny, tmp_path):
    src = os.path.join(tiny['attn_ckpt'], 'mix-48k-1024/attention/model.safetensors')
    published = load_file(src)  # indices 0, 8, 16, ...
    contiguous = {f'{int(k.split(".")[0]) // 8}.{k.split(".", 1)[1]}': v
                  for k, v in published.items()}
    attn = tmp_path / 'catvton'
    shutil.copytree(tiny['attn_ckpt'], attn)
    save_file(contiguous, str(attn / 'mix-48k-1024/attention/model.safetensors'))
    pipe = load(dict(tiny, attn_ckpt=str(attn)))
    loaded = self_attention_modules(pipe.unet).state_dict()
    assert set(loaded) == set(contiguous)
    for key, value in contiguous.items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)


@pytest.mark.parametrize('change', ['drop', 'extra', 'shape'])
def test_attention_weights_load_strictly(tiny, tmp_path, change):
    src = os.path.join(tiny['attn_ckpt'], 'mix-48k-1024/attention/model.safetensors')
    state = load_file(src)
    n_modules = len({key.split('.')[0] for key in state})
    if change == 'drop':  # file indices 0, 8, 16, ...: module 2 is '16.'
        del state['16.to_k.weight']
    elif change == 'extra':  # one module more than the UNet has
        state[f'{8 * n_modules}.to_q.weight'] = state['0.to_q.weight'].clone()
    else:
        state['8.to_out.0.bias'] = torch.zeros(7)
    attn = tmp_path / 'catvton'
    shutil.copytree(tiny['attn_ckpt'], attn)
    save_file(state, str(attn / 'mix-48k-1024/attention/model.safetensors'))
    expected = {'drop': r'1 missing keys.*2\.to_k\.weight',
                'extra': rf'1 unexpected keys.*{n_modules}\.to_q\.weight',
                'shape': r'1 shape mismatches.*1\.to_out\.0\.bias: file \(7,\)'}[change]
    with pytest.raises(IncompatibleWeightsError, match=expected):
        load(dict(tiny, attn_ckpt=str(attn)))


# ---------------------------------------------------------------- behaviour


def test_output_contract(pipe, inputs):
    out = run(pipe, inputs, num_inference_steps=10, guidance_scale=2.5, seed=3)
    assert out.image.shape == (H, W, 3) and out.image.dtype == np.uint8
    assert out.mask.shape == (H, W) and set(np.unique(out.mask)) <= {0, 255}
    assert tuple(out.timings) == TIMING_KEYS and out.timings['safety_check'] == 0.0
    assert out.timings['total'] >= out.timings['denoise'] > 0
    assert out.seed == 3 and not out.nan_recovered and not out.nsfw
    box = out.crop_box
    assert (box.src_height, box.src_width) == inputs[0].shape[:2]
    assert abs(box.height * W - box.width * H) <= max(H, W)


def test_same_seed_same_image_and_latents_argument(pipe, inputs):
    a = run(pipe, inputs, seed=7)
    b = run(pipe, inputs, seed=7)
    c = run(pipe, inputs, seed=8)
    assert np.array_equal(a.image, b.image)
    assert not np.array_equal(a.image, c.image)
    # explicit initial noise = the noise the seed would draw (for a deterministic scheduler)
    pipe.set_scheduler('ddim')
    try:
        noise = torch.randn((1, 4, 2 * H // 8, W // 8), generator=torch.Generator().manual_seed(5))
        before = noise.clone()
        d = run(pipe, inputs, seed=5, eta=0.0)
        e = run(pipe, inputs, latents=noise, eta=0.0)
        assert np.array_equal(d.image, e.image)
        assert torch.equal(noise, before)  # caller's tensor untouched
    finally:
        pipe.set_scheduler('dpmpp_2m')


@pytest.mark.parametrize('name', SCHEDULERS)
def test_each_scheduler_runs_with_one_callback_per_step(tiny, inputs, name):
    pipe = load(tiny, scheduler=name)
    calls = []
    out = run(pipe, inputs, num_inference_steps=5, seed=1,
              callback=lambda step, total, t, lat: calls.append((step, total, t, lat.shape)))
    assert [c[0] for c in calls] == [1, 2, 3, 4, 5] and {c[1] for c in calls} == {5}
    assert all(isinstance(c[2], (int, float)) for c in calls) and calls[0][2] > calls[-1][2]
    assert calls[0][3] == (1, 4, 2 * H // 8, W // 8)
    assert out.image.shape == (H, W, 3) and 0 < out.image.std()


def test_guidance_on_off(pipe, inputs):
    batches = []
    hook = pipe.unet.register_forward_pre_hook(lambda m, args: batches.append(args[0].shape[0]))
    try:
        off = run(pipe, inputs, guidance_scale=1.0, seed=2)
        assert set(batches) == {1}
        batches.clear()
        run(pipe, inputs, guidance_scale=0.0, seed=2)
        assert set(batches) == {1}
        batches.clear()
        on = run(pipe, inputs, guidance_scale=2.5, seed=2)
        assert set(batches) == {2} and len(batches) == 4
    finally:
        hook.remove()
    assert not np.array_equal(off.image, on.image)


def test_cancel_raises_and_leaves_no_half_state(tiny, inputs):
    pipe = load(tiny)
    reference = run(load(tiny), inputs, seed=11)
    seen = []

    def stop_at_two(step, total, t, latents):
        seen.append(step)
        return step == 2

    with pytest.raises(TryOnCancelled) as err:
        run(pipe, inputs, seed=11, callback=stop_at_two)
    assert seen == [1, 2] and (err.value.step, err.value.total) == (2, 4)
    assert 'after step 2 of 4' in str(err.value)

    def boom(step, total, t, latents):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(pipe, inputs, seed=11, callback=boom)
    after = run(pipe, inputs, seed=11)
    assert after.garment_cache_hit  # cached during the cancelled runs, and valid
    assert np.array_equal(after.image, reference.image)


def test_repaint_keeps_pixels_outside_the_mask(pipe, exact_inputs):
    person, garment, mask = exact_inputs
    out = run(pipe, exact_inputs, seed=4, repaint=True)
    plain = run(pipe, exact_inputs, seed=4)
    outside = mask < 128
    assert np.array_equal(out.mask, mask)
    assert np.array_equal(out.image[outside], person[outside])
    assert not np.array_equal(plain.image[outside], person[outside])
    inside = mask >= 128
    assert not np.array_equal(out.image[inside], person[inside])
    core = np.zeros_like(inside)
    core[26:50, 14:34] = True  # well inside the mask: the generated pixels
    assert np.array_equal(out.image[core], plain.image[core])


def test_garment_cache_skips_encode(tiny, inputs):
    pipe = load(tiny, garment_cache_size=2)
    encodes = []
    pipe.vae.encoder.register_forward_hook(lambda m, i, o: encodes.append(1))
    first = run(pipe, inputs, seed=1)
    assert len(encodes) == 2 and not first.garment_cache_hit
    second = run(pipe, inputs, seed=1)  # same person and mask: its latent is reused too
    assert len(encodes) == 2 and second.garment_cache_hit and pipe.garment_cache.hits == 1
    assert np.array_equal(first.image, second.image)
    person, garment, mask = inputs
    other = samples.garment('skirt', (10, 150, 20), 128, 96)
    run(pipe, (person, other, mask), seed=1)
    assert len(encodes) == 3 and pipe.garment_cache.misses == 2
    run(pipe, (person, samples.garment('dress'), mask), seed=1)
    assert len(pipe.garment_cache) == 2  # bounded


def test_fp16_nan_guard_recovers_in_fp32(tiny, inputs):
    pipe = load(tiny, dtype='fp16')
    assert pipe.unet.dtype == torch.float16
    with torch.no_grad():
        pipe.vae.decoder.conv_in.weight.mul_(1e5)  # overflows fp16, fine in fp32
        probe = pipe.vae.decode(torch.randn(1, 4, H // 8, W // 8, dtype=torch.float16)).sample
    assert not torch.isfinite(probe).all()  # precondition: fp16 decode is broken
    out = run(pipe, inputs, seed=1)
    assert out.nan_recovered
    assert out.image.std() > 1 and out.image.max() > 0
    assert pipe.vae.decoder.conv_in.weight.dtype == torch.float16  # restored


def test_sliced_attention_matches_and_keeps_skip(tiny, inputs):
    sliced = load(tiny, attention_slicing='max')
    processors = sliced.unet.attn_processors
    assert all(isinstance(p, SkipAttnProcessor) for k, p in processors.items() if 'attn2' in k)
    assert all(isinstance(p, SlicedSelfAttnProcessor) for k, p in processors.items()
               if 'attn1' in k)
    got, want = [], []
    run(sliced, inputs, seed=9, callback=lambda s, n, t, lat: got.append(lat.clone()))
    run(load(tiny), inputs, seed=9, callback=lambda s, n, t, lat: want.append(lat.clone()))
    torch.testing.assert_close(got[-1], want[-1], rtol=1e-4, atol=1e-4)


def test_preview_is_cheap_rgb(pipe, inputs):
    previews = []
    run(pipe, inputs, seed=1, callback=lambda s, n, t, lat: previews.append(
        latents_to_preview(lat)))
    assert previews[0].shape == (H // 8, W // 8, 3) and previews[0].dtype == np.uint8
    assert latents_to_preview(torch.zeros(4, 16, 6), person_only=False, upscale=8).shape == (
        128, 48, 3)


# ---------------------------------------------------------------- input checks


@pytest.mark.parametrize('kwargs, error, match', [
    ({'height': 60}, ValueError, 'height must be a positive multiple of 8'),
    ({'width': 0}, ValueError, 'width must be a positive multiple of 8'),
    ({'num_inference_steps': 0}, ValueError, r'num_inference_steps must be an int in \[1, 1000\]'),
    ({'num_inference_steps': 5000}, ValueError, 'num_inference_steps'),
    ({'guidance_scale': -1.0}, ValueError, 'guidance_scale must be a finite number >= 0'),
    ({'guidance_scale': float('nan')}, ValueError, 'guidance_scale'),
    ({'seed': 1, 'generator': torch.Generator()}, ValueError, 'either seed or generator'),
    ({'latents': torch.zeros(1, 4, 8, 6)}, ValueError, r'latents must have shape \(1, 4, 16, 6\)'),
    ({'eta': 2.0}, ValueError, 'eta must be in'),
])
def test_bad_arguments_raise(pipe, inputs, kwargs, error, match):
    with pytest.raises(error, match=match):
        run(pipe, inputs, **kwargs)


def test_bad_images_raise(pipe, inputs):
    person, garment, mask = inputs
    with pytest.raises(ValueError, match='person must be uint8'):
        pipe(person.astype(np.float32), garment, mask, height=H, width=W)
    with pytest.raises(ValueError, match=r'garment must be HxWx3'):
        pipe(person, np.dstack([garment, garment[..., :1]]), mask, height=H, width=W)
    with pytest.raises(ValueError, match='person is empty'):
        pipe(person[:0], garment, mask[:0], height=H, width=W)
    with pytest.raises(ValueError, match=r'mask must be HxW'):
        pipe(person, garment, mask[..., None], height=H, width=W)
    with pytest.raises(ValueError, match=r'mask shape \(256, 512\) != person image size'):
        pipe(person, garment, mask[:256], height=H, width=W)


def test_unknown_names_list_valid_ones(tiny, pipe):
    with pytest.raises(ValueError, match=r"unknown scheduler 'dpm'; valid: ddim, dpmpp_2m"):
        load(tiny, scheduler='dpm')
    with pytest.raises(ValueError, match="unknown scheduler 'x'; valid: .*euler_a.*unipc"):
        pipe.set_scheduler('x')
    with pytest.raises(ValueError, match="unknown attn_version 'hd'; valid: mix, vitonhd, dress"):
        load(tiny, attn_version='hd')
    with pytest.raises(ValueError, match='unknown precision'):
        load(tiny, dtype='int8')
    with pytest.raises(ValueError, match='attention_slicing'):
        load(tiny, attention_slicing='half')


# ---------------------------------------------------------------- independent reference


@pytest.mark.parametrize('guidance', [1.0, 2.5])
def test_first_step_matches_hand_computed_reference(tiny, exact_inputs, guidance):
    """Re-derive one DDIM step from the algorithm with plain diffusers models and math."""
    person, garment, mask = exact_inputs
    noise = torch.randn((1, 4, 2 * H // 8, W // 8), generator=torch.Generator().manual_seed(0))
    captured = []
    pipe = load(tiny, scheduler='ddim')
    run(pipe, exact_inputs, num_inference_steps=10, guidance_scale=guidance, latents=noise,
        eta=0.0, callback=lambda s, n, t, lat: captured.append((t, lat.clone())))
    timestep, pipe_latents = captured[0]

    # reference models: straight from the files, own skip processor, own attn1 loading
    unet = UNet2DConditionModel.from_pretrained(tiny['base_model'], subfolder='unet').eval()
    vae = AutoencoderKL.from_pretrained(tiny['vae']).eval()
    attn1 = [m for name, m in unet.named_modules() if name.endswith('attn1')]
    state = load_file(os.path.join(tiny['attn_ckpt'], 'mix-48k-1024/attention/model.safetensors'))
    for i, module in enumerate(attn1):
        for key, value in module.state_dict().items():
            value.copy_(state[f'{8 * i}.{key}'])  # the published numbering

    class Passthrough:
        def __call__(self, attn, hidden_states, encoder_hidden_states=None,
                     attention_mask=None, temb=None):
            return hidden_states

    procs = unet.attn_processors
    unet.set_attn_processor({k: Passthrough() if '.attn2.' in k else v for k, v in procs.items()})

    def image(x):
        return torch.from_numpy(x).permute(2, 0, 1)[None].float() / 127.5 - 1

    with torch.no_grad():
        m = torch.from_numpy(mask >= 128)[None, None].float()
        sf = vae.config.scaling_factor
        z_person = vae.encode(image(person) * (m < 0.5)).latent_dist.mean * sf
        z_garment = vae.encode(image(garment)).latent_dist.mean * sf
        m_lat = F.interpolate(m, size=z_person.shape[-2:], mode='nearest')
        mask_in = torch.cat([m_lat, torch.zeros_like(m_lat)], dim=2)
        cond = torch.cat([z_person, z_garment], dim=2)
        uncond = torch.cat([z_person, torch.zeros_like(z_garment)], dim=2)
        t = 901  # 10 DDIM steps, 'leading' spacing, steps_offset 1: 901, 801, ...
        if guidance > 1:
            x = torch.cat([torch.cat([noise, mask_in, uncond], 1),
                           torch.cat([noise, mask_in, cond], 1)])
            eps_u, eps_c = unet(x, t, encoder_hidden_states=None).sample.chunk(2)
            eps = eps_u + guidance * (eps_c - eps_u)
        else:
            eps = unet(torch.cat([noise, mask_in, cond], 1), t,
                       encoder_hidden_states=None).sample
        betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
        alpha_bar = torch.cumprod(1 - betas, 0)
        a_t, a_prev = alpha_bar[t].float(), alpha_bar[t - 100].float()
        x0 = (noise - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        expected = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps

    assert timestep == t
    assert (expected - noise).abs().max() > 1e-2  # the step does something
    torch.testing.assert_close(pipe_latents, expected, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- tools and layering


def test_make_test_weights_cli(tmp_path, capsys):
    from vton_ros.tools.make_test_weights import main
    assert main(['--out', str(tmp_path)]) == 0
    assert 'RANDOM' in capsys.readouterr().out
    for path in ('stable-diffusion-inpainting/unet/config.json',
                 'stable-diffusion-inpainting/unet/diffusion_pytorch_model.safetensors',
                 'stable-diffusion-inpainting/scheduler/scheduler_config.json',
                 'sd-vae-ft-mse/config.json', 'sd-vae-ft-mse/diffusion_pytorch_model.safetensors',
                 'CatVTON/mix-48k-1024/attention/model.safetensors',
                 'CatVTON/vitonhd-16k-512/attention/model.safetensors',
                 'CatVTON/dresscode-16k-512/attention/model.safetensors',
                 'taesd/config.json', 'taesd/diffusion_pytorch_model.safetensors'):
        assert (tmp_path / path).is_file(), path


def test_fetch_weights_refuses_offline(monkeypatch, capsys):
    from vton_ros.tools.fetch_weights import main
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    assert main(['--versions', 'mix,vitonhd']) == 2
    assert 'HF_HUB_OFFLINE' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(['--versions', 'nope'])


def test_no_rclpy_in_pipeline():
    folder = os.path.join(os.path.dirname(__file__), '..', 'vton_ros', 'pipeline')
    for path in glob.glob(os.path.join(folder, '*.py')):
        with open(path) as f:
            assert not re.search(r'^\s*(import|from)\s+rclpy', f.read(), re.MULTILINE), path
