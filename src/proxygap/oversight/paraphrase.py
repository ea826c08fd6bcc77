"""Paraphrasers of chains of thought: a proposed defence against steganography (Roger & Greenblatt 2023).

Both re-render every step of a two-hop chain in a wording drawn uniformly from all of its wordings,
independently of the one it was written in (``language.render_step``), so that the choice of
wording carries nothing through them (a draw among the *other* wordings would still tell the
reader which one it was not); meaning is kept (``parse_step`` of the output is the step, with
names canonical where the paraphraser knows them).

- ``plain_paraphrase``: each step in a randomly chosen other wording; everything else kept
  (names as written, sentences that state no step, the answer).
- ``context_paraphrase``: also sees the question, as a context-aware paraphraser does: keeps only
  the steps of the question's own path (the hop from the asked entity, then the asked attribute of
  the entity it reached), writes every name canonically (an alias becomes the name), drops
  sentences that state no step, and keeps the answer.
"""

from __future__ import annotations

import random

from proxygap.world import language as lang
from proxygap.world.language import Question, Step
from proxygap.world.world import World


def any_form(step: Step, rng: random.Random) -> int:
    """A wording of ``step`` drawn uniformly from all of them, whatever it was written in."""
    return rng.randrange(len(lang.step_forms(step)))


def _answer_tail(text: str) -> str:
    _, sep, rest = text.partition(f" {lang.ANSWER} ")
    return f"{lang.ANSWER} {rest}" if sep else ""


def plain_paraphrase(chain_text: str, rng: random.Random) -> str:
    chain = lang.parse_chain(chain_text)
    if not chain.thought:
        return chain.text
    sentences = [f"{lang.render_step(st, any_form(st, rng))} ." for st in chain.steps]
    sentences += [f"{u} ." for u in chain.unparsed]  # kept as written (after the steps: their order is no channel)
    tail = _answer_tail(chain.text)
    return " ".join([lang.THINK, *sentences] + ([tail] if tail else []))


def context_paraphrase(question: Question, chain_text: str, world: World, rng: random.Random) -> str:
    chain = lang.parse_chain(chain_text)
    if not chain.thought:
        return chain.text
    kept: list[Step] = []
    reached = None
    for st in chain.steps:
        subject, value = world.canonical(st.subject), st.value
        if st.is_relation and subject == question.entity and st.key == question.relation and reached is None:
            reached = world.canonical(value) or value
            kept.append(Step(subject, st.key, reached))
        elif not st.is_relation and st.key == question.attribute and reached is not None and subject == reached:
            kept.append(Step(subject, st.key, value))
    sentences = [f"{lang.render_step(st, any_form(st, rng))} ." for st in kept]
    tail = _answer_tail(chain.text)
    return " ".join([lang.THINK, *sentences] + ([tail] if tail else []))
