"""SAM-style prompt encoder and two-way-transformer mask decoder (as used by LiteMedSAM).

Coordinates are ``(x, y)`` pixels of the encoder input image (``input_size`` square); a box is
``x0, y0, x1, y1``. Point labels: 1 = foreground, 0 = background, -1 = padding (not a point).
Parameter names match the ``prompt_encoder`` / ``mask_decoder`` parts of the LiteMedSAM checkpoint.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medground.models.layers import MLP, LayerNorm2d


# ---------------------------------------------------------------------------------- prompt encoder
class RandomFourierPE(nn.Module):
    """Positional encoding with random spatial frequencies: ``[sin(2 pi f.p), cos(2 pi f.p)]``.

    ``p`` are coordinates normalised to [0, 1] and mapped to [-1, 1]; ``f`` is a fixed ``(2, D/2)``
    Gaussian matrix (a buffer stored in the checkpoint).
    """

    def __init__(self, num_feats: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_feats))

    def encode(self, unit_coords: Tensor) -> Tensor:
        proj = (2.0 * unit_coords - 1.0) @ self.positional_encoding_gaussian_matrix
        proj = (2.0 * math.pi) * proj
        return torch.cat([proj.sin(), proj.cos()], dim=-1)

    def grid(self, h: int, w: int) -> Tensor:
        """``(D, h, w)`` encoding of the centres of an ``h x w`` grid."""
        dev = self.positional_encoding_gaussian_matrix.device
        ys = (torch.arange(h, device=dev, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=dev, dtype=torch.float32) + 0.5) / w
        coords = torch.stack(
            [xs[None, :].expand(h, w), ys[:, None].expand(h, w)], dim=-1
        )
        return self.encode(coords).permute(2, 0, 1)

    def points(self, xy: Tensor, size: tuple[int, int]) -> Tensor:
        """Encode ``(..., 2)`` pixel coordinates ``(x, y)`` of an image of ``size = (H, W)``."""
        scale = torch.tensor([1.0 / size[1], 1.0 / size[0]], device=xy.device, dtype=torch.float32)
        return self.encode(xy.float() * scale)


class PromptEncoder(nn.Module):
    """Embeds boxes/points (sparse tokens) and a low-resolution mask (dense map)."""

    def __init__(self, embed_dim: int = 256, image_embedding_size: int = 64, input_image_size: int = 256,
                 mask_in_chans: int = 16) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.embedding_hw = (int(image_embedding_size), int(image_embedding_size))
        self.input_hw = (int(input_image_size), int(input_image_size))
        self.pe_layer = RandomFourierPE(embed_dim // 2)
        # 0: background point, 1: foreground point, 2: box top-left, 3: box bottom-right
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    @property
    def mask_input_hw(self) -> tuple[int, int]:
        return (4 * self.embedding_hw[0], 4 * self.embedding_hw[1])

    def dense_pe(self) -> Tensor:
        """``(1, D, h, w)`` positional encoding of the image-embedding grid."""
        return self.pe_layer.grid(*self.embedding_hw)[None]

    def embed_points(self, coords: Tensor, labels: Tensor, pad: bool) -> Tensor:
        coords = coords.float() + 0.5  # pixel centres
        labels = labels.to(coords.device)
        if pad:  # SAM appends one "not a point" token when no box is given
            coords = torch.cat([coords, coords.new_zeros(coords.shape[0], 1, 2)], dim=1)
            labels = torch.cat([labels, labels.new_full((labels.shape[0], 1), -1)], dim=1)
        emb = self.pe_layer.points(coords, self.input_hw)
        lab = labels[..., None]
        emb = torch.where(lab == -1, self.not_a_point_embed.weight.expand_as(emb), emb)
        emb = emb + (lab == 0).to(emb.dtype) * self.point_embeddings[0].weight
        emb = emb + (lab == 1).to(emb.dtype) * self.point_embeddings[1].weight
        return emb

    def embed_boxes(self, boxes: Tensor) -> Tensor:
        corners = (boxes.float() + 0.5).reshape(-1, 2, 2)
        emb = self.pe_layer.points(corners, self.input_hw)
        corner_embed = torch.cat([self.point_embeddings[2].weight, self.point_embeddings[3].weight], dim=0)
        return emb + corner_embed

    def forward(self, points: tuple[Tensor, Tensor] | None, boxes: Tensor | None, masks: Tensor | None,
                batch: int) -> tuple[Tensor, Tensor]:
        dev = self.no_mask_embed.weight.device
        parts = []
        if points is not None:
            parts.append(self.embed_points(points[0], points[1], pad=boxes is None))
        if boxes is not None:
            parts.append(self.embed_boxes(boxes))
        sparse = torch.cat(parts, dim=1) if parts else torch.empty(batch, 0, self.embed_dim, device=dev)
        if masks is not None:
            dense = self.mask_downscaling(masks.float())
        else:  # (1, D, h, w): the same for every prompt, broadcast by the decoder
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, *self.embedding_hw)
        return sparse, dense


# ------------------------------------------------------------------------------- two-way transformer
class ProjAttention(nn.Module):
    """Multi-head attention with separate q/k/v projections to ``dim // downsample`` channels."""

    def __init__(self, dim: int, num_heads: int, downsample: int = 1) -> None:
        super().__init__()
        inner = dim // downsample
        if inner % num_heads:
            raise ValueError(f"num_heads {num_heads} must divide {inner}")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, inner)
        self.k_proj = nn.Linear(dim, inner)
        self.v_proj = nn.Linear(dim, inner)
        self.out_proj = nn.Linear(inner, dim)

    def _heads(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Inputs ``(B, N, dim)``; a batch of 1 is broadcast against the others (projected once)."""
        q = self._heads(self.q_proj(q))
        k = self._heads(self.k_proj(k))
        v = self._heads(self.v_proj(v))
        b = max(q.shape[0], k.shape[0], v.shape[0])
        q, k, v = (t.expand(b, -1, -1, -1) if t.shape[0] != b else t for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)
        b, h, n, d = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * d))


class TokenMLP(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.lin2(F.relu(self.lin1(x)))


class TwoWayBlock(nn.Module):
    """Token self-attention, token->image attention, token MLP, image->token attention."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, downsample: int, skip_first_pe: bool) -> None:
        super().__init__()
        self.skip_first_pe = skip_first_pe
        self.self_attn = ProjAttention(dim, num_heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = ProjAttention(dim, num_heads, downsample)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = TokenMLP(dim, mlp_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = ProjAttention(dim, num_heads, downsample)

    def forward(self, tokens: Tensor, image: Tensor, token_pe: Tensor, image_pe: Tensor) -> tuple[Tensor, Tensor]:
        if self.skip_first_pe:
            tokens = self.self_attn(tokens, tokens, tokens)
        else:
            q = tokens + token_pe
            tokens = tokens + self.self_attn(q, q, tokens)
        tokens = self.norm1(tokens)

        image_k = image + image_pe
        tokens = self.norm2(tokens + self.cross_attn_token_to_image(tokens + token_pe, image_k, image))
        tokens = self.norm3(tokens + self.mlp(tokens))
        image = self.norm4(image + self.cross_attn_image_to_token(image_k, tokens + token_pe, tokens))
        return tokens, image


class TwoWayTransformer(nn.Module):
    def __init__(self, depth: int = 2, dim: int = 256, num_heads: int = 8, mlp_dim: int = 2048,
                 downsample: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayBlock(dim, num_heads, mlp_dim, downsample, skip_first_pe=(i == 0)) for i in range(depth)
        )
        self.final_attn_token_to_image = ProjAttention(dim, num_heads, downsample)
        self.norm_final_attn = nn.LayerNorm(dim)

    def forward(self, image: Tensor, image_pe: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """``image``/``image_pe``: ``(B or 1, C, h, w)``; ``tokens``: ``(B, T, C)``. Returns tokens and image
        tokens ``(B, h*w, C)``. An image of batch 1 is shared by all B prompts until the first layer
        updates it from the tokens (its projections are computed once)."""
        image = image.flatten(2).transpose(1, 2)
        image_pe = image_pe.flatten(2).transpose(1, 2)
        token_pe = tokens
        for layer in self.layers:
            tokens, image = layer(tokens, image, token_pe, image_pe)
        attn = self.final_attn_token_to_image(tokens + token_pe, image + image_pe, image)
        if image.shape[0] != tokens.shape[0]:  # depth 0
            image = image.expand(tokens.shape[0], -1, -1)
        return self.norm_final_attn(tokens + attn), image


# ------------------------------------------------------------------------------------ mask decoder
class MaskDecoder(nn.Module):
    """Predicts ``1 + num_multimask`` low-resolution mask logits and their IoU estimates."""

    def __init__(self, dim: int = 256, num_multimask_outputs: int = 3, depth: int = 2, num_heads: int = 8,
                 mlp_dim: int = 2048, iou_head_depth: int = 3, iou_head_hidden_dim: int = 256) -> None:
        super().__init__()
        self.num_mask_tokens = num_multimask_outputs + 1
        self.transformer = TwoWayTransformer(depth, dim, num_heads, mlp_dim)
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(dim, dim, dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth)

    def forward(self, image: Tensor, image_pe: Tensor, sparse: Tensor, dense: Tensor,
                multimask: bool) -> tuple[Tensor, Tensor]:
        b = sparse.shape[0]
        out_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([out_tokens[None].expand(b, -1, -1), sparse], dim=1)
        # image (1 or B) + dense (1 or B): stays a batch of 1 when every prompt shares the image and
        # there is no mask prompt, and the transformer broadcasts it.
        src = image + dense
        _, c, h, w = src.shape
        tokens, src = self.transformer(src, image_pe, tokens)

        wanted = range(1, self.num_mask_tokens) if multimask else range(0, 1)
        upscaled = self.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
        hyper = torch.stack([self.output_hypernetworks_mlps[i](tokens[:, 1 + i]) for i in wanted], dim=1)
        _, cu, hu, wu = upscaled.shape
        masks = (hyper @ upscaled.reshape(b, cu, hu * wu)).reshape(b, -1, hu, wu)
        iou = self.iou_prediction_head(tokens[:, 0])[:, wanted.start:wanted.stop]
        return masks, iou
