"""Small building blocks shared by the LiteMedSAM image encoder and mask decoder.

Attribute names (``c``/``bn``, ``layers``, ``weight``/``bias``) are chosen so that the parameter
names of the assembled network line up with the published LiteMedSAM checkpoint.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ConvBN(nn.Sequential):
    """``Conv2d`` (no bias) followed by ``BatchNorm2d``; children are named ``c`` and ``bn``."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.c = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)

    @torch.no_grad()
    def fused(self) -> nn.Conv2d:
        """An equivalent single ``Conv2d`` (with bias) in which the batch norm (eval statistics) is folded."""
        conv, bn = self.c, self.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        out = nn.Conv2d(
            conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
            padding=conv.padding, groups=conv.groups, bias=True,
        ).to(conv.weight.device, conv.weight.dtype)
        out.weight.copy_(conv.weight * scale[:, None, None, None])
        out.bias.copy_(bn.bias - bn.running_mean * scale)
        return out


class LayerNorm2d(nn.Module):
    """Layer norm over the channel axis of a ``(B, C, H, W)`` tensor."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=1, keepdim=True)
        centred = x - mean
        var = centred.square().mean(dim=1, keepdim=True)
        x = centred * torch.rsqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU in between (no activation after the last one)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: Tensor) -> Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = F.relu(x)
        return x
