"""Image conversion, goal decoding, camera sources, camera models, catalogue (no ROS graph)."""

import cv2
from helpers import OST_YAML
import numpy as np
import pytest
from sensor_msgs.msg import Image
from vton_interfaces.action import TryOn

from vton_ros.goals import admission
from vton_ros.goals.admission import GoalError, Request
from vton_ros.media import samples
from vton_ros.media.camera_source import fit, load_calibration, open_source, pinhole, SourceError
from vton_ros.media.garments import GarmentCatalog, write_catalog
from vton_ros.nodes import image_conv
from vton_ros.nodes.tryon_goal import camera_images, plain_goal
from vton_ros.settings.views import CatVTONCall


def test_rgb_bgr_round_trip():
    rgb = samples.portrait('astronaut')[:37, :53]
    for encoding in ('rgb8', 'bgr8'):
        msg = image_conv.from_rgb(rgb, encoding=encoding)
        assert msg.step == 53 * 3 and msg.encoding == encoding
        assert np.array_equal(image_conv.to_rgb(msg), rgb)
    assert bytes(image_conv.from_rgb(rgb, encoding='bgr8').data[:3]) == \
        rgb[0, 0, ::-1].tobytes()


def test_padded_rows_rgba_and_mono():
    rgba = np.random.default_rng(0).integers(0, 255, (5, 7, 4), dtype=np.uint8)
    padded = np.zeros((5, 7 * 4 + 4), np.uint8)
    padded[:, :28] = rgba.reshape(5, 28)
    msg = Image(height=5, width=7, encoding='bgra8', step=32, data=padded.tobytes())
    assert np.array_equal(image_conv.to_rgb(msg), rgba[:, :, 2::-1])
    mono = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert np.array_equal(image_conv.to_rgb(image_conv.from_mono(mono))[:, :, 1], mono)
    assert np.array_equal(image_conv.to_mono(image_conv.from_mono(mono)), mono)


def test_big_endian_16_bit():
    values = np.array([[1, 256], [513, 65535]], np.uint16)
    msg = Image(height=2, width=2, encoding='mono16', step=4, is_bigendian=1,
                data=values.astype('>u2').tobytes())
    assert np.array_equal(image_conv.image_to_array(msg), values)


@pytest.mark.parametrize('fields,message', [
    ({'encoding': 'yuv422'}, 'unsupported image encoding'),
    ({'height': 0}, 'empty'),
    ({'step': 2}, 'step'),
    ({'height': 9}, 'bytes'),
])
def test_bad_messages_raise_value_error(fields, message):
    msg = image_conv.from_rgb(np.zeros((4, 4, 3), np.uint8))
    for key, value in fields.items():
        setattr(msg, key, value)
    with pytest.raises(ValueError, match=message):
        image_conv.to_rgb(msg)
    with pytest.raises(ValueError, match='too large'):
        image_conv.to_rgb(image_conv.from_rgb(np.zeros((4, 4, 3), np.uint8)), max_pixels=15)


# ---- a TryOn goal decoded for admission (nodes/tryon_goal) ------------------------------

LIMITS = (4096 * 4096, 32, 4.0)  # tryon.max_image_pixels, min_image_side, max_aspect_ratio
PERSON = np.random.default_rng(1).integers(0, 255, (48, 36, 3), dtype=np.uint8)


def goal_message(**fields) -> TryOn.Goal:
    """Build a valid goal message: 36x48 person (bgr8), its mask, a garment image."""
    mask = np.zeros((48, 36), np.uint8)
    mask[10:30, 5:25] = 255
    g = TryOn.Goal(person_image=image_conv.from_rgb(PERSON, encoding='bgr8'),
                   mask=image_conv.from_mono(mask),
                   garment_image=image_conv.from_rgb(np.full((40, 32, 3), 200, np.uint8)))
    for key, value in fields.items():
        setattr(g, key, value)
    return g


def test_goal_images_decoded_and_fields_copied():
    plain = plain_goal(goal_message(garment_id='red', cloth_type='lower', num_inference_steps=3,
                                    guidance_scale=2.0, seed=7), *LIMITS)
    assert np.array_equal(plain.person_image, PERSON) and plain.mask.shape == (48, 36)
    assert plain.garment_image.shape == (40, 32, 3) and plain.mask.dtype == np.uint8
    assert (plain.garment_id, plain.cloth_type, plain.num_inference_steps,
            plain.guidance_scale, plain.seed) == ('red', 'lower', 3, 2.0, 7)
    empty = plain_goal(TryOn.Goal(), *LIMITS)  # not given: None; the message's defaults
    assert (empty.garment_image, empty.person_image, empty.mask) == (None, None, None)
    assert (empty.num_inference_steps, empty.guidance_scale, empty.seed) == (0, -1.0, -1)


BAD_IMAGES = {  # field: message, INVALID_IMAGE message
    'encoding': ('person_image', Image(width=2, height=2, encoding='yuv', step=6,
                                       data=bytes(12)), 'person_image: image 2x2 is too small'),
    'unknown encoding': ('person_image', Image(width=40, height=40, encoding='yuv', step=120,
                                               data=bytes(4800)),
                         "person_image: unsupported image encoding 'yuv'"),
    'garment image': ('garment_image', Image(width=4, height=4, encoding='rgb8', step=12),
                      'garment_image: image 4x4 is too small'),
    'no data': ('garment_image', Image(width=40, height=40, encoding='rgb8', step=120),
                'garment_image: image data has 0 bytes'),
    '16-bit mask': ('mask', image_conv.array_to_image(np.zeros((48, 36), np.uint16), 'mono16'),
                    'mask: expected an 8-bit mask, got mono16'),
    'tiny person': ('person_image', image_conv.from_rgb(np.zeros((8, 8, 3), np.uint8)),
                    'person_image: image 8x8 is too small'),
    '1x1 mask': ('mask', image_conv.from_mono(np.full((1, 1), 255, np.uint8)),
                 'mask: image 1x1 is too small'),
    'sliver': ('person_image', image_conv.from_rgb(np.zeros((1, 4000, 3), np.uint8)),
               'person_image: image 4000x1 is too small'),
    'elongated': ('garment_image', image_conv.from_rgb(np.zeros((40, 200, 3), np.uint8)),
                  'garment_image: image 200x40 is too elongated'),
}


@pytest.mark.parametrize('case', list(BAD_IMAGES))
def test_bad_goal_image_is_invalid_image_when_admission_reaches_it(case):
    field, msg, words = BAD_IMAGES[case]
    plain = plain_goal(goal_message(**{field: msg}), *LIMITS)
    err = getattr(plain, field)
    assert isinstance(err, GoalError) and err.code == 'INVALID_IMAGE'
    assert str(err).startswith(words), str(err)
    with pytest.raises(GoalError, match=words) as raised:
        admission.validate(plain, CatVTONCall.defaults(), None, min_side=32, max_aspect=4.0,
                           cloth_type='upper')
    assert raised.value is err


def test_goal_image_over_max_pixels_is_invalid_image():
    err = plain_goal(goal_message(), 36 * 48 - 1, 32, 4.0).person_image
    assert err.code == 'INVALID_IMAGE' and 'person_image: image 36x48 is too large' in str(err)


def test_camera_pair_decoded_for_a_goal():
    mask = np.zeros((48, 36), np.uint8)
    mask[10:30, 5:25] = 255
    pair = (image_conv.from_rgb(PERSON, encoding='bgr8'), image_conv.from_mono(mask))
    request = Request(garment=PERSON, garment_name='image', cloth_type='upper', person=None,
                      mask=None, call=CatVTONCall.defaults())
    person, live = camera_images(pair, request, 4096 * 4096, 'upper')
    assert np.array_equal(person, PERSON) and np.array_equal(live, mask)
    lower = Request(**{**request.__dict__, 'cloth_type': 'lower'})
    assert camera_images(pair, lower, 4096 * 4096, 'upper')[1] is None  # make one
    own = Request(**{**request.__dict__, 'mask': 255 - mask})
    assert np.array_equal(camera_images(pair, own, 4096 * 4096, 'upper')[1], 255 - mask)
    cases = [((pair[0], image_conv.from_mono(0 * mask)), request, 'NO_PERSON_DETECTED',
              'the latest camera mask is empty'),
             (pair, Request(**{**request.__dict__, 'mask': mask[:40]}), 'INVALID_IMAGE',
              'mask is 36x40 but the person image is 36x48'),
             ((Image(width=4, height=4, encoding='yuv'), pair[1]), request, 'INVALID_IMAGE',
              "camera frame: unsupported image encoding 'yuv'")]
    for frame_mask, req, code, words in cases:
        with pytest.raises(GoalError, match=words) as err:
            camera_images(frame_mask, req, 4096 * 4096, 'upper')
        assert err.value.code == code


def test_sources(tmp_path):
    still = open_source('sample:grace_hopper')
    assert still.read().shape == (600, 512, 3)
    folder = tmp_path / 'frames'
    folder.mkdir()
    for i in range(3):
        img = np.full((10, 12, 3), i * 50, np.uint8)
        cv2.imwrite(str(folder / f'{i:02d}.png'), img)
    once = open_source(str(folder), loop=False)
    assert [once.read()[0, 0, 0] for _ in range(3)] == [0, 50, 100]
    assert once.read() is None
    looped = open_source(str(folder), loop=True)
    assert [looped.read()[0, 0, 0] for _ in range(4)] == [0, 50, 100, 0]
    video = tmp_path / 'clip.avi'
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*'MJPG'), 5, (32, 24))
    for i in range(4):
        writer.write(np.full((24, 32, 3), 60 * i, np.uint8))
    writer.release()
    clip = open_source(str(video), loop=True)
    frames = [clip.read() for _ in range(6)]
    assert all(f is not None and f.shape == (24, 32, 3) for f in frames)
    assert abs(int(frames[4][5, 5, 0]) - int(frames[0][5, 5, 0])) < 8  # looped to the start
    for spec, message in (('/nonexistent.mp4', 'does not exist'), ('', 'empty'),
                          ('sample:nobody', 'unknown portrait'),
                          ('/dev/video99', 'does not exist')):
        with pytest.raises(SourceError, match=message):
            open_source(spec)


def test_fit_resizes_and_mirrors():
    img = np.zeros((40, 80, 3), np.uint8)
    img[:, :10] = 255
    out = fit(img, 40, 0, mirror=True)
    assert out.shape == (20, 40, 3)
    assert out[:, -1].min() == 255 and out[:, 0].max() == 0


def test_garment_catalog(tmp_path):
    cv2.imwrite(str(tmp_path / 'red.png'), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(tmp_path / 'skirt.jpg'), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / 'catalog.yaml').write_text('skirt: {cloth_type: lower}\n')
    catalog = GarmentCatalog(str(tmp_path))
    assert catalog.ids() == ['red', 'skirt']
    assert catalog.load('skirt')[1] == 'lower' and catalog.load('red')[1] is None
    with pytest.raises(KeyError, match='known: red, skirt'):
        catalog.load('hat')
    (tmp_path / 'catalog.yaml').write_text('skirt: trousers\n')
    with pytest.raises(ValueError, match='trousers'):
        GarmentCatalog(str(tmp_path))


def test_written_catalogue_reads_back(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 255, (20, 16, 3), dtype=np.uint8)
    files = write_catalog(tmp_path / 'shop', {'skirt': (rgb, 'lower'),
                                              'red': (rgb[::-1].copy(), 'upper')}, 'a note')
    assert [f.name for f in files] == ['skirt.png', 'red.png', 'catalog.yaml']
    assert files[-1].read_text() == '# a note\nskirt: lower\nred: upper\n'
    catalog = GarmentCatalog(str(tmp_path / 'shop'))
    assert catalog.ids() == ['red', 'skirt']
    image, kind = catalog.load('skirt')
    assert np.array_equal(image, rgb) and kind == 'lower'  # PNG: lossless


def test_pinhole_from_field_of_view():
    model = pinhole(640, 480, 90.0)
    assert model.k == pytest.approx((320.0, 0, 319.5, 0, 320.0, 239.5, 0, 0, 1))
    assert model.p == pytest.approx((320.0, 0, 319.5, 0, 0, 320.0, 239.5, 0, 0, 0, 1, 0))
    assert pinhole(640, 480, 60.0).k[0] == pytest.approx(320 / np.tan(np.radians(30)))
    for args in ((0, 480, 60.0), (640, 480, 180.0)):
        with pytest.raises(ValueError):
            pinhole(*args)


def test_camera_info_manager_yaml(tmp_path):
    path = tmp_path / 'ost.yaml'
    path.write_text(OST_YAML)
    model = load_calibration(str(path))
    assert (model.width, model.height) == (640, 480)
    assert model.k[0] == 600.0 and model.p[0] == 590.0 and model.d[:2] == (0.1, -0.2)
    half = model.fit(320, 240, mirror=True)  # published at half size, mirrored
    assert half.k[0] == 300.0 and half.k[4] == 305.0 and half.k[5] == 125.0
    assert half.k[2] == 319 - 150.0 and half.p[2] == 319 - 150.5
    assert model.fit(640, 480) == model
    path.write_text(OST_YAML.replace('rows: 3\n  cols: 3\n  data: [600.0', 'data: [600.0'
                                     ).replace(', 0.0, 0.0, 1.0]\ndistortion_model', ']\n'
                                               'distortion_model'))
    with pytest.raises(ValueError, match='camera_matrix has 6 values'):
        load_calibration(str(path))
    with pytest.raises(ValueError, match='cannot read'):
        load_calibration(str(tmp_path / 'missing.yaml'))
