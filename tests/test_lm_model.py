import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from proxygap.config import ConfigError, validate
from proxygap.errors import CheckpointError
from proxygap.lm.model import ModelConfig, build_model, load_model, save_model
from proxygap.lm.tokenizer import train_tokenizer

TEXTS = ["expert report : the color of zorvak is red .", "forum post : i think blint is blue !"]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS)


def tiny_gpt2(tok, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(ModelConfig(n_layer=1, n_embd=32, n_head=4, n_positions=32), tok)


def tiny_llama(tok):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return LlamaForCausalLM(cfg)


def test_model_config_checks():
    with pytest.raises(ConfigError, match="divisible"):
        validate(ModelConfig(n_embd=30, n_head=4))
    with pytest.raises(ConfigError, match="n_layer"):
        validate(ModelConfig(n_layer=0))


def test_build_model_takes_ids_from_tokenizer(tok):
    m = tiny_gpt2(tok)
    assert m.config.vocab_size == len(tok)
    assert (m.config.bos_token_id, m.config.eos_token_id, m.config.pad_token_id) == (0, 0, 1)


@pytest.mark.parametrize("make", [tiny_gpt2, tiny_llama])
def test_save_load_round_trip(tmp_path, tok, make):
    model = make(tok).eval()
    path = save_model(model, tok, tmp_path / "m", {"world.json": '{"seed": 3}', "blob.bin": b"\x00\x01"})
    loaded, tok2 = load_model(path)
    assert not loaded.training and type(loaded) is type(model)
    ids = torch.tensor([tok.encode(TEXTS[0])])
    assert torch.allclose(loaded(input_ids=ids).logits, model(input_ids=ids).logits)
    assert tok2.get_vocab() == tok.get_vocab()
    assert json.loads((path / "world.json").read_text()) == {"seed": 3}
    assert (path / "blob.bin").read_bytes() == b"\x00\x01"


def test_save_replaces_existing_dir_and_leaves_no_temp(tmp_path, tok):
    save_model(tiny_gpt2(tok), tok, tmp_path / "m", {"old.txt": "x"})
    save_model(tiny_gpt2(tok), tok, tmp_path / "m")
    assert not (tmp_path / "m" / "old.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_tokenizer_without_pad_gets_eos(tmp_path, tok):
    no_pad = PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer, eos_token="<|endoftext|>")
    assert no_pad.pad_token is None
    save_model(tiny_gpt2(tok), no_pad, tmp_path / "m")
    _, loaded = load_model(tmp_path / "m")
    assert loaded.pad_token_id == loaded.eos_token_id == 0


def break_missing_weights(d):
    (d / "model.safetensors").unlink()


def break_garbage_weights(d):
    (d / "model.safetensors").write_bytes(b"not a safetensors file" * 10)


def break_truncated_weights(d):
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])


def break_missing_tensor(d):
    tensors = load_file(d / "model.safetensors")
    tensors.pop("transformer.h.0.mlp.c_fc.weight")
    save_file(tensors, d / "model.safetensors", metadata={"format": "pt"})


def break_config_json(d):
    (d / "config.json").write_text("{not json")


def break_config_type(d):
    (d / "config.json").write_text(json.dumps({"model_type": "no-such-model"}))


def remove_config(d):
    (d / "config.json").unlink()


@pytest.mark.parametrize("breaker", [break_missing_weights, break_garbage_weights, break_truncated_weights,
                                     break_missing_tensor, break_config_json, break_config_type, remove_config])
def test_broken_dirs_raise_checkpoint_error(tmp_path, tok, breaker):
    path = save_model(tiny_gpt2(tok), tok, tmp_path / "m")
    breaker(path)
    with pytest.raises(CheckpointError) as err:
        load_model(path)
    msg = str(err.value)
    assert str(path) in msg and "\n" not in msg


def test_weights_that_do_not_fit_the_config_and_a_missing_tokenizer_are_named(tmp_path, tok, capsys):
    path = save_model(tiny_gpt2(tok), tok, tmp_path / "m")
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "n_embd": config["n_embd"] * 2}))
    with pytest.raises(CheckpointError, match=r"weights do not fit config.json: \S+ is stored as \[\d+"):
        load_model(path)
    captured = capsys.readouterr()
    assert "LOAD REPORT" not in captured.out + captured.err  # transformers' table is ours in one line
    path = save_model(tiny_gpt2(tok), tok, tmp_path / "n")
    for name in ("tokenizer.json", "vocab.json", "merges.txt"):
        (path / name).unlink(missing_ok=True)
    with pytest.raises(CheckpointError, match="has no tokenizer"):  # not an empty tokenizer, silently
        load_model(path)
    from proxygap.lm.model import _check_tokenizer_files

    (path / "sentencepiece.bpe.model").write_bytes(b"")  # a slow sentencepiece tokenizer's only file
    _check_tokenizer_files(path)


def test_missing_dir_raises_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="no model directory"):
        load_model(tmp_path / "nope")


def test_loaded_weights_survive_the_file_being_overwritten_in_place(tmp_path, tok):
    path = save_model(tiny_gpt2(tok), tok, tmp_path / "m")
    loaded, _ = load_model(path)
    before = {k: v.clone() for k, v in loaded.state_dict().items()}
    other = save_model(tiny_gpt2(tok, seed=1), tok, tmp_path / "other")
    weights = path / "model.safetensors"
    data = (other / "model.safetensors").read_bytes()
    assert len(data) == weights.stat().st_size and data != weights.read_bytes()
    with open(weights, "r+b") as f:  # same inode, as `cp` over an existing file does
        f.write(data)
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, before[k]), k
