"""The eight rotations/flips of a picture (the dihedral group) and a small classifier that tells
which of them turns a canonically oriented picture into the one given.

Index k: 0 identity, 1 rot90 (counter-clockwise), 2 rot180, 3 rot270, 4 flip_lr (mirror columns),
5 flip_ud (mirror rows), 6 transpose, 7 anti_transpose. Operations act on the first two axes of a
numpy picture (rows, cols[, C]) and on the last two axes of a torch tensor (..., H, W).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

NAMES = ["identity", "rot90", "rot180", "rot270", "flip_lr", "flip_ud", "transpose", "anti_transpose"]
INVERSE = [0, 3, 2, 1, 4, 5, 6, 7]


def _apply(a, k: int, rot, flip, swap):
    if k == 0:
        return a
    if 1 <= k <= 3:
        return rot(a, k)
    if k == 4:
        return flip(a, 1)
    if k == 5:
        return flip(a, 0)
    if k == 6:
        return swap(a)
    if k == 7:
        return swap(rot(a, 2))
    raise ValueError(f"dihedral index {k} not in 0..7")


def dihedral(a: np.ndarray, k: int) -> np.ndarray:
    """Apply transform k to a numpy picture (rows, cols[, C])."""
    return np.ascontiguousarray(_apply(a, k, lambda x, n: np.rot90(x, n, axes=(0, 1)),
                                       lambda x, ax: np.flip(x, axis=ax), lambda x: np.swapaxes(x, 0, 1)))


def undihedral(a: np.ndarray, k: int) -> np.ndarray:
    return dihedral(a, INVERSE[k])


def dihedral_torch(t: torch.Tensor, k: int) -> torch.Tensor:
    """Apply transform k to the last two axes of a tensor (..., H, W)."""
    return _apply(t, k, lambda x, n: torch.rot90(x, n, dims=(-2, -1)),
                  lambda x, ax: torch.flip(x, dims=(-1 if ax == 1 else -2,)), lambda x: x.transpose(-2, -1))


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
