"""LiteMedSAM: a TinyViT image encoder with SAM's prompt encoder and mask decoder.

Everything works in the network's input frame: a square ``image_size`` x ``image_size`` picture
(256 for the published weights) scaled to [0, 1], boxes ``x0, y0, x1, y1`` and points ``x, y`` in
its pixel coordinates, and ``image_size`` x ``image_size`` mask logits out (threshold at 0, i.e.
sigmoid > 0.5). Mapping from the original image to that frame is the caller's job
(see docs/CONVENTIONS.md, "Model I/O").

The image encoder is by far the most expensive part; :meth:`LiteMedSAM.encode` can run it through
a faster back end (fused PyTorch, ONNX Runtime), see :mod:`medground.models.backends`.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from medground.io.image import MedGroundInputError
from medground.models.sam_decoder import MaskDecoder, PromptEncoder
from medground.models.tinyvit import TinyViT


class LiteMedSAM(nn.Module):
    """Box/point/mask-prompted segmentation network (LiteMedSAM architecture).

    Build it with :func:`medground.models.create_model` (random weights) or
    :func:`medground.models.load_model` (pretrained weights).
    """

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = copy.deepcopy(config)
        self.name = str(config.get("name", "litemedsam"))
        self.image_size = int(config.get("image_size", 256))
        enc = dict(config.get("image_encoder", {}))
        self.image_encoder = TinyViT(img_size=self.image_size, **enc)
        emb = self.image_encoder.embedding_size
        pe = dict(config.get("prompt_encoder", {}))
        embed_dim = int(pe.pop("embed_dim", self.image_encoder.out_chans))
        self.prompt_encoder = PromptEncoder(embed_dim=embed_dim, image_embedding_size=emb,
                                            input_image_size=self.image_size, **pe)
        self.mask_decoder = MaskDecoder(dim=embed_dim, **dict(config.get("mask_decoder", {})))
        #: SHA-256 of the weight file this model was loaded from (set by the registry), or None.
        self.weights_sha256: str | None = None
        #: Path of that weight file, or None.
        self.weights_path: str | None = None
        #: Encoder back end used by :meth:`encode` when none is given ("auto", "torch", "fast", "onnx").
        self.encoder_backend: str = "auto"
        self._backends: dict[str, Any] = {}

    # ------------------------------------------------------------------------------ properties
    @property
    def embedding_size(self) -> int:
        """Side of the square image embedding (64 for LiteMedSAM)."""
        return self.image_encoder.embedding_size

    @property
    def embed_dim(self) -> int:
        return self.prompt_encoder.embed_dim

    @property
    def device(self) -> torch.device:
        return self.prompt_encoder.no_mask_embed.weight.device

    # ------------------------------------------------------------------------------- encoder
    def _check_images(self, images: Tensor) -> Tensor:
        if not isinstance(images, Tensor):
            images = torch.as_tensor(images)
        if images.ndim == 3:
            images = images[None]
        s = self.image_size
        if images.ndim != 4 or images.shape[1] not in (1, 3) or tuple(images.shape[2:]) != (s, s):
            raise MedGroundInputError(
                f"LiteMedSAM expects images of shape (B, 3, {s}, {s}) scaled to [0, 1]; got {tuple(images.shape)}."
            )
        if not images.is_floating_point():
            raise MedGroundInputError(f"LiteMedSAM expects float images in [0, 1]; got dtype {images.dtype}.")
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        return images.to(self.device, torch.float32)

    def encode(self, images: Tensor, backend: str | Any | None = None, batch_size: int | None = None) -> Tensor:
        """Image embeddings ``(B, 256, 64, 64)`` of ``images`` ``(B, 3, 256, 256)`` (float, [0, 1]).

        ``backend``: ``"torch"`` (this module, exact, differentiable), ``"fast"`` (BN-fused
        channels-last PyTorch copy), ``"onnx"`` (ONNX Runtime; the model is exported once into the
        user cache, see :func:`medground.models.backends.cache_dir`), ``"auto"`` (``"torch"`` in
        training mode, else ``"onnx"`` when onnxruntime is importable and the device is the CPU,
        else ``"fast"``), or an :class:`~medground.models.backends.EncoderBackend`. ``None`` uses
        :attr:`encoder_backend`. ``batch_size`` splits large batches (default: the back end's).
        """
        from medground.models.backends import get_backend

        images = self._check_images(images)
        be = get_backend(self, backend if backend is not None else self.encoder_backend)
        return be.run(images, batch_size=batch_size)

    # ------------------------------------------------------------------------------- decoder
    def _prompt_batch(self, embeddings: Tensor, boxes, points, mask_input) -> int:
        sizes = {}
        if boxes is not None:
            sizes["boxes"] = boxes.shape[0]
        if points is not None:
            sizes["points"] = points[0].shape[0]
        if mask_input is not None:
            sizes["mask_input"] = mask_input.shape[0]
        batch = set(sizes.values())
        if len(batch) > 1:
            raise MedGroundInputError(f"Prompt batch sizes differ: {sizes}.")
        b = batch.pop() if batch else embeddings.shape[0]
        if embeddings.shape[0] not in (1, b):
            raise MedGroundInputError(
                f"{embeddings.shape[0]} image embeddings for {b} prompts: give one embedding per prompt "
                "or a single one."
            )
        return b

    def decode(
        self,
        embeddings: Tensor,
        boxes: Tensor | None = None,
        points: tuple[Tensor, Tensor] | None = None,
        mask_input: Tensor | None = None,
        multimask: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """Mask logits ``(B, 1 or 3, 256, 256)`` and predicted IoU ``(B, 1 or 3)``.

        ``embeddings``: ``(B, 256, 64, 64)`` from :meth:`encode`, or ``(1, ...)`` shared by all B prompts.
        ``boxes``: ``(B, 4)`` ``x0, y0, x1, y1``; ``points``: ``(coords (B, N, 2) as x, y; labels (B, N))``
        with 1 = foreground, 0 = background, -1 = padding; ``mask_input``: ``(B, 1, 256, 256)`` logits
        (e.g. a previous prediction). ``multimask`` returns SAM's three alternative masks instead of one.
        """
        dev = self.device
        s = self.image_size
        if embeddings.ndim != 4 or tuple(embeddings.shape[1:]) != (self.embed_dim, self.embedding_size,
                                                                     self.embedding_size):
            raise MedGroundInputError(
                f"Expected image embeddings (B, {self.embed_dim}, {self.embedding_size}, {self.embedding_size}); "
                f"got {tuple(embeddings.shape)}."
            )
        if boxes is not None:
            boxes = torch.as_tensor(boxes, dtype=torch.float32, device=dev)
            if boxes.ndim == 1:
                boxes = boxes[None]
            if boxes.ndim == 3 and boxes.shape[1] == 1:
                boxes = boxes[:, 0]
            if boxes.ndim != 2 or boxes.shape[1] != 4:
                raise MedGroundInputError(f"Boxes must have shape (B, 4) as x0, y0, x1, y1; got {tuple(boxes.shape)}.")
        if points is not None:
            if not isinstance(points, (tuple, list)) or len(points) != 2:
                raise MedGroundInputError("Points must be a (coords (B, N, 2), labels (B, N)) pair.")
            coords = torch.as_tensor(points[0], dtype=torch.float32, device=dev)
            labels = torch.as_tensor(points[1], device=dev).long()
            if coords.ndim == 2:
                coords, labels = coords[None], labels.reshape(1, -1)
            if coords.ndim != 3 or coords.shape[2] != 2 or tuple(labels.shape) != tuple(coords.shape[:2]):
                raise MedGroundInputError(
                    f"Points must be coords (B, N, 2) and labels (B, N); got {tuple(coords.shape)} and "
                    f"{tuple(labels.shape)}."
                )
            points = (coords, labels)
        if mask_input is not None:
            mask_input = torch.as_tensor(mask_input, dtype=torch.float32, device=dev)
            if mask_input.ndim == 3:
                mask_input = mask_input[:, None]
            if mask_input.ndim != 4 or tuple(mask_input.shape[1:]) != (1, s, s):
                raise MedGroundInputError(
                    f"mask_input must have shape (B, 1, {s}, {s}); got {tuple(mask_input.shape)}."
                )
        embeddings = embeddings.to(dev, torch.float32)
        b = self._prompt_batch(embeddings, boxes, points, mask_input)
        if embeddings.shape[0] > 1 and embeddings.stride(0) == 0:  # an expand()ed single embedding
            embeddings = embeddings[:1]
        sparse, dense = self.prompt_encoder(points, boxes, mask_input, b)
        return self.mask_decoder(embeddings, self.prompt_encoder.dense_pe(), sparse, dense, multimask)

    def forward(self, images: Tensor, boxes: Tensor | None = None,
                points: tuple[Tensor, Tensor] | None = None, multimask: bool = False) -> tuple[Tensor, Tensor]:
        """``decode(encode(images), boxes, points)``; one prompt per image."""
        emb = self.encode(images)
        return self.decode(emb, boxes=boxes, points=points, multimask=multimask)

    # ----------------------------------------------------------------------------- utilities
    def train(self, mode: bool = True) -> "LiteMedSAM":
        # Back ends hold frozen copies of the weights: drop them whenever the module may change.
        if mode:
            self._backends.clear()
        return super().train(mode)

    def _apply(self, fn, recurse: bool = True):  # .to(), .cuda(), .float() ...: the copies are stale
        self._backends = {}
        return super()._apply(fn, recurse)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        self._backends = {}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, image_size={self.image_size}, embedding={self.embed_dim}x{self.embedding_size}^2"
