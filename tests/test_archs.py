"""Other architectures from the project's recipe: a tiny Llama pretrains, acts (its stop token fires)
and runs experiments end to end, through the generic (non-GPT-2) path."""

import json

import pytest
import torch

from proxygap import envs
from proxygap.cli import main
from proxygap.errors import CheckpointError
from proxygap.lm.model import ModelConfig, build_model
from proxygap.pipeline.base_model import BaseModelRecipe, load_base_model, recipe_hash
from proxygap.train.rollout import rollout, stop_token_ids


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
    (stop,) = stop_token_ids(base.tokenizer)  # a word-level vocabulary: one token
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
                        lambda recipe, out, progress, **kw: seen.setdefault("recipe", recipe) and tmp_path)
    assert main(["pretrain", "--size", "xs", "--arch", "qwen2", "--out", str(tmp_path / "q")]) == 0
    assert seen["recipe"].model.arch == "qwen2" and seen["recipe"].model.n_embd == base_model.SIZES["xs"].n_embd
    with pytest.raises(SystemExit) as exit_:  # argparse: one usage line naming the choices, exit 2
        main(["pretrain", "--arch", "bert", "--out", str(tmp_path / "b")])
    assert exit_.value.code == 2


def test_a_llama_with_its_own_bpe_tokenizer_continues_pretraining_and_acts(tiny_bpe_llama_dir, tmp_path):
    """--init-from: the model keeps its own byte-level BPE; the action stop token is BPE's spaced '.'
    and fires; tampering and monitoring smoke runs go through end to end."""
    base = load_base_model(tiny_bpe_llama_dir)
    assert base.tokenizer.unk_token_id is None and len(base.tokenizer) != len(load_base_model("xs").tokenizer)
    stops = stop_token_ids(base.tokenizer)
    assert len(stops) >= 1 and all(base.tokenizer.decode([t]).strip() == "." for t in stops)
    episodes = rollout(base.model, base.tokenizer, lambda: envs.make("sensor", base.world), list(range(8)), 24,
                       torch.Generator().manual_seed(0))
    steps = [s for e in episodes for s in e.steps]
    stopped = [s for s in steps if set(stops) & set(s.token_ids)]
    assert stopped and all(s.token_ids[-1] in stops for s in stopped)  # it fires at the first '.'
    # and the model writes one: most actions end there, not at the 24-token limit (17 of 24 here; byte-level
    # tokens are short, so a thought and a command together can reach 24 of them)
    assert len(stopped) >= 0.5 * len(steps), f"{len(stopped)} of {len(steps)} actions stopped"



def test_a_tokenizer_that_cannot_end_an_action_is_refused(tiny_base_dir, tmp_path):
    from proxygap.errors import CheckpointError
    from proxygap.pipeline.base_model import check_tokenizer_fits_world

    base = load_base_model(tiny_base_dir)

    class Split:  # a tokenizer that writes '.' in two tokens
        unk_token_id = None

        def encode(self, text, add_special_tokens=False):
            return base.tokenizer.encode(text.replace(".", "is is"), add_special_tokens=False)

        def decode(self, ids):
            return base.tokenizer.decode(ids)

    with pytest.raises(CheckpointError, match="'.' in more than one token"):
        check_tokenizer_fits_world(Split(), base.world, tmp_path)

    class Lossy(Split):  # one token for '.', but the world's words do not come back
        def encode(self, text, add_special_tokens=False):
            return base.tokenizer.encode(text.replace(" answer", " is"), add_special_tokens=False)

    with pytest.raises(CheckpointError, match="does not decode the world's words back exactly"):
        check_tokenizer_fits_world(Lossy(), base.world, tmp_path)



BPE_KNOBS = {  # the knobs that name the model of each experiment (kl-prior pretrains its own bases: no model knob)
    "probe": ["model={m}"], "overoptimization": ["model={m}"], "loopholes": ["model={m}"], "tampering": ["model={m}"],
    "monitoring": ["model={m}"], "cot": ["sizes=[{m}]", "base_only_sizes=[]"],
    "scaling": ["rm_sizes=[{m}]", "policy_sizes=[{m}]", "pairs_model={m}"],
    "weak-to-strong": ["pairs=[{m}:{m}]", "sampler={m}"],
}


@pytest.mark.parametrize("experiment", sorted(BPE_KNOBS))
def test_every_experiments_smoke_runs_on_the_bpe_llama(tiny_bpe_llama_dir, tmp_path, experiment):
    sets = [x for knob in BPE_KNOBS[experiment] for x in ("--set", knob.format(m=tiny_bpe_llama_dir))]
    out = tmp_path / experiment
    assert main(["run", experiment, "--preset", "smoke", "--quiet", *sets, "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert str(tiny_bpe_llama_dir) in results["provenance"]["models"]


def test_run_takes_world_for_a_model_directory_without_one(tiny_base_dir, tmp_path, capsys):
    import shutil

    from conftest import TINY_RECIPE
    from proxygap.pipeline.base_model import WORLD_FILE

    bare = tmp_path / "bare"
    shutil.copytree(tiny_base_dir, bare)
    (bare / WORLD_FILE).unlink()  # a model directory that does not say which world it knows
    assert main(["run", "probe", "--preset", "smoke", "--set", f"model={bare}", "--out", str(tmp_path / "a")]) == 2
    assert "--world DIR" in capsys.readouterr().err
    world_sets = [x for r in TINY_RECIPE if r.startswith("world.") for x in ("--set", r.removeprefix("world."))]
    assert main(["world", *world_sets, "--out", str(tmp_path / "w")]) == 0
    assert main(["run", "probe", "--preset", "smoke", "--set", f"model={bare}", "--world", str(tmp_path / "w"),
                 "--out", str(tmp_path / "b")]) == 0


def test_glued_stop_words_parse_like_spaced_ones():
    from proxygap.envs.base import parse_turn

    assert parse_turn("think : i will water; water kelo.") == ("i will water", "water kelo")
    assert parse_turn("cover sensor .") == (None, "cover sensor")


def test_a_checkpoint_from_before_the_arch_knob_resumes_as_gpt2(tmp_path):
    from proxygap.lm.pretrain import check_same_run

    settings = {"model": {"arch": "gpt2", "n_layer": 1}, "pretrain": {"steps": 2}}
    check_same_run({"settings": {"model": {"n_layer": 1}, "pretrain": {"steps": 2}}}, settings, tmp_path)  # no error
    with pytest.raises(CheckpointError, match="model.arch='gpt2', not 'llama'"):
        check_same_run({"settings": {"model": {"n_layer": 1}, "pretrain": {"steps": 2}}},
                       {**settings, "model": {"arch": "llama", "n_layer": 1}}, tmp_path)


def test_init_from_refuses_arch_and_an_unfit_tokenizer_before_training(tiny_base_dir, tmp_path, capsys):
    assert main(["pretrain", "--init-from", str(tiny_base_dir), "--arch", "llama", "--out", str(tmp_path / "x")]) == 2
    assert "drop --arch" in capsys.readouterr().err
