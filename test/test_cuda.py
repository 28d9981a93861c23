"""
CUDA: precisions, OOM abort and recovery, offload, memory fraction, cuDNN benchmark, ORT.

Marked ``cuda``: ``make test`` deselects them (pytest.ini), ``scripts/gpu_check.sh`` runs
them (``pytest -m cuda``) on a CUDA machine; run without CUDA they fail, they do not skip.
onnxruntime's CUDA and TensorRT providers are checked when the installed onnxruntime has
them (else skipped, saying so).

The precision checks use the demo model (trained, 128x96: its images mean something);
the others the tiny random weights.
"""

import dataclasses

import numpy as np
import onnxruntime as ort
import pytest
from rosutil import ROOT
import torch

from vton_ros.goals import tryon_job as tryon_core
from vton_ros.goals.admission import Request
from vton_ros.pipeline.catvton import CatVTONPipeline
from vton_ros.pipeline.device import configure_torch
from vton_ros.pipeline.options import PipelineOptions
from vton_ros.settings.views import CatVTONCall

pytestmark = pytest.mark.cuda
DEMO = {'base_model': str(ROOT / 'models/demo/base'), 'vae': str(ROOT / 'models/demo/vae'),
        'attn_ckpt': str(ROOT / 'models/demo/catvton')}
H, W = 64, 48  # tiny weights


@pytest.fixture(scope='module', autouse=True)
def cuda():
    assert torch.cuda.is_available(), ('these tests need CUDA (torch '
                                       f'{torch.__version__} sees no GPU)')
    return torch.device('cuda')


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (inf when equal)."""
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float('inf') if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def run(pipe, inputs, height, width, **kwargs):
    return pipe(*inputs, num_inference_steps=6, height=height, width=width, seed=3,
                **kwargs).image


@pytest.fixture(scope='module')
def demo_reference(inputs):
    pipe = CatVTONPipeline.from_pretrained(**DEMO, attn_version='mix', device='cpu',
                                           dtype='fp32', local_files_only=True)
    return run(pipe, inputs, 128, 96)


@pytest.mark.parametrize('dtype, min_psnr', [('fp32', 40.0), ('fp16', 30.0), ('bf16', 25.0)])
def test_cuda_precisions_match_cpu_fp32_on_the_demo_model(demo_reference, inputs, dtype,
                                                          min_psnr):
    pipe = CatVTONPipeline.from_pretrained(**DEMO, attn_version='mix', device='cuda',
                                           dtype=dtype, local_files_only=True)
    image = run(pipe, inputs, 128, 96)
    assert image.shape == demo_reference.shape
    assert psnr(image, demo_reference) >= min_psnr, (dtype, psnr(image, demo_reference))


@pytest.fixture(scope='module')
def tiny_reference(tiny, inputs):
    pipe = CatVTONPipeline.from_pretrained(**tiny, attn_version='vitonhd', device='cuda',
                                           dtype='fp32', local_files_only=True)
    return pipe, run(pipe, inputs, H, W)


@pytest.mark.parametrize('offload', ['model', 'sequential'])
def test_offload_modes_give_the_same_image(tiny, inputs, tiny_reference, offload):
    pipe = CatVTONPipeline.from_pretrained(**tiny, attn_version='vitonhd', device='cuda',
                                           dtype='fp32', offload=offload,
                                           local_files_only=True)
    image = run(pipe, inputs, H, W)
    assert np.abs(image.astype(int) - tiny_reference[1]).max() <= 1
    assert next(pipe.unet.parameters()).device.type != 'cuda'  # not resident on the GPU


def test_out_of_memory_ends_the_goal_and_the_next_one_works(tiny_reference, inputs, cuda):
    pipe, reference = tiny_reference
    person, garment, mask = inputs
    call = dataclasses.replace(CatVTONCall.defaults(), height=8192, width=6144,
                               num_inference_steps=2, seed=3, repaint=False)
    request = Request(garment, 'image', 'upper', person, mask, call)
    total = torch.cuda.get_device_properties(cuda).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, 2 * 2 ** 30 / total), cuda)
    try:
        with pytest.raises(Exception) as caught:
            tryon_core.try_on(pipe, request, person, mask, dict.fromkeys(tryon_core.STAGES, 0.0),
                              None, attn_version='vitonhd')
        error = tryon_core.goal_error(caught.value)
        assert error.code == 'OUT_OF_MEMORY', error
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, cuda)
    assert np.array_equal(run(pipe, inputs, H, W), reference)  # recovered, same image


def test_memory_fraction_caps_the_allocator(cuda):
    total = torch.cuda.get_device_properties(cuda).total_memory
    configure_torch(cuda, gpu_memory_fraction=0.25)
    try:
        with pytest.raises(torch.cuda.OutOfMemoryError):
            torch.empty(int(total * 0.3), dtype=torch.uint8, device=cuda)
        block = torch.empty(int(total * 0.1), dtype=torch.uint8, device=cuda)
        del block
    finally:
        configure_torch(cuda, gpu_memory_fraction=1.0)
        torch.cuda.set_per_process_memory_fraction(1.0, cuda)
        torch.cuda.empty_cache()


def test_cudnn_benchmark_keeps_the_image(tiny_reference, inputs, cuda):
    pipe, reference = tiny_reference
    configure_torch(cuda, cudnn_benchmark=True)
    try:
        assert torch.backends.cudnn.benchmark
        image = run(pipe, inputs, H, W)
    finally:
        configure_torch(cuda, cudnn_benchmark=False)
    assert psnr(image, reference) >= 40.0


@pytest.mark.parametrize('provider', ['cuda', 'tensorrt'])
def test_onnxruntime_gpu_providers_equal_torch(onnx_export, tiny, inputs, provider):
    have = ort.get_available_providers()
    wanted = {'cuda': 'CUDAExecutionProvider', 'tensorrt': 'TensorrtExecutionProvider'}
    if wanted[provider] not in have:
        pytest.skip(f'onnxruntime {ort.__version__} has no {wanted[provider]} (it has '
                    f'{", ".join(have)}): to run it, install onnxruntime-gpu (Jetson: the '
                    'JetPack wheel) into .venv in place of onnxruntime, then run '
                    '`bash scripts/gpu_check.sh`')
    torch_pipe = CatVTONPipeline.from_pretrained(**tiny, attn_version='vitonhd', device='cpu',
                                                 dtype='fp32', local_files_only=True)
    ort_pipe = CatVTONPipeline.from_onnx(str(onnx_export), f'{provider},cpu', 'dpmpp_2m',
                                         options=PipelineOptions())
    a, b = run(torch_pipe, inputs, H, W), run(ort_pipe, inputs, H, W)
    assert np.abs(a.astype(int) - b).max() <= 2  # TF32/TensorRT kernels: within 2/255
