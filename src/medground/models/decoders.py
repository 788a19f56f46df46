"""Domain-specific LiteMedSAM decoders: the prompt encoder and mask decoder fine-tuned on one kind of image (e.g.
abdominal CT organs, :mod:`medground.train.decoder`) while the image encoder stays the packaged one, so the same
slice embedding serves both decoders.

A checkpoint holds only those two parts (half precision, ~8 MB) and a model card. :func:`apply_decoder` returns a
copy of a LiteMedSAM model that decodes with them; the original model is left untouched.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

FORMAT = "medground-decoder-v1"
PARTS = ("prompt_encoder.", "mask_decoder.")
DEFAULT_DECODERS = {"ct": Path(__file__).parent / "weights" / "decoder_ct.pt"}
_CACHE: dict = {}


def save_decoder(model, path: str | Path, card: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items() if k.startswith(PARTS)}
    torch.save({"format": FORMAT, "card": card, "state_dict": state}, path)
    path.with_suffix(".card.json").write_text(json.dumps(card, indent=2))
    return path


def read_decoder(path: str | Path) -> tuple[dict, dict]:
    """(state dict in float32, card) of a decoder checkpoint; a clear error for anything else."""
    from medground.io.image import MedGroundInputError

    p = Path(path)
    if not p.is_file():
        raise MedGroundInputError(f"no decoder weights at {p}")
    key = str(p.resolve())
    if key not in _CACHE:
        try:
            obj = torch.load(p, map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input problem
            raise MedGroundInputError(f"could not read decoder weights {p}: {type(exc).__name__}") from None
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise MedGroundInputError(f"{p} is not a medground decoder checkpoint")
        _CACHE[key] = ({k: v.float() if v.is_floating_point() else v for k, v in obj["state_dict"].items()},
                       obj.get("card", {}))
    return _CACHE[key]


def apply_decoder(model, path: str | Path):
    """A LiteMedSAM that shares ``model``'s image encoder (and its fast back ends) but decodes with the
    checkpoint's prompt encoder and mask decoder; ``model`` itself is left untouched. ``model`` may be a wrapper
    holding the network as ``.model`` (e.g. a caching encoder)."""
    from medground.io.image import MedGroundInputError
    from medground.models.litemedsam import LiteMedSAM

    state, card = read_decoder(path)
    base = model if isinstance(model, LiteMedSAM) else getattr(model, "model", None)
    if not isinstance(base, LiteMedSAM):
        raise MedGroundInputError("a fine-tuned decoder applies to a LiteMedSAM model only")
    out = copy.copy(base)  # shares the encoder; the two decoding parts are replaced below
    out._modules = dict(base._modules)
    out.prompt_encoder = copy.deepcopy(base.prompt_encoder)
    out.mask_decoder = copy.deepcopy(base.mask_decoder)
    for part in ("prompt_encoder", "mask_decoder"):
        sub = {k[len(part) + 1:]: v for k, v in state.items() if k.startswith(part + ".")}
        try:
            getattr(out, part).load_state_dict(sub, strict=True)
        except RuntimeError as exc:
            raise MedGroundInputError(f"decoder checkpoint {path} does not fit LiteMedSAM's {part}: "
                                      f"{str(exc).splitlines()[0]}") from None
    out.name = card.get("name", f"{base.name}+decoder")
    out.eval()
    return out


def packaged_decoder(kind: str) -> Path | None:
    """The packaged decoder for ``kind`` ("ct"), or None when it is not installed."""
    p = DEFAULT_DECODERS.get(kind)
    return p if p is not None and p.is_file() else None
