"""Labels from a judge, and why a flawed judge's label is wrong.

A label task turns a judge's scores into binary labels: ``correct`` (is the answer good: score
> 0) and ``preference`` (is answer a better than answer b: 1, 0, or 0.5 for a tie). Because every
flaw of the rater is a named knob, the cause of each wrong label is known by construction
(``error_causes``): the flaw whose single-flaw rater already gives the wrong label, ``multiple``
when several do, ``combined`` when none alone does but together they do, and ``noise`` when the
label-noise flip made a right label wrong.
"""

from __future__ import annotations

import dataclasses
import random

from proxygap.oversight.judges import Judge, RaterFlaws


def correct_labels(judge: Judge, prompts: list[str], answers: list[str]) -> list[float]:
    """1.0 where the judge scores the answer above 0, else 0.0."""
    return [1.0 if s > 0 else 0.0 for s in judge(prompts, answers)]


def preference_labels(judge: Judge, prompts: list[str], a: list[str], b: list[str]) -> list[float]:
    """1.0 where the judge prefers a, 0.0 where b, 0.5 on a tie."""
    return [1.0 if x > y else 0.0 if y > x else 0.5 for x, y in zip(judge(prompts, a), judge(prompts, b))]


def labels_of(judge: Judge, task: str, examples: list[tuple]) -> list[float]:
    """The judge's labels of ``examples``: (prompt, answer) for ``correct``, (prompt, a, b) for ``preference``."""
    if task == "correct":
        return correct_labels(judge, [e[0] for e in examples], [e[1] for e in examples])
    if task == "preference":
        return preference_labels(judge, [e[0] for e in examples], [e[1] for e in examples], [e[2] for e in examples])
    raise ValueError(f"task must be 'correct' or 'preference', got {task!r}")


def flip(labels: list[float], rate: float, seed: int, stream: str = "noise") -> tuple[list[float], list[bool]]:
    """Each label flipped (1 - label) with probability ``rate``; also which ones were. ``stream``
    names the random stream, so two noisy supervisors of one seed flip independently."""
    rng = random.Random(f"proxygap-label-noise-{stream}-{seed}")
    flipped = [rng.random() < rate for _ in labels]
    return [1.0 - y if f else y for y, f in zip(labels, flipped)], flipped


def single_flaw(flaws: RaterFlaws, name: str) -> RaterFlaws:
    """A rater with only flaw ``name`` (at its strength in ``flaws``) and no label noise."""
    zero = {field: 0.0 for field in RaterFlaws.__dataclass_fields__}
    return RaterFlaws(**{**zero, name: getattr(flaws, name)})


def rater_labels(world, flaws: RaterFlaws, task: str, examples: list[tuple], gold: list[float],
                 seed: int) -> tuple[list[float], list[str | None]]:
    """(the rater's labels with its label noise, each label's error cause or None where it matches gold)."""
    clean = labels_of(Judge(world, dataclasses.replace(flaws, label_noise=0.0)), task, examples)
    noisy, flipped = flip(clean, flaws.label_noise, seed, stream="rater")
    per_flaw = {name: labels_of(Judge(world, single_flaw(flaws, name)), task, examples)
                for name in flaws.names() if getattr(flaws, name) > 0}
    causes: list[str | None] = []
    for i, (y, g) in enumerate(zip(noisy, gold)):
        if y == g:
            causes.append(None)
        elif flipped[i] and clean[i] == g:  # a right label made wrong by the flip (a flipped tie stays a tie)
            causes.append("noise")
        else:
            alone = [name for name, labels in per_flaw.items() if labels[i] != g]
            causes.append(alone[0] if len(alone) == 1 else ("multiple" if alone else "combined"))
    return noisy, causes

