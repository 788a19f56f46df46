"""Image-side features for VQA: an identity key, a near-duplicate thumbnail and pooled multi-scale
LiteMedSAM TinyViT features (plus a few cheap intensity cues).

* :func:`content_key` — SHA-256 of the decoded pixels (file name and container do not matter).
* :func:`thumbnail` — a 24x24 grey thumbnail, zero-mean and L2-normalised: its cosine with the
  thumbnail of the same picture re-encoded (JPEG quality, PNG, resized) stays above ~0.98.
* :func:`image_features` — one TinyViT pass: mean/std of each attention stage, mean/max and a 2x2
  grid of the neck output, and 24 cheap cues (aspect ratio, grey histogram, colour, symmetry).
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.nn.functional as F

from medground.io.image import MedGroundInputError, MedImage

THUMB = 24
FEATURE_VERSION = "vqa-feat-v1"


def picture(image: MedImage) -> np.ndarray:
    """The picture the features look at: rows x cols float32 in [0, 1] (the middle slice of a volume)."""
    from medground.io.intensity import to_unit_range

    z = image.shape[2] // 2 if len(image.shape) >= 3 and image.shape[2] > 1 else 0
    g = to_unit_range(image, z=z)
    if g.ndim == 3:
        g = g[:, :, 0]
    return np.ascontiguousarray(np.asarray(g, dtype=np.float32).T)  # (rows=y, cols=x)


def content_key(image: MedImage) -> str:
    """SHA-256 of the decoded pixel values and shape (independent of file name and format)."""
    d = np.ascontiguousarray(image.data)
    h = hashlib.sha256()
    h.update(str(d.shape).encode())
    h.update(str(d.dtype).encode())
    h.update(d.tobytes())
    return h.hexdigest()


def thumbnail(pic: np.ndarray) -> np.ndarray:
    """24x24 area-averaged grey thumbnail, zero-mean, unit L2 norm (float32, 576)."""
    t = torch.from_numpy(np.ascontiguousarray(pic, dtype=np.float32))[None, None]
    t = F.interpolate(t, size=(THUMB, THUMB), mode="area")[0, 0].numpy().ravel()
    t = t - t.mean()
    n = float(np.linalg.norm(t))
    return (t / n if n > 1e-8 else t).astype(np.float32)


def cheap_cues(pic: np.ndarray, colour: float = 0.0) -> np.ndarray:
    """24 hand-made cues: aspect ratio, 16-bin grey histogram, mean, std, dark/bright fractions,
    left-right and top-bottom symmetry, colour."""
    r, c = pic.shape
    hist = np.histogram(pic, bins=16, range=(0.0, 1.0))[0].astype(np.float32)
    hist /= max(hist.sum(), 1.0)
    small = torch.from_numpy(pic)[None, None]
    small = F.interpolate(small, size=(64, 64), mode="area")[0, 0].numpy()
    lr = float(np.corrcoef(small.ravel(), small[:, ::-1].ravel())[0, 1]) if small.std() > 0 else 1.0
    tb = float(np.corrcoef(small.ravel(), small[::-1, :].ravel())[0, 1]) if small.std() > 0 else 1.0
    cues = [np.log(c / max(r, 1)), float(pic.mean()), float(pic.std()), float((pic < 0.05).mean()),
            float((pic > 0.9).mean()), lr, tb, colour]
    return np.concatenate([np.asarray(cues, np.float32), hist])


@torch.no_grad()
def tinyvit_features(pics: list[np.ndarray], device: str = "cpu") -> np.ndarray:
    """Pooled multi-scale TinyViT features of pictures (rows, cols) in [0, 1]: (N, 2848) float32."""
    from medground.models import load_model
    from medground.segment.predictor import picture_tensor

    model = load_model("litemedsam", device=device)
    enc = model.image_encoder
    dev = next(enc.parameters()).device
    out = []
    for pic in pics:
        x = picture_tensor(pic).to(dev)
        x = enc.patch_embed(x)
        parts = []
        for i, layer in enumerate(enc.layers):
            x = layer(x)
            if i >= 1:  # attention stages: (B, C, H, W)
                parts += [x.mean(dim=(2, 3)), x.std(dim=(2, 3))]
        n = enc.neck(x)
        parts += [n.mean(dim=(2, 3)), n.amax(dim=(2, 3)), F.adaptive_avg_pool2d(n, 2).flatten(1)]
        out.append(torch.cat(parts, dim=1)[0].float().cpu().numpy())
    return np.stack(out).astype(np.float32)


def describe(image: MedImage, device: str = "cpu", with_tinyvit: bool = True) -> dict:
    """Everything the VQA heads need about one image: key, thumbnail, features (None without TinyViT)."""
    if not isinstance(image, MedImage):
        raise MedGroundInputError("ask needs a medground MedImage (use medground.load(path)).")
    pic = picture(image)
    colour = 0.0
    if getattr(image, "is_color", False):
        d = np.asarray(image.data, dtype=np.float32)
        d = d[..., :3].reshape(-1, 3)
        colour = float(np.abs(d - d.mean(axis=1, keepdims=True)).mean() / max(float(d.max()), 1e-6))
    cues = cheap_cues(pic, colour)
    feat = None
    if with_tinyvit:
        feat = np.concatenate([tinyvit_features([pic], device=device)[0], cues])
    return {"key": content_key(image), "thumb": thumbnail(pic), "cues": cues, "features": feat,
            "shape": tuple(int(s) for s in image.shape[:2])}
