"""The model family: shapes, the shipped sizes, `pretrain --size`, the large size's resume, `probe --sizes`."""

import json
import shutil

import pytest
import torch

from proxygap.cli import main
from proxygap.config import ConfigError, apply_overrides
from proxygap.corpus import generate_corpus
from proxygap.lm.pretrain import pretrain
from proxygap.oversight.reward_model import RewardModel
from proxygap.pipeline import base_model
from proxygap.pipeline.base_model import SIZES, load_base_model, models_dir, recipe_for_size, resolve_model_dir
from proxygap.world.world import build_world
from tests.conftest import TINY_RECIPE

PARAM_BANDS = {"xs": (0.1e6, 0.3e6), "s": (0.7e6, 1.5e6), "m": (3e6, 5e6), "l": (10e6, 20e6)}


def _params(size: str, vocab: int = 400) -> int:
    s = SIZES[size]
    d, n_layer, ctx = s.n_embd, s.n_layer, 256
    return n_layer * (12 * d * d + 13 * d) + (vocab + ctx) * d + 2 * d


def test_sizes_grow_and_sit_in_their_bands():
    for name, (lo, hi) in PARAM_BANDS.items():
        assert lo <= _params(name) <= hi, (name, _params(name))
        assert SIZES[name].n_embd % SIZES[name].n_head == 0
    with pytest.raises(ConfigError, match="unknown model size 'xl'"):
        recipe_for_size("xl")
    with pytest.raises(ConfigError, match="not shipped"):
        resolve_model_dir("l")


def test_shipped_sizes_share_one_world_and_tokenizer():
    worlds, vocabs = set(), set()
    for name, size in SIZES.items():
        if not size.shipped:
            continue
        d = models_dir() / name
        worlds.add((d / "proxygap_world.json").read_text())
        vocabs.add(json.dumps(json.loads((d / "tokenizer.json").read_text())["model"]["vocab"], sort_keys=True))
        recipe = json.loads((d / "proxygap_recipe.json").read_text())["recipe"]
        assert (recipe["model"]["n_layer"], recipe["model"]["n_embd"]) == (size.n_layer, size.n_embd)
        model = load_base_model(name).model
        lo, hi = PARAM_BANDS[name]
        assert lo <= sum(p.numel() for p in model.parameters()) <= hi
        assert all(p.dtype == torch.float32 for p in model.parameters())  # m is fp16 on disk
        rm = RewardModel.from_backbone(d)
        assert all(p.dtype == torch.float32 for p in rm.model.parameters())
    assert len(worlds) == 1 and len(vocabs) == 1


def test_pretrain_size_applies_the_size_then_overrides(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(base_model, "build_base_model", lambda recipe, out, progress, **kw: seen.setdefault("r", recipe) and
                        tmp_path)
    assert main(["pretrain", "--size", "m", "--out", str(tmp_path / "m"), "--set", "train.steps=7"]) == 0
    r = seen["r"]
    assert (r.model.n_layer, r.model.n_embd, r.train.lr, r.train.steps) == (8, 192, SIZES["m"].lr, 7)
    assert main(["pretrain", "--size", "xl", "--out", str(tmp_path / "x")]) == 2


def test_large_size_starts_checkpoints_and_resumes(tmp_path):
    """l is trained on demand (a GPU, or a long CPU run): here a few steps of its shape on a tiny world."""
    recipe = apply_overrides(recipe_for_size("l"), [r for r in TINY_RECIPE if r.startswith("world.")] + [
        "train.steps=3", "train.batch_size=2", "train.seq_len=16", "train.checkpoint_every=1", "train.eval_every=1",
        "train.warmup_steps=1"])
    documents = generate_corpus(build_world(recipe.world))

    class Interrupt(Exception):
        pass

    def stop_after_two(step, loss):
        if step == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        pretrain(documents, tmp_path, recipe.model, recipe.train, progress=False, on_step=stop_after_two)
    assert (tmp_path / "checkpoint").is_dir() and not (tmp_path / "model").exists()
    steps_run = []
    pretrain(documents, tmp_path, recipe.model, recipe.train, progress=False, on_step=lambda s, _: steps_run.append(s))
    assert steps_run == [3]  # resumed after the checkpoint of step 2
    rows = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]


def test_probe_sizes_writes_one_entry_per_shipped_size(tiny_base_dir, tmp_path, monkeypatch, capsys):
    shelf = tmp_path / "models"
    for name in ("xs", "s", "m"):
        shutil.copytree(tiny_base_dir, shelf / name)
    monkeypatch.setattr(base_model, "models_dir", lambda: shelf)
    out = tmp_path / "sizes.json"
    assert main(["probe", "--sizes", "--json", str(out), "--set", "samples_per_prompt=1", "--set", "max_new_tokens=12",
                 "--set", "cot_max_new_tokens=12"]) == 0
    table = capsys.readouterr().out
    entries = json.loads(out.read_text())["sizes"]
    assert list(entries) == ["xs", "s", "m"] and all(f"\n{n} " in "\n" + table for n in entries)
    for e in entries.values():
        assert {"params", "fact_accuracy", "two_hop_cot", "two_hop_no_cot", "agrees_with_false_belief",
                "agrees_with_true_belief", "alias_rate", "behaviours"} <= set(e)
        for b in e["behaviours"].values():
            assert {"corpus_rate", "sample_rate"} <= set(b)
        assert {"seen", "held_out"} <= set(e["two_hop_cot"]["greedy"])


def test_parameter_count_reads_any_architecture_from_its_safetensors(tiny_base_dir, tiny_llama_dir, tmp_path):
    from proxygap.lm.model import load_model
    from proxygap.pipeline.base_model import parameter_count

    for model_dir in (tiny_base_dir, tiny_llama_dir):
        model, _ = load_model(model_dir)
        # tied embeddings are one tensor in memory and one on disk
        assert parameter_count(model_dir) == sum(p.numel() for p in model.parameters())
    assert parameter_count("s") < parameter_count("m")  # the shipped sizes, by name
    assert parameter_count(tmp_path) is None  # no weights: nothing to say of its size
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    assert parameter_count(tmp_path) is None
