"""Text-conditioned localisation head on the frozen LiteMedSAM image embedding.

For an image embedding (B, 256, 64, 64) and a text embedding (T, 384) of each prompt, the head
returns a heatmap (B, T, G, G) of logits (G = 32: 8 pixels of the 256 frame per cell; G = 64 with
``fine=True``: 4 pixels per cell) and a presence logit (B, T). With ``fine=True`` the context blocks run
on the embedding pooled to G/2 (cheap, wide receptive field) and their output, upsampled, is added to a
per-pixel projection of the full-resolution embedding, so that small structures (adrenal glands, the
pancreas, vessels) keep their own cells. The text vector modulates the per-pixel features (FiLM) and is the query that
scores each pixel; coordinate channels give the head absolute position, which it needs to tell the
left organ from the right one in a canonically oriented image.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F


def _coords(b: int, g: int, device, dtype) -> torch.Tensor:
    lin = torch.linspace(-1, 1, g, device=device, dtype=dtype)
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    return torch.stack([xx, yy])[None].expand(b, -1, -1, -1)


class _Block(nn.Module):
    """Depthwise-separable residual block (cheap enough to train on a CPU)."""

    def __init__(self, c: int, dilation: int = 1):
        super().__init__()
        self.dw = nn.Conv2d(c, c, 3, padding=dilation, dilation=dilation, groups=c)
        self.norm = nn.GroupNorm(8, c)
        self.pw = nn.Conv2d(c, c, 1)

    def forward(self, x):
        return x + self.pw(F.gelu(self.norm(self.dw(x))))


class GroundingHead(nn.Module):
    def __init__(self, emb_dim: int = 256, text_dim: int = 384, hidden: int = 128, grid: int = 32,
                 depth: int = 4, queries: int = 8, mix: int = 16, fine: bool = False):
        super().__init__()
        self.config = dict(emb_dim=emb_dim, text_dim=text_dim, hidden=hidden, grid=grid, depth=depth,
                           queries=queries, mix=mix)
        if fine:
            self.config["fine"] = True
        self.fine = fine
        self.grid = grid
        self.coarse = grid // 2 if fine else grid
        self.queries = queries
        self.hidden = hidden
        self.reduce = nn.Sequential(nn.Conv2d(emb_dim + 2, hidden, 1), nn.GroupNorm(8, hidden), nn.GELU())
        self.context = nn.Sequential(*[_Block(hidden, d) for d in (1, 2, 4, 8, 1, 2)[:depth]])
        self.text = nn.Sequential(nn.Linear(text_dim, 2 * hidden), nn.GELU(),
                                  nn.Linear(2 * hidden, queries * hidden + queries))
        self.mix = nn.Sequential(nn.Conv2d(queries + 2, mix, 3, padding=1), nn.GELU(),
                                 nn.Conv2d(mix, mix, 3, padding=2, dilation=2), nn.GELU(),
                                 nn.Conv2d(mix, 1, 3, padding=1))
        self.presence = nn.Sequential(nn.Linear(3 + queries, 32), nn.GELU(), nn.Linear(32, 1))
        if fine:
            self.reduce_fine = nn.Sequential(nn.Conv2d(emb_dim, hidden, 1), nn.GroupNorm(8, hidden), nn.GELU())
            self.mix_fine = nn.Conv2d(queries, 1, 3, padding=1)

    def image_features(self, emb: torch.Tensor) -> torch.Tensor:
        """(B, 256, 64, 64) -> (B, hidden, G, G); accepts an already pooled (B, 256, G, G) too."""
        if emb.shape[-1] != self.grid:
            emb = F.adaptive_avg_pool2d(emb, self.grid)
        c = self.coarse
        low = F.adaptive_avg_pool2d(emb, c) if c != self.grid else emb
        x = torch.cat([low, _coords(emb.shape[0], c, emb.device, emb.dtype)], 1)
        f = self.context(self.reduce(x))
        if not self.fine:
            return f
        up = F.interpolate(f, size=(self.grid, self.grid), mode="bilinear", align_corners=False)
        return up + self.reduce_fine(emb)

    def forward(self, emb: torch.Tensor, text: torch.Tensor, pairs: torch.Tensor | None = None,
                features: torch.Tensor | None = None):
        """Heatmap and presence logits.

        Without ``pairs``: every image with every text -> (B, T, G, G), (B, T).
        With ``pairs`` (P, 2) of (image index, text index): -> (P, G, G), (P,).
        ``features``: precomputed :meth:`image_features` (then ``emb`` is ignored).
        """
        f = self.image_features(emb) if features is None else features
        t = self.text(text)
        q = t[:, : self.queries * self.hidden].view(-1, self.queries, self.hidden)
        qb = t[:, self.queries * self.hidden:]
        if pairs is None:
            b, nt = f.shape[0], text.shape[0]
            ii = torch.arange(b, device=f.device).repeat_interleave(nt)
            tt = torch.arange(nt, device=f.device).repeat(b)
        else:
            ii, tt = pairs[:, 0], pairs[:, 1]
        g = self.grid
        # (B, C, HW) x (T, K, C) -> per pair (K, HW): the text's K queries scored at every position,
        # one matrix product per image (gathering a copy of the image features per pair costs more)
        order = torch.argsort(ii, stable=True)
        counts = torch.bincount(ii, minlength=f.shape[0]).tolist()
        qs = q[tt[order]].split(counts)
        sims = torch.cat([torch.matmul(qb_, fb) for qb_, fb in zip(qs, f.flatten(2).unbind(0)) if len(qb_)])
        sims = sims[torch.argsort(order)] / self.hidden ** 0.5 + qb[tt][..., None]
        maps = sims.view(-1, self.queries, g, g)
        c = self.coarse
        low = F.adaptive_avg_pool2d(maps, c) if c != g else maps
        x = torch.cat([low, _coords(maps.shape[0], c, maps.device, maps.dtype)], 1)
        heat = self.mix(x)[:, 0]
        if self.fine:  # coarse mixing, upsampled, plus a local read of the full-resolution scores
            heat = F.interpolate(heat[:, None], size=(g, g), mode="bilinear", align_corners=False)[:, 0] + \
                self.mix_fine(maps)[:, 0]
        flat = heat.flatten(1)
        stats = torch.cat([flat.max(1).values[:, None],
                           (torch.logsumexp(flat, 1) - math.log(flat.shape[1]))[:, None],
                           torch.sigmoid(flat).mean(1, keepdim=True) * 10,
                           sims.amax(2)], 1)
        presence = self.presence(stats)[:, 0]
        if pairs is None:
            return heat.view(f.shape[0], -1, g, g), presence.view(f.shape[0], -1)
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


CALIBRATED = ("mask_from", "presence_threshold", "heat_refine", "box_margin", "whole", "heat_z_smooth",
              "run_end_presence", "refine_slices", "extend_runs",
              "extend_max_rival_heat", "keep_stacked")


def set_calibration(path: str | Path, table: dict[str, dict], note: str) -> None:
    """Record in a checkpoint (and its card) per-term inference settings measured on validation patients:
    ``{term: {"mask_from": "heat", "presence_threshold": 0.35}}`` (see ``TextConfig``); ``note`` says how
    they were chosen."""
    path = Path(path)
    obj = torch.load(path, map_location="cpu", weights_only=False)
    clean = {t: {k: v for k, v in d.items() if k in CALIBRATED} for t, d in sorted(table.items())}
    obj["calibration"] = clean
    obj.setdefault("card", {})["calibration"] = clean
    obj["card"]["calibration_chosen"] = note
    torch.save(obj, path)
    path.with_suffix(".card.json").write_text(json.dumps(obj["card"], indent=2))


DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "grounding.pt"
# second head for findings (lesions, tumours, polyps, skin lesions): medground.train.findings
FINDINGS_WEIGHTS = Path(__file__).parent / "weights" / "grounding_findings.pt"


class GroundingBundle:
    """A trained head with its vocabulary's text vectors, its orientation classifier and model card."""

    def __init__(self, head: GroundingHead, obj: dict, device: str = "cpu", name: str = "grounding"):
        from medground.models.orientation import OrientationNet

        self.head = head
        self.term_ids: list[str] = obj["term_ids"]
        self.term_emb: torch.Tensor = obj["term_emb"]
        self.card: dict = obj.get("card", {})
        self.name = name
        # per term: inference settings measured best on the validation patients (mask source, presence threshold)
        self.calibration: dict[str, dict] = dict(obj.get("calibration") or self.card.get("calibration") or {})
        self.orientation = None
        if obj.get("orientation_state"):
            net = OrientationNet(**obj.get("orientation_config", {}))
            net.load_state_dict({k: v.float() if v.is_floating_point() else v
                                 for k, v in obj["orientation_state"].items()}, strict=True)
            self.orientation = net.eval()
        self._index = {t: i for i, t in enumerate(self.term_ids)}

    def term_vectors(self, ids: list[str], onto=None) -> dict[str, torch.Tensor]:
        """Text vectors of ontology terms: from the trained vocabulary, else embedded on the fly from the
        ontology's description of the term (needs the MiniLM wheel)."""
        out: dict[str, torch.Tensor] = {}
        missing = []
        for t in dict.fromkeys(ids):
            if t in self._index:
                out[t] = self.term_emb[self._index[t]]
            else:
                missing.append(t)
        if missing:
            from medground.models.text import text_encoder
            from medground.ontology import Ontology

            onto = onto or Ontology.default()
            vecs = text_encoder().encode([onto.describe(t) for t in missing])
            for t, v in zip(missing, vecs):
                out[t] = v
        return out


_CACHE: dict = {}


def load_grounding(weights: str | Path | None = None, device: str = "cpu") -> GroundingBundle:
    """Load the grounding head: the packaged weights by default, or a checkpoint path."""
    from medground.io.image import MedGroundInputError

    path = Path(weights) if weights else DEFAULT_WEIGHTS
    key = (str(path), device)
    if key in _CACHE:
        return _CACHE[key]
    if not path.exists():
        raise MedGroundInputError(
            f"no grounding weights at {path}: text prompts need a trained head (see `medground train --help`)")
    head, obj = load_head(path, device)
    b = GroundingBundle(head, obj, device, name=obj.get("card", {}).get("name", path.stem))
    _CACHE[key] = b
    return b


def load_findings(weights: str | Path | None = None, device: str = "cpu") -> GroundingBundle | None:
    """Load the findings grounding head (packaged by default); ``None`` when no such weights are there
    (text prompts then all go through the organ head, as before the findings head existed)."""
    path = Path(weights) if weights else FINDINGS_WEIGHTS
    if not path.exists():
        if weights:
            from medground.io.image import MedGroundInputError

            raise MedGroundInputError(f"no findings grounding weights at {path}")
        return None
    return load_grounding(path, device)


def trained_vocabulary() -> dict[str, str]:
    """Term id -> which packaged head was trained on it ("organs" or "findings"), read from the model
    cards (no weights loaded). Terms missing here are outside what text grounding was trained on."""
    out: dict[str, str] = {}
    for name, path in (("findings", FINDINGS_WEIGHTS), ("organs", DEFAULT_WEIGHTS)):
        try:
            card = json.loads(path.with_suffix(".card.json").read_text())
        except (OSError, ValueError):
            continue
        for t in card.get("terms", []):
            out[t] = name  # the organ head wins for a term both know (it is routed there)
    return out
