"""Inference back ends for the LiteMedSAM image encoder (the expensive part of the network).

* ``"torch"``: the model's own :class:`~medground.models.tinyvit.TinyViT` module, exact and
  differentiable (used in training mode).
* ``"fast"``: a frozen copy with every conv+batch-norm pair folded into one convolution, separate
  q/k/v projections (softmax scale folded into q), the window attention biases materialised and
  channels-last activations; run without autograd. Same function, equal to ~1e-5.
* ``"onnx"``: the frozen copy exported once to ONNX and run with ONNX Runtime (optional extra
  ``medground[fast]``). The ``.onnx`` file is written into :func:`cache_dir` under a name derived
  from the SHA-256 of the encoder weights (and its config), so it is rebuilt whenever the weights
  change; it is never part of the repository or the wheel.
* ``"auto"``: ``"torch"`` in training mode, else ``"onnx"`` on CPU when ``onnxruntime`` imports
  (falling back to ``"fast"`` if the export fails), else ``"fast"``.

Back-end objects hold frozen copies of the weights; they live on the model instance
(``model._backends``) and are dropped when the model is moved, re-loaded or put in training mode.
"""
from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import logging
import os
import tempfile
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from medground.io.image import MedGroundInputError
from medground.models.layers import ConvBN
from medground.models.tinyvit import FrozenWindowAttention, TinyViTBlock, WindowAttention

if TYPE_CHECKING:  # pragma: no cover
    from medground.models.litemedsam import LiteMedSAM

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "fast", "onnx")
ONNX_OPSET = 17
#: Bump when the exported graph changes so that stale cached files are not reused.
ONNX_EXPORT_VERSION = 2


def cache_dir() -> Path:
    """Per-user cache folder: ``$MEDGROUND_CACHE``, else ``$XDG_CACHE_HOME/medground``, else
    ``~/.cache/medground``."""
    env = os.environ.get("MEDGROUND_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "medground"


def state_dict_sha256(module: nn.Module) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of a module's state dict."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except Exception:  # ImportError, or a broken install
        return False
    return True


# --------------------------------------------------------------------------------- frozen encoder
def _fold_conv_bn(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        if isinstance(child, ConvBN):
            setattr(module, name, child.fused())
        else:
            _fold_conv_bn(child)


@torch.no_grad()
def frozen_encoder(encoder: nn.Module) -> nn.Module:
    """An inference-only copy of a TinyViT encoder: batch norms folded into the convolutions,
    attention biases materialised, no gradients, channels-last weights."""
    enc = copy.deepcopy(encoder).eval()
    _fold_conv_bn(enc)
    for block in enc.modules():
        if isinstance(block, TinyViTBlock) and isinstance(block.attn, WindowAttention):
            block.attn = FrozenWindowAttention(block.attn)
    for p in enc.parameters():
        p.requires_grad_(False)
    return enc.to(memory_format=torch.channels_last)


# ----------------------------------------------------------------------------------- back ends
class EncoderBackend:
    """Runs the image encoder: ``run(images (B, 3, S, S)) -> embeddings (B, 256, S/4, S/4)``.

    Subclasses implement :meth:`encode_batch`; :meth:`run` splits large batches into chunks of
    ``batch_size`` images (bounded memory: the first stage works at full resolution).
    """

    name = "base"
    default_batch_size = 4

    def encode_batch(self, images: Tensor) -> Tensor:
        raise NotImplementedError

    def run(self, images: Tensor, batch_size: int | None = None) -> Tensor:
        bs = int(self.default_batch_size if batch_size is None else batch_size)
        if bs < 1:
            raise MedGroundInputError(f"batch_size must be at least 1; got {bs}.")
        if images.shape[0] <= bs:
            return self.encode_batch(images)
        return torch.cat([self.encode_batch(images[i:i + bs]) for i in range(0, images.shape[0], bs)], dim=0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class TorchBackend(EncoderBackend):
    """The model's own encoder module (exact; keeps autograd if enabled)."""

    name = "torch"

    def __init__(self, model: "LiteMedSAM") -> None:
        self.model = model

    def encode_batch(self, images: Tensor) -> Tensor:
        return self.model.image_encoder(images)


class FastTorchBackend(EncoderBackend):
    """Frozen, BN-folded, channels-last copy of the encoder (run without autograd)."""

    name = "fast"

    def __init__(self, model: "LiteMedSAM") -> None:
        self.device = model.device
        self.encoder = frozen_encoder(model.image_encoder).to(self.device)

    def encode_batch(self, images: Tensor) -> Tensor:
        with torch.no_grad():
            x = images.to(self.device, torch.float32).contiguous(memory_format=torch.channels_last)
            return self.encoder(x).contiguous()


class OnnxBackend(EncoderBackend):
    """The frozen encoder exported to ONNX (cached on disk) and run by ONNX Runtime on the CPU.

    A single image runs on one session using all ``threads``. A batch is split into ``threads``
    parts that run at the same time on a second, single-threaded session: on a small CPU this
    avoids most of the per-operator thread synchronisation and degrades more gracefully when other
    processes compete for the cores.
    """

    name = "onnx"

    def __init__(self, model: "LiteMedSAM", path: str | os.PathLike | None = None,
                 threads: int | None = None) -> None:
        import onnxruntime  # noqa: F401  (optional extra: medground[fast]; fail early)

        self.path = Path(path) if path is not None else onnx_path(model)
        self.threads = max(1, int(threads or torch.get_num_threads()))
        if not self.path.exists():
            export_onnx(model, self.path)
        try:
            self.session = self._session(self.threads)
        except Exception:  # a truncated or foreign file in the cache: rebuild it once
            log.warning("cached ONNX encoder %s could not be loaded; rebuilding it", self.path)
            export_onnx(model, self.path)
            self.session = self._session(self.threads)
        self.input_name = self.session.get_inputs()[0].name
        self.output_device = model.device
        self._single = None  # single-threaded session for batches, made on first use
        self._pool = None
        self._lock = threading.Lock()

    def _session(self, threads: int):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        return ort.InferenceSession(str(self.path), sess_options=opts, providers=["CPUExecutionProvider"])

    def _parallel(self):
        with self._lock:
            if self._single is None:
                self._single = self._session(1)
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="medground-onnx")
        return self._single, self._pool

    def encode_batch(self, images: Tensor) -> Tensor:
        x = np.ascontiguousarray(images.detach().to("cpu", torch.float32).numpy())
        if self.threads > 1 and x.shape[0] > 1:
            session, pool = self._parallel()
            parts = np.array_split(x, min(self.threads, x.shape[0]))
            outs = list(pool.map(lambda part: session.run(None, {self.input_name: part})[0], parts))
            out = np.concatenate(outs, axis=0)
        else:
            (out,) = self.session.run(None, {self.input_name: x})
        return torch.from_numpy(out).to(self.output_device)


def onnx_path(model: "LiteMedSAM") -> Path:
    """Where the ONNX export of ``model``'s encoder is cached (keyed by weights and architecture)."""
    key = hashlib.sha256()
    key.update(state_dict_sha256(model.image_encoder).encode())
    key.update(json.dumps(model.config.get("image_encoder", {}), sort_keys=True).encode())
    key.update(f"size={model.image_size}|opset={ONNX_OPSET}|v={ONNX_EXPORT_VERSION}".encode())
    return cache_dir() / "onnx" / f"{model.name}-encoder-{key.hexdigest()[:20]}.onnx"


def export_onnx(model: "LiteMedSAM", path: str | os.PathLike) -> Path:
    """Export the frozen encoder of ``model`` to ``path`` (atomic write; dynamic batch axis)."""
    path = Path(path)
    if importlib.util.find_spec("onnx") is None:
        raise RuntimeError("Exporting the LiteMedSAM encoder to ONNX needs the onnx package: "
                           "pip install 'medground[fast]'.")
    path.parent.mkdir(parents=True, exist_ok=True)
    enc = frozen_encoder(model.image_encoder).to("cpu").to(memory_format=torch.contiguous_format)
    example = torch.rand(2, 3, model.image_size, model.image_size)
    fd, tmp = tempfile.mkstemp(prefix=path.stem + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                enc, (example,), tmp, dynamo=False, opset_version=ONNX_OPSET,
                input_names=["images"], output_names=["embeddings"],
                dynamic_axes={"images": {0: "batch"}, "embeddings": {0: "batch"}},
                do_constant_folding=True,
            )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    log.info("exported the LiteMedSAM encoder to %s", path)
    return path


def _named_backend(model: "LiteMedSAM", name: str) -> EncoderBackend:
    cached = model._backends.get(name)
    if cached is None:
        if name == "torch":
            cached = TorchBackend(model)
        elif name == "fast":
            cached = FastTorchBackend(model)
        else:
            if model.device.type != "cpu":
                raise MedGroundInputError("The 'onnx' encoder backend runs on the CPU only; use 'fast' or 'torch' "
                                          f"on {model.device.type}.")
            if not onnxruntime_available():
                raise MedGroundInputError(
                    "The 'onnx' encoder backend needs onnxruntime: pip install 'medground[fast]'."
                )
            cached = OnnxBackend(model)
        model._backends[name] = cached
    return cached


def get_backend(model: "LiteMedSAM", spec: "str | EncoderBackend") -> EncoderBackend:
    """Resolve ``spec`` (a name from :data:`BACKENDS` or an :class:`EncoderBackend`) for ``model``.
    Back-end objects are made once per model instance and kept in ``model._backends``."""
    if isinstance(spec, EncoderBackend):
        return spec
    if not isinstance(spec, str) or spec not in BACKENDS:
        raise MedGroundInputError(f"Unknown encoder backend {spec!r}; choose one of {', '.join(BACKENDS)}.")
    if spec != "auto":
        return _named_backend(model, spec)
    if model.training:
        return _named_backend(model, "torch")
    cached = model._backends.get("auto")
    if cached is not None:
        return cached
    backend = None
    if model.device.type == "cpu" and onnxruntime_available():
        try:
            backend = _named_backend(model, "onnx")
        except Exception as exc:  # no onnx exporter, unwritable cache, ...
            log.warning("ONNX encoder unavailable (%s: %s); using the fused PyTorch encoder", type(exc).__name__, exc)
    if backend is None:
        backend = _named_backend(model, "fast")
    model._backends["auto"] = backend
    return backend
