"""Person-centred framing (issue 25): the box the model sees and the paste back."""

import cv2
import numpy as np
import pytest

from vton_ros.pipeline import framing
from vton_ros.pipeline.framing import (bounds_of, crop, frame_box, mark_person, paste,
                                       paste_alpha, PERSON_LEVEL, split_mask)
from vton_ros.pipeline.preprocess import centre_crop_box, cover_resize

H, W = 512, 384  # the model's input (3:4)


def draw_person(frame_h, frame_w, cx, top, height, arm_span=1.0, seed=0):
    """
    Draw a person: (RGB frame, HxW bool silhouette, HxW uint8 0/255 upper-body mask).

    cx, top: centre column and head top in pixels; height: head to feet; arm_span: arms'
    reach either side in units of the shoulder width. The background is noise.
    """
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (frame_h, frame_w, 3), dtype=np.uint8)
    body = np.zeros((frame_h, frame_w), np.uint8)
    upper = np.zeros_like(body)
    u = height / 8.0  # head heights
    sh = int(0.9 * u)  # half shoulder width
    head = (int(cx), int(top + 0.5 * u))
    cv2.ellipse(body, head, (int(0.35 * u), int(0.5 * u)), 0, 0, 360, 255, -1)
    shoulders, hips = int(top + 1.4 * u), int(top + 4.0 * u)
    cv2.rectangle(upper, (int(cx - sh), shoulders), (int(cx + sh), hips), 255, -1)
    cv2.rectangle(upper, (int(cx - 0.15 * u), int(top + u)), (int(cx + 0.15 * u), shoulders),
                  255, -1)  # neck
    reach = arm_span * 2 * sh
    for side in (-1, 1):
        cv2.line(upper, (int(cx + side * sh), shoulders + 5),
                 (int(cx + side * (sh + reach)), int(top + 3.6 * u)), 255, max(2, int(0.4 * u)))
        cv2.line(body, (int(cx + side * 0.4 * sh), hips), (int(cx + side * 0.5 * sh),
                                                           int(top + height)),
                 255, max(2, int(0.6 * u)))
    body |= upper
    rgb[body > 0] = (200, 40, 40)
    mask = cv2.dilate(upper, np.ones((5, 5), np.uint8))
    return rgb, body > 0, mask


def model_round_trip(frame, mask, box):
    """Crop the box, 'generate' a flat result (unlike the person), paste it into the frame."""
    assert crop(frame, box, H, W).shape == (H, W, 3)
    result = np.zeros((H, W, 3), np.uint8)
    result[:] = (20, 250, 120)
    return paste(result, box, frame, mask)


def unrepainted(frame, mask, out):
    """Count the mask pixels the paste left as they were in the frame."""
    same = (out == frame).all(axis=2)
    return int(np.count_nonzero(same & (mask >= 128)))


# ------------------------------------------------------------------ centre: today's path


@pytest.mark.parametrize('size', [(480, 640), (720, 1280), (1920, 1080), (512, 384),
                                  (333, 517)])
def test_centre_is_todays_crop_bit_for_bit(size):
    frame, _, mask = draw_person(*size, cx=size[1] * 0.3, top=10, height=size[0] * 0.9)
    box = frame_box(*size, H, W, 'centre', mask)
    assert box == centre_crop_box(*size, H, W)
    want, want_box = cover_resize(frame, H, W)
    assert want_box == box
    assert np.array_equal(crop(frame, box, H, W), want)
    assert np.array_equal(crop(mask, box, H, W, nearest=True),
                          cover_resize(mask, H, W, nearest=True)[0])


# ------------------------------------------------------------------ person framing


@pytest.mark.parametrize('size, cx', [((480, 640), 150), ((720, 1280), 1000),
                                      ((720, 1280), 230), ((1920, 1080), 700)])
def test_off_centre_person_is_framed_whole_and_every_mask_pixel_repainted(size, cx):
    frame_h, frame_w = size
    frame, person, mask = draw_person(frame_h, frame_w, cx, 0.08 * frame_h, 0.8 * frame_h)
    marked = mark_person(mask, person)
    clean, bounds = split_mask(marked)
    assert np.array_equal(clean, mask) and bounds == bounds_of(person | (mask > 0))

    box = frame_box(frame_h, frame_w, H, W, 'person', clean, bounds)
    assert abs(box.height * W - box.width * H) <= max(H, W)  # the model's aspect
    top, left, bottom, right = bounds
    m_top, m_left, m_bottom, m_right = bounds_of(mask >= 128)
    assert box.top <= m_top and box.left <= m_left  # the whole mask is in the box
    assert box.top + box.height >= m_bottom and box.left + box.width >= m_right
    assert box.top <= top  # and the person's head
    inside_frame = (box.top >= 0 and box.left >= 0 and box.top + box.height <= frame_h
                    and box.left + box.width <= frame_w)
    assert inside_frame
    whole = box.left <= left and box.top + box.height >= bottom and box.left + box.width >= right
    largest = centre_crop_box(frame_h, frame_w, H, W)
    # the whole person, or (the frame too small at 3:4) the largest box it holds
    assert whole or (box.height, box.width) == (largest.height, largest.width)
    assert whole == (size != (1920, 1080))  # a tall person in a portrait frame: legs cut

    out = model_round_trip(frame, mask, box)
    assert out.shape == frame.shape
    assert unrepainted(frame, mask, out) == 0  # no seam: every mask pixel repainted
    outside = mask < 128
    assert np.array_equal(out[outside], frame[outside])

    # today's centre crop: the person stands off-centre, part of the garment is cut off
    centre = frame_box(frame_h, frame_w, H, W, 'centre')
    cut = np.ones_like(outside)
    cut[centre.top:centre.top + centre.height, centre.left:centre.left + centre.width] = False
    if frame_w > frame_h:
        assert np.count_nonzero(cut & (mask >= 128)) > 0


def test_person_fills_more_of_the_input_than_the_centre_crop():
    """A person a third of a 1280x720 frame wide: more model pixels on them (the benchmark)."""
    frame, person, mask = draw_person(720, 1280, 900, 40, 640, arm_span=0.8)
    _, bounds = split_mask(mark_person(mask, person))
    counts = {}
    for mode in ('centre', 'person'):
        box = frame_box(720, 1280, H, W, mode, mask, bounds)
        counts[mode] = np.count_nonzero(crop(person.astype(np.uint8), box, H, W, True))
    assert counts['person'] > 1.2 * counts['centre']


def test_box_is_clamped_inside_the_frame():
    # a person at the left edge: the box starts at 0 instead of past the frame
    frame, person, mask = draw_person(720, 1280, 60, 20, 680, arm_span=0.3)
    bounds = bounds_of(person | (mask > 0))
    box = frame_box(720, 1280, H, W, 'person', mask, bounds)
    assert box.left == 0 and box.top >= 0 and box.top + box.height <= 720
    assert box.left + box.width <= 1280
    assert unrepainted(frame, mask, model_round_trip(frame, mask, box)) == 0


def test_a_frame_too_small_at_the_aspect_is_padded_never_stretched():
    # arms wide in a short landscape frame: a 3:4 box holding them is taller than the frame
    frame, person, mask = draw_person(480, 640, 330, 30, 440, arm_span=2.2)
    bounds = bounds_of(person | (mask > 0))
    box = frame_box(480, 640, H, W, 'person', mask, bounds)
    assert box.height > 480 and box.top < 0 and box.top + box.height > 480
    assert box.width * H == pytest.approx(box.height * W, abs=H)  # aspect kept: no stretch
    model_in = crop(frame, box, H, W)
    pad_rows = round(-box.top * H / box.height)
    first = model_in[:max(1, pad_rows - 2)]  # padding repeats the frame's edge row
    assert (first == first[:1]).all()
    mask_in = crop(mask, box, H, W, nearest=True)
    assert not mask_in[:max(1, pad_rows - 2)].any()  # nothing to repaint in the padding
    assert unrepainted(frame, mask, model_round_trip(frame, mask, box)) == 0


def test_a_person_wider_than_the_frame_holds_keeps_the_mask_whole_without_padding():
    """A square portrait (shoulders past its sides): the largest 3:4 box holding the mask."""
    person = np.zeros((512, 512), bool)
    person[40:, :] = True  # head and shoulders fill the frame's width
    mask = np.zeros((512, 512), np.uint8)
    mask[200:500, 170:470] = 255  # off-centre: past the centre crop (64..448)
    box = frame_box(512, 512, H, W, 'person', mask, bounds_of(person))
    assert (box.top, box.height, box.width) == (0, 512, 384)  # no padding, no stretch
    assert box.left <= 170 and box.left + box.width >= 470
    frame = np.random.default_rng(1).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    assert unrepainted(frame, mask, model_round_trip(frame, mask, box)) == 0


def test_a_3_4_photo_the_person_fills_is_framed_whole_in_both_modes():
    """A photo framed like the paper's: the box is the frame, the model input the same."""
    frame, person, mask = draw_person(1024, 768, 384, 30, 1100)  # feet below the frame
    bounds = bounds_of(person | (mask > 0))
    person_box = frame_box(1024, 768, H, W, 'person', mask, bounds)
    assert (person_box.top, person_box.left, person_box.height, person_box.width) == (
        0, 0, 1024, 768)
    assert person_box == frame_box(1024, 768, H, W, 'centre')
    assert np.array_equal(crop(frame, person_box, H, W), cover_resize(frame, H, W)[0])
    # a bare mask of the same photo (no person known) is grown to the same whole frame
    assert frame_box(1024, 768, H, W, 'person', mask) == person_box


def test_a_bare_mask_is_grown_by_the_body_around_it():
    frame, person, mask = draw_person(720, 1280, 640, 60, 640)
    repaint = bounds_of(mask >= 128)
    box = frame_box(720, 1280, H, W, 'person', mask)
    assert box.top < repaint[0] - 0.3 * (repaint[2] - repaint[0])  # room for the head
    assert box.top + box.height > repaint[2]
    assert box.left <= repaint[1] and box.left + box.width >= repaint[3]


def test_split_mask_ignores_soft_masks_and_other_people():
    mask = np.zeros((100, 100), np.uint8)
    mask[40:60, 40:60] = 255
    soft = cv2.GaussianBlur(mask, (0, 0), 3)
    assert split_mask(soft)[1] is None and split_mask(soft)[0] is soft
    assert split_mask(mask)[1] is None
    person = np.zeros((100, 100), bool)
    person[20:90, 35:65] = True  # the person around the mask
    person[5:15, 80:95] = True  # someone else, apart
    clean, bounds = split_mask(mark_person(mask, person))
    assert np.array_equal(clean, mask) and bounds == (20, 35, 90, 65)
    marked = mark_person(mask, person)
    assert set(np.unique(marked)) == {0, PERSON_LEVEL, 255}
    with pytest.raises(ValueError):
        mark_person(mask, person[:50])


def test_paste_alpha_feathers_inside_the_mask_only():
    mask = np.zeros((200, 150), np.uint8)
    mask[50:150, 30:120] = 255
    alpha = paste_alpha(mask, 200)
    inside = mask >= 128
    assert (alpha[inside] >= 0.5).all() and (alpha[~inside] == 0).all()
    assert alpha[100, 75] == 1.0 and alpha[50, 75] == 0.5  # edge feathered, core whole
    assert 0.5 < alpha[52, 75] < 1.0


def test_paste_refuses_a_mask_outside_the_box_and_bad_names():
    frame, person, mask = draw_person(720, 1280, 1100, 40, 640)
    box = frame_box(720, 1280, H, W, 'centre')
    with pytest.raises(ValueError, match='reaches past the box'):
        paste(np.zeros((H, W, 3), np.uint8), box, frame, mask)
    with pytest.raises(ValueError, match='valid: person, centre'):
        frame_box(720, 1280, H, W, 'middle')


def test_empty_mask_and_no_person_falls_back_to_the_centre_crop():
    assert frame_box(720, 1280, H, W, 'person', np.zeros((720, 1280), np.uint8)) == (
        centre_crop_box(720, 1280, H, W))
    assert framing.union(None, (1, 2, 3, 4)) == (1, 2, 3, 4)


# ------------------------------------------------------------------ end to end


@pytest.fixture(scope='module')
def tiny_pipe(tiny):
    from vton_ros.pipeline.catvton import CatVTONPipeline

    return CatVTONPipeline.from_pretrained(**tiny, device='cpu', dtype='fp32')


@pytest.mark.usefixtures('one_thread')
@pytest.mark.parametrize('size, cx', [((480, 640), 470), ((720, 1280), 260),
                                      ((1920, 1080), 400)])
def test_tiny_pipeline_person_framing_keeps_the_frame_and_repaints_the_whole_mask(
        tiny_pipe, size, cx):
    from vton_ros.media import samples

    frame, person, mask = draw_person(*size, cx=cx, top=0.1 * size[0], height=0.85 * size[0])
    garment = samples.garment('tshirt', (30, 90, 200), 128, 96)
    clean, bounds = split_mask(mark_person(mask, person))
    out = tiny_pipe(frame, garment, clean, height=64, width=48, num_inference_steps=2, seed=1,
                    framing='person', person_bounds=bounds)
    assert out.image.shape == (64, 48, 3)
    box = out.crop_box
    assert box == frame_box(*size, 64, 48, 'person', clean, bounds)
    assert np.array_equal(out.mask, crop(clean, box, 64, 48, nearest=True))
    image = paste(out.image, box, frame, clean)
    assert image.shape == frame.shape  # the frame's size, not the model's crop
    inside = clean >= 128
    assert np.array_equal(image[~inside], frame[~inside])
    changed = (image != frame).any(axis=2)
    # random weights: the result is noise, so every mask region changes (no seam)
    assert changed[inside].mean() > 0.97
    for side in (slice(0, cx), slice(cx, None)):  # both sides of the garment
        assert changed[:, side][inside[:, side]].mean() > 0.97
    centre = tiny_pipe(frame, garment, clean, height=64, width=48, num_inference_steps=2,
                       seed=1)
    assert centre.crop_box == centre_crop_box(*size, 64, 48)  # the pipeline's default


def test_pose_masker_marks_the_person_for_the_framing():
    from vton_ros.media import samples
    from vton_ros.pipeline.masks import create_mask_generator

    rgb = samples.portrait('grace_hopper')
    with create_mask_generator('pose') as gen:
        result = gen(rgb, 'upper')
    assert result.person is not None and result.person.shape == rgb.shape[:2]
    marked = result.marked_mask()
    assert set(np.unique(marked)) == {0, PERSON_LEVEL, 255}
    assert np.array_equal(marked >= 128, result.mask >= 128)  # same repaint region
    clean, bounds = split_mask(marked)
    assert np.array_equal(clean, result.mask)
    repaint = bounds_of(result.mask >= 128)
    assert bounds[0] < repaint[0]  # the head is above the garment region
    assert bounds[0] <= repaint[0] and bounds[2] >= repaint[2]


@pytest.mark.usefixtures('one_thread')
@pytest.mark.parametrize('repaint', [False, True])
def test_try_on_centre_is_todays_path_and_person_repaints_the_marked_mask(tiny_pipe, repaint):
    import dataclasses

    from vton_ros.goals import tryon_job
    from vton_ros.goals.admission import Request
    from vton_ros.media import samples
    from vton_ros.pipeline import preprocess
    from vton_ros.settings.views import CatVTONCall

    frame, person, mask = draw_person(480, 640, 470, 40, 420, arm_span=1.4)
    garment = samples.garment('tshirt', (30, 90, 200), 128, 96)
    marked = mark_person(mask, person)

    def run(framing_mode):
        call = dataclasses.replace(CatVTONCall.defaults(), height=64, width=48, seed=2,
                                   num_inference_steps=2, repaint=repaint,
                                   framing=framing_mode)
        request = Request(garment, 'image', 'upper', frame, marked, call)
        timings = dict.fromkeys(tryon_job.STAGES, 0.0)
        return tryon_job.try_on(tiny_pipe, request, frame, marked, timings, None)

    # centre: the pipeline's centre crop, uncrop and repaint exactly as before framing
    image, binary, _ = run('centre')
    out = tiny_pipe(frame, garment, mask, height=64, width=48, num_inference_steps=2, seed=2,
                    repaint=repaint)
    want = preprocess.uncrop(out.image, out.crop_box, background=frame)
    if repaint:
        want[mask < 128] = frame[mask < 128]
    assert np.array_equal(image, want) and np.array_equal(binary, mask)
    cut = mask.copy()
    box = out.crop_box
    cut[:, box.left:box.left + box.width] = 0  # mask pixels past the centre crop: the seam
    assert cut.any() and unrepainted(frame, cut, image) == np.count_nonzero(cut)

    # person (the default): the whole mask repainted, the rest the person's own
    assert CatVTONCall.defaults().framing == 'person'
    image, binary, _ = run('person')
    assert image.shape == frame.shape and np.array_equal(binary, mask)
    assert np.array_equal(image[mask < 128], frame[mask < 128])
    changed = (image != frame).any(axis=2)
    assert changed[mask >= 128].mean() > 0.97 and changed[cut >= 128].mean() > 0.97
