"""The base language model: a small GPT-2 (or Llama, Qwen2), built, saved and loaded as a Hugging Face model.

Everything downstream (RL, reward models, samplers) takes any ``AutoModelForCausalLM``, so
the project's own model is a plain ``GPT2LMHeadModel`` (``arch='gpt2'``, the default; GPT-2 has
a fast decoding path) or ``LlamaForCausalLM`` / ``Qwen2ForCausalLM`` of the same width and depth
(``arch='llama'`` / ``'qwen2'``: rotary positions, RMSNorm, a SwiGLU MLP of 4x the width, tied
embeddings), and a checkpoint is a plain Hugging Face directory (config.json + model.safetensors +
tokenizer files). ``save_model`` writes
atomically and ``load_model`` turns every way a directory can be broken into one
``CheckpointError``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from itertools import chain
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel, PreTrainedModel
from transformers.utils import logging as hf_logging

from proxygap.config import Config, ConfigError, knob, validate
from proxygap.errors import CheckpointError
from proxygap.lm.device import current_device
from proxygap.fileio import replace_dir, temp_sibling, writing


ARCHS = ("gpt2", "llama", "qwen2")


@dataclass
class ModelConfig(Config):
    arch: str = knob("gpt2", "architecture: gpt2 (the shipped family; a fast decoding path), llama or qwen2 "
                             "(Hugging Face's own classes, the generic path)", choices=ARCHS)
    n_layer: int = knob(4, "transformer blocks", lo=1)
    n_embd: int = knob(128, "embedding width; must be divisible by n_head", lo=8)
    n_head: int = knob(4, "attention heads per block", lo=1)
    n_positions: int = knob(256, "context length in tokens; documents are short, prompts+completions fit", lo=8)
    dropout: float = knob(0.0, "dropout everywhere; 0: the corpus is large for the model", lo=0.0, hi=1.0)

    def check(self) -> None:
        if self.n_embd % self.n_head:
            raise ConfigError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")


def build_model(cfg: ModelConfig, tokenizer) -> PreTrainedModel:
    """A freshly initialized model of ``cfg.arch`` sized by ``cfg``, with vocab and special ids from ``tokenizer``."""
    validate(cfg)
    if cfg.arch in ("llama", "qwen2"):
        from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

        config_cls, model_cls = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}[
            cfg.arch]
        config = config_cls(
            vocab_size=len(tokenizer), hidden_size=cfg.n_embd, intermediate_size=4 * cfg.n_embd,
            num_hidden_layers=cfg.n_layer, num_attention_heads=cfg.n_head, num_key_value_heads=cfg.n_head,
            max_position_embeddings=cfg.n_positions, attention_dropout=cfg.dropout, tie_word_embeddings=True,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        return model_cls(config)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=cfg.n_positions,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        resid_pdrop=cfg.dropout,
        embd_pdrop=cfg.dropout,
        attn_pdrop=cfg.dropout,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        # GPT-2's tanh-approximated GELU through PyTorch's fused kernel: the same function as
        # the default "gelu_new" (to ~1e-6) and about 30% faster on a CPU at this size.
        activation_function="gelu_pytorch_tanh",
    )
    return GPT2LMHeadModel(config)


@contextlib.contextmanager
def quiet_hf_progress() -> Iterator[None]:
    """Hide transformers' own progress bars (e.g. "Writing model shards") inside our tqdm loops, and
    its load reports: what they say that matters becomes our one-line error."""
    was_enabled, verbosity = hf_logging.is_progress_bar_enabled(), hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if was_enabled:
            hf_logging.enable_progress_bar()


def save_model(
    model: PreTrainedModel,
    tokenizer,
    path: str | Path,
    extra_files: dict[str, str | bytes] | None = None,
) -> Path:
    """Write model (safetensors), tokenizer and ``extra_files`` {name: content} to ``path`` atomically."""
    path = Path(path)
    tmp = temp_sibling(path)
    try:
        with writing(path):  # disk full, read-only, ...: one-line WriteError naming the model dir
            with quiet_hf_progress():
                model.save_pretrained(tmp)  # safetensors is the default (and, in transformers 5, the only format)
            tokenizer.save_pretrained(tmp)
            for name, content in (extra_files or {}).items():
                target = tmp / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content) if isinstance(content, bytes) else target.write_text(content)
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "vocab.txt", "*.model", "*.spm", "*.tokenizer", "*.tiktoken")


def _check_tokenizer_files(path: Path) -> None:
    # Without one, transformers builds an empty GPT-2 tokenizer from the config and says nothing.
    # The patterns cover fast tokenizers, BPE/WordPiece vocabularies and sentencepiece/tiktoken files.
    if not any(any(path.glob(pattern)) for pattern in TOKENIZER_FILES):
        raise CheckpointError(f"{path} has no tokenizer (none of {', '.join(TOKENIZER_FILES)})")


def check_model_files(path: str | Path) -> None:
    """A CheckpointError naming the file when a model directory's JSON files or safetensors headers
    are unreadable; cheap (no tensor is read), so a run checks its models before it writes anything.
    What only a load finds (missing tensors, NaN weights) is ``load_model``'s check."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"no model directory at {path}")
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path} has no config.json (not a Hugging Face model directory)")
    _check_tokenizer_files(path)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors.index.json"):
        file = path / name
        if file.is_file():
            try:
                json.loads(file.read_text())
            except (OSError, ValueError) as e:
                raise CheckpointError(f"{file} is corrupt (not JSON: {str(e).splitlines()[0]})") from None
    weights = sorted(path.glob("*.safetensors"))
    if not weights and not any(path.glob("*.bin")):
        raise CheckpointError(f"{path} has no weights (*.safetensors or *.bin)")
    for file in weights:
        try:
            with safe_open(str(file), "pt") as f:
                f.keys()
        except Exception as e:  # SafetensorError, OSError: unreadable either way
            raise CheckpointError(f"{file} is corrupt: {(str(e).strip().splitlines() or [type(e).__name__])[0]}") from None


def _shape_mismatch(path: Path) -> str | None:
    """The first weight whose stored shape is not the one config.json builds (None if all fit):
    transformers only says 'look at the above report'."""
    from transformers import AutoConfig

    try:
        with torch.device("meta"):
            shapes = {k: tuple(v.shape) for k, v in AutoModelForCausalLM.from_config(
                AutoConfig.from_pretrained(path, local_files_only=True)).state_dict().items()}
        for file in sorted(path.glob("*.safetensors")):
            with safe_open(str(file), "pt") as f:
                for key in f.keys():
                    stored = tuple(f.get_slice(key).get_shape())
                    if key in shapes and shapes[key] != stored:
                        return (f"weights do not fit config.json: {key} is stored as {list(stored)} "
                                f"but the config builds {list(shapes[key])}")
    except Exception:  # noqa: BLE001 - a diagnosis only; the caller's error stands without it
        return None
    return None


def load_model(path: str | Path):
    """Load any Hugging Face causal-LM directory as ``(model, tokenizer)``, model in eval mode on the
    current device (``lm.device.compute_on``'s; the CPU outside one), weights in float32."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"no model directory at {path}")
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path} has no config.json (not a Hugging Face model directory)")
    _check_tokenizer_files(path)
    try:
        # Loaded on the CPU (a fixed place, whatever context the caller is in), then moved below.
        with quiet_hf_progress(), torch.device("cpu"):
            model, info = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, output_loading_info=True)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as e:  # OSError, ValueError, SafetensorError, ...: all mean "not loadable"
        check_model_files(path)  # names the corrupt file, where transformers' error often does not
        first_line = _shape_mismatch(path) or (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CheckpointError(f"cannot load model from {path}: {first_line}") from e
    # A weights file missing tensors would otherwise load silently with random weights.
    if info.get("missing_keys"):
        missing = sorted(info["missing_keys"])
        raise CheckpointError(
            f"cannot load model from {path}: weights missing {len(missing)} tensors, e.g. {missing[0]}")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # GPT-2 style tokenizers ship without one
    # CPU weights come memory-mapped from the safetensors file: copy them, so that a model directory
    # overwritten in place (say by cp) cannot silently change the weights of a running experiment.
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.device.type == "cpu":
                tensor.data = tensor.data.clone()
    # Weights stored in half precision (to keep the package small) compute in float32 on a CPU.
    if any(p.dtype in (torch.float16, torch.bfloat16) for p in model.parameters()):
        model = model.float()
    # NaN/inf weights (a diverged run, a bad conversion) would only show up as garbage samples.
    for name, tensor in chain(model.named_parameters(), model.named_buffers()):
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"cannot load model from {path}: tensor {name} has non-finite (NaN/inf) values")
    return model.to(current_device()).eval(), tokenizer
