"""Shared pipeline steps any experiment calls, each a public function on its own config:

- ``base_model``: the base model of a world at a size (load, build, or fetch from the cache
  keyed by recipe hash);
- ``reward_model``: a reward model trained on a judge's labels of a model's sample pairs.

Above ``train``/``measure`` and below ``experiments``: no experiment imports another to reuse
a step.
"""
