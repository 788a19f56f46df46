"""Train the classifier (modality / body region / view heads, then the image-text projection).

    python -m medground.classify.data --out cache/classify/dataset.npz      # build the thumbnails (~3 min)
    python -m medground.classify.train --data cache/classify/dataset.npz --out cache/classify/classify_split.pt \
        --metrics cache/classify/metrics_split.json                          # held-out evaluation (~10 min)
    python -m medground.classify.train --final --data cache/classify/dataset.npz \
        --card-metrics cache/classify/metrics_split.json --out cache/classify/final/classify.pt   # shipped weights

Defaults are the shipped recipe (96 px input, width 16, 12 x 3072 pictures, image-text loss weight 0.1).

Split: by patient / source image (``group``), 1 in 5 groups held out for sources with at least 5 groups;
synthetic pictures follow the group they were made from. ``--holdout-source NAME`` (repeatable) also holds a
whole dataset out (leave-one-dataset-out figures). Training is a benchmark, not a CI test.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from medground.classify.net import MODALITIES, REGIONS, VIEWS, ClassifierNet
from medground.classify.preprocess import INPUT, THUMB


def base_source(s: str) -> str:
    for suf in ("-pet", "-nm"):
        if s.endswith(suf):
            return s[: -len(suf)]
    return s


def split_mask(groups: np.ndarray, sources: np.ndarray, holdout_sources=()) -> np.ndarray:
    """True = validation."""
    per_src = defaultdict(set)
    for g, s in zip(groups, sources):
        per_src[base_source(s)].add(g.split(":", 1)[1])
    val = np.zeros(len(groups), bool)
    for i, (g, s) in enumerate(zip(groups, sources)):
        b = base_source(s)
        key = g.split(":", 1)[1]
        if b in holdout_sources or s in holdout_sources:
            val[i] = True
        elif len(per_src[b]) >= 5 and int(hashlib.md5(f"{b}:{key}".encode()).hexdigest(), 16) % 5 == 0:
            val[i] = True
    return val


def sample_weights(mod: np.ndarray, src: np.ndarray) -> np.ndarray:
    """Each modality equal in total; within a modality each source ~ sqrt(its size)."""
    w = np.zeros(len(mod))
    for m in np.unique(mod):
        idx = np.where(mod == m)[0]
        sc = Counter(src[idx])
        tot = sum(math.sqrt(n) for n in sc.values())
        for i in idx:
            w[i] = math.sqrt(sc[src[i]]) / tot / sc[src[i]]
    return w / w.sum()


def augment(x: torch.Tensor, la: torch.Tensor, gen: torch.Generator, strong: bool = True, size: int = INPUT):
    """(B, 3, THUMB, THUMB) float [0,1] -> (B, 3, size, size) augmented, and jittered log-aspect."""
    b = x.shape[0]

    def U(lo, hi, *shape):
        return torch.rand(*(shape or (b,)), generator=gen) * (hi - lo) + lo

    scale = U(0.6, 1.0)
    ar = torch.exp(U(-0.15, 0.15))
    sx, sy = scale * ar.sqrt(), scale / ar.sqrt()
    ang = U(-0.3, 0.3) * (torch.rand(b, generator=gen) < 0.5)
    tx, ty = U(-1, 1) * (1 - sx).clamp(min=0), U(-1, 1) * (1 - sy).clamp(min=0)
    cos, sin = torch.cos(ang), torch.sin(ang)
    theta = torch.stack([torch.stack([sx * cos, -sy * sin, tx], 1), torch.stack([sx * sin, sy * cos, ty], 1)], 1)
    grid = F.affine_grid(theta, (b, 3, size, size), align_corners=False)
    side = min(int(size * 1.25), THUMB)
    small = x if side == THUMB else F.interpolate(x, size=(side, side), mode="bilinear", antialias=True,
                                                   align_corners=False)
    y = F.grid_sample(small, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    la = la + torch.log(ar) + torch.randn(b, generator=gen) * 0.05
    # dihedral
    k = torch.randint(0, 4, (b,), generator=gen) * (torch.rand(b, generator=gen) < 0.25)
    for kk in (1, 2, 3):
        m = k == kk
        if m.any():
            y[m] = torch.rot90(y[m], kk, (2, 3))
            if kk % 2 == 1:
                la[m] = -la[m]
    hf = torch.rand(b, generator=gen) < 0.5
    y[hf] = y[hf].flip(3)
    vf = torch.rand(b, generator=gen) < 0.15
    y[vf] = y[vf].flip(2)
    if strong:
        gamma = torch.exp(U(-0.4, 0.4)).view(b, 1, 1, 1)
        y = y.clamp(1e-4, 1) ** gamma
        c = U(0.75, 1.25).view(b, 1, 1, 1)
        br = U(-0.08, 0.08).view(b, 1, 1, 1)
        mean = y.mean((1, 2, 3), keepdim=True)
        y = (y - mean) * c + mean + br
        gain = (1 + 0.08 * torch.randn(b, 3, 1, 1, generator=gen))
        colour = (y.amax(1) - y.amin(1)).mean((1, 2)) > 0.03
        y = torch.where(colour.view(b, 1, 1, 1), y * gain, y)
        blur = torch.rand(b, generator=gen) < 0.2
        if blur.any():
            f = int(torch.randint(2, 4, (1,), generator=gen))
            y[blur] = F.interpolate(F.avg_pool2d(y[blur], f), size=(size, size), mode="bilinear", align_corners=False)
        y = y + torch.randn(y.shape, generator=gen) * U(0, 0.04).view(b, 1, 1, 1)
    return y.clamp(0, 1), la


def centre(x: torch.Tensor, size: int = INPUT) -> torch.Tensor:
    m = int(round(THUMB * 0.05))
    x = x[:, :, m: THUMB - m, m: THUMB - m]
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def to_float(thumbs: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(thumbs).permute(0, 3, 1, 2).float() / 255.0


@torch.no_grad()
def predict(net: ClassifierNet, thumbs: np.ndarray, aspect: np.ndarray, bs: int = 256):
    net.eval()
    outs = []
    for i in range(0, len(thumbs), bs):
        x = centre(to_float(thumbs[i: i + bs]), net.input_size)
        la = torch.log(torch.from_numpy(aspect[i: i + bs]).clamp(0.05, 20))
        f, lm, lr, lv = net(x, la)
        outs.append((f, lm, lr, lv))
    return [torch.cat([o[j] for o in outs]) for j in range(4)]


def evaluate(net, d, idx) -> dict:
    f, lm, lr, lv = predict(net, d["thumbs"][idx], d["aspect"][idx])
    res = {}
    for name, logits, y, names in (("modality", lm, d["modality"][idx], MODALITIES), ("body_region", lr, d["region"][idx], REGIONS),
                                   ("view", lv, d["view"][idx], VIEWS)):
        ok = y >= 0
        pred = logits.argmax(1).numpy()
        res[name] = {"accuracy": float((pred[ok] == y[ok]).mean()) if ok.any() else None, "n": int(ok.sum())}
        per = {}
        for c in np.unique(y[ok]):
            m = y == c
            per[names[c]] = {"accuracy": round(float((pred[m] == c).mean()), 4), "n": int(m.sum())}
        res[name]["per_class"] = per
        if name == "modality":
            ps = {}
            src = d["source"][idx]
            for s in np.unique(src[ok]):
                m = ok & (src == s)
                ps[s] = {"accuracy": round(float((pred[m] == y[m]).mean()), 4), "n": int(m.sum())}
            res[name]["per_source"] = ps
            res[name]["confusion"] = {MODALITIES[a]: dict(Counter(MODALITIES[p] for p in pred[ok & (y == a)]))
                                      for a in np.unique(y[ok])}
    return res


def text_options(d, idx, seed=0, log=print):
    """(MiniLM vectors of the vocabulary, per-sample lists of text ids) for samples ``idx``."""
    rng = np.random.default_rng(seed)
    per = [sample_texts(d, i, rng) for i in idx]
    vocab = sorted({t for base, extra in per for t in base + extra})
    tv = encode_cached(vocab, log)
    tid = {t: k for k, t in enumerate(vocab)}
    return tv, [[tid[t] for t in base + extra] for base, extra in per]


def clip_loss(net: ClassifierNet, img: torch.Tensor, ti: np.ndarray, tv: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE; images sharing a text are all positives of that text."""
    uniq, inv = np.unique(ti, return_inverse=True)
    txt = net.embed_text(tv[torch.from_numpy(uniq)])
    logits = img @ txt.T * net.logit_scale.exp().clamp(max=100)
    target = torch.from_numpy(inv.reshape(-1))
    l_i = F.cross_entropy(logits, target)
    pos = (target[None, :] == torch.arange(len(uniq))[:, None]).float()
    l_t = -(F.log_softmax(logits.T, 1) * pos / pos.sum(1, keepdim=True)).sum(1).mean()
    return (l_i + l_t) / 2


def train_heads(d, tr, epochs=12, per_epoch=4096, bs=64, lr=3e-3, seed=0, width=16, log=print,
                contrastive: float = 0.0, input_size: int = INPUT) -> ClassifierNet:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = ClassifierNet(width=width, input_size=input_size)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * (per_epoch // bs)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    w = sample_weights(d["modality"][tr], d["source"][tr])
    rng = np.random.default_rng(seed)
    thumbs, aspect = d["thumbs"], d["aspect"]
    ym, yr, yv = (torch.from_numpy(d[k].astype(np.int64)) for k in ("modality", "region", "view"))
    step = 0
    if contrastive > 0:
        tv, opts_tr = text_options(d, tr, seed, log)
        opts = {int(i): o for i, o in zip(tr, opts_tr)}
    t0 = time.time()
    for ep in range(epochs):
        net.train()
        tot = 0.0
        for _ in range(per_epoch // bs):
            bi = tr[rng.choice(len(tr), size=bs, p=w)]
            x = to_float(thumbs[bi])
            la = torch.log(torch.from_numpy(aspect[bi]).clamp(0.05, 20))
            x, la = augment(x, la, gen, size=input_size)
            f, lm, lr_, lv = net(x, la)
            loss = F.cross_entropy(lm, ym[bi], ignore_index=-1, label_smoothing=0.05)
            if contrastive > 0:
                has = np.array([bool(opts[int(i)]) for i in bi])
                if has.sum() > 1:
                    ti = np.array([opts[int(i)][int(rng.integers(len(opts[int(i)])))] for i in bi[has]])
                    emb = net.embed(f[torch.from_numpy(has)], (lm[torch.from_numpy(has)], lr_[torch.from_numpy(has)],
                                                               lv[torch.from_numpy(has)]))
                    loss = loss + contrastive * clip_loss(net, emb, ti, tv)
            for logits, y, wt in ((lr_, yr[bi], 0.5), (lv, yv[bi], 0.5)):
                if (y >= 0).any():
                    loss = loss + wt * F.cross_entropy(logits, y, ignore_index=-1, label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            tot += float(loss.detach())
        log(f"epoch {ep + 1}/{epochs} loss {tot / (per_epoch // bs):.3f} ({time.time() - t0:.0f}s)")
    return net.eval()


# ------------------------------------------------------------------------------- image-text alignment
def sample_texts(d, i: int, rng) -> list[str]:
    m = MODALITIES[d["modality"][i]] if d["modality"][i] >= 0 else None
    r = REGIONS[d["region"][i]] if d["region"][i] >= 0 else None
    v = VIEWS[d["view"][i]] if d["view"][i] >= 0 else None
    out = []
    if m:
        out += [f"a {m} image", f"{m}"]
        if r:
            out += [f"a {m} image of the {r}", f"{m} {r}"]
            if v and v != "n/a":
                out.append(f"{v} {m} of the {r}")
    elif r:
        out.append(f"an image of the {r}")
    extra = json.loads(d["texts"][i])
    return out, extra


TEXT_CACHE = Path("cache/classify/text_vectors.pt")


def encode_cached(texts: list[str], log=print) -> torch.Tensor:
    """MiniLM vectors, cached on disk (git-ignored cache/) across training runs."""
    from medground.models.text import text_encoder

    cache = {}
    if TEXT_CACHE.is_file():
        try:
            cache = torch.load(TEXT_CACHE, weights_only=False)
        except Exception:
            cache = {}
    todo = [t for t in texts if t not in cache]
    if todo:
        log(f"encoding {len(todo)} texts with MiniLM")
        t0 = time.time()
        v = text_encoder().encode(todo)
        cache.update({t: row.clone() for t, row in zip(todo, v)})
        log(f"  {time.time() - t0:.0f}s")
        try:
            TEXT_CACHE.parent.mkdir(parents=True, exist_ok=True)
            torch.save(cache, TEXT_CACHE)
        except OSError:
            pass
    return torch.stack([cache[t] for t in texts]) if texts else torch.zeros((0, 384))


def train_projection(net: ClassifierNet, d, tr, steps=400, bs=256, seed=0, log=print) -> dict:

    rng = np.random.default_rng(seed)
    f, lm, lr_, lv = predict(net, d["thumbs"][tr], d["aspect"][tr])
    feats = torch.cat([f, F.softmax(lm, -1), F.softmax(lr_, -1), F.softmax(lv, -1)], 1)
    tv, opts = text_options(d, tr, seed, log)
    vocab = tv
    params = list(net.proj.parameters()) + list(net.text_proj.parameters()) + [net.logit_scale]
    opt = torch.optim.AdamW(params, lr=2e-3, weight_decay=1e-4)
    w = sample_weights(d["modality"][tr].astype(int), d["source"][tr])
    for step in range(steps):
        bi = rng.choice(len(tr), size=bs, p=w)
        bi = np.array([i for i in bi if opts[i]])
        ti = np.array([opts[i][int(rng.integers(len(opts[i])))] for i in bi])
        img = F.normalize(net.proj(feats[bi]), dim=-1)
        loss = clip_loss(net, img, ti, tv)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % 100 == 0:
            log(f"align step {step + 1}/{steps} loss {float(loss.detach()):.3f} scale {float(net.logit_scale.exp()):.1f}")
    return {"texts": int(len(vocab)), "steps": steps}


@torch.no_grad()
def zero_shot_eval(net: ClassifierNet, d, idx) -> dict:
    """Zero-shot accuracy through the shared space (no head routing) on held-out images."""
    from medground.embed import TEMPLATES
    from medground.models.text import text_encoder

    enc = text_encoder()
    f, lm, lr_, lv = predict(net, d["thumbs"][idx], d["aspect"][idx])
    img = net.embed(f, (lm, lr_, lv))

    def labvecs(labels):
        rows = []
        for lab in labels:
            v = net.embed_text(enc.encode([t.format(lab) for t in TEMPLATES])).mean(0)
            rows.append(F.normalize(v, dim=0))
        return torch.stack(rows)

    out = {}
    # modality names
    y = d["modality"][idx]
    ok = y >= 0
    present = [MODALITIES[m] for m in sorted(set(y[ok]))]
    lv_ = labvecs(present)
    pred = (img[ok] @ lv_.T).argmax(1).numpy()
    out["modality names"] = {"accuracy": round(float((np.array(present)[pred] == np.array(MODALITIES)[y[ok]]).mean()), 4),
                             "n": int(ok.sum()), "labels": present}
    tasks = {
        "busi": (["benign", "malignant", "normal"], lambda t: next((x for x in ("benign", "malignant", "normal") if x in t), None)),
        "ph2": (["common nevus", "atypical nevus", "melanoma"],
                lambda t: next((x for x in ("common nevus", "atypical nevus", "melanoma") if x in t), None)),
        "covid-cxr": (["COVID-19", "pneumonia", "no finding"],
                      lambda t: "COVID-19" if "COVID-19" in t else ("no finding" if "no finding" in t else
                                                                    ("pneumonia" if "neumonia" in t else None))),
    }
    src = d["source"][idx]
    for name, (labels, parse) in tasks.items():
        sel, ys = [], []
        for j, i in enumerate(idx):
            if src[j] != name or d["modality"][i] < 0:
                continue
            texts = json.loads(d["texts"][i])
            lab = parse(texts[0] if texts else "")
            if lab is not None:
                sel.append(j)
                ys.append(labels.index(lab))
        if not sel:
            continue
        lvv = labvecs(labels)
        sims = img[sel] @ lvv.T
        pred = sims.argmax(1).numpy()
        ys = np.array(ys)
        out[name] = {"accuracy": round(float((pred == ys).mean()), 4), "n": len(sel), "labels": labels,
                     "majority_baseline": round(float(np.bincount(ys).max() / len(ys)), 4),
                     "balanced_accuracy": round(float(np.mean([(pred[ys == c] == c).mean() for c in np.unique(ys)])), 4)}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="cache/classify/dataset.npz")
    ap.add_argument("--out", default="cache/classify/classify.pt")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--per-epoch", type=int, default=3072)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--input-size", type=int, default=96, help="network input side (<= %d)" % THUMB)
    ap.add_argument("--align-steps", type=int, default=400)
    ap.add_argument("--contrastive", type=float, default=0.1, help="weight of the image-text loss while training")
    ap.add_argument("--holdout-source", action="append", default=[])
    ap.add_argument("--all", action="store_true", help="after evaluating, retrain on every image (final weights)")
    ap.add_argument("--metrics", default=None, help="write the metrics JSON here")
    ap.add_argument("--final", action="store_true", help="train on every picture (no held-out evaluation); the "
                    "card records the metrics of --card-metrics (an earlier split run with the same settings)")
    ap.add_argument("--card-metrics", action="append", default=[], help="metrics JSON file(s) to record in the card")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    z = np.load(a.data)
    d = {k: z[k] for k in z.files}
    if a.final:
        return final(a, d)
    val = split_mask(d["group"], d["source"], a.holdout_source)
    tr, va = np.where(~val)[0], np.where(val)[0]
    real_va = va[~d["synthetic"][va]]
    print(f"{len(d['group'])} pictures: train {len(tr)}, held out {len(va)} ({len(real_va)} real)")
    t0 = time.time()
    net = train_heads(d, tr, epochs=a.epochs, per_epoch=a.per_epoch, width=a.width, contrastive=a.contrastive,
                          input_size=a.input_size)
    train_s = time.time() - t0
    metrics = {"held_out_real": evaluate(net, d, real_va), "held_out_synthetic": evaluate(net, d, va[d["synthetic"][va]])
               if d["synthetic"][va].any() else None, "train_seconds": round(train_s), "n_train": int(len(tr)),
               "n_held_out_real": int(len(real_va)), "holdout_sources": a.holdout_source}
    print(json.dumps(metrics["held_out_real"]["modality"], indent=1))
    align = train_projection(net, d, tr, steps=a.align_steps)
    metrics["zero_shot_held_out"] = zero_shot_eval(net, d, real_va)
    metrics["align"] = align
    print(json.dumps(metrics["zero_shot_held_out"], indent=1))
    if a.all:
        alli = np.arange(len(d["group"]))
        net = train_heads(d, alli, epochs=a.epochs, per_epoch=a.per_epoch, width=a.width, contrastive=a.contrastive,
                          input_size=a.input_size)
        train_projection(net, d, alli, steps=a.align_steps)
    counts = {s: int(n) for s, n in Counter(d["source"]).items()}
    card = {"name": "medground-classify", "architecture": "CNN (4 stages, width %d) on 64x64 RGB + 36 cues; heads "
            "modality/region/view; linear projection to MiniLM space" % a.width,
            "trained_on_all": bool(a.all), "sources": counts, "metrics": metrics,
            "labels": {"modality": MODALITIES, "body_region": REGIONS, "view": VIEWS}}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"config": net.config, "state_dict": net.state_dict(), "modalities": MODALITIES, "regions": REGIONS,
                "views": VIEWS, "card": card}, out)
    if a.metrics:
        Path(a.metrics).write_text(json.dumps(metrics, indent=1))
    print(f"saved {out}")


LICENCES = {
    "vqa-rad": "CC0 1.0", "covid-cxr": "per image (metadata.csv licence column)", "jsrt-cxr": "research and education use",
    "mias": "research use (cite MIAS)", "kvasir": "research and education use", "ph2": "research use",
    "drive": "research use", "busi": "CC BY 4.0", "btcv-ct": "Synapse challenge terms; labels CC BY 4.0",
    "chaos-mr": "CC BY-SA 4.0", "acdc-cmr": "non-commercial research", "totalseg": "Apache-2.0",
    "brain-": "see shared/data/brain-atlases/README.md (chris_t1: CC BY-NC 4.0)", "mr-tumour": "BSD-3 (pyradiomics)",
    "ct-lesions": "Apache-2.0 code repo; DeepLesion terms", "dicom-": "pydicom / pydicom-data test files (MIT)",
    "wheel-pathology": "scikit-image (BSD-3), wsidicom-data (Apache-2.0), stardist (BSD-3) demo images",
    "wheel-fundus": "scikit-image retina.jpg (BSD-3 package)", "synthetic-he": "procedural (made here)",
}


def licence_of(source: str) -> str:
    for k, v in LICENCES.items():
        if source.startswith(k):
            return v
    return "see shared/data/README.md"


def final(a, d):
    alli = np.arange(len(d["group"]))
    t0 = time.time()
    net = train_heads(d, alli, epochs=a.epochs, per_epoch=a.per_epoch, width=a.width, contrastive=a.contrastive,
                          input_size=a.input_size)
    align = train_projection(net, d, alli, steps=a.align_steps)
    metrics = {Path(p).stem: json.loads(Path(p).read_text()) for p in a.card_metrics if Path(p).is_file()}
    counts = {s: int(n) for s, n in Counter(d["source"]).items()}
    card = {"name": "medground-classify", "trained_on_all": True, "train_seconds": round(time.time() - t0),
            "architecture": "CNN (stride-2 stem + 3 stages, width %d) on 64x64 RGB thumbnails + 36 cues; heads "
            "modality/region/view; linear projection to the all-MiniLM-L6-v2 space" % a.width,
            "sources": {k: {"pictures": n, "licence": licence_of(k),
                            "synthetic": bool(d["synthetic"][d["source"] == k].all())} for k, n in sorted(counts.items())},
            "align": align, "evaluation": metrics,
            "notes": ["PET: no real PET image was available; PET pictures are synthetic (CT/MR slices blurred, hot "
                      "spots added, colour-mapped). Nuclear medicine: 1 real whole-body scan (pydicom) + synthetic "
                      "bone-scan-like pictures. Pathology: 4 real tiles (scikit-image IHC, wsidicom-data, stardist H&E) "
                      "as random crops + procedural H&E tiles.",
                      "Training set: python -m medground.classify.data (needs ../shared/data; optional wheels for more "
                      "images: pip install --no-deps scikit-image wsidicom-data stardist)."],
            "labels": {"modality": MODALITIES, "body_region": REGIONS, "view": VIEWS}}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"config": net.config, "state_dict": net.state_dict(), "modalities": MODALITIES, "regions": REGIONS,
                "views": VIEWS, "card": card}, out)
    out.with_suffix(".card.json").write_text(json.dumps(card, indent=1) + "\n")
    print(f"saved {out} and {out.with_suffix('.card.json')}")


if __name__ == "__main__":
    main()
