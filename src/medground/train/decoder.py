"""Fine-tune LiteMedSAM's prompt encoder and mask decoder on one converted 3D dataset (the image encoder stays
frozen, so its embeddings are computed once and cached).

    python -m medground.train.decoder build --dataset cache/data/btcv-ct --split train --every 2 --out cache/dec/train
    python -m medground.train.decoder build --dataset cache/data/btcv-ct --split val --every 2 --out cache/dec/val
    python -m medground.train.decoder train --data cache/dec/train --val cache/dec/val --out cache/dec/decoder_ct.pt

``build`` brings each case to the text path's canonical orientation (the frame the organ head's boxes live in),
encodes every ``every``-th slice with LiteMedSAM (``--emb-cache`` reuses stored embeddings) and stores, per case,
the embeddings (half precision, ``<case>.emb.npy``) and the reference label map in the network's 256 x 256 frame
(``<case>.npz``). ``train`` draws (slice, structure) pairs, structures balanced by 1 / sqrt(frequency), prompts the
decoder with the structure's box (its whole box or one connected piece's, each side jittered as the organ head's
boxes err, plus a margin) and fits sigmoid cross-entropy + Dice against the reference inside the picture, and the
IoU head against the mask's true IoU. ``evaluate`` scores the decoder with reference boxes, per structure, against
the pretrained one on the same boxes.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage


# ----------------------------------------------------------------------------------- data
def build(dataset: Path, split: str, every: int, out: Path, emb_cache: str | None = None) -> None:
    from medground.data import read_dataset
    from medground.models.grounding import load_grounding
    from medground.train.slices import canonical_cases, slice_model

    terms = sorted({v for k, v in read_dataset(dataset)["labels"].items() if int(k)})
    g = load_grounding()
    out.mkdir(parents=True, exist_ok=True)
    for cid, pred, zs, labs in canonical_cases(dataset, split, every, slice_model(emb_cache), g, terms,
                                               done=lambda cid: (out / f"{cid}.npz").exists()):
        embs = []
        for i in range(0, len(zs), 8):
            chunk = zs[i: i + 8]
            pred.prepare(chunk)
            embs += [pred.embedding(z)[0].half().cpu().numpy() for z in chunk]
        np.save(out / f"{cid}.emb.npy", np.stack(embs))
        np.savez_compressed(out / f"{cid}.npz", lab=labs, zs=np.array(zs), terms=np.array(terms),
                            hw=np.array(pred.new_hw))
        print(f"{cid}: {len(zs)} slices", flush=True)


class SliceSet:
    """The cached slices of a folder written by :func:`build`: embeddings memory-mapped, labels in memory."""

    def __init__(self, folder: Path):
        files = sorted(Path(folder).glob("*.npz"))
        if not files:
            raise SystemExit(f"no cached slices in {folder} (run `build` first)")
        self.embs, labs, hws = [], [], []
        for f in files:
            d = np.load(f)
            self.embs.append(np.load(f.parent / (f.stem + ".emb.npy"), mmap_mode="r"))
            labs.append(d["lab"])
            hws += [tuple(int(v) for v in d["hw"])] * len(d["lab"])
            self.terms = [str(t) for t in d["terms"]]
        self.lab = np.concatenate(labs)
        self.hw = hws
        self.index = [(i, j) for i, e in enumerate(self.embs) for j in range(len(e))]

    def embedding(self, s: int) -> torch.Tensor:
        i, j = self.index[s]
        return torch.from_numpy(np.asarray(self.embs[i][j], dtype=np.float32))

    def __len__(self) -> int:
        return len(self.lab)


def _pieces(mask: np.ndarray, min_px: int = 4) -> list[np.ndarray]:
    lab, n = ndimage.label(mask)
    return [lab == k for k in range(1, n + 1) if (lab == k).sum() >= min_px]


def _box(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float32)


def jitter_box(box: np.ndarray, hw: tuple[int, int], rng: np.random.Generator, spread: float = 0.1,
               margin: tuple[float, float] = (0.0, 6.0)) -> np.ndarray:
    """Each side moved by N(0, spread x the box's size on that axis), then grown by a margin, inside the picture."""
    w, h = box[2] - box[0] + 1, box[3] - box[1] + 1
    d = rng.normal(0, spread, 4) * np.array([w, h, w, h]) + np.array([-1, -1, 1, 1]) * rng.uniform(*margin)
    b = box + d
    b[[0, 2]] = np.clip(np.sort(b[[0, 2]]), 0, hw[1] - 1)
    b[[1, 3]] = np.clip(np.sort(b[[1, 3]]), 0, hw[0] - 1)
    return b.astype(np.float32)


def _samples(data: SliceSet, min_px: int = 4) -> tuple[list[tuple[int, int]], np.ndarray]:
    """(slice, class) pairs where the class covers at least ``min_px`` pixels, and per-pair sampling weights
    balancing the classes by 1 / sqrt(their number of pairs)."""
    pairs = []
    for s in range(len(data)):
        counts = np.bincount(data.lab[s].ravel(), minlength=len(data.terms) + 1)
        pairs += [(s, k) for k in range(1, len(data.terms) + 1) if counts[k] >= min_px]
    per_class = np.bincount([k for _, k in pairs], minlength=len(data.terms) + 1).astype(float)
    w = np.array([1 / np.sqrt(per_class[k]) / per_class[k] for _, k in pairs])
    return pairs, w / w.sum()


def head_heat(data: SliceSet, folder: Path, batch: int = 32) -> np.ndarray:
    """The packaged organ head's heat logits (slices, terms, G, G) on the cached slices, computed once and stored
    beside them (``head_heat.npy``): the boxes the text path would prompt the decoder with."""
    from medground.models.grounding import load_grounding

    f = Path(folder) / "head_heat.npy"
    if f.exists():
        return np.load(f, mmap_mode="r")
    g = load_grounding()
    vec = g.term_vectors(data.terms)
    temb = torch.stack([vec[t] for t in data.terms])
    out = []
    with torch.inference_mode():
        for i in range(0, len(data), batch):
            emb = torch.stack([data.embedding(s) for s in range(i, min(len(data), i + batch))])
            heat, _ = g.head(emb, temb)
            out.append(heat.half().numpy())
    arr = np.concatenate(out)
    np.save(f, arr)
    return arr


def head_box(heat: np.ndarray, ref: np.ndarray, hw: tuple[int, int], margin: float, rng: np.random.Generator | None,
             threshold: float = 0.5, min_cells: float = 0.5):
    """A box as the text path draws it from the organ head's heat map (256 frame): the heat blob that overlaps the
    reference most, grown by the term's calibrated margin (+- a little), and the reference pieces that box touches
    as target; None when no blob touches the structure."""
    prob = torch.sigmoid(torch.from_numpy(np.asarray(heat, dtype=np.float32)))[None, None]
    pm = F.interpolate(prob, size=(256, 256), mode="bilinear", align_corners=False)[0, 0].numpy()
    h, w = hw
    m = np.zeros((256, 256), bool)
    m[:h, :w] = pm[:h, :w] > threshold
    lab, n = ndimage.label(m)
    if n == 0:
        return None
    sizes = ndimage.sum(m, lab, range(1, n + 1))
    over = ndimage.sum(ref, lab, range(1, n + 1))
    ok = [i for i in range(n) if sizes[i] >= min_cells * 64 and over[i] > 0]
    if not ok:
        return None
    i = max(ok, key=lambda j: over[j]) + 1
    b = _box(lab == i)
    grow = margin + (rng.uniform(-2, 3) if rng is not None else 0.0)
    b = b + np.array([-1, -1, 1, 1]) * grow
    b[[0, 2]] = np.clip(b[[0, 2]], 0, w - 1)
    b[[1, 3]] = np.clip(b[[1, 3]], 0, h - 1)
    x0, y0, x1, y1 = np.round(b).astype(int)
    inside = np.zeros_like(ref)
    inside[y0: y1 + 1, x0: x1 + 1] = True
    rl, rn = ndimage.label(ref)
    keep = np.unique(rl[inside & ref])
    target = np.isin(rl, keep[keep > 0])
    return b.astype(np.float32), target


def _prompt(data: SliceSet, s: int, k: int, rng: np.random.Generator, whole: float = 0.5,
            heat: np.ndarray | None = None, margins: dict | None = None, p_head: float = 0.0):
    """Box and target of one pair: with probability ``p_head`` the organ head's box (:func:`head_box`), else the
    whole structure's or one of its connected pieces' reference box, jittered."""
    m = data.lab[s] == k
    if heat is not None and rng.random() < p_head:
        hb = head_box(heat[s, k - 1], m, data.hw[s], (margins or {}).get(data.terms[k - 1], 0.0), rng)
        if hb is not None:
            return hb
    parts = _pieces(m)
    if len(parts) > 1 and rng.random() > whole:
        m = parts[int(rng.integers(len(parts)))]
    return jitter_box(_box(m), data.hw[s], rng), m


def losses(logits: torch.Tensor, iou_pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor):
    """Sigmoid cross-entropy + soft Dice inside the picture (``valid``), and the IoU head's squared error."""
    x, y, v = logits[:, 0], target.float(), valid.float()
    bce = (F.binary_cross_entropy_with_logits(x, y, reduction="none") * v).sum((1, 2)) / v.sum((1, 2))
    p = torch.sigmoid(x) * v
    dice = 1 - (2 * (p * y).sum((1, 2)) + 1) / (p.sum((1, 2)) + y.sum((1, 2)) + 1)
    with torch.no_grad():
        hard = (x > 0) & valid
        inter = (hard & target).sum((1, 2)).float()
        union = (hard | target).sum((1, 2)).float().clamp(min=1)
        true_iou = inter / union
    mse = F.mse_loss(iou_pred[:, 0], true_iou)
    return bce.mean() + dice.mean() + mse, true_iou


def _valid(hw_list) -> torch.Tensor:
    v = torch.zeros(len(hw_list), 256, 256, dtype=torch.bool)
    for i, (h, w) in enumerate(hw_list):
        v[i, :h, :w] = True
    return v


# ----------------------------------------------------------------------------------- scoring
def evaluate(model, data: SliceSet, seed: int = 1, per_class: int = 60, batch: int = 16,
             heat: np.ndarray | None = None, margins: dict | None = None) -> dict[str, float]:
    """Mean Dice per structure of the decoder given each structure's whole reference box (slightly jittered, the
    same boxes for every model scored with the same seed), on up to ``per_class`` slices per structure. With
    ``heat`` (:func:`head_heat`): the organ head's boxes instead, scored against the whole reference (a slice
    where no head blob touches the structure is left out)."""
    rng = np.random.default_rng(seed)
    pairs, _ = _samples(data)
    by = {}
    for s, k in pairs:
        by.setdefault(k, []).append((s, k))
    chosen = []
    for k, ps in sorted(by.items()):
        idx = rng.permutation(len(ps))[:per_class]
        chosen += [ps[i] for i in sorted(idx)]
    if heat is None:
        boxes = [jitter_box(_box(data.lab[s] == k), data.hw[s], rng, spread=0.05, margin=(0, 3)) for s, k in chosen]
    else:
        hb = [head_box(heat[s, k - 1], data.lab[s] == k, data.hw[s], (margins or {}).get(data.terms[k - 1], 0.0),
                       None) for s, k in chosen]
        chosen = [c for c, b in zip(chosen, hb) if b is not None]
        boxes = [b[0] for b in hb if b is not None]
    dice: dict[int, list[float]] = {}
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(chosen), batch):
            ch = chosen[i: i + batch]
            emb = torch.stack([data.embedding(s) for s, _ in ch]).to(model.device)
            logits, _ = model.decode(emb, boxes=torch.from_numpy(np.stack(boxes[i: i + batch])))
            logits = logits.cpu()
            valid = _valid([data.hw[s] for s, _ in ch])
            for j, (s, k) in enumerate(ch):
                p = (logits[j, 0] > 0) & valid[j]
                r = torch.from_numpy(data.lab[s] == k)
                d = float(2 * (p & r).sum() / max(1, int(p.sum() + r.sum())))
                dice.setdefault(k, []).append(d)
    return {data.terms[k - 1]: round(float(np.mean(v)), 4) for k, v in sorted(dice.items())}


# ----------------------------------------------------------------------------------- training
def head_margins() -> dict[str, float]:
    """Per term, how far the text path grows the organ head's boxes (the packaged head's calibration)."""
    from medground.models.grounding import load_grounding

    return {t: float(c.get("box_margin", 0.0)) for t, c in load_grounding().calibration.items()}


def train(data_dir: Path, val_dir: Path | None, out: Path, steps: int = 4000, batch: int = 8, lr: float = 5e-5,
          seed: int = 0, max_minutes: float | None = None, eval_every: int = 0, name: str = "litemedsam-decoder-ct",
          licence: str = "", device: str | torch.device = "cpu", head_boxes: float = 0.0) -> dict:
    """``head_boxes``: the share of prompts that are the organ head's own boxes on the slice (:func:`head_box`)
    rather than jittered reference boxes; with it, validation also scores the decoder on the head's boxes."""
    from tqdm import tqdm

    from medground.models import load_model
    from medground.models.decoders import save_decoder

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    data = SliceSet(data_dir)
    val = SliceSet(val_dir) if val_dir else None
    model = load_model("litemedsam", cache=False).to(device)  # trained in place: not the shared copy
    model.train()
    params = [p for n, p in model.named_parameters() if n.startswith(("mask_decoder", "prompt_encoder"))]
    for n, p in model.named_parameters():
        p.requires_grad_(n.startswith(("mask_decoder", "prompt_encoder")))
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    pairs, w = _samples(data)
    history: list[dict] = []
    heat = head_heat(data, data_dir) if head_boxes else None
    vheat = head_heat(val, val_dir) if head_boxes and val else None
    margins = head_margins() if head_boxes else None

    def score() -> dict:
        d = evaluate(model, val)
        rec = {"val_dice": d, "val_mean": round(float(np.mean(list(d.values()))), 4)}
        if vheat is not None:
            d = evaluate(model, val, heat=vheat, margins=margins)
            rec.update(val_dice_head_boxes=d, val_mean_head_boxes=round(float(np.mean(list(d.values()))), 4))
        return rec

    base = score() if val else None
    if base:
        print(json.dumps({"step": 0, **base}), flush=True)
    t0 = time.time()
    run: list[float] = []
    bar = tqdm(range(steps), desc="decoder", leave=False)
    done = 0
    for step in bar:
        pick = rng.choice(len(pairs), size=batch, p=w)
        ch = [pairs[i] for i in pick]
        prompts = [_prompt(data, s, k, rng, heat=heat, margins=margins, p_head=head_boxes) for s, k in ch]
        emb = torch.stack([data.embedding(s) for s, _ in ch]).to(device)
        boxes = torch.from_numpy(np.stack([b for b, _ in prompts])).to(device)
        target = torch.from_numpy(np.stack([m for _, m in prompts])).to(device)
        model.train()
        logits, iou = model.decode(emb, boxes=boxes)
        loss, _ = losses(logits, iou, target, _valid([data.hw[s] for s, _ in ch]).to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        run.append(float(loss.detach()))
        done = step + 1
        if done % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(run[-50:]):.3f}")
        last = done == steps or (max_minutes and (time.time() - t0) / 60 > max_minutes)
        if (eval_every and done % eval_every == 0) or last:
            rec = {"step": done, "loss": round(float(np.mean(run[-200:])), 4), "minutes": round((time.time() - t0) / 60, 1)}
            if val:
                rec.update(score())
            history.append(rec)
            print(json.dumps(rec), flush=True)
        if last:
            break
    card = {"name": name, "what": "LiteMedSAM prompt encoder + mask decoder fine-tuned on jittered reference boxes"
            + (f" and ({head_boxes:.0%} of prompts) the organ head's own boxes" if head_boxes else "")
            + " (image encoder frozen, the packaged LiteMedSAM's)", "head_boxes": head_boxes, "terms": data.terms, "trained_on": str(data_dir),
            "training_slices": len(data), "validated_on": str(val_dir) if val_dir else None, "steps": done,
            "batch": batch, "lr": lr, "history": history, "licence_of_data": licence,
            "val_pretrained": base,
            "parameters": int(sum(p.numel() for p in params))}
    save_decoder(model.cpu(), out, card)
    return card


def run_config(cfg: dict, device: str | torch.device = "cpu", log=print) -> dict:
    """``medground train --config`` with ``kind: decoder`` (configs/decoder_ct.yaml): build the slice caches of the
    config's dataset (train and val splits) where missing, then train."""
    (ds,) = [d if isinstance(d, str) else d["name"] for d in cfg["datasets"]]
    root, cache = Path(cfg["data_root"]) / ds, Path(cfg.get("cache_dir", "cache/decoder"))
    every = int(cfg.get("every", 2))
    for split in ("train", "val"):
        log(f"caching {ds} {split} slices (every {every}) in {cache / split} ...")
        build(root, split, every, cache / split, cfg.get("emb_cache"))
    t = dict(cfg.get("train") or {})
    return train(cache / "train", cache / "val", Path(cfg["out"]), steps=int(t.get("steps", 1200)),
                 batch=int(t.get("batch", 8)), lr=float(t.get("lr", 1e-4)), seed=int(cfg.get("seed", 0)),
                 eval_every=int(t.get("eval_every", 0)), name=cfg.get("name", "litemedsam-decoder-ct"),
                 licence="; ".join(f"{k}: {v}" for k, v in (cfg.get("licences") or {}).items()), device=device,
                 head_boxes=float(t.get("head_boxes", 0.0)))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m medground.train.decoder")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--dataset", required=True, type=Path)
    b.add_argument("--split", default="train")
    b.add_argument("--every", type=int, default=2)
    b.add_argument("--out", required=True, type=Path)
    b.add_argument("--emb-cache", default=None, help="keep LiteMedSAM embeddings here (benchmarks/embcache.py)")
    t = sub.add_parser("train")
    t.add_argument("--data", required=True, type=Path)
    t.add_argument("--val", default=None, type=Path)
    t.add_argument("--out", required=True, type=Path)
    t.add_argument("--steps", type=int, default=4000)
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--lr", type=float, default=5e-5)
    t.add_argument("--eval-every", type=int, default=0)
    t.add_argument("--max-minutes", type=float, default=None)
    t.add_argument("--licence", default="")
    t.add_argument("--head-boxes", type=float, default=0.0,
                   help="share of prompts that are the organ head's own boxes (0: jittered reference boxes only)")
    e = sub.add_parser("evaluate")
    e.add_argument("--val", required=True, type=Path)
    e.add_argument("--weights", default=None, help="a decoder checkpoint; none = the pretrained LiteMedSAM")
    e.add_argument("--head-boxes", action="store_true", help="prompt with the organ head's boxes")
    a = ap.parse_args(argv)
    if a.cmd == "build":
        build(a.dataset, a.split, a.every, a.out, a.emb_cache)
    elif a.cmd == "train":
        train(a.data, a.val, a.out, steps=a.steps, batch=a.batch, lr=a.lr, max_minutes=a.max_minutes,
              eval_every=a.eval_every, licence=a.licence, head_boxes=a.head_boxes)
    else:
        from medground.models import load_model
        from medground.models.decoders import apply_decoder

        model = load_model("litemedsam")
        if a.weights:
            model = apply_decoder(model, a.weights)
        val = SliceSet(a.val)
        d = (evaluate(model, val, heat=head_heat(val, a.val), margins=head_margins()) if a.head_boxes
             else evaluate(model, val))
        print(json.dumps({"val_dice": d, "val_mean": round(float(np.mean(list(d.values()))), 4)}))


if __name__ == "__main__":
    main()
