"""Slice-level LiteMedSAM inference with cached image embeddings.

A :class:`SlicePredictor` wraps one :class:`~medground.io.image.MedImage`. Each axial slice ``z``
(``data[:, :, z]``) is shown to the network as a picture with rows = y and columns = x, scaled to
[0, 1], resized with its longest side to 256 and zero-padded. Embeddings are computed once per slice
(in batches) and reused by every prompt on that slice; prompts and masks are mapped between the
slice's own pixel grid and the network's 256 x 256 frame here and nowhere else.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from medground.io.image import MedImage

MODEL_SIZE = 256


def model_hw(hw: tuple[int, int]) -> tuple[int, int]:
    """Size (rows, cols) of a picture of size ``hw`` once its longest side is resized to 256."""
    scale = MODEL_SIZE / max(hw)
    return max(1, int(round(hw[0] * scale))), max(1, int(round(hw[1] * scale)))


def picture_tensor(pic: np.ndarray, new_hw: tuple[int, int] | None = None) -> torch.Tensor:
    """A picture (rows, cols[, 3]) scaled to [0, 1] -> the network's (1, 3, 256, 256) input:
    min-max normalised, longest side resized to 256 (antialiased bilinear), zero-padded bottom/right."""
    if pic.ndim == 2:
        pic = np.repeat(pic[..., None], 3, axis=2)
    t = torch.from_numpy(np.ascontiguousarray(pic, dtype=np.float32)).permute(2, 0, 1)[None]
    lo, hi = float(t.min()), float(t.max())
    t = (t - lo) / max(hi - lo, 1e-8)
    new_hw = new_hw or model_hw(pic.shape[:2])
    t = F.interpolate(t, size=new_hw, mode="bilinear", align_corners=False, antialias=True)
    out = torch.zeros((1, 3, MODEL_SIZE, MODEL_SIZE), dtype=torch.float32)
    out[:, :, : new_hw[0], : new_hw[1]] = t
    return out


@dataclass
class SliceResult:
    mask: np.ndarray  # bool, (X, Y) in the slice's own grid
    logits: np.ndarray  # float32 low-res logits (256 x 256) for mask prompting of a neighbour
    iou: float  # the network's predicted IoU
    mean_prob: float  # mean foreground probability inside the mask (0 when empty)
    prob: np.ndarray | None = None  # float32 foreground probability, (X, Y) in the slice's own grid


class SlicePredictor:
    def __init__(self, image: MedImage, model=None, device: str = "cpu", batch_size: int = 8,
                 window: str | tuple | None = None, progress: bool = False):
        from medground.io.intensity import to_unit_range

        if model is None:
            from medground.models import load_model

            model = load_model("litemedsam", device=device)
        self.model = model
        self.device = torch.device(device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
        self.image = image
        self.batch_size = max(1, int(batch_size))
        self.progress = progress
        X, Y, Z = image.shape
        self.hw = (Y, X)  # rows, cols of a slice picture
        self.scale = MODEL_SIZE / max(X, Y)
        self.new_hw = model_hw(self.hw)
        unit = to_unit_range(image)  # (X, Y, Z) or (X, Y, Z, 3) float32 in [0, 1]
        self._unit = unit
        self._emb: dict[int, torch.Tensor] = {}
        self.encoder_calls = 0

    # ------------------------------------------------------------ embeddings
    def _slice_tensor(self, z: int) -> torch.Tensor:
        return picture_tensor(np.moveaxis(self._unit[:, :, z], 0, 1), self.new_hw)

    def prepare(self, zs) -> None:
        """Encode the given slices (those not cached yet) in batches."""
        todo = [int(z) for z in dict.fromkeys(zs) if int(z) not in self._emb]
        if not todo:
            return
        batches = [todo[i: i + self.batch_size] for i in range(0, len(todo), self.batch_size)]
        it = batches
        if self.progress and len(todo) > self.batch_size:
            from tqdm import tqdm

            it = tqdm(batches, desc="encoding slices", unit="batch", leave=False)
        for b in it:
            x = torch.cat([self._slice_tensor(z) for z in b]).to(self.device)
            with torch.inference_mode():
                emb = self.model.encode(x)
            self.encoder_calls += 1
            for z, e in zip(b, emb):
                self._emb[z] = e[None].detach()

    def embedding(self, z: int) -> torch.Tensor:
        self.prepare([z])
        return self._emb[int(z)]

    # ------------------------------------------------------------ coordinates
    def to_model_xy(self, xy) -> np.ndarray:
        """Slice pixel (x = col, y = row) -> 256 frame (scaled as LiteMedSAM was trained)."""
        return np.asarray(xy, dtype=np.float32) * self.scale

    def box_to_model(self, box) -> np.ndarray:
        return np.asarray([float(v) for v in box], dtype=np.float32) * self.scale

    def logits_to_slice(self, logits: torch.Tensor) -> torch.Tensor:
        """(N,1,256,256) logits -> (N, X, Y) logits on the slice's own grid."""
        h, w = self.new_hw
        lg = logits[..., :h, :w]
        lg = F.interpolate(lg, size=self.hw, mode="bilinear", align_corners=False)
        return lg[:, 0].transpose(1, 2)  # rows x cols -> x, y

    # ------------------------------------------------------------ prediction
    def predict(self, z: int, box=None, points=None, point_labels=None, mask_logits=None,
                multimask: bool = False) -> SliceResult:
        """Segment one object on slice z from a box (x0,y0,x1,y1 inclusive, slice pixels) and/or points."""
        return self.predict_many(z, [box] if box is not None else None,
                                 [points] if points is not None else None,
                                 [point_labels] if point_labels is not None else None,
                                 [mask_logits] if mask_logits is not None else None, multimask)[0]

    def predict_many(self, z: int, boxes=None, points=None, point_labels=None, mask_logits=None,
                     multimask: bool = False, model=None) -> list[SliceResult]:
        """Several prompts on one slice share one embedding and one decoder batch. ``model``: another LiteMedSAM
        to decode with (e.g. a fine-tuned decoder sharing this one's image encoder); None: the predictor's."""
        n = len(boxes) if boxes is not None else len(points)
        emb = self.embedding(z).expand(n, -1, -1, -1)
        bx = None
        if boxes is not None:
            bx = torch.from_numpy(np.stack([self.box_to_model(b) for b in boxes])).to(self.device)
        pts = None
        if points is not None:
            coords = torch.from_numpy(np.stack([self.to_model_xy(np.asarray(p, dtype=np.float32).reshape(-1, 2))
                                                for p in points])).to(self.device)
            labels = torch.from_numpy(np.stack([np.asarray(l if l is not None else [1] * coords.shape[1])
                                                for l in (point_labels or [None] * n)]).astype(np.int64))
            pts = (coords, labels.to(self.device))
        mi = None
        if mask_logits is not None:
            mi = torch.from_numpy(np.stack([np.asarray(m, dtype=np.float32) for m in mask_logits]))[:, None].to(self.device)
        with torch.inference_mode():
            logits, iou = (model if model is not None else self.model).decode(emb, boxes=bx, points=pts, mask_input=mi, multimask=multimask)
            if multimask and logits.shape[1] > 1:
                best = iou.argmax(dim=1)
                idx = torch.arange(n)
                logits = logits[idx, best][:, None]
                iou = iou[idx, best][:, None]
            full = self.logits_to_slice(logits)
        out = []
        for i in range(n):
            m = (full[i] > 0).cpu().numpy()
            prob = torch.sigmoid(full[i]).cpu().numpy()
            out.append(SliceResult(mask=m, logits=logits[i, 0].float().cpu().numpy(),
                                   iou=float(iou[i, 0].clamp(0, 1)), mean_prob=float(prob[m].mean()) if m.any() else 0.0,
                                   prob=prob))
        return out
