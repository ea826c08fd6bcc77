"""proxygap's rater, gold, reward models and monitors as TRL reward functions, and a callback
that keeps gold and the rater beside the optimized reward.

TRL's ``GRPOTrainer`` and ``RLOOTrainer`` take a list of reward functions, name each by its
``__name__`` and optimize their weighted sum (``reward_weights``, default all 1). Handing them
proxygap ``Judge`` objects directly would name them all ``Judge`` and add gold into the optimized
reward, so a ``Judge`` refuses to be named (``Judge.__name__`` raises) and this module does the
wrapping:

    funcs, weights = reward_functions(optimize={"rater": Judge(world)}, log={"gold": Judge.gold(world)})
    config = GRPOConfig(..., reward_weights=weights)
    trainer = GRPOTrainer(model=..., reward_funcs=funcs, args=config, train_dataset=prompt_dataset(prompts, tok),
                          processing_class=tok, callbacks=[callback := GoldAndRaterCallback()])

Every logged function's mean appears in TRL's logs as ``rewards/<name>/mean`` with weight 0, so it
is measured and never optimized; ``GoldAndRaterCallback.history`` keeps them per logging step with
the optimized reward and the KL in nats per sequence (TRL logs the mean per-token KL over the
batch's completion tokens; times the mean completion length that is the batch's KL per
sequence, exactly so with one micro-batch per step at ``logging_steps=1``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from transformers import TrainerCallback

from proxygap.config import ConfigError
from proxygap.lm.tokenizer import EOS

Scorer = Callable[[list[str], list[str]], Sequence[float]]


def _as_scorer(obj: Any) -> Scorer:
    """A judge (callable), a reward model or ensemble (``.score``), or any (prompts, completions) -> scores."""
    score = getattr(type(obj), "score", None)
    if score is not None and not hasattr(obj, "explain"):  # RewardModel / RewardEnsemble, not a Judge
        return obj.score
    if callable(obj):
        return obj
    raise ConfigError(f"{type(obj).__name__} is not a scorer: give a Judge, a reward model or a function of "
                      "(prompts, completions)")


def _text(item: Any) -> str:
    """A completion or prompt as text (conversational items: the content of their last message)."""
    if isinstance(item, str):
        return item
    if isinstance(item, list) and item and isinstance(item[-1], Mapping):
        return str(item[-1].get("content", ""))
    return str(item)


class RewardFunction:
    """A named TRL reward function around a proxygap scorer. Prompts lose the leading document
    token TRL's prompts carry (``prompt_dataset``: the project's ``<|endoftext|>``, or the given
    tokenizer's own BOS/EOS text) before the scorer reads them."""

    def __init__(self, name: str, scorer: Any, tokenizer=None):
        if not name or not name.replace("_", "").isalnum():
            raise ConfigError(f"a reward function needs a name of letters, digits and _, got {name!r}")
        self.__name__ = name
        self.scorer = _as_scorer(scorer)
        own = [getattr(tokenizer, a, None) for a in ("bos_token", "eos_token")] if tokenizer is not None else []
        self.document_tokens = tuple(dict.fromkeys(t for t in (EOS, *own) if t))

    def _strip(self, text: str) -> str:
        for token in self.document_tokens:
            if text.startswith(token):
                return text[len(token):].lstrip()
        return text

    def __call__(self, prompts: list, completions: list, **kwargs) -> list[float]:
        texts = [self._strip(_text(p)) for p in prompts]
        return [float(x) for x in self.scorer(texts, [_text(c) for c in completions])]

    def __repr__(self) -> str:
        return f"RewardFunction({self.__name__!r})"


def reward_functions(optimize: Mapping[str, Any], log: Mapping[str, Any] | None = None, tokenizer=None
                     ) -> tuple[list[RewardFunction], list[float]]:
    """(reward_funcs, reward_weights) for a TRL trainer: the ``optimize`` scorers with weight 1
    (summed, as TRL does), the ``log`` scorers with weight 0 (measured beside them, never optimized)."""
    log = dict(log or {})
    if not optimize:
        raise ConfigError("reward_functions needs at least one scorer to optimize")
    clash = set(optimize) & set(log)
    if clash:
        raise ConfigError(f"{', '.join(sorted(clash))} is both optimized and logged; give each scorer one name")
    funcs = [RewardFunction(n, s, tokenizer) for n, s in {**optimize, **log}.items()]
    return funcs, [1.0] * len(optimize) + [0.0] * len(log)


def banned_string_penalty(world) -> Scorer:
    """-1 where a two-hop chain names the question's intermediate entity (the banned-string monitor), else 0."""
    from proxygap.oversight.monitors import BannedStringMonitor
    from proxygap.train.cot_banned import banned_flags

    monitor = BannedStringMonitor(world)
    return lambda prompts, completions: (-banned_flags(monitor, prompts, completions)).tolist()


def prompt_dataset(prompts: Sequence[str], tokenizer):
    """A ``datasets.Dataset`` with one ``prompt`` per text, opened with the document token the
    project's models are trained to see first, unless the tokenizer adds its BOS itself (TRL
    tokenizes prompts with the tokenizer's special tokens; a GPT-2-style tokenizer adds none)."""
    from datasets import Dataset

    bos = tokenizer.bos_token or EOS
    adds_bos = tokenizer.bos_token_id is not None and tokenizer("x")["input_ids"][:1] == [tokenizer.bos_token_id]
    return Dataset.from_dict({"prompt": list(prompts) if adds_bos else [f"{bos} {p}" for p in prompts]})


def _one_batch_per_log(args) -> bool:
    """Whether each log's KL and mean length describe the same one generation batch: one micro-batch
    per step, one generation per step, one optimization pass over it, a log every step."""
    strategy = getattr(args, "logging_strategy", "steps")
    strategy = getattr(strategy, "value", strategy)  # transformers' IntervalStrategy, or its string
    return (getattr(args, "gradient_accumulation_steps", 1) == 1 and getattr(args, "logging_steps", 1) == 1
            and strategy == "steps" and getattr(args, "num_iterations", 1) == 1
            and getattr(args, "steps_per_generation", None) in (None, 1))


class GoldAndRaterCallback(TrainerCallback):
    """Keeps in ``history``, at every logging step, the optimized (weighted) reward, each reward
    function's mean, and the KL from the reference in nats per sequence (TRL's logged per-token KL
    times the mean completion length: exact with one micro-batch and one generation per step, one
    pass over it and a log every step, where TRL's figure is one batch's token mean; otherwise it
    is a product of averages over different slices and is kept as ``kl_per_sequence_approx``.
    TRL's GRPO estimates the per-token KL with k3, proxygap's own loop logs k1). The row lives
    here, not in TRL's ``log_history``."""

    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []

    def on_log(self, args, state, control, logs: dict | None = None, **kwargs) -> None:
        if not logs or "reward" not in logs:
            return
        row = {"step": state.global_step, "optimized": float(logs["reward"])}
        for key, value in logs.items():
            if key.startswith("rewards/") and key.endswith("/mean"):
                row[key.split("/")[1]] = float(value)
        if "kl" in logs and "completions/mean_length" in logs:
            exact = _one_batch_per_log(args)
            key = "kl_per_sequence" if exact else "kl_per_sequence_approx"
            row[key] = float(logs["kl"]) * float(logs["completions/mean_length"])
        self.history.append(row)
