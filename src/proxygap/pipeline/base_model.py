"""The base model: world → corpus → tokenizer → pretraining, and the embedded default.

A base model directory is an ordinary Hugging Face model directory (config, safetensors
weights, tokenizer) plus three JSON files saying what it was trained on, so any experiment can
judge it against the right world:

- ``proxygap_world.json``: the resolved WorldConfig (the world is regenerated from it);
- ``proxygap_corpus_rates.json``: the rates realized in its corpus (the probe's reference);
- ``proxygap_recipe.json``: the full recipe (world, model, pretraining), proxygap's version.
"""

from __future__ import annotations

import fcntl
import contextlib
import functools
import hashlib
import json
import os
import time
from dataclasses import dataclass
from collections.abc import Iterator
from pathlib import Path

import torch

import proxygap
from proxygap.config import Config, ConfigError, from_dict, nested, to_dict
from proxygap.errors import CheckpointError, ProxygapError
from proxygap.lm.model import ModelConfig, load_model
from proxygap.lm.pretrain import RESUME_FREE_KNOBS, PretrainConfig, pretrain
from proxygap.oversight import detectors
from proxygap.world.config import WorldConfig
from proxygap.corpus import generate_corpus, realized_rates
from proxygap.world import language
from proxygap.world.world import ATTRIBUTES, World, build_world

WORLD_FILE = "proxygap_world.json"
RATES_FILE = "proxygap_corpus_rates.json"
RECIPE_FILE = "proxygap_recipe.json"


@dataclass
class BaseModelRecipe(Config):
    """Everything that determines a base model."""

    world: WorldConfig = nested(WorldConfig, "the world and its corpus")
    model: ModelConfig = nested(ModelConfig, "the transformer's shape")
    train: PretrainConfig = nested(PretrainConfig, "pretraining by next-token loss")

    def check(self) -> None:
        # Checked here, at config resolution, not minutes later after the corpus is generated.
        if self.train.seq_len > self.model.n_positions:
            raise ConfigError(f"train.seq_len={self.train.seq_len} exceeds model.n_positions={self.model.n_positions}")


@dataclass(frozen=True)
class ModelSize:
    """One member of the model family: a shape and the learning rate that goes with it."""

    name: str
    n_layer: int
    n_embd: int
    n_head: int
    lr: float  # wider models want a smaller step (roughly 1/width beyond s)
    shipped: bool  # in the package (``proxygap/models/<name>``); else trained on demand


# One recipe (world, corpus, tokenizer, steps, batch, schedule) at four shapes. Head width is 32
# everywhere; depth and width grow together so parameters grow about 4x per size.
SIZES: dict[str, ModelSize] = {
    "xs": ModelSize("xs", n_layer=3, n_embd=64, n_head=2, lr=3e-3, shipped=True),
    "s": ModelSize("s", n_layer=4, n_embd=128, n_head=4, lr=3e-3, shipped=True),
    "m": ModelSize("m", n_layer=8, n_embd=192, n_head=6, lr=2e-3, shipped=True),
    "l": ModelSize("l", n_layer=8, n_embd=384, n_head=12, lr=1e-3, shipped=False),
}
DEFAULT_SIZE = "s"  # the default model of every experiment: keeps the quickstart within 5 minutes here


def recipe_for_size(name: str) -> BaseModelRecipe:
    """The family's recipe at size ``name`` (the default world and pretraining, this size's shape and lr)."""
    if name not in SIZES:
        raise ConfigError(f"unknown model size {name!r}; choose one of {', '.join(SIZES)}")
    size = SIZES[name]
    return BaseModelRecipe(model=ModelConfig(n_layer=size.n_layer, n_embd=size.n_embd, n_head=size.n_head),
                           train=PretrainConfig(lr=size.lr))


def models_dir() -> Path:
    """Where the shipped sizes live inside the package."""
    return Path(__file__).resolve().parent.parent / "models"


def default_model_dir() -> Path:
    """The base model shipped inside the package at the default size (reproduced by
    `proxygap pretrain --size s`, see README)."""
    return models_dir() / DEFAULT_SIZE


def build_base_model(recipe: BaseModelRecipe, out_dir: str | Path, progress: bool = True,
                     init_from: str | Path | None = None) -> Path:
    """Pretrain a base model from nothing, or (``init_from``) continue pretraining an existing
    Hugging Face causal LM on the world's corpus with its own tokenizer (the recipe's model shape
    is then not used); resumes if ``out_dir`` holds a checkpoint. Returns the model dir."""
    world = build_world(recipe.world)
    if init_from is not None:  # before any training: a tokenizer the command language cannot run on is refused now
        check_tokenizer_fits_world(load_model(Path(init_from))[1], world, Path(init_from))
    documents = generate_corpus(world)
    rates = realized_rates(documents, world)
    extra = {
        WORLD_FILE: json.dumps(to_dict(recipe.world), indent=1, sort_keys=True),
        RATES_FILE: json.dumps(rates, indent=1, sort_keys=True),
        RECIPE_FILE: json.dumps({"recipe": to_dict(recipe), "proxygap_version": proxygap.__version__,
                                 "init_from": str(init_from) if init_from is not None else None},
                                indent=1, sort_keys=True),
    }
    return pretrain(documents, Path(out_dir), recipe.model, recipe.train, progress=progress, extra_files=extra,
                    init_from=init_from)


@dataclass
class BaseModel:
    """A loaded base model with the world it is judged against."""

    model: object
    tokenizer: object
    world: World
    corpus_rates: dict
    path: Path


_JUDGED_AGAINST: list[str | None] = [None]  # a run's ``world`` knob, while its units run (``judged_against``)


@contextlib.contextmanager
def judged_against(world: str | Path | None) -> Iterator[None]:
    """Inside the block, every model whose world is not named explicitly is paired with ``world``
    (a world directory or world.json; None: each model's own). What a run's ``world`` knob does."""
    previous = _JUDGED_AGAINST[0]
    _JUDGED_AGAINST[0] = None if world in (None, "") else str(world)
    try:
        yield
    finally:
        _JUDGED_AGAINST[0] = previous


def load_world_for(model_dir: Path, world_path: str | Path | None = None) -> World:
    """The world a model is judged against: ``world_path`` if given (or the run's ``world``), else
    the one it was trained on."""
    world_path = world_path if world_path is not None else _JUDGED_AGAINST[0]
    if world_path is not None:
        p = Path(world_path)
        p = p / "world.json" if p.is_dir() else p
        if not p.is_file():
            raise CheckpointError(f"world file not found: {p}")
        try:
            return World.load(p)
        except ProxygapError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as e:  # JSONDecodeError is a ValueError
            raise CheckpointError(f"{p} is not a world file of `proxygap world` ({type(e).__name__}: {e})") from None
    config_file = model_dir / WORLD_FILE
    if not config_file.is_file():
        raise CheckpointError(f"{model_dir} has no {WORLD_FILE}; pass --world DIR (a `proxygap world` output; "
                              "for `proxygap run`, --world DIR or --set world=DIR)")
    try:
        return build_world(from_dict(WorldConfig, json.loads(config_file.read_text())))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{config_file} is corrupt: {e}") from None


def world_prompt_words(world: World) -> list[str]:
    """Every word of the world's prompts and plain answers: its names, attributes, values, goals,
    options and the template words around them. (Words only rare document types use, such as ads,
    or the manipulation phrases, are left out: a small corpus may lack them and the model is fine.)"""
    entity, attribute = world.entities[0], world.attributes[0]
    texts = [*world.entities, *world.attributes,
             language.fact_question(attribute, entity), language.fact_answer(attribute, entity, "x")]
    for a in world.attributes:
        texts += list(ATTRIBUTES[a])
        texts.append(language.belief_question(a, entity, ATTRIBUTES[a][0]))
    for d in world.decisions:
        names = [o.name for o in d.options]
        texts.append(language.recommend_question(d.goal, names))
        texts.append(language.recommend_answer(names[0]))
    for relation in world.relations:
        texts.append(language.two_hop_question(attribute, relation, entity))
        texts.append(language.two_hop_answer("x", [(language.Step(entity, relation, entity), 0)]))
    return sorted({w for text in texts for w in text.split()} - {"x"})


COMMAND_WORDS = (".", ";")  # the words that end an action and a thought: each must be one token


def check_tokenizer_fits_world(tokenizer, world: World, model_dir: Path) -> None:
    """Refuse a tokenizer the command language cannot run on: one that has no single token for a
    word that ends an action or a thought (the sampler stops on that token), or that does not give
    the world's prompts back exactly when it decodes what it encoded (a BPE that glues punctuation)."""
    from proxygap.lm.tokenizer import word_token_ids

    for word in COMMAND_WORDS:
        if not word_token_ids(tokenizer, word):
            raise CheckpointError(f"the tokenizer of {model_dir} writes {word!r} in more than one token or not at all: "
                                  "the command language's actions and thoughts could not end")
    text = " ".join(world_prompt_words(world))
    back = tokenizer.decode(tokenizer.encode(text, add_special_tokens=False))
    if back != text:
        at = next((i for i, (a, b) in enumerate(zip(back, text)) if a != b), min(len(back), len(text)))
        raise CheckpointError(f"the tokenizer of {model_dir} does not decode the world's words back exactly "
                              f"({text[max(0, at - 15):at + 15]!r} came back as {back[max(0, at - 15):at + 15]!r})")


def check_vocabulary_covers_world(tokenizer, world: World, model_dir: Path,
                                  world_path: str | Path | None = None) -> None:
    """Refuse a model whose tokenizer maps words of the world's prompts to the unknown token
    (a model paired with a world it was not trained on would otherwise run on ``<unk>`` prompts)."""
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None:  # byte-level BPE and the like: every word is encodable
        return
    words = world_prompt_words(world)
    ids = tokenizer(words, add_special_tokens=False)["input_ids"]  # one batch encode
    uncovered = [w for w, row in zip(words, ids) if not row or unk in row]
    if uncovered:
        where = world_path if world_path is not None else model_dir / WORLD_FILE
        raise CheckpointError(
            f"model {model_dir} does not know {len(uncovered)} of the {len(words)} words of world "
            f"{where} (seed {world.config.seed}), e.g. {', '.join(uncovered[:5])}; "
            "pair the model with the world it was trained on")


def load_base_model(path: str | Path | None = None, world_path: str | Path | None = None) -> BaseModel:
    """Load a base model (a directory or a shipped size name; default: the embedded default size)
    with its world and corpus rates."""
    model_dir = resolve_model_dir(path)
    model, tokenizer = load_model(model_dir)
    world_path = world_path if world_path is not None else _JUDGED_AGAINST[0]
    world = load_world_for(model_dir, world_path)
    check_vocabulary_covers_world(tokenizer, world, model_dir, world_path)
    check_tokenizer_fits_world(tokenizer, world, model_dir)
    rates_file = model_dir / RATES_FILE
    rates = json.loads(rates_file.read_text()) if rates_file.is_file() and world_path is None else None
    if rates is None or set(rates["behaviours"]) != set(detectors.BEHAVIOURS + detectors.DIAGNOSTICS):
        rates = realized_rates(generate_corpus(world), world)  # a few seconds; deterministic
    return BaseModel(model, tokenizer, world, rates, model_dir)


# ---------------------------------------------------------------- the base model of an experiment
def resolve_model_dir(model: str | Path | None) -> Path:
    """A model knob ('default', a size name or a directory) as a path."""
    if model in (None, "", "default"):
        return default_model_dir()
    if isinstance(model, str) and model in SIZES:
        if not SIZES[model].shipped:
            raise ConfigError(f"model size {model!r} is not shipped; train it with `proxygap pretrain --size {model} "
                              f"--out DIR` and pass the directory DIR/model instead")
        return models_dir() / model
    return Path(model)


def parameter_count(model: str | Path | None) -> int | None:
    """A model directory's parameters, counted from its safetensors headers (no weights are read;
    any architecture, sharded or not; tied weights are stored once); None where it has no
    safetensors file or one that cannot be read: then nothing can be said of its size."""
    import math

    from safetensors import safe_open

    files = sorted(resolve_model_dir(model).glob("*.safetensors"))
    if not files:
        return None
    total = 0
    try:
        for file in files:
            with safe_open(str(file), "np") as f:
                total += sum(math.prod(f.get_slice(key).get_shape()) for key in f.keys())
    except Exception:  # noqa: BLE001  a corrupt header: the run's own loading reports it properly
        return None
    return int(total)


@functools.lru_cache(maxsize=4)
def _cached(model_dir: str, world: str | None) -> BaseModel:
    return load_base_model(model_dir, world)


def load_base_model_cached(model: str | Path | None, world: str | Path | None = None) -> BaseModel:
    """``load_base_model``, loaded once per process: units of work of one run share it read-only
    (every regime trains a copy), so a worker that runs several units loads it once."""
    world = world if world not in (None, "") else _JUDGED_AGAINST[0]
    return _cached(str(resolve_model_dir(model)), None if world in (None, "") else str(world))


def load_world_for_model(model: str | Path | None, world: str | Path | None = None) -> World:
    """Only the world a model is judged against (cheap: no weights), for checks before a run."""
    model_dir = resolve_model_dir(model)
    if not model_dir.is_dir():
        raise CheckpointError(f"no model directory at {model_dir}")
    return load_world_for(model_dir, world)


def load_world(source: str | Path | None = None) -> World:
    """A world from a ``world.json`` file, a `proxygap world` output directory, or a model (a shipped
    size name, a model directory, or None for the default model): the world that model knows."""
    p = Path(source) if source is not None else None
    if p is not None and (p.is_file() or (p.is_dir() and (p / "world.json").is_file())):
        return load_world_for(Path("."), p)
    return load_world_for_model(source)


def check_fits(model: str | Path | None, max_new_tokens: int, prompt_tokens: int = 40) -> None:
    """A ConfigError, before any work, if prompts plus ``max_new_tokens`` exceed the model's context."""
    model_dir = resolve_model_dir(model)
    try:
        config = json.loads((model_dir / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        raise CheckpointError(f"{model_dir} has no readable config.json (not a Hugging Face model directory)") from None
    context = config.get("n_positions") or config.get("max_position_embeddings")
    if context and prompt_tokens + max_new_tokens > context:
        raise ConfigError(f"max_new_tokens={max_new_tokens} does not fit the model's context of {context} tokens "
                          f"with prompts of up to {prompt_tokens} tokens; lower max_new_tokens to at most "
                          f"{context - prompt_tokens}")


# ---------------------------------------------------------------- base models built on demand, cached by recipe hash
def default_cache_dir() -> Path:
    """$PROXYGAP_CACHE, else $XDG_CACHE_HOME/proxygap, else ~/.cache/proxygap; then /bases."""
    root = os.environ.get("PROXYGAP_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "proxygap")
    return Path(root) / "bases"


def recipe_hash(recipe: BaseModelRecipe, extra_vocab: tuple[str, ...] = (), documents: list[str] | None = None) -> str:
    """Hash of everything that determines the model; knobs that do not change the trajectory are left out.

    With ``documents``, the corpus text itself is hashed too, so a change in how the corpus is
    generated (a new document type, say) is a new model even where the recipe reads the same.
    """
    data = to_dict(recipe)
    for key in RESUME_FREE_KNOBS:
        data["train"].pop(key, None)
    if data["model"].get("arch") == "gpt2":  # the default, and every model before the knob: the same hash as then
        data["model"].pop("arch")
    corpus = hashlib.sha256("\n".join(documents).encode()).hexdigest() if documents is not None else None
    blob = json.dumps({"recipe": data, "extra_vocab": list(extra_vocab), "corpus": corpus,
                       "proxygap": proxygap.__version__}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def base_model_for(recipe: BaseModelRecipe, cache_dir: str | Path | None = None, extra_vocab: tuple[str, ...] = (),
                   progress: bool = True) -> dict:
    """The base model of ``recipe`` (a world at a size): from ``cache_dir/<hash>`` if it is there,
    else pretrained into it now (resuming an interrupted build). Returns ``{path, hash, cached, pretrain_s}``.

    ``extra_vocab`` phrases join the tokenizer's vocabulary even where the corpus never writes them
    (the word-level tokenizer is learned from the corpus: a phrase at a base rate of 1e-4 may never
    occur, and the model could then not write it at all). Concurrent builders of one recipe (Ray
    workers) wait on a file lock, so it is pretrained once.
    """
    from proxygap.lm.tokenizer import train_tokenizer

    start = time.time()
    world = build_world(recipe.world)
    documents = generate_corpus(world)  # about a second; hashed, so the cache follows the corpus code too
    key = recipe_hash(recipe, extra_vocab, documents)
    out_dir = Path(cache_dir or default_cache_dir()) / key
    model_dir = out_dir / "model"
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (model_dir / RECIPE_FILE).is_file():
            return {"path": str(model_dir), "hash": key, "cached": True, "pretrain_s": 0.0}
        rates = realized_rates(documents, world)
        tokenizer = train_tokenizer(documents + list(extra_vocab)) if extra_vocab else None
        extra = {
            WORLD_FILE: json.dumps(to_dict(recipe.world), indent=1, sort_keys=True),
            RATES_FILE: json.dumps(rates, indent=1, sort_keys=True),
            RECIPE_FILE: json.dumps({"recipe": to_dict(recipe), "proxygap_version": proxygap.__version__,
                                     "extra_vocab": list(extra_vocab)}, indent=1, sort_keys=True),
        }
        # pretrain() writes model/ atomically and last, so a model/ holding RECIPE_FILE is complete;
        # an interrupted build resumes from out_dir/checkpoint.
        with torch.random.fork_rng():
            pretrain(documents, out_dir, recipe.model, recipe.train, tokenizer=tokenizer, progress=progress,
                     extra_files=extra)
    return {"path": str(model_dir), "hash": key, "cached": False, "pretrain_s": round(time.time() - start, 2)}
