import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from proxygap.lm.model import ModelConfig, build_model
from proxygap.lm.sampling import sample, sequence_logprobs
from proxygap.lm.tokenizer import train_tokenizer

TEXTS = ["expert report : the color of zorvak is red .", "forum post : i think blint is blue !"]
# Mixed lengths (1, 2, 9 words + bos), so left padding and position ids are exercised.
PROMPTS = ["expert", "forum post", "expert report : the color of zorvak is red .", "i think"]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS)


def gpt2(tok):
    torch.manual_seed(0)
    return build_model(ModelConfig(n_layer=2, n_embd=32, n_head=4, n_positions=64), tok).eval()


def llama(tok):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module", params=[gpt2, llama], ids=["gpt2", "llama"])
def model(request, tok):
    return request.param(tok)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampled_logprobs_match_forward_pass(model, tok, temperature):
    s = sample(model, tok, PROMPTS * 4, max_new_tokens=30, temperature=temperature,
               generator=torch.Generator().manual_seed(0))
    assert s.prompt_mask[:, 0].tolist().count(0) > 0  # some prompts really are left-padded
    ref = sequence_logprobs(model, s.prompt_ids, s.prompt_mask, s.tokens, s.mask)
    assert torch.allclose(s.logprobs, ref, atol=1e-4)
    assert (s.logprobs[s.mask == 0] == 0).all()


def test_rows_stop_at_eos_and_are_padded(model, tok):
    s = sample(model, tok, PROMPTS * 8, max_new_tokens=40, generator=torch.Generator().manual_seed(1))
    eos, pad = tok.eos_token_id, tok.pad_token_id
    n_ended = 0
    for row, m, text in zip(s.tokens, s.mask, s.texts):
        n = int(m.sum())
        assert m[:n].all() and not m[n:].any()  # real tokens form a prefix
        assert (row[n:] == pad).all()
        assert eos not in row[:n - 1].tolist()  # EOS can only be the last real token
        n_ended += int(row[n - 1] == eos)
        assert text == tok.decode(row[:n].tolist(), skip_special_tokens=True)
    assert n_ended > 0  # with this seed some rows end early, so the stopping path is tested


def test_greedy_is_deterministic_and_independent_of_batching(model, tok):
    a = sample(model, tok, PROMPTS, max_new_tokens=12, greedy=True)
    b = sample(model, tok, PROMPTS, max_new_tokens=12, greedy=True, batch_size=1)  # no padding at all
    assert a.texts == b.texts
    assert torch.allclose(a.logprobs, b.logprobs, atol=1e-4)


def test_seeded_generator_reproduces_samples(model, tok):
    a = sample(model, tok, PROMPTS, 15, generator=torch.Generator().manual_seed(5))
    b = sample(model, tok, PROMPTS, 15, generator=torch.Generator().manual_seed(5))
    c = sample(model, tok, PROMPTS, 15, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a.tokens, b.tokens) and a.texts == b.texts
    assert not torch.equal(a.tokens, c.tokens)


def test_batch_size_chunks_line_up(model, tok):
    s = sample(model, tok, PROMPTS * 2, 10, generator=torch.Generator().manual_seed(0), batch_size=3)
    assert s.tokens.shape[0] == s.prompt_ids.shape[0] == len(s.texts) == 8
    ref = sequence_logprobs(model, s.prompt_ids, s.prompt_mask, s.tokens, s.mask)
    assert torch.allclose(s.logprobs, ref, atol=1e-4)


def test_bos_is_prepended_once(tok):
    s = sample(gpt2(tok), tok, ["expert", "<|endoftext|> expert"], 3, greedy=True)
    assert s.prompt_ids.tolist() == [[0, tok.convert_tokens_to_ids("expert")]] * 2
    s = sample(gpt2(tok), tok, ["expert report"], 3, greedy=True, add_bos=False)
    assert tok.bos_token_id not in s.prompt_ids.tolist()[0]


def test_sequence_logprobs_has_grad_on_sampled_tokens(tok):
    model = gpt2(tok).train()
    s = sample(model, tok, PROMPTS, 8, generator=torch.Generator().manual_seed(0))
    assert model.training  # sample() restores the caller's mode
    logp = sequence_logprobs(model, s.prompt_ids, s.prompt_mask, s.tokens, s.mask)
    (-logp.sum()).backward()
    assert model.transformer.wte.weight.grad is not None


def test_context_overflow_is_a_clear_error(tok):
    with pytest.raises(ValueError, match="context"):
        sample(gpt2(tok), tok, ["expert"], max_new_tokens=100)


@pytest.mark.parametrize("activation", ["gelu_new", "gelu_pytorch_tanh", "gelu"])
def test_fast_gpt2_decoder_matches_the_general_loop(tok, activation):
    model = gpt2(tok)
    model.config.activation_function = activation
    model = type(model)(model.config).eval()  # rebuilt so the activation module matches the config
    prompts = [p for p in PROMPTS for _ in range(3)]  # repeated prompts: the shared-prefix path
    fast = sample(model, tok, prompts, 8, greedy=True, fast=True)
    slow = sample(model, tok, prompts, 8, greedy=True, fast=False)
    assert torch.equal(fast.tokens, slow.tokens)
    assert torch.allclose(fast.logprobs, slow.logprobs, atol=1e-4)


@pytest.mark.parametrize("make", [gpt2, llama], ids=["gpt2", "llama"])
def test_shared_prefix_logprobs_equal_one_full_pass(tok, make):
    model = make(tok)
    prompts = [p for p in PROMPTS for _ in range(2)]
    s = sample(model, tok, prompts, 6, generator=torch.Generator().manual_seed(1))
    shared = sequence_logprobs(model, s.prompt_ids, s.prompt_mask, s.tokens, s.mask, share_prefix=True)
    full = sequence_logprobs(model, s.prompt_ids, s.prompt_mask, s.tokens, s.mask, share_prefix=False)
    assert torch.allclose(shared, full, atol=1e-5)
    grads = []
    for share in (True, False):
        model.zero_grad()
        sequence_logprobs(model, s.prompt_ids, s.prompt_mask, s.tokens, s.mask, share_prefix=share).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


def test_stop_tokens_end_rows_like_eos(model, tok):
    stop = tok.convert_tokens_to_ids(".")
    s = sample(model, tok, PROMPTS * 8, max_new_tokens=40, generator=torch.Generator().manual_seed(1),
               stop_token_ids=(stop,))
    n_stopped = 0
    for row, m in zip(s.tokens, s.mask):
        n = int(m.sum())
        assert stop not in row[:n - 1].tolist()  # a stop token can only be the last real token
        n_stopped += int(row[n - 1] == stop)
    assert n_stopped > 0
    ref = sequence_logprobs(model, s.prompt_ids, s.prompt_mask, s.tokens, s.mask)
    assert torch.allclose(s.logprobs, ref, atol=1e-4)


@pytest.mark.parametrize("activation", ["gelu_new", "gelu"])
def test_packed_gpt2_logprobs_and_grads_match_the_general_pass(tok, activation):
    model = gpt2(tok)
    model.config.activation_function = activation
    model = type(model)(model.config).eval()
    prompts = [p for p in PROMPTS for _ in range(3)]
    s = sample(model, tok, prompts, 10, generator=torch.Generator().manual_seed(2))
    assert s.mask.sum(1).min() < s.mask.shape[1]  # some rows end early: the packing is exercised
    grads, values = [], []
    for fast in (True, False):
        model.zero_grad()
        lp = sequence_logprobs(model, s.prompt_ids, s.prompt_mask, s.tokens, s.mask, fast=fast)
        (lp * torch.linspace(0.5, 1.5, lp.numel()).view_as(lp)).sum().backward()
        values.append(lp.detach())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert torch.allclose(values[0], values[1], atol=1e-5)
    assert torch.allclose(grads[0], grads[1], atol=1e-5)
