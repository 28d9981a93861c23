"""
Pure torch/numpy try-on pipeline and mask models (no ROS below this package).

Importing it changes no process state. On a CPU torch beside the CUDA-only torchvision
wheel, call :func:`vton_ros.compat.ensure_torchvision` first (the nodes' and tools' entry
points do).
"""
