"""Sampling from any Hugging Face causal LM, keeping what RL needs: tokens, masks, log-probs.

Our own loop rather than ``model.generate``: it records the log-probability of every sampled
token under the policy's own distribution (temperature 1, which is what the KL penalty needs)
and pads everything the same way ``sequence_logprobs`` expects, so the two agree exactly.
Prompts are left-padded; position ids are ``cumsum(mask) - 1`` so padding never shifts them.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from proxygap.lm.device import explicitly_placed
from proxygap.lm.fast_decode import GPT2Decoder, gpt2_sequence_logprobs


@dataclass
class Samples:
    prompt_ids: Tensor  # (B, P) long, left-padded with the pad id
    prompt_mask: Tensor  # (B, P) long, 1 for real prompt tokens
    tokens: Tensor  # (B, T) long, completions, pad id after the EOS that ends a row
    mask: Tensor  # (B, T) long, 1 for real completion tokens including the ending EOS
    logprobs: Tensor  # (B, T) float, log pi(token) at temperature 1; 0 where mask is 0
    texts: list[str]  # decoded completions without special tokens

    def __len__(self) -> int:
        return len(self.texts)


def pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def encode_prompts(tokenizer, prompts: list[str], add_bos: bool = True,
                   device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """Left-padded ``(ids, mask)``, each (B, P), with the bos token in front when asked, on
    ``device`` (default: torch's default device)."""
    distinct = {p: tokenizer.encode(p, add_special_tokens=False) for p in dict.fromkeys(prompts)}  # k samples share a prompt
    rows = [distinct[p] for p in prompts]
    bos = tokenizer.bos_token_id
    if add_bos and bos is not None:
        rows = [r if r[:1] == [bos] else [bos] + r for r in rows]
    if any(len(r) == 0 for r in rows):
        raise ValueError("empty prompt: give some text or use add_bos=True with a tokenizer that has a bos token")
    P = max(len(r) for r in rows)
    pad = pad_id(tokenizer)
    ids = torch.tensor([[pad] * (P - len(r)) + r for r in rows], dtype=torch.long, device=device)
    mask = torch.tensor([[0] * (P - len(r)) + [1] * len(r) for r in rows], dtype=torch.long, device=device)
    return ids, mask


def token_logprobs(logits: Tensor, tokens: Tensor) -> Tensor:
    """log softmax(logits) at ``tokens``, in float32: logits (..., V), tokens (...) -> (...)."""
    logits = logits.float()
    return logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)


@explicitly_placed()
def sample(
    model,
    tokenizer,
    prompts: list[str],
    max_new_tokens: int,
    temperature: float = 1.0,
    greedy: bool = False,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
    add_bos: bool = True,
    fast: bool = True,
    stop_token_ids: tuple[int, ...] = (),
) -> Samples:
    """Sample one completion per prompt, each row stopping at EOS (or after ``max_new_tokens``).

    ``stop_token_ids`` end a row like EOS does (the stop token is kept in the completion and its
    mask): an agent's action ends at the word that closes it, e.g. ``.``.
    """
    if not greedy and temperature <= 0:
        raise ValueError(f"temperature must be > 0 (got {temperature}); use greedy=True for argmax decoding")
    if batch_size is not None and len(prompts) > batch_size:
        chunks = [prompts[i:i + batch_size] for i in range(0, len(prompts), batch_size)]
        return cat_samples([sample(model, tokenizer, c, max_new_tokens, temperature, greedy, generator, None, add_bos, fast,
                                   stop_token_ids)
                            for c in chunks], pad_id(tokenizer))
    device = next(model.parameters()).device
    prompt_ids, prompt_mask = encode_prompts(tokenizer, prompts, add_bos, device)
    B, P = prompt_ids.shape
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and P + max_new_tokens > limit:
        raise ValueError(
            f"prompt ({P} tokens) + max_new_tokens ({max_new_tokens}) exceeds the model's context of {limit}")
    eos, pad = tokenizer.eos_token_id, pad_id(tokenizer)

    was_training = model.training
    model.eval()  # no dropout while sampling, whatever mode the caller's policy is in
    try:
        with torch.inference_mode():
            attn = prompt_mask  # (B, P)
            pos = (attn.cumsum(-1) - 1).clamp(min=0)[:, -1:]  # (B, 1): left padding does not shift positions
            done = torch.zeros(B, dtype=torch.bool, device=device)
            tokens, logps, alive_steps = [], [], []
            decoder = GPT2Decoder(model, B, P + max_new_tokens) if fast and GPT2Decoder.supports(model) else None
            if decoder is not None:
                next_logits = decoder.prefill(prompt_ids, attn, *(unique_prompts(prompt_ids) or (None, None)))
            else:
                next_logits, past = prefill(model, prompt_ids, attn)  # (B, V), cache
            x = None  # the previous step's tokens (B, 1), fed from the second step on
            for step in range(max_new_tokens):
                if step > 0 and decoder is not None:
                    next_logits = decoder.step(x, pos)
                elif step > 0:
                    out = model(input_ids=x, attention_mask=attn, position_ids=pos, use_cache=True,
                                **{cache_keyword(model): past})
                    past, next_logits = cache_of(out), out.logits[:, -1]
                logits = next_logits.float()  # (B, V)
                if greedy:
                    nxt = logits.max(-1).indices  # argmax's values (first on ties) at a third of its cost
                else:
                    # Gumbel-max: argmax(logits/T + Gumbel noise) is a draw from softmax(logits/T),
                    # and much cheaper than torch.multinomial for a batch of small vocabularies.
                    u = torch.rand(logits.shape, generator=generator,
                                   device=generator.device if generator is not None else device)
                    gumbel = u.to(device).clamp_(min=1e-20).log_().neg_().log_().neg_()  # -log(-log u), in place
                    nxt = gumbel.add_(logits if temperature == 1 else logits / temperature).max(-1).indices
                alive = ~done
                lp = token_logprobs(logits, nxt)  # (B,) at temperature 1: the policy's own distribution
                tokens.append(torch.where(alive, nxt, pad))
                logps.append(torch.where(alive, lp, 0.0))
                alive_steps.append(alive)
                if eos is not None:
                    done = done | (alive & (nxt == eos))
                for stop in stop_token_ids:
                    done = done | (alive & (nxt == stop))
                if done.all():
                    break
                if decoder is not None:
                    decoder.retire(done)
                x = nxt[:, None]  # (B, 1); finished rows keep feeding tokens, which are masked out later
                if decoder is None:  # the decoder keeps its own key mask
                    attn = torch.cat([attn, attn.new_ones(B, 1)], dim=1)
                pos = pos + 1
        # Stacked outside inference mode, so these are ordinary tensors that callers can feed to a
        # forward pass with grad (inference tensors cannot be saved for backward, e.g. by embedding).
        tokens_t = torch.stack(tokens, 1) if tokens else torch.full((B, 0), pad, dtype=torch.long, device=device)
        mask_t = torch.stack(alive_steps, 1).long() if tokens else torch.zeros((B, 0), dtype=torch.long, device=device)
        logps_t = torch.stack(logps, 1) if tokens else torch.zeros((B, 0), device=device)
    finally:
        model.train(was_training)
    texts = tokenizer.batch_decode([t[m.bool()].tolist() for t, m in zip(tokens_t.cpu(), mask_t.cpu())],
                                   skip_special_tokens=True)
    return Samples(prompt_ids, prompt_mask, tokens_t, mask_t, logps_t, texts)


def cat_samples(parts: list[Samples], pad: int) -> Samples:
    """Concatenate batches: prompts re-padded on the left, completions on the right."""
    P = max(s.prompt_ids.shape[1] for s in parts)
    T = max(s.tokens.shape[1] for s in parts)
    left = lambda t, v: F.pad(t, (P - t.shape[1], 0), value=v)  # noqa: E731
    right = lambda t, v: F.pad(t, (0, T - t.shape[1]), value=v)  # noqa: E731
    return Samples(
        prompt_ids=torch.cat([left(s.prompt_ids, pad) for s in parts]),
        prompt_mask=torch.cat([left(s.prompt_mask, 0) for s in parts]),
        tokens=torch.cat([right(s.tokens, pad) for s in parts]),
        mask=torch.cat([right(s.mask, 0) for s in parts]),
        logprobs=torch.cat([right(s.logprobs, 0.0) for s in parts]),
        texts=[t for s in parts for t in s.texts],
    )


def unique_prompts(prompt_ids: Tensor) -> tuple[Tensor, Tensor] | None:
    """(first row of each distinct prompt, each row's index into those), or None if all differ.

    RL and best-of-n draw k samples per prompt: the prompt prefix is then computed once per
    distinct prompt and its KV cache expanded to the k rows, which saves up to half the work.
    """
    uniq, inverse = torch.unique(prompt_ids, dim=0, return_inverse=True)
    if len(uniq) == len(prompt_ids):
        return None
    rows = torch.arange(len(prompt_ids), device=prompt_ids.device)
    first = torch.full((len(uniq),), len(prompt_ids), device=prompt_ids.device).scatter_reduce(
        0, inverse, rows, reduce="amin")
    return first, inverse


def cache_keyword(model) -> str:
    """The forward argument that takes the KV cache: ``cache`` in transformers 5.x (where
    ``past_key_values`` is deprecated, to be removed in 5.40), ``past_key_values`` before."""
    cls = type(model)
    if cls not in _CACHE_KEYWORD:
        params = inspect.signature(cls.forward).parameters
        _CACHE_KEYWORD[cls] = "cache" if "cache" in params else "past_key_values"
    return _CACHE_KEYWORD[cls]


_CACHE_KEYWORD: dict[type, str] = {}


def cache_of(out):
    """The KV cache a forward pass returned, under either name."""
    return out["cache"] if "cache" in out else out["past_key_values"]


def prefill(model, prompt_ids: Tensor, prompt_mask: Tensor, share_prefix: bool = True):
    """Run the prompts; returns (logits at each row's last prompt position (B, V), KV cache).

    Prompts that occur several times are run once and their cache rows expanded.
    """
    pos = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
    shared = unique_prompts(prompt_ids) if share_prefix else None
    if shared is None:
        out = model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=pos, use_cache=True)
        return out.logits[:, -1], cache_of(out)
    first, inverse = shared
    out = model(input_ids=prompt_ids[first], attention_mask=prompt_mask[first], position_ids=pos[first], use_cache=True)
    cache = cache_of(out)
    cache.batch_select_indices(inverse)
    return out.logits[:, -1][inverse], cache


@explicitly_placed()
def sequence_logprobs(model, prompt_ids: Tensor, prompt_mask: Tensor, tokens: Tensor, mask: Tensor,
                      share_prefix: bool = True, fast: bool = True) -> Tensor:
    """Per-token log pi(tokens | prompt), with grad; (B, T), 0 where mask is 0.

    The prompt prefix goes through the model once per distinct prompt (see ``prefill``), the
    completions then attend to its cache: the same numbers as one pass over prompt+completion.
    GPT-2 in eval mode takes a packed path that skips the padding (``fast_decode``).
    """
    if fast and share_prefix and not model.training and GPT2Decoder.supports(model) and tokens.shape[1] > 0:
        return gpt2_sequence_logprobs(model, prompt_ids, prompt_mask, tokens, mask)
    first_logits, cache = prefill(model, prompt_ids, prompt_mask, share_prefix)  # (B, V)
    attn = torch.cat([prompt_mask, mask], dim=1)  # completion padding is on the right: causality hides it
    pos = (attn.cumsum(-1) - 1).clamp(min=0)[:, prompt_ids.shape[1]:]  # (B, T)
    out = model(input_ids=tokens, attention_mask=attn, position_ids=pos, use_cache=True, **{cache_keyword(model): cache})
    logits = torch.cat([first_logits[:, None], out.logits[:, :-1]], dim=1)  # (B, T, V): predicts token t
    logp = token_logprobs(logits, tokens)
    return torch.where(mask.bool(), logp, 0.0)
