"""Text-conditioned localisation head on the frozen LiteMedSAM image embedding.

For an image embedding (B, 256, 64, 64) and a text embedding (T, 384) of each prompt, the head
returns a heatmap (B, T, G, G) of logits (G = 32 by default: 8 pixels of the 256 frame per cell) and a
presence logit (B, T). The text vector modulates the per-pixel features (FiLM) and is the query that
scores each pixel; coordinate channels give the head absolute position, which it needs to tell the
left organ from the right one in a canonically oriented image.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F


def _coords(b: int, g: int, device, dtype) -> torch.Tensor:
    lin = torch.linspace(-1, 1, g, device=device, dtype=dtype)
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    return torch.stack([xx, yy])[None].expand(b, -1, -1, -1)


class _Block(nn.Module):
    def __init__(self, c: int, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=dilation, dilation=dilation)
        self.norm = nn.GroupNorm(8, c)

    def forward(self, x):
        return x + F.gelu(self.norm(self.conv(x)))


class GroundingHead(nn.Module):
    def __init__(self, emb_dim: int = 256, text_dim: int = 384, hidden: int = 128, grid: int = 32,
                 depth: int = 3):
        super().__init__()
        self.config = dict(emb_dim=emb_dim, text_dim=text_dim, hidden=hidden, grid=grid, depth=depth)
        self.grid = grid
        self.reduce = nn.Sequential(nn.Conv2d(emb_dim + 2, hidden, 1), nn.GroupNorm(8, hidden), nn.GELU())
        self.context = nn.Sequential(*[_Block(hidden, d) for d in (1, 2, 4)[:depth]])
        self.text = nn.Sequential(nn.Linear(text_dim, hidden), nn.GELU(), nn.Linear(hidden, 3 * hidden))
        self.mix = nn.Sequential(nn.Conv2d(hidden + 2, hidden, 3, padding=1), nn.GroupNorm(8, hidden), nn.GELU(),
                                 nn.Conv2d(hidden, hidden, 3, padding=1), nn.GroupNorm(8, hidden), nn.GELU())
        self.heat_bias = nn.Parameter(torch.tensor(-4.0))
        self.presence = nn.Sequential(nn.Linear(3, 16), nn.GELU(), nn.Linear(16, 1))

    def image_features(self, emb: torch.Tensor) -> torch.Tensor:
        """(B, 256, 64, 64) -> (B, hidden, G, G); accepts an already pooled (B, 256, G, G) too."""
        if emb.shape[-1] != self.grid:
            emb = F.adaptive_avg_pool2d(emb, self.grid)
        x = torch.cat([emb, _coords(emb.shape[0], self.grid, emb.device, emb.dtype)], 1)
        return self.context(self.reduce(x))

    def forward(self, emb: torch.Tensor, text: torch.Tensor, pairs: torch.Tensor | None = None):
        """Heatmap and presence logits.

        Without ``pairs``: every image with every text -> (B, T, G, G), (B, T).
        With ``pairs`` (P, 2) of (image index, text index): -> (P, G, G), (P,).
        """
        f = self.image_features(emb)
        gamma, beta, query = self.text(text).chunk(3, dim=-1)
        if pairs is None:
            b, t = f.shape[0], text.shape[0]
            ii = torch.arange(b, device=f.device).repeat_interleave(t)
            tt = torch.arange(t, device=f.device).repeat(b)
        else:
            ii, tt = pairs[:, 0], pairs[:, 1]
        x = f[ii] * (1 + gamma[tt, :, None, None]) + beta[tt, :, None, None]
        x = torch.cat([x, _coords(x.shape[0], self.grid, x.device, x.dtype)], 1)
        x = self.mix(x)
        heat = (x * query[tt, :, None, None]).sum(1) / x.shape[1] ** 0.5 + self.heat_bias
        flat = heat.flatten(1)
        stats = torch.stack([flat.max(1).values, torch.logsumexp(flat, 1) - torch.log(torch.tensor(
            float(flat.shape[1]))), torch.sigmoid(flat).mean(1) * 10], 1)
        presence = self.presence(stats)[:, 0]
        if pairs is None:
            return heat.view(f.shape[0], -1, self.grid, self.grid), presence.view(f.shape[0], -1)
        return heat, presence


def save_head(head: GroundingHead, path: str | Path, term_ids: list[str], term_emb: torch.Tensor,
              card: dict, extra: dict | None = None) -> Path:
    """Save the head, the text embeddings of its vocabulary and its model card in one file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    obj = {"format": "medground-grounding-v1", "config": head.config,
           "state_dict": {k: v.half() if v.is_floating_point() else v for k, v in head.state_dict().items()},
           "term_ids": list(term_ids), "term_emb": term_emb.half(), "card": card}
    if extra:
        obj.update(extra)
    torch.save(obj, path)
    (path.with_suffix(".card.json")).write_text(json.dumps(card, indent=2))
    return path


def load_head(path: str | Path, device: str = "cpu") -> tuple[GroundingHead, dict]:
    obj = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(obj, dict) or obj.get("format") != "medground-grounding-v1":
        raise ValueError(f"{path} is not a medground grounding checkpoint")
    head = GroundingHead(**obj["config"])
    head.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in obj["state_dict"].items()},
                         strict=True)
    head.eval().to(device)
    obj["term_emb"] = obj["term_emb"].float()
    return head, obj
