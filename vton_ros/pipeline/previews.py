"""Images for people from the pipeline's tensors: step previews, the repaint blend, uint8."""

import cv2
import numpy as np
import torch

# Linear map from SD1.x latents (scaled) to approximate RGB in [-1, 1] (rows: latent channels)
LATENT_RGB_FACTORS = (
    (0.298, 0.207, 0.208),
    (0.187, 0.286, 0.173),
    (-0.158, 0.189, 0.264),
    (-0.184, -0.271, -0.473),
)


@torch.inference_mode()
def latents_to_preview(latents: torch.Tensor, person_only: bool = True,
                       upscale: int = 1) -> np.ndarray:
    """
    Cheap RGB preview of (scaled) latents without the VAE.

    latents: (1, 4, H, W) or (4, H, W), e.g. as passed to the step callback (person and
    garment halves stacked on H). person_only keeps the top (person) half. Returns
    (H', W', 3) uint8 RGB at latent resolution (1/8 of the image) times ``upscale``.
    """
    lat = latents.detach()
    if lat.ndim == 4:
        lat = lat[0]
    if lat.ndim != 3 or lat.shape[0] != len(LATENT_RGB_FACTORS):
        raise ValueError(f'latents must be (1, 4, H, W) or (4, H, W), got {tuple(latents.shape)}')
    if person_only:
        lat = lat[:, :lat.shape[1] // 2]
    factors = torch.tensor(LATENT_RGB_FACTORS, dtype=torch.float32, device=lat.device)
    rgb = torch.einsum('chw,cr->hwr', lat.float(), factors)
    image = ((rgb + 1.0) * 127.5).clamp(0, 255).round().to(torch.uint8).cpu().numpy()
    if upscale > 1:
        image = cv2.resize(image, (image.shape[1] * upscale, image.shape[0] * upscale),
                           interpolation=cv2.INTER_LINEAR)
    return image


def repaint_blend(person: np.ndarray, result: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """
    Blend ``result`` into ``person`` inside the mask, feathered inwards.

    person, result: HxWx3 uint8; mask: HxW uint8 (>= 128 = repainted). Pixels outside the
    mask are exactly ``person``; the feathering band (about H/50 px) lies inside the mask.
    """
    size = max(3, person.shape[0] // 50) | 1
    binary = (mask >= 128).astype(np.float32)
    inner = cv2.erode(binary, np.ones((size, size), np.uint8))
    alpha = cv2.GaussianBlur(inner, (size, size), 0) * binary
    alpha = alpha[..., None]
    out = person.astype(np.float32) * (1.0 - alpha) + result.astype(np.float32) * alpha
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) in [-1, 1] -> (H, W, 3) uint8."""
    image = ((image[0].float() + 1.0) * 127.5).clamp(0, 255).round().to(torch.uint8)
    return image.permute(1, 2, 0).cpu().numpy()
