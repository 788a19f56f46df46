"""The classifier network: a small CNN on 64x64 RGB thumbnails + cheap hand-made cues, multi-task heads
(modality, body region, view) and a projection into the MiniLM text space (384-d) for zero-shot labels.

Plain torch (no torchvision/timm). ~0.3 M parameters; ~2 ms per image on one CPU core.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

MODALITIES = ["CT", "MRI", "X-ray", "ultrasound", "pathology", "endoscopy", "fundus", "dermoscopy",
              "mammography", "PET", "nuclear medicine"]
REGIONS = ["head", "neck", "chest", "abdomen", "pelvis", "breast", "heart", "eye", "skin", "colon",
           "extremity", "spine", "whole body", "tissue"]
VIEWS = ["axial", "coronal", "sagittal", "PA", "AP", "lateral", "MLO", "n/a"]

N_CUES = 36
TEXT_DIM = 384


def cues(x: torch.Tensor, log_aspect: torch.Tensor) -> torch.Tensor:
    """Cheap global cues from a batch of RGB pictures in [0, 1] (B, 3, H, W) -> (B, N_CUES)."""
    b, _, h, w = x.shape
    gray = x.mean(1)
    sat = x.amax(1) - x.amin(1)
    black = (gray < 0.04).float()
    white = (gray > 0.96).float()
    q = max(h // 4, 1)
    corners = torch.stack([black[:, :q, :q].mean((1, 2)), black[:, :q, -q:].mean((1, 2)),
                           black[:, -q:, :q].mean((1, 2)), black[:, -q:, -q:].mean((1, 2))], 1)
    top_mid = black[:, :q, w // 2 - q // 2: w // 2 + q // 2 + 1].mean((1, 2))
    centre = black[:, h // 4: 3 * h // 4, w // 4: 3 * w // 4].mean((1, 2))
    hist = torch.stack([((gray >= i / 16) & (gray < (i + 1) / 16 + (1e-6 if i == 15 else 0))).float().mean((1, 2))
                        for i in range(16)], 1)
    gx = (gray[:, :, 1:] - gray[:, :, :-1]).abs().mean((1, 2))
    gy = (gray[:, 1:, :] - gray[:, :-1, :]).abs().mean((1, 2))
    ch_mean = x.mean((2, 3))
    ch_std = x.std((2, 3))
    out = torch.cat([
        sat.mean((1, 2))[:, None], sat.std((1, 2))[:, None], (sat > 0.15).float().mean((1, 2))[:, None],
        ch_mean, ch_std, black.mean((1, 2))[:, None], white.mean((1, 2))[:, None], corners,
        top_mid[:, None], centre[:, None], hist, (gx * 4)[:, None], (gy * 4)[:, None],
        log_aspect.reshape(b, 1).to(x.dtype),
    ], 1)
    return out


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class ClassifierNet(nn.Module):
    def __init__(self, width: int = 16, feat_dim: int = 128, n_mod: int = len(MODALITIES),
                 n_reg: int = len(REGIONS), n_view: int = len(VIEWS), text_dim: int = TEXT_DIM, input_size: int = 64):
        super().__init__()
        w = width
        self.input_size = input_size
        self.config = {"width": width, "feat_dim": feat_dim, "n_mod": n_mod, "n_reg": n_reg, "n_view": n_view,
                       "text_dim": text_dim, "input_size": input_size}
        # stem: stride 2 (64 -> 32); then 32 -> 16 -> 8 with single convs, a double conv at 8x8
        self.stages = nn.ModuleList([_conv(3, w, stride=2), _conv(w, 2 * w), _conv(2 * w, 4 * w), _block(4 * w, 6 * w)])
        self.cue_norm = nn.BatchNorm1d(N_CUES)
        self.fuse = nn.Sequential(nn.Linear(12 * w + N_CUES, feat_dim), nn.BatchNorm1d(feat_dim), nn.ReLU(inplace=True),
                                  nn.Dropout(0.2))
        self.head_mod = nn.Linear(feat_dim, n_mod)
        self.head_reg = nn.Linear(feat_dim, n_reg)
        self.head_view = nn.Linear(feat_dim, n_view)
        # projection into the text space (trained contrastively after the heads)
        self.proj = nn.Linear(feat_dim + n_mod + n_reg + n_view, text_dim)
        self.text_proj = nn.Linear(text_dim, text_dim)
        nn.init.eye_(self.text_proj.weight)
        nn.init.zeros_(self.text_proj.bias)
        self.logit_scale = nn.Parameter(torch.tensor(2.6593))  # log(1/0.07)
        self.register_buffer("mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.25, 0.25, 0.25]).view(1, 3, 1, 1))

    def features(self, x: torch.Tensor, log_aspect: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, feat_dim) image features (before the heads)."""
        c = self.cue_norm(cues(x, log_aspect))
        h = (x - self.mean) / self.std
        for i, st in enumerate(self.stages):
            h = st(h)
            if 0 < i < len(self.stages) - 1:
                h = F.max_pool2d(h, 2)
        pooled = torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1)
        return self.fuse(torch.cat([pooled, c], 1))

    def heads(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.head_mod(f), self.head_reg(f), self.head_view(f)

    def forward(self, x: torch.Tensor, log_aspect: torch.Tensor):
        f = self.features(x, log_aspect)
        return (f, *self.heads(f))

    def embed(self, f: torch.Tensor, logits: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
        """Features (+ head logits) -> L2-normalised vectors in the shared image-text space."""
        if logits is None:
            logits = self.heads(f)
        probs = [F.softmax(t, -1) for t in logits]
        return F.normalize(self.proj(torch.cat([f, *probs], 1)), dim=-1)

    def embed_text(self, t: torch.Tensor) -> torch.Tensor:
        """MiniLM sentence vectors (B, 384) -> L2-normalised vectors in the shared space."""
        return F.normalize(self.text_proj(t), dim=-1)
