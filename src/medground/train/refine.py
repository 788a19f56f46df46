"""Train the mask refinement network (:mod:`medground.models.refine`) on one converted 3D dataset.

    python -m medground.train.refine build --dataset cache/data/btcv-ct --split train --every 2 --out cache/refine/train
    python -m medground.train.refine build --dataset cache/data/btcv-ct --split val --every 2 --out cache/refine/val
    python -m medground.train.refine train --data cache/refine/train --val cache/refine/val --out cache/refine/refine_ct.pt

``build`` brings each case to the text path's canonical orientation, encodes every ``every``-th slice with LiteMedSAM,
runs the packaged organ head for every term the dataset labels, and stores per slice the network's picture (256 x 256),
the heat logits and the reference label map in the 256 frame. ``train`` fits the network on random 128 x 128 crops
(centred on a structure most of the time, small structures favoured), with the heat maps perturbed (shifted by up to
two grid cells, sharpened or flattened, noised): the head's heat on its own training slices is better than on new
patients, and the network must not learn to copy it.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def build(dataset: Path, split: str, every: int, out: Path, emb_cache: str | None = None,
          with_embedding: bool = False) -> None:
    from medground.data import read_dataset
    from medground.models.grounding import load_grounding
    from medground.train.slices import canonical_cases, slice_model

    terms = sorted({v for k, v in read_dataset(dataset)["labels"].items() if int(k)})
    g = load_grounding()
    vecs = g.term_vectors(terms)
    temb = torch.stack([vecs[t] for t in terms])
    out.mkdir(parents=True, exist_ok=True)
    for cid, pred, zs, labs in canonical_cases(dataset, split, every, slice_model(emb_cache), g, terms,
                                               done=lambda cid: (out / f"{cid}.npz").exists()):
        pics, heats, embs = [], [], []
        for i in range(0, len(zs), 8):
            chunk = zs[i: i + 8]
            pred.prepare(chunk)
            with torch.inference_mode():
                emb = torch.cat([pred.embedding(z) for z in chunk])
                hh, _ = g.head(emb, temb)
            for k, z in enumerate(chunk):
                pics.append((pred._slice_tensor(z)[0, 0].numpy() * 255).round().astype(np.uint8))
                heats.append(hh[k].numpy().astype(np.float16))
                if with_embedding:
                    embs.append(emb[k].float().numpy().astype(np.float16))
        if with_embedding:  # (slices, 256, 64, 64) float16, beside the npz: ~2 MB a slice
            np.save(out / f"{cid}.emb.npy", np.stack(embs))
        np.savez_compressed(out / f"{cid}.npz", pic=np.stack(pics), heat=np.stack(heats), lab=labs, zs=np.array(zs),
                            terms=np.array(terms))
        print(f"{cid}: {len(zs)} slices", flush=True)


def _load(folder: Path, with_embedding: bool = False):
    files = sorted(folder.glob("*.npz"))
    if not files:
        raise SystemExit(f"no .npz slices in {folder} (run `build` first)")
    parts = [np.load(f) for f in files]
    terms = [str(t) for t in parts[0]["terms"]]
    emb = None
    if with_embedding:
        missing = [f.name for f in files if not f.with_suffix(".emb.npy").exists()]
        if missing:
            raise SystemExit(f"no embeddings beside {missing[0]} (run `build --with-embedding`)")
        emb = np.concatenate([np.load(f.with_suffix(".emb.npy")) for f in files])
    return (np.concatenate([p["pic"] for p in parts]), np.concatenate([p["heat"] for p in parts]),
            np.concatenate([p["lab"] for p in parts]), terms, emb)


def _perturb(heat: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Heat logits (B, T, G, G) shifted by up to 2 cells, scaled by 0.5-1.5 and noised, per sample."""
    out = []
    for hm in heat:
        dx, dy = (int(v) for v in rng.integers(-2, 3, size=2))
        hm = torch.roll(hm, shifts=(dy, dx), dims=(-2, -1))
        hm = hm * float(rng.uniform(0.5, 1.5)) + torch.randn_like(hm) * float(rng.uniform(0, 1.0))
        out.append(hm)
    return torch.stack(out)


def _crops(lab: np.ndarray, n: int, size: int, rng: np.random.Generator, weights: np.ndarray) -> list:
    """(slice index, row, col) of ``n`` crops: 80% centred on a pixel of a structure (classes drawn with
    ``weights``), the rest anywhere."""
    S, H, W = lab.shape
    present = [np.where((lab == k).any(axis=(1, 2)))[0] for k in range(len(weights) + 1)]
    out = []
    for _ in range(n):
        k = 0
        if rng.random() < 0.8:
            w = np.array([weights[j - 1] if len(present[j]) else 0.0 for j in range(1, len(weights) + 1)])
            if w.sum() > 0:
                k = int(rng.choice(np.arange(1, len(weights) + 1), p=w / w.sum()))
        if k:
            s = int(rng.choice(present[k]))
            ys, xs = np.where(lab[s] == k)
            j = int(rng.integers(len(ys)))
            cy, cx = ys[j] + int(rng.integers(-size // 4, size // 4 + 1)), xs[j] + int(rng.integers(-size // 4, size // 4 + 1))
        else:
            s, cy, cx = int(rng.integers(S)), int(rng.integers(H)), int(rng.integers(W))
        r0 = int(np.clip(cy - size // 2, 0, H - size)) // 4 * 4  # on the embedding's 4-pixel grid
        c0 = int(np.clip(cx - size // 2, 0, W - size)) // 4 * 4
        out.append((s, r0, c0))
    return out


def dice_per_class(pred: np.ndarray, lab: np.ndarray, k: int) -> list[float]:
    out = []
    for c in range(1, k + 1):
        p, r = pred == c, lab == c
        d = p.sum() + r.sum()
        out.append(float(2 * (p & r).sum() / d) if d else float("nan"))
    return out


def evaluate(net, pic, heat, lab, batch: int = 8, emb=None) -> tuple[list[float], list[float]]:
    """Pixel Dice per class over all slices: the network's argmax, and the head's heat alone (argmax of the
    upsampled heat probabilities above 0.5) for comparison."""
    from medground.models.refine import refine_inputs

    k = heat.shape[1]
    P, B = [], []
    net.eval()
    with torch.inference_mode():
        for i in range(0, len(pic), batch):
            x = refine_inputs(torch.from_numpy(pic[i: i + batch]).float() / 255, torch.from_numpy(heat[i: i + batch]).float())
            e = None if emb is None else torch.from_numpy(emb[i: i + batch]).float()
            P.append(net(x, e).argmax(1).numpy().astype(np.uint8))
            hp = x[:, 1:]
            b = hp.argmax(1) + 1
            b[hp.max(1).values < 0.5] = 0
            B.append(b.numpy().astype(np.uint8))
    return dice_per_class(np.concatenate(P), lab, k), dice_per_class(np.concatenate(B), lab, k)


def train(data: Path, val: Path | None, out: Path, epochs: int = 12, crops_per_epoch: int = 1600, size: int = 128,
          batch: int = 16, lr: float = 2e-3, seed: int = 0, max_minutes: float | None = None, name: str = "medground-refine-ct",
          licence: str = "", modality: str = "CT", residual: bool = False,
          widths: tuple[int, ...] = (16, 24, 48, 64), embedding: bool = False, flip: bool = True) -> dict:
    """Fit the network on ``data`` (``build``'s slices); ``modality`` goes into the card: the text path uses the
    network only on images the classifier takes for that modality."""
    from medground.models.refine import RefineNet, refine_inputs, save_refine

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    pic, heat, lab, terms, emb = _load(data, embedding)
    k = len(terms)
    freq = np.array([(lab == c).sum() for c in range(1, k + 1)], dtype=float) + 1
    weights = 1 / np.sqrt(freq)  # crops: small structures favoured
    ce_w = torch.tensor(np.concatenate([[0.5], np.clip(np.sqrt(freq.max() / freq), 1, 10)]), dtype=torch.float32)
    net = RefineNet(k, widths, residual=residual, emb_channels=int(emb.shape[1]) if embedding else 0)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * (crops_per_epoch // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    vdata = _load(val, embedding) if val else None
    history, t0 = [], time.time()
    from tqdm import tqdm

    for ep in range(epochs):
        net.train()
        cs = _crops(lab, crops_per_epoch, size, rng, weights)
        losses = []
        for i in tqdm(range(0, len(cs) - batch + 1, batch), desc=f"epoch {ep + 1}/{epochs}", leave=False):
            b = cs[i: i + batch]
            p = torch.from_numpy(np.stack([pic[s, r:r + size, c:c + size] for s, r, c in b])).float() / 255
            y = torch.from_numpy(np.stack([lab[s, r:r + size, c:c + size] for s, r, c in b])).long()
            # heat: the whole slice's grid perturbed, upsampled, then the same crop
            hs = _perturb(torch.from_numpy(np.stack([heat[s] for s, _, _ in b])).float(), rng)
            full = refine_inputs(torch.zeros(len(b), pic.shape[1], pic.shape[2]), hs)[:, 1:]
            x = torch.cat([p[:, None], torch.stack([full[j, :, r:r + size, c:c + size] for j, (_, r, c) in enumerate(b)])], 1)
            x[:, :1] = x[:, :1] * float(rng.uniform(0.85, 1.15)) + float(rng.uniform(-0.05, 0.05))  # intensity jitter
            e = None
            if embedding:  # the same crop of the embedding (crops lie on its 4-pixel grid)
                q = size // 4
                e = torch.from_numpy(np.stack([emb[s, :, r // 4:r // 4 + q, c // 4:c // 4 + q] for s, r, c in b])).float()
            if flip and rng.random() < 0.5:  # a mirror of picture, heat and labels together keeps them consistent
                x, y = x.flip(-1), y.flip(-1)
                e = None if e is None else e.flip(-1)
            logits = net(x, e)
            ce = F.cross_entropy(logits, y, weight=ce_w)
            prob = torch.softmax(logits, 1)[:, 1:]
            oh = F.one_hot(y, k + 1).permute(0, 3, 1, 2)[:, 1:].float()
            inter = (prob * oh).sum((0, 2, 3))
            den = prob.sum((0, 2, 3)) + oh.sum((0, 2, 3))
            has = oh.sum((0, 2, 3)) > 0
            dice = 1 - (2 * inter[has] + 1) / (den[has] + 1) if bool(has.any()) else torch.zeros(1)
            loss = ce + dice.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        rec = {"epoch": ep + 1, "loss": round(float(np.mean(losses)), 4), "minutes": round((time.time() - t0) / 60, 1)}
        if vdata is not None and (ep + 1 == epochs or (ep + 1) % 3 == 0):
            d, base = evaluate(net, vdata[0], vdata[1], vdata[2], emb=vdata[4])
            rec["val_dice"] = {t: round(v, 3) for t, v in zip(terms, d)}
            rec["val_dice_heat"] = {t: round(v, 3) for t, v in zip(terms, base)}
            rec["val_mean"], rec["val_mean_heat"] = round(float(np.nanmean(d)), 4), round(float(np.nanmean(base)), 4)
        history.append(rec)
        print(json.dumps(rec), flush=True)
        if max_minutes and (time.time() - t0) / 60 > max_minutes:
            break
    card = {"name": name, "what": "mask refinement U-Net: slice picture + organ head heat maps -> masks at 256 x 256",
            "modality": modality, "terms": terms, "trained_on": str(data), "training_slices": int(len(pic)),
            "validated_on": str(val) if val else None,
            "epochs": len(history), "crop": size, "residual": bool(residual), "widths": list(widths),
            "reads_embedding": bool(embedding), "mirror_augmentation": bool(flip), "history": history, "licence_of_data": licence,
            "parameters": int(sum(p.numel() for p in net.parameters()))}
    save_refine(net, out, terms, card)
    return card


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m medground.train.refine")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--dataset", required=True, type=Path)
    b.add_argument("--split", default="train")
    b.add_argument("--every", type=int, default=2)
    b.add_argument("--out", required=True, type=Path)
    b.add_argument("--emb-cache", default=None, help="keep LiteMedSAM embeddings here (benchmarks/embcache.py)")
    b.add_argument("--with-embedding", action="store_true",
                   help="also store each slice's LiteMedSAM embedding (for `train --embedding`; ~2 MB a slice)")
    t = sub.add_parser("train")
    t.add_argument("--data", required=True, type=Path)
    t.add_argument("--val", default=None, type=Path)
    t.add_argument("--out", required=True, type=Path)
    t.add_argument("--epochs", type=int, default=12)
    t.add_argument("--crops", type=int, default=1600)
    t.add_argument("--max-minutes", type=float, default=None)
    t.add_argument("--licence", default="")
    t.add_argument("--modality", default="CT",
                   help="the modality of the training images, as `medground classify` names it (CT, MRI, X-ray, ...)")
    t.add_argument("--name", default="medground-refine-ct")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--residual", action="store_true",
                   help="learn a correction to the heat (the network starts as the heat) instead of masks from scratch")
    t.add_argument("--widths", default="16,24,48,64", help="channels per U-Net level")
    t.add_argument("--embedding", action="store_true",
                   help="the network also reads the slice's LiteMedSAM embedding (built with --with-embedding)")
    t.add_argument("--no-flip", action="store_true", help="no left-right mirror augmentation")
    a = ap.parse_args(argv)
    if a.cmd == "build":
        build(a.dataset, a.split, a.every, a.out, a.emb_cache, a.with_embedding)
    else:
        train(a.data, a.val, a.out, epochs=a.epochs, crops_per_epoch=a.crops, max_minutes=a.max_minutes, licence=a.licence,
              name=a.name, modality=a.modality, seed=a.seed, residual=a.residual,
              widths=tuple(int(w) for w in a.widths.split(",")), embedding=a.embedding, flip=not a.no_flip)


if __name__ == "__main__":
    main()
