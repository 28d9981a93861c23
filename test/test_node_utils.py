"""Image conversion, camera sources, camera models, garment catalogue (no ROS graph)."""

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import Image

from vton_ros import samples
from vton_ros.camera_source import fit, load_calibration, open_source, pinhole, SourceError
from vton_ros.garments import GarmentCatalog
from vton_ros.nodes import image_conv


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


def test_pinhole_from_field_of_view():
    model = pinhole(640, 480, 90.0)
    assert model.k == pytest.approx((320.0, 0, 319.5, 0, 320.0, 239.5, 0, 0, 1))
    assert model.p == pytest.approx((320.0, 0, 319.5, 0, 0, 320.0, 239.5, 0, 0, 0, 1, 0))
    assert pinhole(640, 480, 60.0).k[0] == pytest.approx(320 / np.tan(np.radians(30)))
    for args in ((0, 480, 60.0), (640, 480, 180.0)):
        with pytest.raises(ValueError):
            pinhole(*args)


OST_YAML = """image_width: 640
image_height: 480
camera_name: mirror_cam
camera_matrix:
  rows: 3
  cols: 3
  data: [600.0, 0.0, 300.0, 0.0, 610.0, 250.0, 0.0, 0.0, 1.0]
distortion_model: plumb_bob
distortion_coefficients:
  rows: 1
  cols: 5
  data: [0.1, -0.2, 0.0, 0.0, 0.0]
rectification_matrix:
  rows: 3
  cols: 3
  data: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
projection_matrix:
  rows: 3
  cols: 4
  data: [590.0, 0.0, 301.0, 0.0, 0.0, 605.0, 251.0, 0.0, 0.0, 0.0, 1.0, 0.0]
"""


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
