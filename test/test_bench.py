"""vton_bench: FLOP counter, statistics, sweep plans, end-to-end smoke runs (no timing asserts)."""

import json
import mmap
import os
from pathlib import Path
import subprocess
import sys

import pytest
import torch
from torch import nn

from vton_ros.bench.flops import catvton_flops, count_flops, segmentation_flops
from vton_ros.bench.plan import (CPU_FP16_REASON, CPU_FRACTION_REASON, default_plan,
                                 plan_runs, PROFILE_FIELDS, RunConfig, setting_name, SWEEPS)
from vton_ros.bench.timing import PeakMemory, summarize
from vton_ros.pipeline.options import TIMING_KEYS
from vton_ros.pipeline.random_weights import sd15_inpaint_unet_config, sd_vae_config
from vton_ros.tools import vton_bench

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def test_flop_counter_matches_analytic_count_on_meta():
    with torch.device('meta'):
        model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                              nn.Linear(8 * 16 * 12, 10))
    x = torch.empty(2, 3, 16, 12, device='meta')
    conv = 2 * 2 * 8 * 16 * 12 * 3 * 3 * 3   # 2 * N * Cout * H * W * Cin * kh * kw
    linear = 2 * 2 * (8 * 16 * 12) * 10       # 2 * N * in * out
    assert count_flops(model, x) == conv + linear


def test_catvton_flops_match_reference_numbers():
    """The SD1.5-inpainting UNet / SD VAE counts recorded in ENVIRONMENT.md (GFLOP)."""
    flops = catvton_flops(sd15_inpaint_unet_config(), sd_vae_config(), 512, 384, cfg=False)
    assert flops.unet_forward / 1e9 == pytest.approx(1249, rel=0.005)
    assert flops.vae_encode_image / 1e9 == pytest.approx(831, rel=0.005)
    assert flops.vae_decode / 1e9 == pytest.approx(1879, rel=0.005)
    with_cfg = catvton_flops(sd15_inpaint_unet_config(), sd_vae_config(), 512, 384, cfg=True)
    assert with_cfg.unet_batch == 2 and with_cfg.unet_forward == 2 * flops.unet_forward
    stages = with_cfg.stage_flops(steps=10, encoded_images=2)
    assert stages['denoise'] == 10 * with_cfg.unet_forward
    assert stages['vae_encode'] == 2 * flops.vae_encode_image
    assert segmentation_flops(512, 384) / 1e9 == pytest.approx(63.8, rel=0.01)


def test_summarize_median_spread_and_single_sample():
    stats = summarize([3.0, 1.0, 2.0, 10.0])
    assert (stats.median, stats.minimum, stats.maximum, stats.n) == (2.5, 1.0, 10.0, 4)
    assert stats.q1 <= stats.median <= stats.q3
    assert stats.to_dict()['samples'] == [3.0, 1.0, 2.0, 10.0]
    one = summarize([0.5]).to_dict()
    assert one['median'] == one['min'] == one['max'] == one['q1'] == one['q3'] == 0.5
    with pytest.raises(ValueError):
        summarize([])


def test_plan_all_on_cpu_skips_with_reasons_never_silently():
    base = RunConfig()
    runs = plan_runs(SWEEPS, base, default_plan(base, reduced=True), 'cpu')
    skipped = {(r.sweep, r.config.precision, r.config.memory_fraction): r.skip_reason
               for r in runs if r.skip_reason}
    assert skipped == {('precision', 'fp16', 1.0): CPU_FP16_REASON,
                       ('memory', 'bf16', 0.85): CPU_FRACTION_REASON}
    steps = [r.config for r in runs if r.sweep == 'steps']
    assert sorted({(c.scheduler, c.steps) for c in steps}) == sorted(
        (s, n) for s in ('ddim', 'dpmpp_2m') for n in (50, 20, 15, 10))
    assert [r.config for r in runs if r.sweep == 'stages'] == [base]
    on_gpu = plan_runs(SWEEPS, base, default_plan(base, reduced=False), 'cuda')
    assert not [r for r in on_gpu if r.skip_reason]
    assert {(r.config.height, r.config.width) for r in on_gpu if r.sweep == 'resolution'} == {
        (1024, 768), (512, 384), (256, 192)}


def test_peak_memory_sees_an_allocation_on_cpu():
    size = 64 * 1024 * 1024
    with PeakMemory(torch.device('cpu')) as memory:
        # fresh pages (an allocator may hand back a freed block that is still resident,
        # after earlier tests in this worker): 64 MB, each page touched
        block = mmap.mmap(-1, size)
        for offset in range(0, size, mmap.PAGESIZE):
            block[offset] = 1
        block.close()
    assert memory.peak_mb > 0 and memory.method
    if 'VmHWM' in memory.method:
        assert memory.increase_mb >= 48


def test_missing_real_weights_name_the_fix(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setenv('HF_HUB_CACHE', str(tmp_path / 'empty_cache'))
    rc = vton_bench.main(['--device', 'cpu', '--out', str(tmp_path / 'out')])
    err = capsys.readouterr().err
    assert rc == 2
    assert 'fetch_weights' in err and '--random-weights' in err
    assert not (tmp_path / 'out').exists()


def run_bench(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE='1', PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, '-m', 'vton_ros.tools.vton_bench', *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def check_reports(out: Path) -> dict:
    doc = json.loads((out / 'results.json').read_text())
    assert doc['random_weights'] is True and 'RANDOM' in doc['banner']
    for key in ('machine', 'settings', 'configs', 'sweeps', 'notes', 'weights'):
        assert key in doc
    for key in ('cpu_model', 'torch', 'diffusers', 'device', 'device_name'):
        assert doc['machine'][key]
    measured = [c for c in doc['configs'] if c['status'] == 'ok']
    assert measured
    for result in measured:
        for key in TIMING_KEYS:
            stats = result['timings'][key]
            assert {'median', 'min', 'max', 'n'} <= set(stats)
            if key != 'safety_check':
                assert stats['min'] > 0
        for key in ('vae_encode', 'denoise', 'vae_decode', 'total'):
            assert result['flops_g'][key] > 0 and result['gflops_per_s'][key] > 0
        assert result['memory']['peak_mb'] > 0
    for result in doc['configs']:
        if result['status'] != 'ok':
            assert result['skip_reason']
    report = (out / 'report.md').read_text()
    assert 'RANDOM WEIGHTS' in report and 'Table 2' in report
    stages = (out / 'stages.png').read_bytes()
    assert stages.startswith(PNG_MAGIC) and len(stages) > 1000
    return doc


@pytest.mark.slow
def test_sweep_all_end_to_end_on_tiny_test_weights(tmp_path, tiny):
    """Every sweep at 64x48 on make_test_weights folders (detected as RANDOM weights)."""
    paths = tiny
    out = tmp_path / 'out'
    proc = run_bench(['--base-model', paths['base_model'], '--vae', paths['vae'],
                      '--attn-ckpt', paths['attn_ckpt'], '--device', 'cpu',
                      '--precision', 'fp32', '--height', '64', '--width', '48', '--steps', '2',
                      '--sweep', 'all', '--repeats', '2', '--threads', '1',
                      '--sizes', '64x48,72x56', '--sweep-size', '64x48', '--steps-size', '64x48',
                      '--steps-list', '2,1', '--memory-size', '64x48',
                      '--memory-steps', '1', '--out', str(out)])
    assert 'RANDOM WEIGHTS' in proc.stdout
    doc = check_reports(out)
    assert set(doc['sweeps']) == set(SWEEPS)
    stages = next(c for c in doc['configs'] if 'stages' in c['sweeps'])
    assert stages['timings']['segmentation']['median'] > 0
    assert set(stages['segmentation']) == {'pose', 'unet'}
    assert set(stages['overhead']) == {'vae_encode', 'denoise', 'vae_decode'}
    assert (out / 'steps.png').read_bytes().startswith(PNG_MAGIC)
    skipped = [c for c in doc['configs'] if c['status'] == 'skipped']
    assert {c['config']['precision'] for c in skipped} >= {'fp16'}


@pytest.mark.slow
def test_full_size_random_weights_smoke(tmp_path):
    """--random-weights builds the real SD1.5/VAE shapes; one 1-step run at 64x48 (fp32)."""
    out = tmp_path / 'out'
    proc = run_bench(['--random-weights', '--device', 'cpu', '--precision', 'fp32',
                      '--height', '64', '--width', '48', '--steps', '1', '--warmup-steps', '1',
                      '--repeats', '1', '--segmentation', 'none', '--no-overhead',
                      '--out', str(out)])
    assert 'RANDOM WEIGHTS' in proc.stdout and 'FULL-SIZE' in proc.stdout
    doc = check_reports(out)
    result = doc['configs'][0]
    assert 'FULL-SIZE' in doc['weights']
    assert result['flops_g']['unet_forward'] > 30  # SD1.5 UNet at batch 2, 64x48


@pytest.mark.slow
def test_compare_paper_exact_fast_on_tiny_test_weights(tmp_path, tiny):
    """--compare runs the named configurations interleaved and reports them side by side."""
    paths = tiny
    out = tmp_path / 'out'
    proc = run_bench(['--base-model', paths['base_model'], '--vae', paths['vae'],
                      '--attn-ckpt', paths['attn_ckpt'], '--tiny-vae', paths['tiny_vae'],
                      '--device', 'cpu', '--precision', 'fp32', '--height', '64',
                      '--width', '48', '--steps', '4', '--repeats', '2', '--threads', '1',
                      '--compare', 'paper,exact-fastest,fast', '--out', str(out)])
    assert 'RANDOM WEIGHTS' in proc.stdout
    doc = json.loads((out / 'compare.json').read_text())
    assert doc['random_weights'] and doc['repeats'] == 2
    results = {r['name']: r for r in doc['results']}
    assert list(results) == ['paper', 'exact-fastest', 'fast']
    # paper: CFG on all 4 steps; fast: CFG on steps 0-1, full forwards on steps 0 and 3
    assert results['paper']['unet'] == {'forwards': 4, 'full': 4, 'shallow': 0,
                                        'batch_sizes': {'2': 4}}
    assert results['fast']['unet'] == {'forwards': 4, 'full': 2, 'shallow': 2,
                                       'batch_sizes': {'1': 2, '2': 2}}
    assert results['paper']['vs_paper']['max_abs_diff'] == 0
    assert results['exact-fastest']['vs_paper']['max_abs_diff'] <= 1
    for result in results.values():
        assert result['deterministic']
        assert result['speedup']['n'] == 2 and result['speedup']['median'] > 0
        assert result['timings']['total']['n'] == 2 and result['memory']['peak_mb'] > 0
        assert 0 <= result['overhead_pct']['median'] < 100
        assert 0 <= result['vs_paper']['ssim'] <= 1
    assert results['exact-fastest']['garment_cached'] and not results['paper']['garment_cached']
    for backend in ('pose', 'unet'):
        assert doc['segmentation'][backend]['fps'] > 0
        assert doc['segmentation'][backend]['frame'] == '640x480'
    report = (out / 'compare.md').read_text()
    assert 'RANDOM WEIGHTS' in report and '| **fast** |' in report and 'fps' in report
    assert (out / 'compare.png').read_bytes().startswith(PNG_MAGIC)


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available() or Path('/proc/driver/nvidia/version').exists(),
                    reason='a CUDA machine: scripts/gpu_check.sh runs its checks there')
def test_gpu_check_without_cuda_says_so_in_one_line_and_exits_0(tmp_path):
    run = subprocess.run(['bash', str(ROOT / 'scripts' / 'gpu_check.sh'), str(tmp_path / 'out')],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        'gpu_check: no CUDA GPU on this machine (no NVIDIA driver, torch sees none): '
        'nothing to check']
    assert not (tmp_path / 'out').exists()


@pytest.mark.slow
def test_compare_the_profiles_the_tiny_encoder_and_onnxruntime(tiny, onnx_export, tmp_path):
    """The shipped profiles by name, the encoder lever, and the ORT backend beside torch."""
    out = tmp_path / 'out'
    run_bench(['--base-model', tiny['base_model'], '--vae', tiny['vae'], '--attn-ckpt',
               tiny['attn_ckpt'], '--attn-version', 'vitonhd', '--tiny-vae', tiny['tiny_vae'],
               '--device', 'cpu', '--precision', 'fp32', '--height', '64', '--width', '48',
               '--steps', '4', '--repeats', '1', '--threads', '1', '--segmentation', 'none',
               '--onnx-dir', str(onnx_export), '--out', str(out),
               '--compare', 'paper,tryon,fast_cpu,tiny-encoder,onnxruntime'])
    results = {r['name']: r for r in json.loads((out / 'compare.json').read_text())['results']}
    fast_cpu = results['fast_cpu']
    settings = fast_cpu['settings']  # config/tryon.yaml, then config/fast_cpu.yaml
    assert set(settings) == {setting_name(f) for f in PROFILE_FIELDS}  # every option
    assert settings.items() >= {
        'catvton.repaint': False, 'catvton.guidance_start': 0.0, 'catvton.guidance_end': 0.5,
        'catvton.cache_interval': 3, 'catvton.cache_branch': 0,
        'catvton.attention_slicing': 'none', 'catvton.vae_slicing': False,
        'catvton.vae_tiling': False, 'catvton.channels_last': True,
        'catvton.compile_unet': False, 'catvton.decoder': 'tiny',
        'catvton.preview_decoder': 'tiny', 'catvton.offload': 'none',
        'catvton.sdpa_backend': 'auto', 'catvton.encoder': 'tiny'}.items()
    assert fast_cpu['unet'] == {'forwards': 4, 'full': 2, 'shallow': 2,
                                'batch_sizes': {'1': 2, '2': 2}}
    assert not fast_cpu['garment_cached'] and not results['tryon']['garment_cached']
    assert results['tryon']['settings']['catvton.vae_slicing'] is True  # config/tryon.yaml
    assert results['tryon']['vs_paper']['max_abs_diff'] <= 1  # slicing keeps the image
    assert results['tiny-encoder']['vs_paper']['max_abs_diff'] > 1  # TAESD: approximate
    ort = results['onnxruntime']
    assert ort['vs_paper']['max_abs_diff'] <= 1 and ort['overhead_pct'] is None
    assert ort['timings']['total']['median'] > 0
    assert '- (onnxruntime)' in (out / 'compare.md').read_text()


@pytest.mark.slow
def test_quality_over_held_out_pairs(tiny, tmp_path):
    """--compare NAMES --pairs DIR: each configuration once per pair, against paper and target."""
    from vton_ros.training.tryon_data import make_tryon_dataset

    make_tryon_dataset(str(tmp_path / 'pairs'), n_train=0, n_test=3, height=64, width=48)
    out = tmp_path / 'out'
    run_bench(['--base-model', tiny['base_model'], '--vae', tiny['vae'], '--attn-ckpt',
               tiny['attn_ckpt'], '--attn-version', 'vitonhd', '--device', 'cpu',
               '--precision', 'fp32', '--height', '64', '--width', '48', '--steps', '3',
               '--threads', '1', '--segmentation', 'none', '--pairs', str(tmp_path / 'pairs'),
               '--compare', 'paper,exact-fastest,deepcache', '--out', str(out)])
    doc = json.loads((out / 'quality.json').read_text())
    assert doc['pairs'] == 3 and doc['random_weights']
    results = {r['name']: r for r in doc['results']}
    assert results['paper']['identical_to_paper'] == 3 == results['exact-fastest'][
        'identical_to_paper']
    assert results['paper']['paper_psnr_db'] == 99.0 and results['paper']['paper_ssim'] == 1.0
    deep = results['deepcache']
    assert deep['identical_to_paper'] < 3 and deep['paper_psnr_db'] < 99.0
    for result in results.values():
        assert 0 < result['target_psnr_db'] < 99.0 and -1 <= result['target_ssim'] <= 1
        if doc['coloured_pairs']:
            assert 0 <= result['colour'] <= 1 and 0 <= result['target_colour'] <= 1
    import cv2
    panel = cv2.imread(str(out / 'quality.png'))
    assert panel.shape == (2 * 3 * 64, 2 * 5 * 48, 3)  # pairs x (garment, target, 3 configs)
    assert '| **deepcache** |' in (out / 'quality.md').read_text()
