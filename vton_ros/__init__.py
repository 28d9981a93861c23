"""vton_ros: on-device diffusion virtual try-on (CatVTON) for a smart mirror, on ROS 2."""

__version__ = '0.1.0'
