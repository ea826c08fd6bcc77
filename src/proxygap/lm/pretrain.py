"""Pretrain the base model on the world's corpus by plain next-token prediction.

Readable top to bottom, like nanoGPT's train.py: tokenize the documents into one stream, take
random windows, AdamW with linear warmup and cosine decay, a held-out validation loss. Every
``checkpoint_every`` steps the run saves weights + optimizer + RNG states atomically, and a
rerun with the same settings continues from there, seeing exactly the batches an uninterrupted
run would have seen.

out_dir/
  checkpoint/        latest checkpoint: a model directory + trainer_state.pt
  model/             the final model (+ the caller's extra_files)
  train_log.jsonl    one line per evaluation
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from proxygap.config import Config, ConfigError, knob, to_dict, validate
from proxygap.errors import CheckpointError
from proxygap.fileio import remove_leftovers, restore_replaced, write_text_atomic, writing
from proxygap.lm.model import ModelConfig, build_model, load_model, save_model
from proxygap.lm.tokenizer import train_tokenizer

VAL_FRACTION = 0.05  # documents held out for the validation loss
EVAL_WINDOWS = 64  # at most this many validation windows per evaluation: enough for a stable mean
# Knobs that do not change the training trajectory, so a resumed run may differ in them.
RESUME_FREE_KNOBS = ("checkpoint_every", "eval_every", "threads")


@dataclass
class PretrainConfig(Config):
    steps: int = knob(1500, "optimizer steps", lo=1)
    batch_size: int = knob(32, "windows per batch", lo=1)
    seq_len: int = knob(128, "tokens per window; at most the model's n_positions", lo=2)
    lr: float = knob(3e-3, "peak learning rate; high because the model is tiny", lo=0.0)
    min_lr_ratio: float = knob(0.1, "final learning rate as a fraction of lr (cosine decay)", lo=0.0, hi=1.0)
    warmup_steps: int = knob(50, "linear warmup steps", lo=0)
    weight_decay: float = knob(0.1, "AdamW weight decay", lo=0.0)
    grad_clip: float = knob(1.0, "max global gradient norm; 0 disables clipping", lo=0.0)
    checkpoint_every: int = knob(250, "steps between resumable checkpoints", lo=1)
    eval_every: int = knob(250, "steps between validation-loss evaluations", lo=1)
    seed: int = knob(0, "seed for initialization, validation split and batch order", lo=0, hi=2**31 - 1)
    threads: int = knob(0, "torch CPU threads; 0 keeps torch's default", lo=0)

    def check(self) -> None:
        for name in ("lr", "min_lr_ratio", "weight_decay", "grad_clip"):
            if not math.isfinite(getattr(self, name)):
                raise ConfigError(f"{name}={getattr(self, name)} must be a finite number")


def lr_at(step: int, cfg: PretrainConfig) -> float:
    """Linear warmup to cfg.lr, then cosine decay to cfg.lr * cfg.min_lr_ratio."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    min_lr = cfg.lr * cfg.min_lr_ratio
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))) * (cfg.lr - min_lr)


def token_stream(tokenizer, docs: list[str]) -> torch.Tensor:
    """One long tensor of ``<|endoftext|> doc <|endoftext|> doc ...``: EOS marks each document start."""
    ids = tokenizer(docs, add_special_tokens=False)["input_ids"] if docs else []
    eos = tokenizer.eos_token_id
    return torch.tensor(list(chain.from_iterable([eos, *row] for row in ids)), dtype=torch.long)


def get_batch(data: torch.Tensor, batch_size: int, seq_len: int, gen: torch.Generator):
    """Random windows: inputs x and next-token targets y, each (B, T)."""
    # Drawn on the generator's device (the CPU): the same batches on every machine.
    starts = torch.randint(len(data) - seq_len, (batch_size,), generator=gen, device=gen.device).to(data.device)  # (B,)
    window = data[starts[:, None] + torch.arange(seq_len + 1, device=data.device)]  # (B, T+1)
    return window[:, :-1], window[:, 1:]


@torch.no_grad()
def evaluate(model, data: torch.Tensor, batch_size: int, seq_len: int) -> float:
    """Mean next-token loss over consecutive windows of the validation stream (no RNG used)."""
    T = min(seq_len, len(data) - 1)
    n = min(EVAL_WINDOWS, (len(data) - 1) // T)
    windows = torch.stack([data[i * T:i * T + T + 1] for i in range(n)])  # (n, T+1)
    model.eval()
    losses = []
    for chunk in windows.split(batch_size):
        logits = model(input_ids=chunk[:, :-1]).logits  # (b, T, V)
        losses.append(F.cross_entropy(logits.flatten(0, 1), chunk[:, 1:].flatten(), reduction="sum"))
    model.train()
    return (torch.stack(losses).sum() / windows[:, 1:].numel()).item()


def pretrain(
    texts: list[str],
    out_dir: str | Path,
    model_cfg: ModelConfig,
    cfg: PretrainConfig,
    tokenizer=None,
    progress: bool = True,
    extra_files: dict[str, str | bytes] | None = None,
    on_step: Callable[[int, float], None] | None = None,
    init_from: str | Path | None = None,
) -> Path:
    """Train a base model on ``texts`` and return ``out_dir/model``; resumes from ``out_dir/checkpoint``.

    ``init_from``: start from that Hugging Face model directory's weights and tokenizer instead of
    a fresh model of ``model_cfg`` and a word-level tokenizer of ``texts``.
    ``on_step(step, loss)`` is called after each optimizer step (step counts from 1).
    """
    validate(model_cfg)
    validate(cfg)
    start = load_model(Path(init_from)) if init_from is not None else None  # CheckpointError if not loadable
    context = (getattr(start[0].config, "max_position_embeddings", None) or 10**9) if start else model_cfg.n_positions
    if cfg.seq_len > context:
        raise ConfigError(f"seq_len={cfg.seq_len} exceeds the model's context of {context} positions")
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir, log_path = out_dir / "checkpoint", out_dir / "train_log.jsonl"
    settings = {"model": to_dict(model_cfg) if start is None else {"init_from": str(init_from)},
                "pretrain": to_dict(cfg)}
    run_config = json.dumps(settings, indent=2)  # frozen into every checkpoint and the final model

    # ---- resume or start: model, tokenizer, optimizer, RNG ----
    torch.manual_seed(cfg.seed)
    state = None
    restore_replaced(ckpt_dir)  # a checkpoint moved aside by a save killed between its two renames
    remove_leftovers(ckpt_dir)  # and the temporary checkpoints of killed saves
    if ckpt_dir.exists():
        model, ckpt_tokenizer = load_model(ckpt_dir)  # CheckpointError if broken
        state = read_trainer_state(ckpt_dir)
        check_same_run(state, settings, ckpt_dir)
        if tokenizer is not None and tokenizer.get_vocab() != ckpt_tokenizer.get_vocab():
            raise CheckpointError(
                f"{ckpt_dir} was trained with a different tokenizer; delete it or use another output directory (--out)")
        tokenizer = ckpt_tokenizer
    elif start is not None:
        model, tokenizer = start
        # Pretraining opens every document with EOS (token_stream) and prompts open with BOS
        # (encode_prompts): make them the same token, whatever the model's tokenizer called BOS.
        if tokenizer.bos_token != tokenizer.eos_token:
            tokenizer.bos_token = tokenizer.eos_token
            model.config.bos_token_id = tokenizer.eos_token_id
    else:
        tokenizer = tokenizer if tokenizer is not None else train_tokenizer(texts)
        model = build_model(model_cfg, tokenizer)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)  # batch order, saved with each checkpoint

    # ---- data: hold out 5% of documents, concatenate the rest into one token stream ----
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(cfg.seed), device="cpu").tolist()
    n_val = round(VAL_FRACTION * len(texts))
    val_data = token_stream(tokenizer, [texts[i] for i in sorted(order[:n_val])])
    train_data = token_stream(tokenizer, [texts[i] for i in sorted(order[n_val:])])
    if len(train_data) <= cfg.seq_len:
        raise ConfigError(f"corpus too small: {len(train_data)} training tokens for seq_len={cfg.seq_len}")
    data_hash = hashlib.sha256(train_data.cpu().numpy().tobytes()).hexdigest()

    start = 0
    if state is not None:
        if state["data_hash"] != data_hash:
            raise CheckpointError(f"{ckpt_dir} was trained on a different corpus; delete it or use another output directory (--out)")
        try:
            optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as e:
            raise CheckpointError(f"{ckpt_dir}: optimizer state does not fit the model: {e}") from e
        try:
            torch.set_rng_state(state["torch_rng"])
            gen.set_state(state["generator"])
        except (RuntimeError, ValueError) as e:  # a byte tensor of the wrong length
            raise CheckpointError(f"{ckpt_dir}: random-number state is corrupt: {str(e).splitlines()[0]}") from e
        start = state["step"]
    truncate_log(log_path, start)  # drop rows an interrupted (or deleted) run logged after `start`

    def save_checkpoint(step: int) -> None:
        buf = io.BytesIO()
        torch.save({"step": step, "optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state(),
                    "generator": gen.get_state(), "data_hash": data_hash, "settings": settings}, buf)
        save_model(model, tokenizer, ckpt_dir, {"trainer_state.pt": buf.getvalue(), "pretrain_config.json": run_config})

    # ---- training loop ----
    t0, recent = time.time(), []
    bar = tqdm(total=cfg.steps, initial=start, desc="pretrain", disable=not progress, dynamic_ncols=True)
    for step in range(start, cfg.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        x, y = get_batch(train_data, cfg.batch_size, cfg.seq_len, gen)  # (B, T) each
        logits = model(input_ids=x).logits  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()

        done, loss_value = step + 1, loss.item()
        recent.append(loss_value)
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.3f}")
        if done % cfg.eval_every == 0 or done == cfg.steps:
            row = {"step": done, "train/loss": sum(recent) / len(recent), "lr": lr_at(step, cfg),
                   "time/elapsed_s": round(time.time() - t0, 2)}
            if len(val_data) >= 2:
                row["val/loss"] = evaluate(model, val_data, cfg.batch_size, cfg.seq_len)
            with writing(log_path), log_path.open("a") as f:
                f.write(json.dumps(row) + "\n")
            recent = []
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            save_checkpoint(done)
        if on_step is not None:
            on_step(done, loss_value)
    bar.close()

    # The final checkpoint stays, so rerunning a finished run only rewrites the model.
    return save_model(model, tokenizer, out_dir / "model", {"pretrain_config.json": run_config, **(extra_files or {})})


def read_trainer_state(ckpt_dir: Path) -> dict:
    path = ckpt_dir / "trainer_state.pt"
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")  # a GPU run resumes anywhere
        missing = {"step", "optimizer", "torch_rng", "generator", "data_hash", "settings"} - set(state)
        if missing:
            raise KeyError(f"missing {', '.join(sorted(missing))}")
        wrong = [k for k, ok in (
            ("step", isinstance(state["step"], int) and not isinstance(state["step"], bool) and state["step"] >= 0),
            ("optimizer", isinstance(state["optimizer"], dict)),
            ("torch_rng", isinstance(state["torch_rng"], torch.Tensor) and state["torch_rng"].dtype == torch.uint8),
            ("generator", isinstance(state["generator"], torch.Tensor) and state["generator"].dtype == torch.uint8),
            ("data_hash", isinstance(state["data_hash"], str)),
            ("settings", isinstance(state["settings"], dict)
             and all(isinstance(state["settings"].get(k), dict) for k in ("model", "pretrain")))) if not ok]
        if wrong:
            raise TypeError(f"{', '.join(wrong)} of the wrong type")
    except Exception as e:  # missing file, truncated pickle, wrong contents
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"cannot read trainer state {path}: {first_line}") from e
    return state


def check_same_run(state: dict, settings: dict, ckpt_dir: Path) -> None:
    """Refuse to resume a checkpoint made with different settings (it would not be the same run)."""
    for section in ("model", "pretrain"):
        old, new = state["settings"][section], settings[section]
        for key in new:
            if section == "pretrain" and key in RESUME_FREE_KNOBS:
                continue
            before = old.get(key, "gpt2" if (section, key) == ("model", "arch") else None)  # pre-knob: gpt2
            if before != new[key]:
                knob = f"{'train' if section == 'pretrain' else section}.{key}"  # as a recipe (--set) names it
                raise CheckpointError(
                    f"{ckpt_dir} was made with {knob}={before!r}, not {new[key]!r}; "
                    "delete it or use another output directory (--out)")


def truncate_log(log_path: Path, step: int) -> None:
    """Keep the log rows up to ``step``; a torn row (a kill mid-write) or other unreadable line is dropped."""
    if log_path.exists():
        rows = []
        for line in log_path.read_text(errors="replace").splitlines():
            try:
                row = json.loads(line)
                keep = isinstance(row, dict) and row["step"] <= step
            except (ValueError, KeyError, TypeError):  # half a JSON line, or not a log row
                continue
            if keep:
                rows.append(line)
        write_text_atomic(log_path, "".join(r + "\n" for r in rows))
