"""Normalisation layers: the frozen batch norm of maskrcnn-benchmark."""
from __future__ import annotations

from typing import Any

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

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, local_metadata: dict[str, Any],
                              strict: bool, missing_keys: list[str], unexpected_keys: list[str],
                              error_msgs: list[str]) -> None:
        # A checkpoint converted from a trainable BatchNorm2d carries its step counter; a frozen
        # norm has no use for it, so it is dropped rather than reported as unexpected.
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x * weight / sqrt(var) + (bias - mean * weight / sqrt(var)): maskrcnn-benchmark's
        # scale-and-shift (no epsilon), written as one eval-mode batch norm with eps=0.
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=False, momentum=0.0, eps=0.0)


NORM_LAYERS: dict[str, type[nn.Module]] = {"bn": nn.BatchNorm2d, "frozen_bn": FrozenBatchNorm2d}
