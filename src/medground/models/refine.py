"""Mask refinement network: a small U-Net that redraws a slice's masks at the network's full 256 x 256 resolution
from the slice picture and the organ head's heat maps of a fixed set of terms.

The grounding head places structures on a 64 x 64 grid (4 pixels of the 256 frame per cell); small and thin
structures (adrenal glands, gallbladder, oesophagus, vessels) cover only a few cells. This network reads the picture
itself (every pixel) together with the heat of all its terms at once (so neighbouring organs compete for each pixel:
a softmax over background and the terms) and returns per-term probabilities in the 256 frame. It is a second stage:
where and on which slices a structure is present still comes from the head; the network only redraws it.

It is trained on one dataset's slices (``medground.train.refine``); a term it covers becomes the mask source
``"refine"`` of :class:`medground.segment.text.TextConfig`, chosen per term on validation patients like the others.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.GroupNorm(4, cout), nn.GELU(),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.GroupNorm(4, cout), nn.GELU())


class RefineNet(nn.Module):
    """(B, 1 + T, H, W) picture and heat probabilities -> (B, 1 + T, H, W) logits (background first).

    ``residual``: the network adds a correction to the heat itself (background logit 0, term logit = logit of its
    heat probability, so that with the correction at zero, as it starts, the softmax returns the heat of a lone
    term); it cannot start worse than the heat, and learns only where to redraw it."""

    def __init__(self, terms: int, widths: tuple[int, ...] = (16, 24, 48, 64), residual: bool = False,
                 emb_channels: int = 0, emb_proj: int = 32):
        super().__init__()
        self.config = {"terms": terms, "widths": list(widths), "residual": bool(residual)}
        self.residual = bool(residual)
        # ``emb_channels`` > 0: the network also reads the image encoder's embedding of the slice (LiteMedSAM:
        # 256 channels on a 64 x 64 grid, a quarter of the 256 frame), projected to ``emb_proj`` channels and joined
        # to the U-Net at its quarter-resolution level
        self.emb_level = 2 if emb_channels else None
        if emb_channels:
            if len(widths) < 3:
                raise ValueError("an embedding input needs at least 3 U-Net levels")
            self.config.update(emb_channels=int(emb_channels), emb_proj=int(emb_proj))
            self.emb = nn.Sequential(nn.Conv2d(emb_channels, emb_proj, 1, bias=False), nn.GroupNorm(4, emb_proj), nn.GELU())
        self.enc = nn.ModuleList()
        cin = 1 + terms
        for i, w in enumerate(widths):
            self.enc.append(_conv(cin + (emb_proj if i == self.emb_level else 0), w))
            cin = w
        self.dec = nn.ModuleList(_conv(widths[i + 1] + widths[i], widths[i]) for i in range(len(widths) - 1))
        self.out = nn.Conv2d(widths[0], 1 + terms, 1)
        if self.residual:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (B, 1 + T, H, W); ``emb`` (B, C, H/4, W/4), the embedding of the same frame (networks built with
        ``emb_channels`` only)."""
        if (emb is None) != (self.emb_level is None):
            raise ValueError("this network " + ("reads" if self.emb_level is not None else "does not read")
                             + " the image embedding")
        base = None
        if self.residual:
            hp = x[:, 1:].clamp(1e-4, 1 - 1e-4)
            base = torch.cat([torch.zeros_like(hp[:, :1]), torch.log(hp) - torch.log1p(-hp)], 1)
        skips = []
        for i, e in enumerate(self.enc):
            x = x if i == 0 else F.max_pool2d(x, 2)
            if i == self.emb_level:
                f = self.emb(emb.float())
                if f.shape[-2:] != x.shape[-2:]:
                    f = F.interpolate(f, size=x.shape[-2:], mode="bilinear", align_corners=False)
                x = torch.cat([x, f], 1)
            x = e(x)
            skips.append(x)
        for i in range(len(self.dec) - 1, -1, -1):
            x = F.interpolate(x, size=skips[i].shape[-2:], mode="bilinear", align_corners=False)
            x = self.dec[i](torch.cat([x, skips[i]], 1))
        return self.out(x) if base is None else self.out(x) + base


def refine_inputs(picture: torch.Tensor, heat_logits: torch.Tensor) -> torch.Tensor:
    """Network input from the slice pictures (B, H, W) in [0, 1] and the head's heat logits (B, T, G, G)."""
    hp = torch.sigmoid(heat_logits.float())
    hp = F.interpolate(hp, size=picture.shape[-2:], mode="bilinear", align_corners=False)
    return torch.cat([picture[:, None].float(), hp], 1)


def save_refine(net: RefineNet, path: str | Path, term_ids: list[str], card: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": "medground-refine-v1", "config": net.config, "term_ids": list(term_ids), "card": card,
                "state_dict": {k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}}, path)
    path.with_suffix(".card.json").write_text(json.dumps(card, indent=2))
    return path


class RefineBundle:
    def __init__(self, net: RefineNet, term_ids: list[str], card: dict):
        self.net, self.term_ids, self.card = net, list(term_ids), card
        self.name = card.get("name", "refine")

    @property
    def reads_embedding(self) -> bool:
        return self.net.emb_level is not None

    @torch.inference_mode()
    def probabilities(self, picture: torch.Tensor, heat_logits: torch.Tensor,
                      embedding: torch.Tensor | None = None) -> torch.Tensor:
        """(B, H, W) pictures, (B, T, G, G) heat logits of ``term_ids`` in that order (and, for a network that reads
        it, the image encoder's (B, C, H/4, W/4) embedding of the same frames) -> (B, T, H, W) probabilities."""
        emb = embedding if self.reads_embedding else None
        return torch.softmax(self.net(refine_inputs(picture, heat_logits), emb), 1)[:, 1:]


WEIGHTS = Path(__file__).parent / "weights"
DEFAULT_REFINE = WEIGHTS / "refine_ct.pt"
_CACHE: dict = {}


def refine_modality(bundle: "RefineBundle") -> str:
    """The modality a network was trained on, in the image classifier's names (CT, MRI, X-ray, ...): its card's
    ``modality`` ("MR" reads as "MRI"); the first networks, CT-only, carry none."""
    from medground.classify import MODALITY_SYNONYMS

    m = str(bundle.card.get("modality", "CT"))
    return MODALITY_SYNONYMS.get(m.lower(), m)


def choose_refiners(terms: list[str], bundles: list["RefineBundle"], modality: str | None) -> dict:
    """term -> the first network that covers it and was trained on ``modality`` (None when none does)."""
    return {t: next((b for b in bundles if t in b.term_ids and refine_modality(b) == modality), None) for t in terms}


def load_refiners(path: str | Path | None = None) -> list["RefineBundle"]:
    """The refinement networks to choose from: the one at ``path``, or every packaged ``weights/refine_*.pt``
    (one per domain, e.g. abdominal CT, cardiac MR), in name order."""
    if path:
        return [load_refine(path)]
    return [b for b in (load_refine(p) for p in sorted(WEIGHTS.glob("refine_*.pt"))) if b is not None]


def load_refine(path: str | Path | None = None) -> RefineBundle | None:
    """The packaged refinement network (None when it is not there), or one from a path."""
    p = Path(path) if path else DEFAULT_REFINE
    if str(p) in _CACHE:
        return _CACHE[str(p)]
    if not p.exists():
        if path:
            from medground.io.image import MedGroundInputError

            raise MedGroundInputError(f"no refinement weights at {p}")
        return None
    obj = torch.load(p, map_location="cpu", weights_only=False)
    if not isinstance(obj, dict) or obj.get("format") != "medground-refine-v1":
        from medground.io.image import MedGroundInputError

        raise MedGroundInputError(f"{p} is not a medground refinement checkpoint")
    cfg = obj["config"]
    net = RefineNet(cfg["terms"], tuple(cfg["widths"]), residual=bool(cfg.get("residual", False)),
                    emb_channels=int(cfg.get("emb_channels", 0)), emb_proj=int(cfg.get("emb_proj", 32)))
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in obj["state_dict"].items()}, strict=True)
    b = RefineBundle(net.eval(), obj["term_ids"], obj.get("card", {}))
    _CACHE[str(p)] = b
    return b
