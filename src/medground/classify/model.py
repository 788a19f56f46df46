"""Loading the classifier weights and running the network on ``MedImage`` objects.

Weights: ``None`` -> the packaged ``models/weights/classify.pt`` (or ``$MEDGROUND_CLASSIFY_WEIGHTS``),
a local ``.pt`` path, or ``hf://org/repo/file[@rev]`` (through ``medground.models.registry``).
When no weights are installed the network runs with fixed random weights (``bundle.trained`` is False) so
that code depending on the API keeps working; the CLI says so.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from medground.classify.net import MODALITIES, REGIONS, VIEWS, ClassifierNet
from medground.classify.preprocess import INPUT, THUMB, image_pictures
from medground.io.image import MedGroundInputError, MedImage

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "models" / "weights" / "classify.pt"

_LOCK = threading.Lock()
_CACHE: dict = {}


@dataclass
class ClassifierBundle:
    net: ClassifierNet
    modalities: list[str]
    regions: list[str]
    views: list[str]
    trained: bool
    source: str
    card: dict = field(default_factory=dict)
    _text_cache: dict = field(default_factory=dict)


def _resolve(weights) -> Path | None:
    if weights is None:
        env = os.environ.get("MEDGROUND_CLASSIFY_WEIGHTS")
        if env:
            weights = env
        else:
            return DEFAULT_WEIGHTS if DEFAULT_WEIGHTS.is_file() else None
    text = str(weights)
    if text.startswith("hf://"):
        from medground.models.registry import _download_hf

        return _download_hf(text)
    p = Path(text).expanduser()
    if not p.is_file():
        raise MedGroundInputError(f"classifier weights not found: {p}")
    return p


def load_classifier(weights=None) -> ClassifierBundle:
    """The classifier (cached per weight file)."""
    path = _resolve(weights)
    key = str(path)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        torch.manual_seed(0)
        if path is None:
            net = ClassifierNet().eval()
            b = ClassifierBundle(net, MODALITIES, REGIONS, VIEWS, False, "untrained (no weights installed)")
        else:
            try:
                obj = torch.load(str(path), map_location="cpu", weights_only=False)
                net = ClassifierNet(**obj["config"])
                net.load_state_dict(obj["state_dict"])
            except Exception as exc:
                raise MedGroundInputError(f"{path} is not a medground classifier checkpoint "
                                          f"({type(exc).__name__}: {exc}).") from None
            net.eval()
            b = ClassifierBundle(net, obj.get("modalities", MODALITIES), obj.get("regions", REGIONS),
                                 obj.get("views", VIEWS), True, str(path), obj.get("card", {}))
        _CACHE[key] = b
        return b


def to_input(thumbs: np.ndarray, size: int = INPUT) -> torch.Tensor:
    """(N, THUMB, THUMB, 3) uint8 -> (N, 3, size, size) float in [0, 1] (centre crop of 90 %, resized)."""
    x = torch.from_numpy(np.ascontiguousarray(thumbs)).permute(0, 3, 1, 2).float() / 255.0
    m = int(round(THUMB * 0.05))
    x = x[:, :, m: THUMB - m, m: THUMB - m]
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


@torch.inference_mode()
def run_pictures(bundle: ClassifierBundle, thumbs: np.ndarray, aspects) -> dict[str, torch.Tensor]:
    """Network outputs for thumbnails: features, probabilities per task and embeddings."""
    net = bundle.net
    x = to_input(thumbs, net.input_size)
    la = torch.log(torch.as_tensor(np.asarray(aspects, dtype=np.float32)).clamp(0.05, 20.0))
    n = x.shape[0]
    # modality: mean over the picture and its left-right / up-down flips and 180-degree turn (slices are stored in
    # any orientation; held-out MRI 85% -> 90%, see benchmarks/results/classify.md); the rest from the picture as is
    xs = torch.cat([x, x.flip(3), x.flip(2), x.flip(2).flip(3)])
    f, lm, lr, lv = net(xs, la.repeat(4))
    pm = F.softmax(lm, -1).view(4, n, -1).mean(0)
    f, lm, lr, lv = f[:n], lm[:n], lr[:n], lv[:n]
    return {"features": f, "modality": pm, "body_region": F.softmax(lr, -1),
            "view": F.softmax(lv, -1), "embedding": net.embed(f, (lm, lr, lv))}


def _header_modality(image: MedImage) -> str | None:
    code = str(image.modality or "").upper()
    return {"CT": "CT", "MR": "MRI", "CR": "X-ray", "DX": "X-ray", "RG": "X-ray", "US": "ultrasound",
            "MG": "mammography", "PT": "PET", "NM": "nuclear medicine", "ES": "endoscopy", "SM": "pathology",
            "OP": "fundus"}.get(code)


def image_outputs(bundle: ClassifierBundle, image: MedImage) -> dict:
    """Averaged outputs over the pictures of one image, plus the plane from geometry for volumes."""
    thumbs, aspects, plane = image_pictures(image)
    out = run_pictures(bundle, np.stack(thumbs), aspects)
    res = {k: v.mean(0) for k, v in out.items()}
    res["embedding"] = F.normalize(res["embedding"], dim=-1)
    res["plane"] = plane
    res["header_modality"] = _header_modality(image)
    return res
