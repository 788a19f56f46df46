"""The 2D orientation classifier on its own: thumbnails straight from the converted datasets (no image encoder),
training with field-of-view and intensity augmentation, single-slice accuracy per dataset, and installing the
result into a grounding checkpoint (the classifier travels with the organ head that reads its canonical frame).

    python -m medground.train.orientation build --root cache/data --out cache/orient        # ~2 min
    python -m medground.train.orientation train --data cache/orient --out cache/orient/orientation.pt
    python -m medground.train.orientation evaluate --data cache/orient --weights cache/orient/orientation.pt
    python -m medground.train.orientation evaluate --data cache/orient                       # the packaged one
    python -m medground.train.orientation install cache/orient/orientation.pt --into src/medground/models/weights/grounding.pt

Every slice of a converted volume is stored in canonical orientation (the picture the text path's orientation
check builds for a canonical volume: ``to_unit_range(image, z).T``), as a 96 x 96 thumbnail; training crops it at
random (70-100 % of each side, 30 % of the time the whole picture, as at run time), resizes it to the classifier's
64 x 64 input, jitters its gamma and contrast, and applies one of the 8 rotations/flips, the label. Datasets are
drawn in proportion to the square root of their size. ``evaluate`` reports, per dataset of the val (or test) split,
the accuracy over every slice under all 8 transforms (the card's 8-way figure), the accuracy of what the text
path then does on a slice given as it is stored in the shared data (the transform chosen, or the picture as stored
when the top probability is below ``TextConfig.orientation_min_prob``), and for volumes without orientation how
often the choice pooled over 7 slices is right (each volume under all 8 transforms).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

STORE = 96  # stored thumbnail side; the network sees 64 (medground.train.cache.THUMB)
DATASETS = ("btcv-ct", "chaos-mr", "acdc-cmr", "jsrt-cxr", "covid-cxr", "totalsegmentator-ct", "totalsegmentator-mr",
            "ct-lesions", "mr-tumour", "brain-cit168", "brain-julich", "brain-cerebellum")
# the transform the shared data's own files need (the JPEG slices of these two are not in display orientation):
# evaluate also scores single slices as stored there
STORED_AS = {"btcv-ct": "rot90", "chaos-mr": "rot90"}


def build(root: Path, out: Path, datasets=DATASETS, every_brain: int = 3, log=print) -> None:
    """Canonical thumbnails of every slice of every split of the converted datasets."""
    import medground
    from medground.data import list_cases
    from medground.io.intensity import to_unit_range
    from medground.train.cache import thumbnail

    out.mkdir(parents=True, exist_ok=True)
    thumbs, thumbs64, rows = [], [], []
    for ds in datasets:
        droot = root / ds
        if not (droot / "dataset.json").exists():
            log(f"{ds}: not converted, skipped")
            continue
        t = time.time()
        n0 = len(rows)
        for split in ("train", "val", "test"):
            for c in list_cases(droot, split):
                try:
                    im = medground.load(droot / c["image"])
                except Exception as exc:  # noqa: BLE001 - a case that does not read is skipped, said
                    log(f"  {ds}/{c['id']}: skipped ({exc})")
                    continue
                Z = im.shape[2] if im.ndim == 3 else 1
                step = every_brain if ds.startswith("brain-") else 1
                for z in range(0, Z, step):
                    pic = to_unit_range(im, z=z).T  # grey (rows, cols), as the text path shows it to the classifier
                    if float(pic.max() - pic.min()) < 1e-6:
                        continue
                    thumbs.append(thumbnail(pic, STORE))
                    thumbs64.append(thumbnail(pic))
                    rows.append({"dataset": ds, "split": split, "case": c["id"], "z": int(z)})
        log(f"{ds}: {len(rows) - n0} slices in {time.time() - t:.0f} s")
    np.save(out / "thumbs96.npy", np.stack(thumbs))
    np.save(out / "thumbs64.npy", np.stack(thumbs64))
    (out / "rows.json").write_text(json.dumps(rows))
    log(f"wrote {len(rows)} thumbnails to {out}")


def _load(data: Path):
    return (np.load(data / "thumbs96.npy"), np.load(data / "thumbs64.npy"),
            json.loads((data / "rows.json").read_text()))


def _augment(batch96: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """(N, 96, 96) float in [0, 1] -> (N, 1, 64, 64): random crop (or the whole), resize, gamma and contrast."""
    from medground.train.cache import THUMB

    out = []
    for x in batch96:
        if rng.random() < 0.7:
            s = rng.uniform(0.7, 1.0, size=2)
            h, w = int(round(STORE * s[0])), int(round(STORE * s[1]))
            y0, x0 = rng.integers(0, STORE - h + 1), rng.integers(0, STORE - w + 1)
            x = x[y0: y0 + h, x0: x0 + w]
        x = F.interpolate(x[None, None], size=(THUMB, THUMB), mode="bilinear", align_corners=False, antialias=True)[0]
        lo, hi = float(x.min()), float(x.max())
        x = (x - lo) / max(hi - lo, 1e-6)
        x = x.clamp(1e-4, 1) ** float(rng.uniform(0.6, 1.6))
        x = (x * float(rng.uniform(0.8, 1.0)) + float(rng.uniform(0.0, 0.1))).clamp(0, 1)
        x = (x * 255).round() / 255.0  # stored as 8-bit at run time
        out.append(x)
    return torch.stack(out)


def train(data: Path, out: Path, epochs: int = 30, batch: int = 128, lr: float = 2e-3, width: int = 32,
          seed: int = 0, device: str = "cpu", log=print) -> dict:
    from medground.models.orientation import OrientationNet, dihedral_torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    t96, t64, rows = _load(data)
    tr = np.array([i for i, r in enumerate(rows) if r["split"] == "train"])
    by_ds: dict[str, list[int]] = {}
    for i in tr:
        by_ds.setdefault(rows[i]["dataset"], []).append(int(i))
    w = np.zeros(len(rows))
    for ds, idx in by_ds.items():
        w[idx] = math.sqrt(len(idx)) / len(idx)
    p = w[tr] / w[tr].sum()
    net = OrientationNet(width=width).to(device)
    steps = max(1, len(tr) // batch)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps, pct_start=0.15)
    x96 = torch.from_numpy(t96).float() / 255.0
    hist = []
    t0 = time.time()
    for ep in range(epochs):
        net.train()
        tot = 0.0
        for _ in range(steps):
            idx = rng.choice(tr, size=batch, p=p)
            x = _augment(x96[idx], rng)
            k = torch.from_numpy(rng.integers(0, 8, size=batch))
            x = torch.stack([dihedral_torch(x[j], int(k[j])) for j in range(batch)])
            loss = F.cross_entropy(net(x.to(device)), k.to(device), label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach())
        acc = evaluate_net(net.eval(), t64, rows, "val")
        hist.append({"epoch": ep + 1, "loss": round(tot / steps, 4), "val_8way": round(acc["all"]["8way"], 4)})
        log(f"epoch {ep + 1}/{epochs} loss {tot / steps:.3f} val 8-way {acc['all']['8way']:.3f} "
            f"({time.time() - t0:.0f} s)")
    net.eval()
    info = {"config": {"width": width}, "epochs": epochs, "history": hist, "seconds": round(time.time() - t0),
            "datasets": sorted(by_ds), "train_slices": {d: len(v) for d, v in sorted(by_ds.items())}}
    torch.save({"state": net.state_dict(), "info": info}, out)
    return info


@torch.inference_mode()
def evaluate_net(net, t64: np.ndarray, rows: list, split: str, min_prob: float = 0.6) -> dict:
    """Per dataset of ``split``: 8-way accuracy over every slice under every transform, and the accuracy of the
    text path's choice on slices as the shared data stores them (STORED_AS; identity elsewhere)."""
    from medground.models.orientation import INVERSE, NAMES, dihedral_torch

    res: dict[str, dict] = {}
    idx = [i for i, r in enumerate(rows) if r["split"] == split]
    x = torch.from_numpy(t64[idx]).float()[:, None] / 255.0
    dsets = [rows[i]["dataset"] for i in idx]
    correct8 = np.zeros(len(idx))
    for k in range(8):
        pred = torch.cat([net(dihedral_torch(x[i: i + 512], k)).argmax(1) for i in range(0, len(x), 512)]).numpy()
        correct8 += pred == k
    stored_ok = np.zeros(len(idx), bool)
    for ds in set(dsets):
        sel = np.array([d == ds for d in dsets])
        need = NAMES.index(STORED_AS.get(ds, "identity"))  # transform that brings the stored slice to canonical
        seen_k = INVERSE[need]  # stored = dihedral(canonical, seen_k)
        xs = dihedral_torch(x[sel], seen_k)
        pr = torch.cat([F.softmax(net(xs[i: i + 512]), 1) for i in range(0, len(xs), 512)]).numpy()
        top = pr.argmax(1)
        chosen = np.where(pr.max(1) >= min_prob, top, 0)
        stored_ok[sel] = chosen == seen_k
    for ds in sorted(set(dsets)) + ["all"]:
        sel = np.ones(len(idx), bool) if ds == "all" else np.array([d == ds for d in dsets])
        res[ds] = {"slices": int(sel.sum()), "8way": float(correct8[sel].mean() / 8),
                   "as_stored": float(stored_ok[sel].mean())}
    return res


@torch.inference_mode()
def evaluate_volumes(net, t64: np.ndarray, rows: list, split: str, min_prob: float = 0.6) -> dict:
    """Per dataset of ``split``: how often the choice made for a volume without orientation (the mean of the
    probabilities over up to 7 slices of its middle half, as ``segment.text._orientation_probs``) is right, over
    each volume under all 8 transforms."""
    from medground.models.orientation import dihedral_torch
    from medground.segment.text import orientation_slices

    cases: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        if r["split"] == split:
            cases.setdefault((r["dataset"], r["case"]), []).append(i)
    res: dict[str, list[int]] = {}
    for (ds, _), idx in cases.items():
        if len(idx) < 3:
            continue
        x = torch.from_numpy(t64[[idx[z] for z in orientation_slices(len(idx))]]).float()[:, None] / 255.0
        ok = 0
        for k in range(8):
            p = F.softmax(net(dihedral_torch(x, k)), 1).mean(0).numpy()
            ok += int((int(p.argmax()) if p.max() >= min_prob else 0) == k)
        r = res.setdefault(ds, [0, 0])
        r[0] += ok
        r[1] += 8
    return {ds: {"volume_transforms": n, "right": ok} for ds, (ok, n) in sorted(res.items())}


def install(weights: Path, into: Path, note: str) -> None:
    """Put a trained classifier into a grounding checkpoint (its card says so)."""
    obj = torch.load(into, map_location="cpu", weights_only=False)
    src = torch.load(weights, map_location="cpu", weights_only=False)
    obj["orientation_state"] = src["state"]
    obj["orientation_config"] = src["info"]["config"]
    card = obj.setdefault("card", {})
    card["orientation_val_accuracy"] = src["info"].get("val_8way")
    card["orientation"] = {"trained_by": "medground.train.orientation", "note": note,
                           "train_slices": src["info"].get("train_slices"), "epochs": src["info"].get("epochs"),
                           "val": src["info"].get("val")}
    torch.save(obj, into)
    into.with_suffix(".card.json").write_text(json.dumps(card, indent=2))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m medground.train.orientation")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--root", default="cache/data")
    b.add_argument("--out", default="cache/orient")
    t = sub.add_parser("train")
    t.add_argument("--data", default="cache/orient")
    t.add_argument("--out", default="cache/orient/orientation.pt")
    t.add_argument("--epochs", type=int, default=30)
    t.add_argument("--width", type=int, default=32)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--seed", type=int, default=0)
    e = sub.add_parser("evaluate")
    e.add_argument("--data", default="cache/orient")
    e.add_argument("--weights", default=None, help="a file `train` wrote (default: the packaged head's classifier)")
    e.add_argument("--split", default="val")
    e.add_argument("--out", default=None, help="write the table here (Markdown) and its .json")
    i = sub.add_parser("install")
    i.add_argument("weights")
    i.add_argument("--into", required=True)
    i.add_argument("--note", default="")
    a = ap.parse_args(argv)
    if a.cmd == "build":
        build(Path(a.root), Path(a.out))
    elif a.cmd == "train":
        info = train(Path(a.data), Path(a.out), epochs=a.epochs, width=a.width, lr=a.lr, seed=a.seed)
        _, t64, rows = _load(Path(a.data))
        obj = torch.load(a.out, map_location="cpu", weights_only=False)
        from medground.models.orientation import OrientationNet

        net = OrientationNet(**info["config"])
        net.load_state_dict(obj["state"])
        val = evaluate_net(net.eval(), t64, rows, "val")
        obj["info"]["val"] = val
        obj["info"]["val_8way"] = val["all"]["8way"]
        torch.save(obj, a.out)
        print(json.dumps(val, indent=1))
    elif a.cmd == "evaluate":
        from medground.models.orientation import OrientationNet

        if a.weights:
            obj = torch.load(a.weights, map_location="cpu", weights_only=False)
            net = OrientationNet(**obj["info"]["config"])
            net.load_state_dict(obj["state"])
        else:
            from medground.models.grounding import load_grounding

            net = load_grounding().orientation
        _, t64, rows = _load(Path(a.data))
        res = evaluate_net(net.eval(), t64, rows, a.split)
        vol = evaluate_volumes(net.eval(), t64, rows, a.split)
        lines = [f"| dataset ({a.split}) | slices | 8-way accuracy | slice as stored: transform chosen right | "
                 "volumes x 8 transforms: chosen right |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {d} | {v['slices']} | {v['8way']:.3f} | {v['as_stored']:.3f} | "
                  + (f"{vol[d]['right']}/{vol[d]['volume_transforms']}" if d in vol else "–") + " |"
                  for d, v in res.items()]
        res = {"slices": res, "volumes": vol}
        print("\n".join(lines))
        if a.out:
            Path(a.out).write_text("\n".join(lines) + "\n")
            Path(a.out).with_suffix(".json").write_text(json.dumps(res, indent=1))
    elif a.cmd == "install":
        install(Path(a.weights), Path(a.into), a.note)
        print(f"installed {a.weights} into {a.into}")


if __name__ == "__main__":
    main()
