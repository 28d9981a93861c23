"""Helpers and sample data that several test modules share (ROS processes: rosutil, stack).

Test modules import these, never each other.
"""

import cv2
import numpy as np

H, W = 64, 48  # the tiny pipeline tests' output size; latents (1, 4, 16, 6)

# A camera calibration file as ROS camera_calibration (OST YAML) writes it.
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


def load_catvton(tiny: dict, **kwargs):
    """Load CatVTONPipeline from the ``tiny`` weights' folders (cpu, fp32 unless given)."""
    from vton_ros.pipeline.catvton import CatVTONPipeline

    kwargs.setdefault('device', 'cpu')
    kwargs.setdefault('dtype', 'fp32')
    return CatVTONPipeline.from_pretrained(**tiny, **kwargs)


def run_catvton(pipe, inputs, **kwargs):
    """One try-on of ``inputs`` (person, garment, mask) at HxW in 4 steps unless given."""
    kwargs.setdefault('height', H)
    kwargs.setdefault('width', W)
    kwargs.setdefault('num_inference_steps', 4)
    return pipe(*inputs, **kwargs)


def drawn_people() -> list:
    """Return two drawn people (no mediapipe needed) standing in for the portraits."""
    from vton_ros.training import tryon_data
    from vton_ros.training.dataset import studio_matte
    from vton_ros.training.synthetic import draw_person

    out = []
    for seed in range(2):
        rgb, mask = draw_person(160, 120, np.random.default_rng(seed))
        out.append(tryon_data.Person(rgb, mask, studio_matte(rgb)))
    return out


def png(rgb: np.ndarray) -> bytes:
    """Encode an RGB image as PNG bytes (an upload)."""
    return cv2.imencode('.png', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()
