"""TinyViT image encoder as used by LiteMedSAM (256x256 image -> 256x64x64 embedding).

The network has four stages: a convolutional stage of inverted-residual (MBConv) blocks followed by
three stages of local-window self-attention blocks; each stage but the last ends in a "patch
merging" block (1x1 conv, strided depth-wise 3x3 conv, 1x1 conv). A small convolutional neck maps
the last stage to the 256-channel prompt-decoder embedding.

Internally the attention stages work on ``(B, H, W, C)`` tensors. Viewed as ``(B, C, H, W)`` through
``permute(0, 3, 1, 2)`` such a tensor is in channels-last memory format, so the depth-wise
convolutions in between need no copy.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medground.models.layers import ConvBN, LayerNorm2d


def relative_position_index(window: int) -> Tensor:
    """``(N, N)`` index (N = window^2) of the learnt bias for each query/key pair of a window.

    Pairs of positions with the same absolute offset ``(|dy|, |dx|)`` share one bias, stored at
    column ``|dy| * window + |dx|`` of ``attention_biases``.
    """
    ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    dy = (ys[:, None] - ys[None, :]).abs()
    dx = (xs[:, None] - xs[None, :]).abs()
    return dy * window + dx


class PatchEmbed(nn.Module):
    """Stem: two conv+BN layers with a GELU in between (``seq.0``, ``seq.1``, ``seq.2``)."""

    def __init__(self, in_chans: int, dim: int, kernel: int = 1, stride: int = 1) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            ConvBN(in_chans, dim // 2, kernel, stride),
            nn.GELU(),
            ConvBN(dim // 2, dim, kernel, stride),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, 3x3 depth-wise, 1x1 project, residual, GELU."""

    def __init__(self, dim: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = ConvBN(dim, hidden, 1)
        self.act1 = nn.GELU()
        self.conv2 = ConvBN(hidden, hidden, 3, groups=hidden)
        self.act2 = nn.GELU()
        self.conv3 = ConvBN(hidden, dim, 1)
        self.act3 = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        y = self.act1(self.conv1(x))
        y = self.act2(self.conv2(y))
        y = self.conv3(y)
        return self.act3(x + y)


class PatchMerging(nn.Module):
    """Down-sampling between stages, on ``(B, C, H, W)`` tensors."""

    def __init__(self, dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.conv1 = ConvBN(dim, out_dim, 1)
        self.conv2 = ConvBN(out_dim, out_dim, 3, stride=stride, groups=out_dim)
        self.conv3 = ConvBN(out_dim, out_dim, 1)
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        return self.conv3(x)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside one window with a learnt relative-offset bias.

    Input ``(B_windows, N, C)`` with N = window^2. The ``qkv`` projection is laid out per head as
    ``[q, k, v]`` (each ``C // heads`` wide), i.e. its output reshapes to ``(.., heads, 3, head_dim)``.
    """

    def __init__(self, dim: int, num_heads: int, window: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window * window))
        self.register_buffer("bias_index", relative_position_index(window), persistent=False)
        self.scale = self.head_dim ** -0.5

    def attention_bias(self) -> Tensor:
        """``(heads, N, N)`` additive attention bias."""
        return self.attention_biases[:, self.bias_index]

    def mix(self, x: Tensor) -> Tensor:
        """Attention output before the ``proj`` projection, ``(B_windows, N, C)``."""
        b, n, c = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, n, self.num_heads, 3, self.head_dim)
        qkv = qkv.permute(3, 0, 2, 1, 4)  # (3, B, heads, N, head_dim)
        q, k, v = qkv[0], qkv[1], qkv[2]
        # Plain matmul-softmax-matmul: on CPU this beats scaled_dot_product_attention with a float mask.
        attn = (q * self.scale) @ k.transpose(-2, -1) + self.attention_bias()
        out = attn.softmax(dim=-1) @ v
        return out.transpose(1, 2).reshape(b, n, c)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.mix(x))


class FrozenWindowAttention(nn.Module):
    """Inference form of :class:`WindowAttention`: separate q/k/v projections (the softmax scale
    folded into q), materialised bias. Same function, fewer reshapes and copies."""

    def __init__(self, src: WindowAttention) -> None:
        super().__init__()
        h, d = src.num_heads, src.head_dim
        dim = h * d
        self.num_heads, self.head_dim = h, d
        self.norm = src.norm
        self.proj = src.proj
        w = src.qkv.weight.detach().reshape(h, 3, d, dim)
        b = src.qkv.bias.detach().reshape(h, 3, d)
        lin = []
        for i, scale in enumerate((src.scale, 1.0, 1.0)):
            layer = nn.Linear(dim, dim).to(w.device, w.dtype)
            with torch.no_grad():
                layer.weight.copy_(w[:, i].reshape(dim, dim) * scale)
                layer.bias.copy_(b[:, i].reshape(dim) * scale)
            lin.append(layer)
        self.q, self.k, self.v = lin
        self.register_buffer("bias", src.attention_bias().detach().clone())

    def mix(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        x = self.norm(x)
        q = self.q(x).reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k(x).reshape(b, n, self.num_heads, self.head_dim).permute(0, 2, 3, 1)
        v = self.v(x).reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)
        out = (q @ k + self.bias).softmax(dim=-1) @ v
        return out.transpose(1, 2).reshape(b, n, c)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.mix(x))


class FeedForward(nn.Module):
    """Pre-norm MLP: LayerNorm, Linear, GELU, Linear (``norm``, ``fc1``, ``fc2``)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


def window_partition(x: Tensor, window: int) -> tuple[Tensor, int, int]:
    """``(B, H, W, C)`` -> ``(B * nH * nW, window^2, C)``, zero-padding H and W at the end."""
    b, h, w, c = x.shape
    pad_b, pad_r = (-h) % window, (-w) % window
    if pad_b or pad_r:
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
    ph, pw = h + pad_b, w + pad_r
    x = x.reshape(b, ph // window, window, pw // window, window, c).transpose(2, 3)
    return x.reshape(-1, window * window, c), ph, pw


def window_merge(x: Tensor, window: int, batch: int, ph: int, pw: int, h: int, w: int) -> Tensor:
    """Inverse of :func:`window_partition` (crops the padding)."""
    c = x.shape[-1]
    x = x.reshape(batch, ph // window, pw // window, window, window, c).transpose(2, 3)
    x = x.reshape(batch, ph, pw, c)
    if ph != h or pw != w:
        x = x[:, :h, :w]
    return x


class TinyViTBlock(nn.Module):
    """Window attention, residual, 3x3 depth-wise conv, residual MLP; on ``(B, H, W, C)``."""

    def __init__(self, dim: int, num_heads: int, window: int, mlp_ratio: float, local_conv: int) -> None:
        super().__init__()
        self.window = window
        self.attn = WindowAttention(dim, num_heads, window)
        self.local_conv = ConvBN(dim, dim, local_conv, groups=dim)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        windows, ph, pw = window_partition(x, self.window)
        # ``proj`` acts per token: apply it after cropping the window padding (less work).
        mixed = window_merge(self.attn.mix(windows), self.window, b, ph, pw, h, w)
        x = x + self.attn.proj(mixed)
        x = self.local_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x + self.mlp(x)


class ConvStage(nn.Module):
    def __init__(self, dim: int, depth: int, expand_ratio: float, downsample: PatchMerging | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, expand_ratio) for _ in range(depth))
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W)
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class AttentionStage(nn.Module):
    def __init__(self, dim: int, depth: int, num_heads: int, window: int, mlp_ratio: float, local_conv: int,
                 downsample: PatchMerging | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TinyViTBlock(dim, num_heads, window, mlp_ratio, local_conv) for _ in range(depth)
        )
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) in and out
        x = x.permute(0, 2, 3, 1)
        for block in self.blocks:
            x = block(x)
        x = x.permute(0, 3, 1, 2)
        return self.downsample(x) if self.downsample is not None else x


class TinyViT(nn.Module):
    """TinyViT encoder; parameter names match LiteMedSAM's ``image_encoder``."""

    def __init__(
        self,
        img_size: int = 256,
        in_chans: int = 3,
        embed_dims: Sequence[int] = (64, 128, 160, 320),
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (2, 4, 5, 10),
        window_sizes: Sequence[int] = (7, 7, 14, 7),
        mlp_ratio: float = 4.0,
        mbconv_expand_ratio: float = 4.0,
        local_conv_size: int = 3,
        stem_kernel: int = 1,
        stem_stride: int = 1,
        merge_strides: Sequence[int] = (2, 2, 1),
        out_chans: int = 256,
    ) -> None:
        super().__init__()
        n = len(embed_dims)
        if not (len(depths) == len(num_heads) == len(window_sizes) == n and len(merge_strides) == n - 1):
            raise ValueError("TinyViT: embed_dims, depths, num_heads, window_sizes must have one entry per stage "
                             "and merge_strides one fewer")
        self.img_size = int(img_size)
        self.in_chans = int(in_chans)
        self.out_chans = int(out_chans)
        self.patch_embed = PatchEmbed(in_chans, embed_dims[0], stem_kernel, stem_stride)
        self.layers = nn.ModuleList()
        for i in range(n):
            down = PatchMerging(embed_dims[i], embed_dims[i + 1], merge_strides[i]) if i < n - 1 else None
            if i == 0:
                stage: nn.Module = ConvStage(embed_dims[0], depths[0], mbconv_expand_ratio, down)
            else:
                stage = AttentionStage(embed_dims[i], depths[i], num_heads[i], window_sizes[i], mlp_ratio,
                                       local_conv_size, down)
            self.layers.append(stage)
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_chans, 1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )
        # Stride of the whole encoder (stem strides twice, then each merging stride).
        stride = stem_stride * stem_stride
        for s in merge_strides:
            stride *= s
        self.stride = stride

    @property
    def embedding_size(self) -> int:
        return self.img_size // self.stride

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.neck(x)
