"""Normalisation layers: the frozen batch norm of maskrcnn-benchmark (seed 003)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d whose statistics and affine transform are fixed.

    All four tensors are buffers, not parameters: an optimiser never sees them and
    parameter counts exclude them, exactly as in maskrcnn-benchmark.
    """

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x * weight / sqrt(var) + (bias - mean * weight / sqrt(var)): maskrcnn-benchmark's
        # scale-and-shift (no epsilon), written as one eval-mode batch norm with eps=0.
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=False, momentum=0.0, eps=0.0)


NORM_LAYERS: dict[str, type[nn.Module]] = {"bn": nn.BatchNorm2d, "frozen_bn": FrozenBatchNorm2d}
