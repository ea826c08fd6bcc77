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
        # Uninitialized: attention reads only positions below ``length``, every one of them written first.
        self.k = torch.empty(shape, dtype=param.dtype, device=param.device)
        self.v = torch.empty(shape, dtype=param.dtype, device=param.device)
        self.key_mask = torch.zeros((batch, max_len), dtype=torch.bool, device=param.device)
        self.length = 0
        self.batch = batch
        self.rows = torch.arange(batch, device=param.device)  # the batch rows still decoding, in cache order
        # Each layer's tensors, fetched once: nn.Module attribute lookups cost more than the arithmetic here.
        norm = lambda ln: (ln.weight, ln.bias, ln.eps)  # noqa: E731
        self.layers = [(norm(b.ln_1), b.attn.c_attn.weight, b.attn.c_attn.bias, b.attn.c_proj.weight, b.attn.c_proj.bias,
                        norm(b.ln_2), b.mlp.c_fc.weight, b.mlp.c_fc.bias, b.mlp.c_proj.weight, b.mlp.c_proj.bias)
                       for b in t.h]
        self.ln_f = norm(t.ln_f)

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

    def _forward(self, ids: Tensor, pos: Tensor, k_cache: Tensor, v_cache: Tensor, key_mask: Tensor) -> Tensor:
        """Append ``ids`` (B', t) at ``pos`` to ``k_cache``/``v_cache`` (L, B', H, >= end, D), whose
        rows ``key_mask`` (B', end) describes; logits of the last position (B', V)."""
        B, t = ids.shape
        start, end = self.length, self.length + t
        if t == 1 and start > 0:  # a step: ``step`` marked the new position a real key, so the mask is the key mask
            blocked = ~key_mask[:, None, None, :]  # (B, 1, 1, end)
        else:  # a query sees real keys up to itself, and always itself, so a padding query is never all-masked
            q_idx = torch.arange(start, end, device=ids.device)[:, None]
            k_idx = torch.arange(end, device=ids.device)[None, :]
            allowed = ((key_mask[:, None, :] | (k_idx == q_idx)[None]) & (k_idx <= q_idx)[None])[:, None]  # (B, 1, t, end)
            blocked = ~allowed  # a one-token prefill takes the one-query path below too
        C, H, D = self.C, self.H, self.D
        h = self.t.wte(ids) + self.t.wpe(pos)  # (B, t, C)
        for i, (ln1, attn_w, attn_b, proj_w, proj_b, ln2, fc_w, fc_b, out_w, out_b) in enumerate(self.layers):
            a = F.layer_norm(h, (C,), *ln1)
            qkv = torch.addmm(attn_b, a.reshape(-1, C), attn_w)
            q, k, v = qkv.view(B, t, 3, H, D).permute(2, 0, 3, 1, 4)  # each (B, H, t, D)
            k_cache[i, :, :, start:end] = k
            v_cache[i, :, :, start:end] = v
            keys, values = k_cache[i, :, :, :end], v_cache[i, :, :, :end]
            if t == 1:  # one query: plain matmuls beat the masked SDPA kernel at this size
                scores = (q @ keys.transpose(-1, -2)) * D ** -0.5  # (B, H, 1, end)
                y = scores.masked_fill(blocked, float("-inf")).softmax(-1) @ values
            else:
                y = F.scaled_dot_product_attention(q, keys, values, attn_mask=allowed)
            y = y.transpose(1, 2).reshape(B * t, C)
            h = h + torch.addmm(proj_b, y, proj_w).view(B, t, C)
            m = F.gelu(torch.addmm(fc_b, F.layer_norm(h, (C,), *ln2).reshape(-1, C), fc_w), approximate=self.gelu)
            h = h + torch.addmm(out_b, m, out_w).view(B, t, C)
        return self.model.lm_head(F.layer_norm(h[:, -1], (C,), *self.ln_f))  # (B', V)

    def prefill(self, prompt_ids: Tensor, prompt_mask: Tensor, first: Tensor | None, inverse: Tensor | None) -> Tensor:
        """Run the prompts (each distinct prompt once when ``first``/``inverse`` are given)."""
        P = prompt_ids.shape[1]
        self.key_mask[:, :P] = prompt_mask.bool()
        pos = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
        if first is None:
            logits = self._forward(prompt_ids, pos, self.k, self.v, self.key_mask[:, :P])
        else:  # the distinct prompts into a cache of their own, then each copied to its rows
            k, v = self.k.new_empty((2, self.k.shape[0], len(first), self.H, P, self.D))
            logits = self._forward(prompt_ids[first], pos[first], k, v, self.key_mask[first, :P])
            self.k[:, :, :, :P] = k[:, inverse]
            self.v[:, :, :, :P] = v[:, inverse]
            logits = logits[inverse]
        self.length = P
        return logits

    def step(self, ids: Tensor, pos: Tensor) -> Tensor:
        """One new token per row: ids, pos (B, 1) -> logits (B, V); rows retired are left at 0."""
        self.key_mask[:, self.length] = True
        key_mask = self.key_mask[:, :self.length + 1]
        if len(self.rows) == self.batch:  # no row retired yet: no gather, no scatter
            logits = self._forward(ids, pos, self.k, self.v, key_mask)
            self.length += 1
            return logits
        logits = self._forward(ids[self.rows], pos[self.rows], self.k, self.v, key_mask)
        self.length += 1
        full = logits.new_zeros((self.batch, logits.shape[-1]))
        full[self.rows] = logits
        return full

    def retire(self, done: Tensor) -> None:
        """Drop finished rows from the cache, so later steps only compute the rows still writing."""
        keep = ~done[self.rows]
        # Compacting copies the cache written so far: worth it only once a good share of the rows is done.
        if int(keep.sum()) > 0.75 * len(self.rows):
            return
        kept = keep.nonzero().squeeze(1)
        # Only the positions written so far are copied: the rest of the cache is never read before it is written.
        for name in ("k", "v"):
            old = getattr(self, name)
            new = old.new_empty((old.shape[0], len(kept), *old.shape[2:]))
            new[:, :, :, :self.length] = old[:, kept, :, :self.length]
            setattr(self, name, new)
        self.key_mask, self.rows = self.key_mask[kept], self.rows[kept]


def _attention(block, x: Tensor, H: int) -> tuple[Tensor, Tensor, Tensor]:
    """q, k, v of ``x`` (N, C) -> each (N, H, D)."""
    N, C = x.shape
    qkv = torch.addmm(block.attn.c_attn.bias, x, block.attn.c_attn.weight)  # (N, 3C)
    q, k, v = qkv.view(N, 3, H, C // H).unbind(1)
    return q, k, v


def _mlp(block, h: Tensor, gelu: str) -> Tensor:
    m = F.layer_norm(h, h.shape[-1:], block.ln_2.weight, block.ln_2.bias, block.ln_2.eps)
    m = F.gelu(torch.addmm(block.mlp.c_fc.bias, m, block.mlp.c_fc.weight), approximate=gelu)
    return h + torch.addmm(block.mlp.c_proj.bias, m, block.mlp.c_proj.weight)


def gpt2_sequence_logprobs(model, prompt_ids: Tensor, prompt_mask: Tensor, tokens: Tensor, mask: Tensor) -> Tensor:
    """``sampling.sequence_logprobs`` for GPT-2, with grad, computing real tokens only.

    Completions end at different lengths, so a padded batch spends much of its arithmetic on
    padding. Here every position-wise operation (projections, MLP, norms, the LM head) runs on
    the packed real tokens (N, C); only attention goes through a padded (B, H, T, D) layout,
    keyed on each row's prompt (computed once per distinct prompt) and its own completion.
    Same weights and arithmetic as ``GPT2LMHeadModel`` (tests compare the two); (B, T) out.
    """
    t, cfg = model.transformer, model.config
    H, C = cfg.n_head, cfg.n_embd
    D = C // H
    gelu = "tanh" if cfg.activation_function in _TANH_GELUS else "none"
    B, T = tokens.shape
    uniq, inverse = torch.unique(prompt_ids, dim=0, return_inverse=True)
    first = torch.full((len(uniq),), B, device=prompt_ids.device).scatter_reduce(
        0, inverse, torch.arange(B, device=prompt_ids.device), reduce="amin")
    p_ids, p_mask = prompt_ids[first], prompt_mask[first].bool()  # (U, P)
    U, P = p_ids.shape
    p_pos = (p_mask.long().cumsum(-1) - 1).clamp(min=0)
    real = mask.bool()
    row, col = real.nonzero(as_tuple=True)  # (N,) each; row-major, so a row's tokens are contiguous
    flat = row * T + col  # (N,) each real token's index in the padded (B*T) layout
    c_pos = p_mask.long().sum(-1)[inverse][row] + col  # positions continue after each prompt's real tokens

    # Prompt keys: a padded dense pass (prompts are few and short). Causal, padding masked out;
    # a query always sees itself so a padding query is never all-masked.
    idx = torch.arange(P, device=p_ids.device)
    p_allowed = ((p_mask[:, None, :] | (idx[None, :, None] == idx[None, None, :])) & (idx[None, None, :] <= idx[None, :, None]))
    # Completion queries see their prompt's real keys and their own earlier completion tokens.
    tq = torch.arange(T, device=tokens.device)
    c_allowed = torch.cat([
        p_mask[inverse][:, None, :].expand(B, T, P),
        (tq[None, :, None] >= tq[None, None, :]).expand(B, T, T),
    ], dim=-1)[:, None]  # (B, 1, T, P + T)

    # index_copy / index_select on the flat layout: the same values as index_put / advanced
    # indexing, at half their cost forward and backward.
    pad = lambda x: x.new_zeros(B * T, H, D).index_copy(0, flat, x).view(B, T, H, D).transpose(1, 2)  # noqa: E731
    hp = (t.wte(p_ids) + t.wpe(p_pos)).reshape(U * P, C)  # (U*P, C)
    target = tokens.reshape(-1).index_select(0, flat)  # (N,)
    hc = t.wte(target) + t.wpe(c_pos)  # (N, C)
    for block in t.h:
        ap = F.layer_norm(hp, (C,), block.ln_1.weight, block.ln_1.bias, block.ln_1.eps)
        qp, kp, vp = (x.view(U, P, H, D).transpose(1, 2) for x in _attention(block, ap, H))  # (U, H, P, D)
        yp = F.scaled_dot_product_attention(qp, kp, vp, attn_mask=p_allowed[:, None])
        ac = F.layer_norm(hc, (C,), block.ln_1.weight, block.ln_1.bias, block.ln_1.eps)
        qc, kc, vc = _attention(block, ac, H)  # (N, H, D)
        keys = torch.cat([kp.index_select(0, inverse), pad(kc)], dim=2)  # (B, H, P + T, D)
        values = torch.cat([vp.index_select(0, inverse), pad(vc)], dim=2)
        yc = F.scaled_dot_product_attention(pad(qc), keys, values, attn_mask=c_allowed)  # (B, H, T, D)
        yc = yc.transpose(1, 2).reshape(B * T, C).index_select(0, flat)  # (N, C)
        yp = yp.transpose(1, 2).reshape(U * P, C)
        hp = _mlp(block, hp + torch.addmm(block.attn.c_proj.bias, yp, block.attn.c_proj.weight), gelu)
        hc = _mlp(block, hc + torch.addmm(block.attn.c_proj.bias, yc, block.attn.c_proj.weight), gelu)

    # Token (b, j) is predicted from position j-1 of its completion, or from the prompt's last position.
    prompt_last = hp.view(U, P, C)[:, -1].index_select(0, inverse[row])  # (N, C)
    previous = torch.cat([hc.new_zeros(1, C), hc[:-1]])  # packed index - 1 is (b, j-1) whenever j > 0
    h = torch.where((col == 0)[:, None], prompt_last, previous)
    h = F.layer_norm(h, (C,), t.ln_f.weight, t.ln_f.bias, t.ln_f.eps)
    logits = model.lm_head(h).float()  # (N, V)
    logp = logits.gather(-1, target[:, None]).squeeze(-1) - logits.logsumexp(-1)
    return logp.new_zeros(B * T).index_copy(0, flat, logp).view(B, T)
