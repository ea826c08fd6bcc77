"""A word-level tokenizer for the templated corpus.

The world's language is lowercase words and punctuation separated by single spaces, so one
token per whitespace-separated word is exact: no merges to learn, every token is readable in
samples, and decode(encode(text)) == text. The result is a ``PreTrainedTokenizerFast`` so it
saves and reloads like any Hugging Face tokenizer (``AutoTokenizer.from_pretrained(dir)``).
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

EOS = "<|endoftext|>"  # ends (and, as bos, starts) every document, as in GPT-2
PAD = "<pad>"
UNK = "<unk>"
SPECIAL_TOKENS = [EOS, PAD, UNK]  # ids 0, 1, 2 in this order


def train_tokenizer(texts: Iterable[str]) -> PreTrainedTokenizerFast:
    """Build a word-level vocabulary from ``texts``; the same texts always give the same ids."""
    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # No decoder on purpose: tokenizers then joins tokens with single spaces, which is
    # exactly how the corpus is written (a WordPiece/BPE decoder would glue punctuation).
    # WordLevelTrainer orders by count, ties by the word itself, so ids are deterministic.
    trainer = trainers.WordLevelTrainer(min_frequency=1, special_tokens=SPECIAL_TOKENS, show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS,
        bos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        clean_up_tokenization_spaces=False,  # the default would turn "zorvak ." into "zorvak."
    )


def word_token_ids(tokenizer, word: str) -> tuple[int, ...]:
    """The ids of the single tokens that write ``word`` as a whole word of the corpus's text: the
    word's own token (a word-level vocabulary) and the one a byte-level BPE uses after a space
    (GPT-2's ``Ġ.``). Empty if the word takes more than one token, or only the unknown token."""
    ids = set()
    for text in (word, f"a {word}"):
        last = tokenizer.encode(text, add_special_tokens=False)[-1:]
        if last and last[0] != tokenizer.unk_token_id and tokenizer.decode(last).strip() == word:
            ids.add(last[0])
    return tuple(sorted(ids))
