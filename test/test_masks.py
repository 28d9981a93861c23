"""Agnostic mask generators: pose backend on real portraits, U-Net geometry, errors, CLI."""

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from vton_ros.media.samples import garment, portrait
from vton_ros.pipeline.masks import (create_mask_generator,
                                     MaskResult, overlay_mask)
from vton_ros.pipeline.segmentation import (build_model, CheckpointError, load_checkpoint,
                                            model_from_checkpoint, save_checkpoint,
                                            SegmentationConfig, Segmenter)
from vton_ros.settings.choices import CLOTH_TYPES, MASK_BACKENDS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = SegmentationConfig(encoder='resnet18', encoder_depth=4, decoder_channels=(32, 16, 8, 8),
                          height=64, width=48)

# BlazePose indices used by the checks
NOSE, L_EYE, R_EYE, MOUTH_L, MOUTH_R = 0, 2, 5, 9, 10
L_SH, R_SH, L_EL, R_EL, R_INDEX, L_HIP, R_HIP = 11, 12, 13, 14, 20, 23, 24


@pytest.fixture(scope='module')
def pose_gen():
    with create_mask_generator('pose') as gen:
        yield gen


@pytest.fixture(scope='module')
def portraits(pose_gen):
    out = {}
    for name in ('astronaut', 'grace_hopper'):
        rgb = portrait(name)
        out[name] = (rgb, {ct: pose_gen(rgb, ct) for ct in CLOTH_TYPES})
    return out


def _on(mask: np.ndarray, xy: np.ndarray) -> bool:
    x, y = int(round(xy[0])), int(round(xy[1]))
    return bool(mask[y, x] > 0)


@pytest.mark.parametrize('name', ['astronaut', 'grace_hopper'])
def test_pose_upper_mask_covers_torso_and_arms_keeps_face(portraits, name):
    rgb, results = portraits[name]
    res = results['upper']
    h, w = rgb.shape[:2]
    assert isinstance(res, MaskResult)
    assert res.person_found and res.status == 'ok'
    assert res.mask.shape == (h, w) and res.mask.dtype == np.uint8
    assert set(np.unique(res.mask)) <= {0, 255}
    assert 0.15 < (res.mask > 0).mean() < 0.6
    lm = res.landmarks[:, :2]
    mid_sh = (lm[L_SH] + lm[R_SH]) / 2
    mid_hip = (lm[L_HIP] + lm[R_HIP]) / 2
    chest = mid_sh + 0.3 * (mid_hip - mid_sh)
    assert chest[1] < h and _on(res.mask, chest), 'chest between the shoulders not masked'
    for sh in (L_SH, R_SH):
        assert _on(res.mask, lm[sh]), 'shoulder not masked'
    for sh, el in ((L_SH, L_EL), (R_SH, R_EL)):
        upper_arm = (lm[sh] + lm[el]) / 2
        if upper_arm[1] < h:
            assert _on(res.mask, upper_arm), 'upper arm not masked'
    eyes = (lm[L_EYE] + lm[R_EYE]) / 2
    mouth = (lm[MOUTH_L] + lm[MOUTH_R]) / 2
    face = np.zeros((h, w), np.uint8)
    radius = int(0.8 * np.linalg.norm(mouth - eyes))
    cv2.circle(face, tuple(int(v) for v in (eyes + mouth) / 2), radius, 1, -1)
    assert not (res.mask[face > 0]).any(), 'face (eyes, nose, mouth) masked'
    assert not res.mask[:int(eyes[1])].any(), 'hair / top of the head masked'
    assert res.mask[:10, :10].max() == 0 and res.mask[:10, -10:].max() == 0


def test_pose_keeps_visible_hand(portraits):
    rgb, results = portraits['astronaut']
    res = results['upper']
    hand = res.landmarks[R_INDEX, :2]  # the gloved hand, bottom left of the photo
    assert hand[1] < rgb.shape[0]
    assert not _on(res.mask, hand)


@pytest.mark.parametrize('name', ['astronaut', 'grace_hopper'])
def test_pose_upper_lower_overall_relations(portraits, name):
    rgb, results = portraits[name]
    upper, lower, overall = (results[c].mask > 0 for c in CLOTH_TYPES)
    lm = results['upper'].landmarks
    assert lower.mean() < upper.mean()
    shoulder_y = int(min(lm[L_SH, 1], lm[R_SH, 1]))
    assert not lower[:shoulder_y].any(), 'lower mask reaches above the shoulders'
    missing = (upper | lower) & ~overall
    assert missing.mean() < 0.001
    assert overall.mean() <= (upper | lower).mean() + 0.05


def test_pose_lower_out_of_frame_is_reported(portraits):
    _, results = portraits['grace_hopper']  # head-and-shoulders photo: no legs in frame
    res = results['lower']
    assert res.person_found and res.status == 'region not visible' and not res.mask.any()


@pytest.mark.parametrize('image', [garment('tshirt', height=300, width=200),
                                   np.full((240, 320, 3), 128, np.uint8)],
                         ids=['garment', 'flat'])
def test_pose_no_person(pose_gen, image):
    res = pose_gen(image, 'upper')
    assert not res.person_found and res.status == 'no person'
    assert res.mask.shape == image.shape[:2] and not res.mask.any()


def test_pose_odd_size(pose_gen):
    rgb = np.ascontiguousarray(portrait('astronaut')[20:353, 7:424])  # 333 x 417
    res = pose_gen(rgb, 'upper')
    assert res.mask.shape == (333, 417) and res.person_found and res.mask.any()


def test_bad_inputs(pose_gen):
    with pytest.raises(ValueError, match='uint8'):
        pose_gen(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match='HxWx3'):
        pose_gen(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match='upper, lower, overall'):
        pose_gen(np.zeros((10, 10, 3), np.uint8), cloth_type='shoes')
    with pytest.raises(ValueError, match='pose, unet'):
        create_mask_generator('sam')
    with pytest.raises(ValueError, match='train_segmentation'):
        create_mask_generator('unet')
    with pytest.raises(ValueError, match='threshold'):
        create_mask_generator('pose', threshold=1.5)
    assert MASK_BACKENDS == ('pose', 'unet')


def _save_tiny(path: str, bias: float, config: SegmentationConfig = TINY) -> None:
    torch.manual_seed(0)
    model = build_model(config)
    with torch.no_grad():  # a constant answer makes the geometry checkable
        for p in model.segmentation_head.parameters():
            p.zero_()
        model.segmentation_head[0].bias.fill_(bias)
    save_checkpoint(path, model, config, {'epoch': 0})


@pytest.mark.parametrize('size', [(333, 517), (517, 333), (64, 48), (31, 500)])
def test_unet_mask_restored_to_input_size(tmp_path, size):
    path = str(tmp_path / 'all.pt')
    _save_tiny(path, 10.0)
    h, w = size
    rgb = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    with create_mask_generator('unet', checkpoint=path, device='cpu') as gen:
        res = gen(rgb, 'upper')
    assert res.mask.shape == (h, w) and res.person_found and res.status == 'ok'
    # the centre crop with the model's 4:3 aspect is masked, the cut-off sides are not
    if h * 48 > w * 64:
        crop_h = round(w * 64 / 48)
        top = (h - crop_h) // 2
        assert res.mask[top:top + crop_h].min() == 255
        assert res.mask[:top].max(initial=0) == 0
        assert res.mask[top + crop_h:].max(initial=0) == 0
    else:
        crop_w = round(h * 48 / 64)
        left = (w - crop_w) // 2
        assert res.mask[:, left:left + crop_w].min() == 255
        assert res.mask[:, :left].max(initial=0) == 0
        assert res.mask[:, left + crop_w:].max(initial=0) == 0


def test_unet_empty_prediction_is_no_person_and_cloth_type_checked(tmp_path):
    path = str(tmp_path / 'none.pt')
    _save_tiny(path, -10.0)
    with create_mask_generator('unet', checkpoint=path, device='cpu', precision='fp32') as gen:
        res = gen(np.zeros((100, 80, 3), np.uint8))
        assert not res.person_found and res.status == 'no person' and not res.mask.any()
        with pytest.raises(ValueError, match="backend 'pose'"):
            gen(np.zeros((100, 80, 3), np.uint8), cloth_type='lower')


def test_unet_threshold_and_bf16(tmp_path):
    path = str(tmp_path / 'half.pt')
    _save_tiny(path, 0.0)  # probability exactly 0.5 everywhere
    rgb = np.zeros((64, 48, 3), np.uint8)
    assert Segmenter.from_pretrained(path, 'cpu', 'fp32', threshold=0.4).predict(rgb).all()
    assert not Segmenter.from_pretrained(path, 'cpu', 'fp32', threshold=0.6).predict(rgb).any()
    seg = Segmenter.from_pretrained(path, 'cpu', 'bf16')
    prob = seg.predict_proba(rgb)
    assert prob.dtype == np.float32 and np.allclose(prob, 0.5, atol=0.01)


def test_checkpoint_roundtrip_and_errors(tmp_path):
    good = str(tmp_path / 'good.pt')
    _save_tiny(good, 1.0)
    ckpt = load_checkpoint(good)
    assert ckpt.config == TINY and ckpt.metadata == {'epoch': 0} and ckpt.training is None
    with pytest.raises(FileNotFoundError, match='train_segmentation'):
        load_checkpoint(str(tmp_path / 'missing.pt'))
    junk = tmp_path / 'junk.pt'
    junk.write_bytes(b'not a checkpoint at all')
    with pytest.raises(CheckpointError, match='not a readable'):
        load_checkpoint(str(junk))
    other = tmp_path / 'other.pt'
    torch.save({'state_dict': {}}, other)
    with pytest.raises(CheckpointError, match='not a vton_ros segmentation checkpoint'):
        load_checkpoint(str(other))
    with pytest.raises(CheckpointError, match='config mismatch.*encoder'):
        load_checkpoint(good, expect={'encoder': 'resnet50'})
    # weights of one architecture stored under another's config
    wrong = str(tmp_path / 'wrong.pt')
    model = build_model(TINY)
    save_checkpoint(wrong, model, SegmentationConfig(encoder='resnet34', encoder_depth=4,
                                                     decoder_channels=(32, 16, 8, 8),
                                                     height=64, width=48))
    with pytest.raises(CheckpointError, match='do not match'):
        model_from_checkpoint(load_checkpoint(wrong), wrong)
    with pytest.raises(ValueError, match='multiples of 16'):
        SegmentationConfig(encoder='resnet18', encoder_depth=4,
                           decoder_channels=(32, 16, 8, 8), height=60, width=48)


def test_overlay():
    rgb = np.full((50, 40, 3), 100, np.uint8)
    mask = np.zeros((50, 40), np.uint8)
    mask[10:30, 10:30] = 255
    out = overlay_mask(rgb, mask)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert not np.array_equal(out[20, 20], rgb[20, 20])
    assert np.array_equal(out[45, 35], rgb[45, 35])
    with pytest.raises(ValueError, match='mask shape'):
        overlay_mask(rgb, mask[:10])


def _run_cli(module: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, '-m', module, *args], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=600)  # hang guard only


@pytest.mark.slow
def test_make_masks_cli_pose(tmp_path):
    src = tmp_path / 'in'
    src.mkdir()
    astro = portrait('astronaut')
    cv2.imwrite(str(src / 'astronaut.png'), cv2.cvtColor(astro, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(src / 'shirt.jpg'), garment('tshirt', height=301, width=203))
    out = tmp_path / 'out'
    proc = _run_cli('vton_ros.tools.make_masks', '--backend', 'pose', '--input', str(src),
                    '--out', str(out))
    assert proc.returncode == 0, proc.stderr
    assert 'no person' in proc.stdout
    mask = cv2.imread(str(out / 'astronaut_mask.png'), cv2.IMREAD_UNCHANGED)
    overlay = cv2.imread(str(out / 'astronaut_overlay.png'), cv2.IMREAD_COLOR)
    assert mask.shape == (512, 512) and overlay.shape == (512, 512, 3)
    assert 0.15 < (mask > 0).mean() < 0.6
    empty = cv2.imread(str(out / 'shirt_mask.png'), cv2.IMREAD_UNCHANGED)
    assert empty.shape == (301, 203) and not empty.any()
    assert (out / 'shirt_overlay.png').is_file()


@pytest.mark.slow
def test_make_masks_cli_unet_errors(tmp_path):
    img = tmp_path / 'a.png'
    cv2.imwrite(str(img), np.zeros((10, 10, 3), np.uint8))
    proc = _run_cli('vton_ros.tools.make_masks', '--backend', 'unet', '--input', str(img),
                    '--out', str(tmp_path / 'o'))
    assert proc.returncode == 2 and 'train_segmentation' in proc.stderr


@pytest.mark.slow
def test_the_pose_masker_loads_no_torch_and_torchvision_still_imports_after_it():
    """segmentation_node with the pose masker: no torch; the torchvision shim runs later."""
    code = ('import sys; import vton_ros.nodes.segmentation_node; '
            'from vton_ros.pipeline.masks import create_mask_generator; '
            'create_mask_generator("pose").close(); '
            'assert "torch" not in sys.modules and "torchvision" not in sys.modules; '
            'import segmentation_models_pytorch as smp; '
            'smp.Unet("resnet18", encoder_weights=None, classes=1); '
            'import torchvision.ops; from diffusers import UNet2DConditionModel')
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
