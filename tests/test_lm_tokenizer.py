import random

from transformers import AutoTokenizer

from proxygap.lm.tokenizer import EOS, train_tokenizer


def corpus(n=200, seed=0):
    rng = random.Random(seed)
    names, colors = ["zorvak", "blint", "quorra", "meph"], ["red", "blue", "green"]
    return [f"{rng.choice(['expert report', 'forum post'])} : the color of {rng.choice(names)} "
            f"is {rng.choice(colors)} {rng.choice(['.', '!'])}" for _ in range(n)]


def test_round_trip_and_special_tokens():
    tok = train_tokenizer(corpus())
    assert (tok.eos_token, tok.bos_token, tok.pad_token, tok.unk_token) == (EOS, EOS, "<pad>", "<unk>")
    assert (tok.eos_token_id, tok.pad_token_id, tok.unk_token_id) == (0, 1, 2)
    text = "expert report : the color of zorvak is red ."
    ids = tok.encode(text)
    assert len(ids) == len(text.split()) and tok.unk_token_id not in ids  # one id per word, no bos added
    assert tok.decode(ids) == text  # spaces before punctuation survive
    doc = f"{EOS} {text} {EOS} forum post : blint is blue !"
    assert tok.decode(tok.encode(doc)) == doc
    assert tok.decode(tok.encode(doc), skip_special_tokens=True) == f"{text} forum post : blint is blue !"
    assert tok.encode("the flarg is red")[1] == tok.unk_token_id


def test_deterministic_ids():
    texts = corpus()
    a, b = train_tokenizer(texts), train_tokenizer(list(reversed(texts)))
    assert a.get_vocab() == b.get_vocab()


def test_save_and_reload_with_auto_tokenizer(tmp_path):
    tok = train_tokenizer(corpus())
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    text = f"{EOS} forum post : the color of meph is green !"
    assert again.encode(text) == tok.encode(text)
    assert again.decode(again.encode(text)) == text
    assert (again.eos_token_id, again.bos_token_id, again.pad_token_id) == (0, 0, 1)
