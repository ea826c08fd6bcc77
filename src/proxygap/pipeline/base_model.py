"""The base model: world → corpus → tokenizer → pretraining, and the embedded default.

A base model directory is an ordinary Hugging Face model directory (config, safetensors
weights, tokenizer) plus three JSON files saying what it was trained on, so any experiment can
judge it against the right world:

- ``proxygap_world.json``: the resolved WorldConfig (the world is regenerated from it);
- ``proxygap_corpus_rates.json``: the rates realized in its corpus (the probe's reference);
- ``proxygap_recipe.json``: the full recipe (world, model, pretraining), proxygap's version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import proxygap
from proxygap.config import from_dict, nested, to_dict
from proxygap.errors import CheckpointError
from proxygap.lm.model import ModelConfig, load_model
from proxygap.lm.pretrain import PretrainConfig, pretrain
from proxygap.oversight import detectors
from proxygap.world.config import WorldConfig
from proxygap.corpus import generate_corpus, realized_rates
from proxygap.world.world import World, build_world

WORLD_FILE = "proxygap_world.json"
RATES_FILE = "proxygap_corpus_rates.json"
RECIPE_FILE = "proxygap_recipe.json"


@dataclass
class BaseModelRecipe:
    """Everything that determines a base model."""

    world: WorldConfig = nested(WorldConfig, "the world and its corpus")
    model: ModelConfig = nested(ModelConfig, "the transformer's shape")
    train: PretrainConfig = nested(PretrainConfig, "pretraining by next-token loss")


def default_model_dir() -> Path:
    """The base model shipped inside the package (reproduced by `proxygap pretrain`, see README)."""
    return Path(__file__).resolve().parent.parent / "default_model"


def build_base_model(recipe: BaseModelRecipe, out_dir: str | Path, progress: bool = True) -> Path:
    """Pretrain a base model from nothing; resumes if ``out_dir`` holds a checkpoint. Returns the model dir."""
    world = build_world(recipe.world)
    documents = generate_corpus(world)
    rates = realized_rates(documents, world)
    extra = {
        WORLD_FILE: json.dumps(to_dict(recipe.world), indent=1, sort_keys=True),
        RATES_FILE: json.dumps(rates, indent=1, sort_keys=True),
        RECIPE_FILE: json.dumps({"recipe": to_dict(recipe), "proxygap_version": proxygap.__version__},
                                indent=1, sort_keys=True),
    }
    return pretrain(documents, Path(out_dir), recipe.model, recipe.train, progress=progress, extra_files=extra)


@dataclass
class BaseModel:
    """A loaded base model with the world it is judged against."""

    model: object
    tokenizer: object
    world: World
    corpus_rates: dict
    path: Path


def load_world_for(model_dir: Path, world_path: str | Path | None = None) -> World:
    """The world a model is judged against: ``world_path`` if given, else the one it was trained on."""
    if world_path is not None:
        p = Path(world_path)
        p = p / "world.json" if p.is_dir() else p
        if not p.is_file():
            raise CheckpointError(f"world file not found: {p}")
        return World.load(p)
    config_file = model_dir / WORLD_FILE
    if not config_file.is_file():
        raise CheckpointError(f"{model_dir} has no {WORLD_FILE}; pass --world DIR (a `proxygap world` output)")
    try:
        return build_world(from_dict(WorldConfig, json.loads(config_file.read_text())))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{config_file} is corrupt: {e}") from None


def load_base_model(path: str | Path | None = None, world_path: str | Path | None = None) -> BaseModel:
    """Load a base model directory (default: the embedded one) with its world and corpus rates."""
    model_dir = Path(path) if path is not None else default_model_dir()
    model, tokenizer = load_model(model_dir)
    world = load_world_for(model_dir, world_path)
    rates_file = model_dir / RATES_FILE
    rates = json.loads(rates_file.read_text()) if rates_file.is_file() and world_path is None else None
    if rates is None or set(rates["behaviours"]) != set(detectors.BEHAVIOURS + detectors.DIAGNOSTICS):
        rates = realized_rates(generate_corpus(world), world)  # a few seconds; deterministic
    return BaseModel(model, tokenizer, world, rates, model_dir)
