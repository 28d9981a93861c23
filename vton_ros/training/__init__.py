"""
Training: the agnostic-mask U-Net and the small demo CatVTON.

The mask model: VITON-HD readers, background composition, the loop. The demo model: the
synthetic paired try-on data and the two-stage (VAE, then UNet) training on it.
"""

from vton_ros.compat import prepare_torchvision

prepare_torchvision()  # before any module below imports diffusers, timm or smp
