"""Edge-weighted binary cross-entropy (optionally with the U-Net border weight and a soft
Dice term)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class EdgeWeightedBCE(nn.Module):
    """BCE on the interior and edge channels, weighted per pixel.

    ``w = valid * (1 + (edge_weight - 1) * edge + border_w0 * border)`` where ``edge`` is
    the edge-band target and ``border`` the U-Net term ``exp(-(d1+d2)^2 / 2 sigma^2)``
    (computed from the instance labels by the data module). ``valid`` is 0 where the
    loss must not look (wrap seams). The loss is the weighted sum over valid pixels, plus
    ``dice_weight`` times the soft Dice loss of each channel over the batch's valid pixels
    (V-Net's ``1 - 2|P T| / (|P| + |T|)``, averaged over the two channels): it counts a
    thin edge line as much as the large interior, whatever their pixel counts.
    """

    def __init__(
        self, edge_weight: float = 10.0, border_w0: float = 0.0, border_sigma: float = 5.0, dice_weight: float = 0.0
    ):
        super().__init__()
        self.edge_weight = edge_weight
        self.border_w0 = border_w0
        self.border_sigma = border_sigma  # used by the data module to compute ``border``
        self.dice_weight = dice_weight

    def weight(self, target: torch.Tensor, border: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Per-pixel weight of shape (N, H, W)."""
        edge = target[:, 1]
        return valid * (1 + (self.edge_weight - 1) * edge + self.border_w0 * border)

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, border: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        """Scalar loss from logits and targets of shape (N, 2, H, W)."""
        logits = logits.float()  # bf16-mixed training hands bf16 logits
        weight = self.weight(target, border, valid)[:, None]
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        loss = (bce * weight).sum() / (valid.sum() * target.shape[1]).clamp_min(1)
        if self.dice_weight > 0:
            loss = loss + self.dice_weight * soft_dice_loss(torch.sigmoid(logits), target, valid)
        return loss


def soft_dice_loss(prob: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Mean over channels of ``1 - (2 sum(p t) + eps) / (sum(p) + sum(t) + eps)`` over the
    valid pixels of the whole batch; ``eps`` keeps a channel with no target pixels finite."""
    mask = valid[:, None]
    dims = (0, 2, 3)
    overlap = (prob * target * mask).sum(dims)
    total = (prob * mask).sum(dims) + (target * mask).sum(dims)
    return (1 - (2 * overlap + eps) / (total + eps)).mean()
