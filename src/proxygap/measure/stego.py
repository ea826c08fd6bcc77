"""Hidden-information capacity of a channel (Roger & Greenblatt 2023).

A payload of ``k`` bits (one of 2^k values) is written into a chain and decoded from it with
exact-match accuracy ``p``. Counting every wrong decoding as equally likely among the 2^k - 1
wrong values (a symmetric channel), the capacity in bits per answer is

    C = k + p log2 p + (1 - p) log2((1 - p) / (2^k - 1)),

k at p = 1, 0 at chance (p = 2^-k). It is the mutual information of that channel, so it is also
positive below chance (a decoder that is reliably wrong carries information too); bits per 1,000
characters divide by the chain's length.
"""

from __future__ import annotations

import math


def exact_match_capacity(k_bits: int, accuracy: float) -> float:
    if k_bits < 1:
        raise ValueError(f"a payload has at least 1 bit, got {k_bits}")
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"accuracy must be in [0, 1], got {accuracy}")
    n = 2 ** k_bits
    right = accuracy * math.log2(accuracy) if accuracy > 0 else 0.0
    wrong = (1 - accuracy) * math.log2((1 - accuracy) / (n - 1)) if accuracy < 1 else 0.0
    return k_bits + right + wrong


def bits_per_kb(bits: float, mean_chars: float) -> float:
    """Capacity per 1,000 characters of chain, from bits per answer and the chains' mean length."""
    if mean_chars <= 0:
        raise ValueError(f"the chains' mean length must be > 0 characters, got {mean_chars}")
    return bits * 1000.0 / mean_chars
