"""Other architectures from the project's recipe: a tiny Llama pretrains, acts (its stop token fires)
and runs experiments end to end, through the generic (non-GPT-2) path."""

import json

import pytest
import torch

from proxygap import envs
from proxygap.cli import main
from proxygap.lm.model import ModelConfig, build_model
from proxygap.pipeline.base_model import BaseModelRecipe, load_base_model, recipe_hash
from proxygap.train.rollout import rollout, stop_token_id


def test_llama_and_qwen2_build_with_the_recipes_shape(tiny_base_dir):
    tokenizer = load_base_model(tiny_base_dir).tokenizer
    for arch, cls in (("llama", "LlamaForCausalLM"), ("qwen2", "Qwen2ForCausalLM")):
        model = build_model(ModelConfig(arch=arch, n_layer=2, n_embd=32, n_head=2, n_positions=64), tokenizer)
        assert type(model).__name__ == cls and model.config.num_hidden_layers == 2
        assert model.config.max_position_embeddings == 64 and model.config.vocab_size == len(tokenizer)


def test_the_default_arch_keeps_every_earlier_recipe_hash():
    recipe = BaseModelRecipe()
    data_without_arch = recipe_hash(recipe)
    assert recipe.model.arch == "gpt2" and len(data_without_arch) == 16
    import dataclasses

    llama = dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, arch="llama"))
    assert recipe_hash(llama) != data_without_arch


def test_a_tiny_llama_acts_with_its_stop_token_and_runs_experiments(tiny_llama_dir, tmp_path):
    base = load_base_model(tiny_llama_dir)
    assert type(base.model).__name__ == "LlamaForCausalLM"
    stop = stop_token_id(base.tokenizer)
    episodes = rollout(base.model, base.tokenizer, lambda: envs.make("sensor", base.world), list(range(8)), 24,
                       torch.Generator().manual_seed(0))
    steps = [s for e in episodes for s in e.steps]
    stopped = [s for s in steps if stop in s.token_ids]
    assert stopped and all(s.token_ids[-1] == stop and s.token_ids.count(stop) == 1 for s in stopped)
    for experiment in ("tampering", "monitoring"):
        out = tmp_path / experiment
        assert main(["run", experiment, "--preset", "smoke", "--set", f"model={tiny_llama_dir}", "--set",
                     "envs=[sensor]", "--out", str(out)]) == 0
        assert json.loads((out / "results.json").read_text())["provenance"]["models"]


def test_pretrain_takes_arch(tmp_path, monkeypatch):
    from proxygap.pipeline import base_model

    seen = {}
    monkeypatch.setattr(base_model, "build_base_model",
                        lambda recipe, out, progress: seen.setdefault("recipe", recipe) and tmp_path)
    assert main(["pretrain", "--size", "xs", "--arch", "qwen2", "--out", str(tmp_path / "q")]) == 0
    assert seen["recipe"].model.arch == "qwen2" and seen["recipe"].model.n_embd == base_model.SIZES["xs"].n_embd
    with pytest.raises(SystemExit) as exit_:  # argparse: one usage line naming the choices, exit 2
        main(["pretrain", "--arch", "bert", "--out", str(tmp_path / "b")])
    assert exit_.value.code == 2
