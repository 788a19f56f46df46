"""Networks, weight registry and fast inference back ends.

>>> from medground.models import load_model
>>> model = load_model("litemedsam")              # packaged weights, verified, cached per process
>>> emb = model.encode(images)                    # (B, 3, 256, 256) in [0, 1] -> (B, 256, 64, 64)
>>> logits, iou = model.decode(emb, boxes=boxes)  # boxes (B, 4) x0, y0, x1, y1 in 256-px space
"""
from medground.models.backends import EncoderBackend, cache_dir
from medground.models.litemedsam import LiteMedSAM
from medground.models.registry import create_model, list_models, load_model, resolve_device

__all__ = [
    "EncoderBackend", "LiteMedSAM", "cache_dir", "create_model", "list_models", "load_model", "resolve_device",
]
