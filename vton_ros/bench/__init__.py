"""
Benchmark of the try-on pipeline: stage timings, compute floor (FLOPs), sweeps, reports.

Pure torch/numpy (no rclpy); the ``vton_bench`` command-line tool is a thin wrapper.
"""

from vton_ros.compat import prepare_torchvision

prepare_torchvision()  # before any module below imports diffusers, timm or smp
