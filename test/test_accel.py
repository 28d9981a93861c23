"""Opt-in accelerations (issue 10) on tiny RANDOM weights: which forwards run, exactness."""

import dataclasses
import inspect
from pathlib import Path

from helpers import H, load_catvton as load, run_catvton as catvton_run, W
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vton_ros.bench.compare import NAMED_CONFIGS, run_config
from vton_ros.bench.plan import RUN_FIELDS, RunConfig
from vton_ros.pipeline import attention, schedulers
from vton_ros.pipeline.catvton import CatVTONPipeline
from vton_ros.pipeline.deepcache import DeepCacheUNet, skip_count
from vton_ros.pipeline.offload import disk_weights, DiskWeights, Offloader
from vton_ros.pipeline.options import PipelineOptions
from vton_ros.pipeline.preprocess import cover_resize, letterbox
from vton_ros.pipeline.previews import latents_to_preview
from vton_ros.pipeline.random_weights import random_tiny_components
from vton_ros.pipeline.weights import ModelNotFoundError
from vton_ros.settings import files as param_files
from vton_ros.settings import schema as params
from vton_ros.settings.stack import file_stack
from vton_ros.settings.views import CatVTONCall, CatVTONLoad, CatVTONOptions
import yaml

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def pipe(tiny):
    return load(tiny, preview_decoder='tiny')


def run(pipe, inputs, **kwargs):
    kwargs.setdefault('seed', 3)
    return catvton_run(pipe, inputs, **kwargs)


class UNetCalls:
    """Hooks: (batch, 'full' | 'shallow') per UNet forward (conv_in always, mid block if full)."""

    def __init__(self, unet):
        self.calls = []
        self._handles = [unet.conv_in.register_forward_pre_hook(self._begin),
                         unet.mid_block.register_forward_pre_hook(self._full)]

    def _begin(self, module, args):
        self.calls.append([int(args[0].shape[0]), 'shallow'])

    def _full(self, module, args):
        self.calls[-1][1] = 'full'

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()


# ---------------------------------------------------------------- the exact path


@torch.inference_mode()
def reference_try_on(pipe, inputs, steps, guidance, seed):
    """Run the paper's loop written out: CFG every step, plain UNet forward, full VAE."""
    person, garment, mask = inputs
    person_img, _ = cover_resize(person, H, W)
    mask_img, _ = cover_resize(mask, H, W, nearest=True)
    binary = np.where(mask_img >= 128, 255, 0).astype(np.uint8)
    mask_t = torch.from_numpy(binary)[None, None] >= 128
    masked = pipe._encode(pipe._to_tensor(person_img) * ~mask_t)
    garment_latent = pipe._encode(pipe._to_tensor(letterbox(garment, H, W)))
    scheduler = schedulers.make_scheduler(pipe.scheduler_name, pipe._scheduler_config)
    scheduler.set_timesteps(steps)
    concat = torch.cat([masked, garment_latent], dim=2)
    noise = torch.randn(concat.shape, generator=torch.Generator('cpu').manual_seed(seed))
    sample = noise * scheduler.init_noise_sigma
    mask_lat = F.interpolate(mask_t.float(), size=masked.shape[-2:], mode='nearest')
    rows = [torch.cat([mask_lat, torch.zeros_like(mask_lat)], dim=2)] * 2
    cond = torch.cat([rows[0], concat], dim=1)
    uncond = cond.clone()
    uncond[:, 1:, masked.shape[2]:] = 0
    extra = schedulers.step_kwargs(scheduler, 1.0, torch.Generator('cpu').manual_seed(seed))
    for t in scheduler.timesteps:
        scaled = scheduler.scale_model_input(sample, t)
        unet_in = torch.cat([torch.cat([scaled, uncond], 1), torch.cat([scaled, cond], 1)])
        eps_u, eps_c = pipe.unet(unet_in, t, encoder_hidden_states=None,
                                 return_dict=False)[0].float().chunk(2)
        sample = scheduler.step(eps_u + guidance * (eps_c - eps_u), t, sample,
                                return_dict=False, **extra)[0]
    return pipe._decode(sample[:, :, :masked.shape[2]])[0]


def test_default_path_is_the_paper_bit_for_bit(pipe, inputs):
    """Defaults (and the defaults spelled out) equal the written-out paper loop exactly."""
    default = run(pipe, inputs).image
    spelled = run(pipe, inputs, guidance_start=0.0, guidance_end=1.0, cache_interval=1,
                  cache_branch=5).image
    reference = reference_try_on(pipe, inputs, 4, 2.5, 3)
    assert np.array_equal(default, reference)
    assert np.array_equal(spelled, reference)


@pytest.mark.parametrize('width', [6, 7])  # 7: odd latent width, explicit upsample sizes
def test_deepcache_full_and_shallow_forwards_match_the_unet(pipe, width):
    """A full forward equals unet(); a shallow one on the same input reuses it exactly."""
    x = torch.randn(2, 9, 16, width, generator=torch.Generator().manual_seed(0))
    t = torch.tensor(700)
    with torch.inference_mode():
        want = pipe.unet(x, t, encoder_hidden_states=None).sample
        for branch in range(skip_count(pipe.unet)):
            deep = DeepCacheUNet(pipe.models, 2, branch)
            assert torch.equal(deep(x, t, 0), want)
            assert torch.equal(deep(x, t, 1), want)  # kept deep features, same input
            assert not torch.equal(deep(x * 0.5, t, 1), want)
            assert (deep.full_steps, deep.shallow_steps) == (1, 2)


# ---------------------------------------------------------------- which forwards run

F2, F1, S2, S1 = [2, 'full'], [1, 'full'], [2, 'shallow'], [1, 'shallow']


@pytest.mark.parametrize('kwargs, steps, expected', [
    ({}, 4, [F2] * 4),
    ({'guidance_scale': 1.0}, 4, [F1] * 4),
    ({'guidance_start': 0.5}, 4, [F1, F1, F2, F2]),
    ({'guidance_end': 0.25}, 4, [F2, F1, F1, F1]),
    ({'guidance_start': 0.0, 'guidance_end': 0.0}, 3, [F1] * 3),
    ({'cache_interval': 2}, 4, [F2, S2, F2, S2]),
    ({'cache_interval': 3, 'guidance_end': 0.5}, 6, [F2, S2, S2, F1, S1, S1]),
    # guidance switching on: the kept batch-1 state cannot serve batch 2 -> full
    ({'cache_interval': 3, 'guidance_start': 0.4}, 5, [F1, S1, F2, F2, S2]),
    ({'cache_interval': 10, 'cache_branch': 3, 'guidance_scale': 1.0}, 3, [F1, S1, S1]),
])
def test_unet_forwards_per_option(pipe, inputs, kwargs, steps, expected):
    with UNetCalls(pipe.unet) as hooks:
        result = run(pipe, inputs, num_inference_steps=steps, **kwargs)
    assert hooks.calls == expected
    assert result.image.shape == (H, W, 3)


def test_guidance_interval_outside_steps_is_guidance_off(pipe, inputs):
    """An empty interval runs the cond row only, exactly like guidance_scale 1."""
    empty = run(pipe, inputs, guidance_start=0.5, guidance_end=0.5).image
    off = run(pipe, inputs, guidance_scale=1.0).image
    assert np.array_equal(empty, off)
    assert not np.array_equal(empty, run(pipe, inputs).image)


# ---------------------------------------------------------------- tiny decoder, previews


def test_tiny_decoder_final_image_and_previews(tiny, pipe, inputs):
    fast = load(tiny, decoder='tiny', preview_decoder='tiny')
    assert fast.tiny_vae is not None and fast.random_weights
    result = run(fast, inputs)
    assert result.image.shape == (H, W, 3) and result.image.dtype == np.uint8
    assert not result.nan_recovered
    assert not np.array_equal(result.image, run(pipe, inputs).image)  # other decoder
    previews, latent_previews = [], []

    def callback(step, total, timestep, latents):
        previews.append(fast.preview(latents))
        latent_previews.append(latents_to_preview(latents))

    run(fast, inputs, callback=callback)
    # person half of the latents is (8, 6): tiny previews are twice that, RGB uint8
    assert all(p.shape == (2 * H // 8, 2 * W // 8, 3) and p.dtype == np.uint8
               for p in previews)
    assert latent_previews[0].shape == (H // 8, W // 8, 3)
    assert len({p.tobytes() for p in previews}) > 1  # they follow the denoising
    plain = load(tiny)
    assert plain.tiny_vae is None  # not loaded unless asked for
    assert np.array_equal(plain.preview(torch.zeros(1, 4, 16, 6)),
                          latents_to_preview(torch.zeros(1, 4, 16, 6)))


def test_missing_tiny_decoder_names_path_and_fix(tiny, tmp_path):
    missing = tmp_path / 'no_taesd'
    with pytest.raises(ModelNotFoundError, match='fetch_weights --tiny-vae') as err:
        load(dict(tiny, tiny_vae=str(missing)), decoder='tiny')
    assert str(missing) in str(err.value)
    (missing).mkdir()
    with pytest.raises(ModelNotFoundError, match='config.json'):
        load(dict(tiny, tiny_vae=str(missing)), preview_decoder='tiny')
    load(dict(tiny, tiny_vae=str(missing)))  # not needed: not looked for


# ---------------------------------------------------------------- combinations, refusals


def test_options_combine_and_offload_keeps_the_image(tiny, inputs):
    base = run(load(tiny), inputs).image
    for mode in ('model', 'sequential'):
        assert np.array_equal(run(load(tiny, offload=mode), inputs).image, base)
    everything = load(tiny, decoder='tiny', preview_decoder='tiny', channels_last=True,
                      offload='sequential', sdpa_backend='math', attention_slicing='auto')
    with UNetCalls(everything.unet) as hooks:
        result = run(everything, inputs, num_inference_steps=5, guidance_start=0.2,
                     guidance_end=0.6, cache_interval=2, cache_branch=1)
    assert hooks.calls == [F1, F2, F2, S1, F1]  # guided steps 1-2; shallow 3 uses cond row
    assert result.image.shape == (H, W, 3)


def offloaded(model: torch.nn.Module) -> list[str]:
    """Names of the tensors of ``model`` held on 'meta' (not in RAM)."""
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    return [name for name, tensor in tensors if tensor.is_meta]


def test_offload_sequential_on_cpu_streams_weights_per_forward(tiny, inputs):
    base = load(tiny)
    pipe = load(tiny, offload='sequential')
    assert np.array_equal(run(pipe, inputs).image, run(base, inputs).image)
    # between forwards only the attn1 weights (swapped by AttentionSets) stay in RAM
    attn1 = {id(p) for p in attention.self_attention_modules(pipe.unet).parameters()}
    assert {id(p) for p in pipe.unet.parameters() if not p.is_meta} == attn1
    assert all(p.is_meta for p in pipe.vae.parameters())
    names = {m: n for n, m in pipe.unet.named_modules() if n in ('conv_in', 'conv_out')}
    reference = dict(base.unet.named_modules())
    seen = []

    def check(module, args):  # runs after the offload pre-hook: the weights are in
        seen.append(torch.equal(module.weight, reference[names[module]].weight))

    handles = [m.register_forward_pre_hook(check) for m in names]
    run(pipe, inputs, num_inference_steps=2)
    for handle in handles:
        handle.remove()
    assert seen and all(seen)
    assert pipe.unet.conv_in.weight.is_meta  # dropped again after the forward


def test_offload_sequential_file_leaves_nothing_and_restores_exactly(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8),
                                torch.nn.Linear(4, 2)).to(torch.bfloat16)
    model[0].to(memory_format=torch.channels_last)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    store = DiskWeights(model, resident=[model[2]], directory=str(tmp_path))
    assert list(tmp_path.iterdir()) == []  # the file is unlinked from the start
    assert disk_weights(model) is store and store.nbytes > 0
    assert offloaded(model) and not model[2].weight.is_meta
    x = torch.randn(1, 3, 6, 4, dtype=torch.bfloat16)
    model.float()  # e.g. the fp32 VAE retry: the placeholder dtype is honoured on reading
    assert model[0](x.float()).dtype == torch.float32
    model.to(torch.bfloat16)
    Offloader.reclaim([model])
    assert disk_weights(model) is None and not offloaded(model)
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    after = model.state_dict()
    assert all(torch.equal(after[k], v) and after[k].dtype == v.dtype for k, v in before.items())


def test_pipeline_after_a_sequential_one_reclaims_the_shared_models(inputs):
    unet, vae, config = random_tiny_components()
    opts = PipelineOptions(offload='sequential')
    streamed = CatVTONPipeline.from_components(unet, vae, config, device='cpu', options=opts)
    image = run(streamed, inputs).image
    assert offloaded(unet)
    plain = CatVTONPipeline.from_components(unet, vae, config, device='cpu')
    assert not offloaded(unet) and not offloaded(vae)
    assert np.array_equal(run(plain, inputs).image, image)


@pytest.mark.parametrize('kwargs, match', [
    ({'guidance_start': 0.8, 'guidance_end': 0.2}, 'must not exceed guidance_end'),
    ({'guidance_end': 1.5}, r'guidance_end must be a fraction of the steps in \[0, 1\]'),
    ({'cache_interval': 0}, 'cache_interval must be an int >= 1'),
    ({'cache_interval': 2, 'cache_branch': 4}, r'cache_branch must be an int in \[0, 3\]'),
])
def test_bad_call_values_are_refused_with_a_reason(pipe, inputs, kwargs, match):
    with pytest.raises(ValueError, match=match):
        run(pipe, inputs, **kwargs)


@pytest.mark.parametrize('name, value, match', [
    ('catvton.cache_interval', 0, 'below its minimum'),
    ('catvton.cache_branch', 12, 'above its maximum'),
    ('catvton.guidance_start', -0.1, 'below its minimum'),
    ('catvton.guidance_end', 1.01, 'above its maximum'),
    ('catvton.decoder', 'huge', 'not one of: full, tiny'),
    ('catvton.preview_decoder', 'full', 'not one of: latent, tiny'),
    ('catvton.offload', 'disk', 'not one of: none, model, sequential'),
    ('catvton.sdpa_backend', 'cudnn', 'not one of'),
])
def test_bad_settings_are_refused_by_the_schema(name, value, match):
    with pytest.raises(ValueError, match=match):
        params.param(name).validate(value)


@pytest.mark.parametrize('kwargs', [{'decoder': 'small'}, {'preview_decoder': 'vae'},
                                    {'offload': 'disk'}, {'sdpa_backend': 'fast'},
                                    {'attention_slicing': True}])
def test_bad_pipeline_options_are_refused(kwargs):
    with pytest.raises(ValueError, match='(not|write) one of'):
        PipelineOptions(**kwargs)


def test_options_run_configs_and_keyword_arguments_are_the_views_fields():
    """One place per option: the pipeline, the bench and the server take the views' fields."""
    options = CatVTONOptions.names()
    assert PipelineOptions.names() == options
    fields = [f.name for f in dataclasses.fields(PipelineOptions)]
    assert fields == [*options, 'garment_cache_size']
    assert PipelineOptions() == PipelineOptions(**CatVTONOptions().values(CatVTONOptions))
    load = CatVTONLoad.defaults()
    assert load.option_kwargs() == {name: getattr(load, name) for name in options}
    assert set(options) <= set(RUN_FIELDS)
    call = CatVTONCall.defaults()
    server_side = {'scheduler', 'seed', 'mask_blur'}
    assert set(call.pipeline_kwargs()) == set(CatVTONCall.names()) - server_side
    run = RunConfig()
    assert run.options() == PipelineOptions()
    assert run.call_kwargs() == call.pipeline_kwargs()
    listed = set(inspect.signature(CatVTONPipeline.from_pretrained).parameters)
    assert not listed & set(options)  # taken by name into PipelineOptions, not listed
    slicing = params.param('catvton.attention_slicing')  # one type in every layer
    assert (slicing.default, slicing.choices) == (PipelineOptions().attention_slicing,
                                                  ('none', 'auto', 'max'))
    with pytest.raises(ValueError, match='no setting of a bench run'):
        run.with_settings((('catvton.seed', 3),))


# ---------------------------------------------------------------- shipped profiles


@pytest.mark.parametrize('name', ['fast.yaml', 'fast_cpu.yaml'])
def test_fast_profiles_are_the_benchmarked_fast_configuration(name):
    path = ROOT / 'config' / name
    server = param_files.load_files(file_stack(path.stem))['tryon_server']
    fast = dict(NAMED_CONFIGS['fast'].resolved())  # config/fast.yaml, the bench's 'fast'
    assert fast['catvton.cache_interval'] == 3 and fast['catvton.decoder'] == 'tiny'
    for key, value in fast.items():
        assert server[key] == value, key
    assert '/**/tryon_server' in yaml.safe_load(path.read_text())


def test_named_compare_configurations_apply_the_schema():
    base = RunConfig(height=H, width=W, steps=4)
    paper = run_config(base, NAMED_CONFIGS['paper'])
    assert (paper.attention_slicing, paper.vae_slicing, paper.cache_interval) == ('auto', True, 1)
    assert run_config(base, NAMED_CONFIGS['exact-fastest']) == base
    fast = run_config(base, NAMED_CONFIGS['fast'])
    assert (fast.decoder, fast.cache_interval, fast.guidance_end) == ('tiny', 3, 0.5)
