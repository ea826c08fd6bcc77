"""The internet written from the world: documents of every type, agent transcripts by running the
environments' demonstrators, and the rates each behaviour realizes in the corpus.

It sits above ``envs`` (agent transcripts are episodes of the environments) and ``oversight``
(realized rates are counted with the loophole detectors), below ``lm`` users only by data: a
language model is pretrained on a list of documents and never imports this package.
"""

from proxygap.corpus.generate import doc_type, generate_corpus, realized_rates

__all__ = ["doc_type", "generate_corpus", "realized_rates"]
