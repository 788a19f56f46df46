"""Training of the grounding head (and the 2D orientation classifier) on an embedding cache."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from medground.models.grounding import GroundingHead
from medground.models.orientation import OrientationNet, dihedral_torch
from medground.train.cache import EmbeddingCache


@dataclass
class HeadTrainConfig:
    epochs: int = 30
    batch: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    neg_per_slice: int = 4
    min_present_cells: float = 0.25  # a structure covering less than this many grid cells is ambiguous
    seed: int = 0
    head: dict = field(default_factory=dict)
    log_every: int = 50
    # dataset name -> terms that are never on its slices although the dataset does not label them (kidneys on a
    # chest radiograph, abdominal organs on a brain MR): extra true negatives, so that a prompt for a structure
    # outside the field of view is answered "absent" instead of drawn where a similar one would be
    absent: dict = field(default_factory=dict)
    # weight of the soft-Dice term of present structures (scale-free: a 3-cell adrenal counts as much as the liver)
    dice_weight: float = 1.0
    # a present structure covering A < small_cells grid cells has its cells' BCE weighted by
    # min(pos_weight_max, sqrt(small_cells / A)); 1: off. Without it, the heat of structures of 1-4 cells (the
    # adrenal glands on a 64 grid) collapses to ~0 while their presence is learned
    pos_weight_max: float = 1.0
    small_cells: float = 64.0
    # warm start: the head's weights from this checkpoint (same architecture), e.g. to fine-tune with another loss
    init_from: str | None = None


def _soft_dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    return 1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)


def heat_losses(heat: torch.Tensor, heat_t: torch.Tensor, pos: torch.Tensor, cfg: HeadTrainConfig):
    """(BCE term, soft-Dice term) of a batch of pairs' heat logits (P, G, G) against covered fractions (P, G, G);
    ``pos``: the pairs whose structure is present. Present pairs' BCE counts twice; with ``cfg.pos_weight_max`` > 1
    the cells of a structure smaller than ``cfg.small_cells`` are weighted up (see :class:`HeadTrainConfig`)."""
    cell_w = None
    if cfg.pos_weight_max > 1:
        area = heat_t.sum((1, 2))
        w = torch.where(pos, (cfg.small_cells / area.clamp(min=0.25)).sqrt().clamp(1, cfg.pos_weight_max),
                        torch.ones_like(area))
        cell_w = 1 + (w[:, None, None] - 1) * heat_t
    bce = F.binary_cross_entropy_with_logits(heat, heat_t, weight=cell_w, reduction="none").mean((1, 2))
    loss_heat = (bce * (1 + pos.float())).mean() * 10
    loss_dice = _soft_dice(heat[pos], heat_t[pos]).mean() if pos.any() else heat.sum() * 0
    return loss_heat, loss_dice


def make_pairs(cache: EmbeddingCache, rows: np.ndarray, rng: np.random.Generator, cfg: HeadTrainConfig,
               term_ok: np.ndarray):
    """Pairs (batch position, term index), heat targets and presence targets for a batch of rows."""
    g = cache.grid
    pairs, heat_t, pres_t, pres_w = [], [], [], []
    tid = {t: i for i, t in enumerate(cache.terms)}
    for b, r in enumerate(rows):
        present = cache.by_row.get(int(r), [])
        pos_terms = set()
        for t, k in present:
            if not term_ok[t]:
                continue
            m = cache.tmasks[k].astype(np.float32) / 255.0
            pos_terms.add(t)
            pairs.append((b, t))
            heat_t.append(m)
            pres_t.append(1.0)
            pres_w.append(1.0 if m.sum() >= cfg.min_present_cells else 0.0)
        row = cache.rows[int(r)]
        cands = dict.fromkeys(list(row["labelled"]) + list(cfg.absent.get(row["dataset"], [])))
        neg = [tid[x] for x in cands if x in tid and tid[x] not in pos_terms and term_ok[tid[x]]]
        if neg:
            for t in rng.choice(neg, size=min(cfg.neg_per_slice, len(neg)), replace=False):
                pairs.append((b, int(t)))
                heat_t.append(np.zeros((g, g), np.float32))
                pres_t.append(0.0)
                pres_w.append(1.0)
    return (torch.tensor(pairs, dtype=torch.long).reshape(-1, 2), torch.from_numpy(np.stack(heat_t)),
            torch.tensor(pres_t), torch.tensor(pres_w))


def train_head(cache: EmbeddingCache, term_emb: torch.Tensor, cfg: HeadTrainConfig, device: str = "cpu",
               log=print) -> tuple[GroundingHead, dict]:
    """Train on the cache's 'train' rows; report grid-level scores on its 'val' rows."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    head = GroundingHead(grid=cache.grid, text_dim=term_emb.shape[1], **cfg.head).to(device)
    if cfg.init_from:
        from pathlib import Path

        from medground.io.image import MedGroundInputError
        from medground.models.grounding import load_head

        if not Path(cfg.init_from).is_file():
            raise MedGroundInputError(f"train.init_from: no checkpoint at {cfg.init_from} (train the head it starts "
                                      "from first, e.g. configs/textseg_v4.yaml before configs/textseg_v5.yaml)")
        start, _ = load_head(cfg.init_from)
        if start.config != head.config:
            raise MedGroundInputError(f"train.init_from {cfg.init_from}: its head config {start.config} differs from "
                                      f"this one {head.config}")
        head.load_state_dict(start.state_dict())
        head.train()
    term_ok = np.ones(len(cache.terms), dtype=bool)
    train_rows = cache.select("train")
    steps_per_epoch = max(1, math.ceil(len(train_rows) / cfg.batch))
    total = cfg.epochs * steps_per_epoch
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(total, 20), pct_start=0.1)
    temb = term_emb.to(device)
    step = 0
    t0 = time.time()
    history = []
    for epoch in range(cfg.epochs):
        head.train()
        perm = rng.permutation(train_rows)
        run = []
        for i in range(steps_per_epoch):
            rows = perm[i * cfg.batch: (i + 1) * cfg.batch]
            if len(rows) == 0:
                continue
            pairs, heat_t, pres_t, pres_w = make_pairs(cache, rows, rng, cfg, term_ok)
            if len(pairs) == 0:
                continue
            emb = torch.from_numpy(cache.emb[rows].astype(np.float32))
            emb, pairs = emb.to(device), pairs.to(device)
            heat, pres = head(emb, temb, pairs)
            heat_t, pres_t, pres_w = heat_t.to(device), pres_t.to(device), pres_w.to(device)
            pos = pres_t > 0
            loss_heat, loss_dice = heat_losses(heat, heat_t, pos, cfg)
            loss_pres = (F.binary_cross_entropy_with_logits(pres, pres_t, reduction="none") * pres_w).sum() / \
                pres_w.sum().clamp(min=1)
            loss = loss_heat + cfg.dice_weight * loss_dice + loss_pres
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            run.append([loss.item(), loss_heat.item(), loss_dice.item(), loss_pres.item()])
        m = np.mean(run, axis=0) if run else [float("nan")] * 4
        val = evaluate_head(head, cache, temb, "val", device)
        history.append({"epoch": epoch + 1, "loss": float(m[0]), **val})
        log(f"epoch {epoch + 1}/{cfg.epochs} loss {m[0]:.3f} (heat {m[1]:.3f} dice {m[2]:.3f} pres {m[3]:.3f}) "
            f"val grid-dice {val['grid_dice']:.3f} presence-acc {val['presence_acc']:.3f} "
            f"absent-as-absent {val['absent_specificity']:.3f} [{time.time() - t0:.0f}s]")
    head.eval()
    return head, {"history": history, "final_val": history[-1] if history else {}}


@torch.inference_mode()
def evaluate_head(head: GroundingHead, cache: EmbeddingCache, temb: torch.Tensor, split: str,
                  device: str = "cpu", batch: int = 64) -> dict:
    rows = cache.select(split)
    rows = rows[np.array([cache.rows[i]["aug"] == 0 for i in rows], dtype=bool)] if len(rows) else rows
    if len(rows) == 0:
        return {"grid_dice": float("nan"), "presence_acc": float("nan"), "absent_specificity": float("nan")}
    head.eval()
    tid = {t: i for i, t in enumerate(cache.terms)}
    dices, correct, n_pres, tn, n_abs = [], 0, 0, 0, 0
    for i in range(0, len(rows), batch):
        rs = rows[i: i + batch]
        emb = torch.from_numpy(cache.emb[rs].astype(np.float32)).to(device)
        feats = head.image_features(emb)
        for b, r in enumerate(rs):
            lab = [tid[t] for t in cache.rows[int(r)]["labelled"]]
            if not lab:
                continue
            pairs = torch.tensor([(b, t) for t in lab], device=device)
            heat, pres = head(None, temb, pairs, features=feats)
            present = {t: k for t, k in cache.by_row.get(int(r), [])}
            for j, t in enumerate(lab):
                p = bool(pres[j] > 0)
                if t in present:
                    tgt = cache.tmasks[present[t]].astype(np.float32) / 255.0
                    if tgt.sum() < 1.0:
                        continue  # too small to judge at grid level
                    h = (torch.sigmoid(heat[j]) > 0.5).float().cpu().numpy()
                    tb = tgt > 0.5
                    s = h.sum() + tb.sum()
                    dices.append(2 * (h * tb).sum() / s if s else 1.0)
                    correct += p
                    n_pres += 1
                else:
                    tn += (not p)
                    n_abs += 1
    return {"grid_dice": float(np.mean(dices)) if dices else float("nan"),
            "presence_acc": float((correct + tn) / max(1, n_pres + n_abs)),
            "present_sensitivity": float(correct / max(1, n_pres)),
            "absent_specificity": float(tn / max(1, n_abs))}


def train_orientation(cache: EmbeddingCache, epochs: int = 8, batch: int = 128, lr: float = 2e-3, seed: int = 0,
                      device: str = "cpu", log=print) -> tuple[OrientationNet, dict]:
    """8-way classifier of which rotation/flip turns a canonical thumbnail into the one seen."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = OrientationNet().to(device)
    tr = cache.select("train")
    va = cache.select("val")
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps = max(1, math.ceil(len(tr) / batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(epochs * steps, 20), pct_start=0.15)
    thumbs = torch.from_numpy(cache.thumbs).float() / 255.0
    hist = []
    for ep in range(epochs):
        net.train()
        perm = rng.permutation(tr)
        for i in range(steps):
            idx = perm[i * batch: (i + 1) * batch]
            x = thumbs[idx][:, None]
            k = torch.from_numpy(rng.integers(0, 8, size=len(idx)))
            # intensity jitter: gamma and contrast
            gam = torch.from_numpy(rng.uniform(0.6, 1.6, size=(len(idx), 1, 1, 1))).float()
            x = x.clamp(1e-4, 1) ** gam
            x = torch.stack([dihedral_torch(x[j], int(k[j])) for j in range(len(idx))])
            loss = F.cross_entropy(net(x.to(device)), k.to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        acc = orientation_accuracy(net, thumbs[va], device) if len(va) else float("nan")
        hist.append({"epoch": ep + 1, "loss": float(loss.item()), "val_acc": acc})
        log(f"orientation epoch {ep + 1}/{epochs} loss {loss.item():.3f} val acc (8-way) {acc:.3f}")
    net.eval()
    return net, {"history": hist}


@torch.inference_mode()
def orientation_accuracy(net: nn.Module, thumbs: torch.Tensor, device: str = "cpu") -> float:
    net.eval()
    correct, n = 0, 0
    for k in range(8):
        x = torch.stack([dihedral_torch(t[None], k) for t in thumbs])
        pred = net(x.to(device)).argmax(1).cpu()
        correct += int((pred == k).sum())
        n += len(thumbs)
    return correct / max(1, n)
