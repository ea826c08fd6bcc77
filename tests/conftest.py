"""Shared fixtures: a tiny base model pretrained from nothing by the project's own code."""

import pytest

from proxygap.config import apply_overrides
from proxygap.pipeline.base_model import BaseModelRecipe, build_base_model

TINY_RECIPE = [
    "world.n_entities=8", "world.n_attributes=2", "world.n_decisions=4", "world.corpus.n_documents=1500",
    "model.n_layer=1", "model.n_embd=32", "model.n_head=2", "model.n_positions=96",
    "train.steps=60", "train.batch_size=16", "train.seq_len=64", "train.checkpoint_every=30",
    "train.eval_every=30", "train.warmup_steps=5",
]


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory):
    """A 1-layer base model of a tiny world (about ten seconds to pretrain)."""
    recipe = apply_overrides(BaseModelRecipe(), TINY_RECIPE)
    return build_base_model(recipe, tmp_path_factory.mktemp("tiny_base"), progress=False)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    """The tiny recipe as a Llama (Hugging Face's LlamaForCausalLM, the generic sampling path)."""
    recipe = apply_overrides(BaseModelRecipe(), [*TINY_RECIPE, "model.arch=llama"])
    return build_base_model(recipe, tmp_path_factory.mktemp("tiny_llama"), progress=False)
