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


@pytest.fixture(scope="session")
def tiny_bpe_llama_dir(tmp_path_factory):
    """A tiny Llama with a byte-level BPE tokenizer of its own, random init, saved as any Hugging Face
    model would be; then continued-pretrained on the tiny world's corpus by ``init_from`` (nothing is
    downloaded: the tokenizer is trained here on the corpus)."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from proxygap.corpus import generate_corpus
    from proxygap.world.world import build_world

    # Trained longer than the word-level tiny model (1500 steps, about 15 s): a byte-level model
    # must learn to spell before its actions are commands that end at the stop token.
    recipe = apply_overrides(BaseModelRecipe(), [*TINY_RECIPE, "train.steps=1500", "train.checkpoint_every=1500",
                                                 "train.eval_every=1500"])
    documents = generate_corpus(build_world(recipe.world))
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(documents, vocab_size=400, min_frequency=2, special_tokens=["<|endoftext|>"],
                            show_progress=False)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>",
                                        eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                        clean_up_tokenization_spaces=False)
    start = tmp_path_factory.mktemp("bpe_llama_init")
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=160,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(start)
    tokenizer.save_pretrained(start)
    return build_base_model(recipe, tmp_path_factory.mktemp("bpe_llama"), progress=False, init_from=start)
