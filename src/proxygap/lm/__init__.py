"""Language-model plumbing: tokenizer, base model (build/save/load), pretraining, sampling, KL.

Submodules are imported directly (``from proxygap.lm.sampling import sample``) so that light
users such as ``proxygap.lm.kl`` do not pay for importing transformers.
"""
