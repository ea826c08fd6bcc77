"""A lean decoding path for GPT-2 models: the same weights and arithmetic as Hugging Face's
``GPT2LMHeadModel``, with a preallocated KV cache and none of the per-call machinery.

At the embedded model's size (4 layers, width 128) a decoding step is a few small matrix
products, and the general-purpose forward (mask building, cache objects, output classes)
costs several times the arithmetic. Sampling is most of an RL step, so this path is what makes
proxygap's loop fast on a CPU. Any other model, or a GPT-2 variant this path does not cover,
goes through the general loop; tests check that both give the same log-probabilities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

_TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")


class GPT2Decoder:
    """Prefill and one-token steps over a static KV cache of shape (L, B, H, T_max, D)."""

    def __init__(self, model, batch: int, max_len: int):
        t = model.transformer
        cfg = model.config
        self.model, self.t, self.cfg = model, t, cfg
        self.H, self.C = cfg.n_head, cfg.n_embd
        self.D = self.C // self.H
        self.gelu = "tanh" if cfg.activation_function in _TANH_GELUS else "none"
        param = next(model.parameters())
        shape = (cfg.n_layer, batch, self.H, max_len, self.D)
        self.k = torch.zeros(shape, dtype=param.dtype, device=param.device)
        self.v = torch.zeros(shape, dtype=param.dtype, device=param.device)
        self.key_mask = torch.zeros((batch, max_len), dtype=torch.bool, device=param.device)
        self.length = 0
        self.batch = batch
        self.rows = torch.arange(batch, device=param.device)  # the batch rows still decoding, in cache order

    @staticmethod
    def supports(model) -> bool:
        cfg = model.config
        return (
            type(model).__name__ == "GPT2LMHeadModel"
            and cfg.activation_function in _TANH_GELUS + ("gelu",)
            and getattr(cfg, "scale_attn_weights", True)
            and not getattr(cfg, "scale_attn_by_inverse_layer_idx", False)
            and not getattr(cfg, "reorder_and_upcast_attn", False)
            and not getattr(cfg, "add_cross_attention", False)
        )

    def _forward(self, ids: Tensor, pos: Tensor, rows: Tensor | None = None) -> Tensor:
        """Append ``ids`` (B', t) at ``pos`` to the cache (rows ``rows``); logits of the last position."""
        B, t = ids.shape
        start, end = self.length, self.length + t
        k_cache = self.k if rows is None else self.k[:, rows]
        v_cache = self.v if rows is None else self.v[:, rows]
        key_mask = self.key_mask[:, :end] if rows is None else self.key_mask[rows, :end]
        # A query sees real keys up to itself; it always sees itself, so a padding query is never all-masked.
        q_idx = torch.arange(start, end, device=ids.device)[:, None]
        k_idx = torch.arange(end, device=ids.device)[None, :]
        allowed = (key_mask[:, None, :] | (k_idx == q_idx)[None]) & (k_idx <= q_idx)[None]  # (B, t, end)
        allowed = allowed[:, None]  # (B, 1, t, end)
        h = self.t.wte(ids) + self.t.wpe(pos)  # (B, t, C)
        for i, block in enumerate(self.t.h):
            a = F.layer_norm(h, (self.C,), block.ln_1.weight, block.ln_1.bias, block.ln_1.eps)
            qkv = torch.addmm(block.attn.c_attn.bias, a.reshape(-1, self.C), block.attn.c_attn.weight)
            q, k, v = qkv.view(B, t, 3, self.H, self.D).permute(2, 0, 3, 1, 4)  # each (B, H, t, D)
            k_cache[i, :, :, start:end] = k
            v_cache[i, :, :, start:end] = v
            if t == 1:  # one query: plain matmuls beat the masked SDPA kernel at this size
                scores = (q @ k_cache[i, :, :, :end].transpose(-1, -2)) * self.D ** -0.5  # (B, H, 1, end)
                y = scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v_cache[i, :, :, :end]
            else:
                y = F.scaled_dot_product_attention(q, k_cache[i, :, :, :end], v_cache[i, :, :, :end],
                                                   attn_mask=allowed)
            y = y.transpose(1, 2).reshape(B * t, self.C)
            h = h + torch.addmm(block.attn.c_proj.bias, y, block.attn.c_proj.weight).view(B, t, self.C)
            m = F.layer_norm(h, (self.C,), block.ln_2.weight, block.ln_2.bias, block.ln_2.eps)
            m = F.gelu(torch.addmm(block.mlp.c_fc.bias, m.reshape(-1, self.C), block.mlp.c_fc.weight),
                       approximate=self.gelu)
            h = h + torch.addmm(block.mlp.c_proj.bias, m, block.mlp.c_proj.weight).view(B, t, self.C)
        last = F.layer_norm(h[:, -1], (self.C,), self.t.ln_f.weight, self.t.ln_f.bias, self.t.ln_f.eps)
        if rows is not None:
            self.k[:, rows], self.v[:, rows] = k_cache, v_cache
        return self.model.lm_head(last)  # (B', V)

    def prefill(self, prompt_ids: Tensor, prompt_mask: Tensor, first: Tensor | None, inverse: Tensor | None) -> Tensor:
        """Run the prompts (each distinct prompt once when ``first``/``inverse`` are given)."""
        P = prompt_ids.shape[1]
        self.key_mask[:, :P] = prompt_mask.bool()
        pos = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
        if first is None:
            logits = self._forward(prompt_ids, pos)
        else:
            logits = self._forward(prompt_ids[first], pos[first], rows=first)
            self.k[:, :, :, :P] = self.k[:, first][:, inverse, :, :P]
            self.v[:, :, :, :P] = self.v[:, first][:, inverse, :, :P]
            logits = logits[inverse]
        self.length = P
        return logits

    def step(self, ids: Tensor, pos: Tensor) -> Tensor:
        """One new token per row: ids, pos (B, 1) -> logits (B, V); rows retired are left at 0."""
        self.key_mask[:, self.length] = True
        logits = self._forward(ids[self.rows], pos[self.rows])
        self.length += 1
        if len(self.rows) == self.batch:
            return logits
        full = logits.new_zeros((self.batch, logits.shape[-1]))
        full[self.rows] = logits
        return full

    def retire(self, done: Tensor) -> None:
        """Drop finished rows from the cache, so later steps only compute the rows still writing."""
        keep = ~done[self.rows]
        if bool(keep.all()):
            return
        self.k, self.v = self.k[:, keep], self.v[:, keep]
        self.key_mask, self.rows = self.key_mask[keep], self.rows[keep]
