"""ONNX export (export_onnx), its manifest check and the onnxruntime sessions, tiny weights."""

import json
import shutil

from conftest import export_settings
import numpy as np
import onnxruntime as ort
import pytest
import torch
from vton_ros.media import samples
from vton_ros.pipeline import onnx_manifest as manifests
from vton_ros.pipeline.catvton import CatVTONPipeline
from vton_ros.pipeline.onnx_export import _export_graph
from vton_ros.pipeline.onnx_runtime import OrtModels, parse_providers
from vton_ros.pipeline.options import PipelineOptions
from vton_ros.settings.views import CatVTONCall, CatVTONLoad
from vton_ros.tools.export_onnx import main
from vton_ros.tools.make_test_weights import write_test_weights


def check(manifest: dict, settings: dict, onnx_dir) -> None:
    """Check an export against tryon_server settings, as the server does at start."""
    manifests.check_manifest(manifest, CatVTONLoad.from_settings(settings),
                             CatVTONCall.from_settings(settings), str(onnx_dir))


def test_export_writes_every_graph_and_what_it_was_made_from(onnx_export, tiny):
    manifest = json.loads((onnx_export / 'manifest.json').read_text())
    assert set(manifest['graphs']) == {'unet', 'unet_shallow', 'vae_encoder', 'vae_decoder',
                                       'taesd_encoder', 'taesd_decoder'}
    for info in manifest['graphs'].values():
        assert (onnx_export / info['file']).is_file()
        assert info['max_abs_diff'] < 1e-4  # onnxruntime against torch at export
    assert (manifest['height'], manifest['width'], manifest['precision']) == (64, 48, 'fp32')
    assert (manifest['opset'], manifest['attn_version'], manifest['cache_branch']) == (
        17, 'vitonhd', 0)
    assert manifest['graphs']['unet']['inputs'] == {'sample': [2, 9, 16, 6], 'timestep': [1]}
    attn = manifest['sources']['catvton.attn_ckpt']['files']
    assert list(attn) == ['vitonhd-16k-512/attention/model.safetensors']
    assert attn[list(attn)[0]] == manifests.file_sha256(
        f'{tiny["attn_ckpt"]}/vitonhd-16k-512/attention/model.safetensors')
    check(manifest, export_settings(tiny), onnx_export)  # fits


def test_unet_graph_runs_batch_one_and_two(onnx_export):
    models = OrtModels.load(str(onnx_export))
    sample = torch.randn(2, 9, 16, 6, generator=torch.Generator().manual_seed(1))
    both = models.unet(sample, torch.tensor(301))
    cond = models.unet(sample[1:], torch.tensor(301))
    assert both.shape == (2, 4, 16, 6) and cond.shape == (1, 4, 16, 6)
    assert torch.allclose(both[1:], cond, atol=1e-5)
    noise, kept = models.unet_full(sample, torch.tensor(301), 0)
    assert torch.allclose(noise, both, atol=1e-6)
    assert torch.allclose(models.unet_shallow(sample, torch.tensor(301), kept, 0), both,
                          atol=1e-5)  # same input, kept state: the full step's noise


@pytest.mark.parametrize('change, words', [
    ({'catvton.height': 72}, 'catvton.height is 72, the export 64'),
    ({'catvton.precision': 'fp16'}, 'catvton.precision is fp16, the export fp32'),
    ({'catvton.attn_version': 'mix'}, 'catvton.attn_version is mix, the export vitonhd'),
    ({'catvton.attn_version': 'auto'}, 'auto picks dresscode or vitonhd'),
    ({'catvton.cache_interval': 3, 'catvton.cache_branch': 1},
     'catvton.cache_branch is 1, the export 0'),
])
def test_an_export_that_does_not_fit_the_settings_is_refused(onnx_export, tiny, change, words):
    manifest = manifests.read_manifest(str(onnx_export))
    with pytest.raises(manifests.ExportMismatchError) as err:
        check(manifest, export_settings(tiny, **change), onnx_export)
    assert words in str(err.value) and 'export_onnx --params-file' in str(err.value)


def test_other_weights_or_missing_graphs_are_refused(onnx_export, tiny, tmp_path):
    other = write_test_weights(str(tmp_path / 'other'), seed=1)
    manifest = manifests.read_manifest(str(onnx_export))
    settings = export_settings(dict(tiny, vae=other['vae']))
    with pytest.raises(manifests.ExportMismatchError, match='weights of catvton.vae'):
        check(manifest, settings, onnx_export)
    plain = dict(manifest, cache_branch=None, graphs={
        k: v for k, v in manifest['graphs'].items() if not k.startswith('taesd')})
    settings = export_settings(tiny, **{'catvton.cache_interval': 2, 'catvton.decoder': 'tiny'})
    with pytest.raises(manifests.ExportMismatchError) as err:
        check(plain, settings, onnx_export)
    assert 'needs the DeepCache graphs' in str(err.value)
    assert 'catvton.decoder tiny needs taesd_decoder.onnx' in str(err.value)
    with pytest.raises(manifests.ExportMismatchError, match='manifest.json missing'):
        manifests.read_manifest(str(tmp_path))
    copy = tmp_path / 'copy'
    shutil.copytree(onnx_export, copy)
    (copy / 'vae_decoder.onnx').unlink()
    with pytest.raises(manifests.ExportMismatchError, match='copy the whole export folder'):
        OrtModels.load(str(copy))


def test_export_refuses_settings_it_cannot_honour(tiny, tmp_path, capsys):
    base = ['--out', str(tmp_path), '--set', f'catvton.base_model={tiny["base_model"]}']
    assert main(base + ['--set', 'catvton.precision=bf16']) == 2
    assert 'set catvton.precision fp16' in capsys.readouterr().err
    assert main(base) == 2  # attn_version auto at 512x384: vitonhd or dresscode
    assert 'an ONNX export holds one set' in capsys.readouterr().err
    assert not (tmp_path / 'manifest.json').exists()


def test_graphs_over_the_limit_keep_their_weights_in_one_data_file(tmp_path):
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3), torch.nn.Conv2d(64, 2, 1)).eval()
    x = torch.randn(1, 3, 12, 10)
    info = _export_graph(module, (x,), ['image'], ['out'], str(tmp_path), 'small', 0)
    assert info['external_data'] and sorted(p.name for p in tmp_path.iterdir()) == [
        'small.onnx', 'small.onnx.data']
    got = ort.InferenceSession(str(tmp_path / 'small.onnx')).run(None, {'image': x.numpy()})[0]
    with torch.no_grad():
        assert np.abs(got - module(x).numpy()).max() < 1e-5


def test_provider_names_are_checked():
    assert parse_providers('tensorrt, cuda,cpu') == ('tensorrt', 'cuda', 'cpu')
    for bad in ('', 'gpu', 'cpu,openvino'):
        with pytest.raises(ValueError, match='comma-separated list of cpu, cuda, tensorrt'):
            parse_providers(bad)


@pytest.mark.skipif('CUDAExecutionProvider' in ort.get_available_providers(),
                    reason='needs an onnxruntime without the CUDA provider')
def test_a_provider_this_onnxruntime_lacks_is_refused(onnx_export):
    with pytest.raises(ValueError, match='asks for cuda, which this onnxruntime'):
        OrtModels.load(str(onnx_export), 'cuda,cpu')


@pytest.fixture(scope='module')
def torch_pipe(tiny, one_thread):
    """Return a function building the torch pipeline of the tiny weights with options."""
    def build(**options):
        return CatVTONPipeline.from_pretrained(**tiny, attn_version='vitonhd', device='cpu',
                                               dtype='fp32', local_files_only=True, **options)
    return build


@pytest.mark.parametrize('options, call', [
    ({}, {}),  # the paper's path
    ({}, {'guidance_end': 0.5, 'cache_interval': 2, 'scheduler': 'euler'}),
    ({'decoder': 'tiny', 'preview_decoder': 'tiny', 'encoder': 'tiny'}, {'guidance_scale': 1.0}),
])
def test_onnxruntime_pipeline_equals_torch(torch_pipe, onnx_export, inputs, options, call):
    scheduler = call.pop('scheduler', 'dpmpp_2m')
    pipes = [torch_pipe(scheduler=scheduler, **options), CatVTONPipeline.from_onnx(
        str(onnx_export), 'cpu', scheduler, options=PipelineOptions(**options), threads=1)]
    outs, previews = [], []
    for pipe in pipes:
        steps = []
        outs.append(pipe(*inputs, num_inference_steps=4, height=64, width=48, seed=3,
                         callback=lambda i, n, t, lat, p=pipe: steps.append(p.preview(lat)),
                         **call).image.astype(int))
        previews.append(steps)
    assert np.abs(outs[0] - outs[1]).max() <= 1  # within 1/255
    for a, b in zip(*previews):
        assert a.shape == b.shape and np.abs(a.astype(int) - b).max() <= 1


def test_onnxruntime_pipeline_refuses_torch_only_options_and_other_sizes(onnx_export, inputs):
    with pytest.raises(ValueError, match='cannot honour attention_slicing, channels_last'):
        CatVTONPipeline.from_onnx(str(onnx_export), options=PipelineOptions(
            attention_slicing='auto', channels_last=True))
    pipe = CatVTONPipeline.from_onnx(str(onnx_export))
    with pytest.raises(ValueError, match='runs 64x48 only, got 128x96'):
        pipe(*inputs, num_inference_steps=1, height=128, width=96)
    with pytest.raises(ValueError, match='cache_branch must be 0'):
        pipe.check_speed_options(cache_interval=2, cache_branch=1)


def test_person_latent_is_reused_for_the_same_frame_and_mask(torch_pipe, inputs):
    pipe = torch_pipe()
    person, garment, mask = inputs
    first = pipe(person, garment, mask, num_inference_steps=2, height=64, width=48, seed=1)
    other = samples.garment('skirt', (200, 30, 40), 128, 96)
    pipe(person, other, mask, num_inference_steps=2, height=64, width=48, seed=1)
    again = pipe(person, garment, mask, num_inference_steps=2, height=64, width=48, seed=1)
    assert (pipe.person_cache.hits, pipe.person_cache.misses) == (2, 1)
    assert np.array_equal(first.image, again.image)  # exact
    moved = mask.copy()
    moved[100:140, 200:300] = 255
    pipe(person, garment, moved, num_inference_steps=2, height=64, width=48, seed=1)
    assert pipe.person_cache.misses == 2  # another mask: encoded again
    fresh = torch_pipe()
    alone = fresh(person, garment, mask, num_inference_steps=2, height=64, width=48, seed=1)
    assert np.array_equal(alone.image, first.image)
