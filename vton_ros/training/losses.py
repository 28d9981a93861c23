"""Dice loss and IoU for one-channel masks (per image, then averaged over the batch)."""

import torch


def dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0,
              reduce: bool = True) -> torch.Tensor:
    """
    Soft Dice loss 1 - (2|P.T| + s) / (|P| + |T| + s) with P = sigmoid(logits).

    logits, target: (N, 1, H, W); target in {0, 1}. Returns the batch mean (scalar) or,
    with reduce=False, the (N,) per-image losses; values in [0, 1].
    """
    if logits.shape != target.shape:
        raise ValueError(f'logits {tuple(logits.shape)} and target {tuple(target.shape)} '
                         'must have the same shape')
    prob = torch.sigmoid(logits.float()).flatten(1)
    tgt = target.float().flatten(1)
    inter = (prob * tgt).sum(1)
    loss = 1.0 - (2.0 * inter + smooth) / (prob.sum(1) + tgt.sum(1) + smooth)
    return loss.mean() if reduce else loss


def iou_per_image(logits: torch.Tensor, target: torch.Tensor,
                  threshold: float = 0.5) -> torch.Tensor:
    """
    (N,) IoU of the thresholded prediction sigmoid(logits) > threshold vs target.

    An image where both prediction and target are empty scores 1.
    """
    pred = (torch.sigmoid(logits.float()) > threshold).flatten(1)
    tgt = (target > 0.5).flatten(1)
    inter = (pred & tgt).sum(1).float()
    union = (pred | tgt).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
