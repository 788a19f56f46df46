"""A small classifier that tells which of the 8 rotations/flips (the dihedral group, as defined in
:mod:`medground.data.orient`) turns a canonically oriented picture into the one given, and the torch
version of those transforms used to train it.

Index k: 0 identity, 1 rot90 (counter-clockwise), 2 rot180, 3 rot270, 4 flip_lr (mirror columns),
5 flip_ud (mirror rows), 6 transpose, 7 anti_transpose.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from medground.data.orient import DIHEDRAL_NAMES, _INVERSE, dihedral, undihedral  # noqa: F401

NAMES = list(DIHEDRAL_NAMES)
INVERSE = [_INVERSE[k] for k in range(8)]


def dihedral_torch(t: torch.Tensor, k: int) -> torch.Tensor:
    """Transform k of the last two axes (..., rows, cols) of a tensor; matches ``dihedral`` on numpy."""
    if k == 0:
        return t
    if 1 <= k <= 3:
        return torch.rot90(t, k, dims=(-2, -1))
    if k == 4:
        return torch.flip(t, dims=(-1,))
    if k == 5:
        return torch.flip(t, dims=(-2,))
    if k == 6:
        return t.transpose(-2, -1)
    if k == 7:
        return torch.flip(t, dims=(-2, -1)).transpose(-2, -1)
    raise ValueError(f"dihedral index {k} not in 0..7")


class OrientationNet(nn.Module):
    """64 x 64 grey thumbnail -> logits over the 8 transforms."""

    def __init__(self, width: int = 24):
        super().__init__()
        c = [1, width, 2 * width, 4 * width, 8 * width]
        layers = []
        for a, b in zip(c[:-1], c[1:]):
            layers += [nn.Conv2d(a, b, 3, stride=2, padding=1), nn.BatchNorm2d(b), nn.GELU(),
                       nn.Conv2d(b, b, 3, padding=1), nn.BatchNorm2d(b), nn.GELU()]
        self.features = nn.Sequential(*layers)
        # keep coarse spatial layout (4x4) instead of a global pool: orientation is about where things are
        self.fc = nn.Sequential(nn.Flatten(), nn.Dropout(0.2), nn.Linear(c[-1] * 16, 128), nn.GELU(),
                                nn.Linear(128, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))

    @torch.inference_mode()
    def predict(self, thumb: np.ndarray) -> np.ndarray:
        """(64, 64) uint8 thumbnail -> probabilities over the 8 transforms."""
        x = torch.from_numpy(thumb.astype(np.float32) / 255.0)[None, None]
        return F.softmax(self(x), dim=1)[0].numpy()
