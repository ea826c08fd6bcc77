"""Distilling a chain of thought's result into a model that answers at once (``answer :``).

A teacher (a model of the same size that reasons first) writes chains for the training
questions; a student (the base model) learns to give their results without a chain, by one of:

- **imitation**: supervised fine-tuning on (question + 'answer :', the teacher's final value):
  ``imitation_examples``, trained with ``train.sft.train_sft``;
- **process-based RL**: RL of the student where the rater evaluates the student's answer with
  the teacher's chain for that question shown as its justification (``justified_reward``: the
  rater's process evaluation of 'teacher's steps + student's answer') — an overseer's reading
  of the answer and its argument, never its consequences;
- **RLHF**: RL against a reward model trained on the rater's labels of direct answers (the
  shared reward-model pipeline and ``train.rl.train_rl``; nothing distillation-specific).

Each is given the same sample budget by its caller: imitation fine-tunes on as many teacher
samples as the RL regimes draw student samples.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

from proxygap.lm.sampling import sample
from proxygap.oversight.judges import Judge
from proxygap.train.rl import ScoreFn
from proxygap.world import language as lang


@dataclass(frozen=True)
class TeacherSample:
    question: str  # '... assistant :'
    chain: str  # 'think : ... answer : <value> .' as the teacher wrote it
    answer: str | None  # the value it reached (None: no parsable answer)

    @property
    def thought(self) -> str:
        """The chain without its answer: 'think : <steps> .'"""
        return self.chain.partition(f" {lang.ANSWER}")[0]


def teacher_samples(teacher, tokenizer, questions: list[str], n: int, *, seed: int, max_new_tokens: int = 32,
                    greedy: bool = False) -> list[TeacherSample]:
    """``n`` teacher chains for questions drawn from ``questions`` with replacement (seeded), or one
    greedy chain per question (``greedy=True``, ``n`` ignored)."""
    chosen = questions if greedy else random.Random(seed).choices(questions, k=n)
    generator = torch.Generator().manual_seed(seed)
    texts = sample(teacher, tokenizer, [f"{q} {lang.THINK}" for q in chosen], max_new_tokens, greedy=greedy,
                   generator=generator, batch_size=512).texts
    out = []
    for q, t in zip(chosen, texts):
        chain = f"{lang.THINK} {t}"
        out.append(TeacherSample(q, chain, lang.parse_chain(chain).answer))
    return out


def imitation_examples(samples: list[TeacherSample]) -> list[tuple[str, str]]:
    """SFT examples (question + 'answer :', '<value> .') from the teacher's final answers; samples
    without an answer are dropped (the student imitates results, not failures to answer)."""
    return [(f"{s.question} {lang.ANSWER}", f"{lang.ANSWER_FORMS[0].format(value=s.answer)} .")
            for s in samples if s.answer is not None]


def justified_reward(rater: Judge, justification: dict[str, TeacherSample]) -> ScoreFn:
    """The rater's process evaluation of the student's direct answer with the teacher's chain for
    the same question shown before it. Prompts end with 'answer :'; ``justification`` maps each
    question ('... assistant :') to its teacher sample."""
    def reward(prompts: list[str], completions: list[str]) -> np.ndarray:
        scores = []
        for p, c in zip(prompts, completions):
            question, _ = lang.split_opening(p)
            shown = justification[question].thought
            scores.append(rater.process_score(question, f"{shown} {lang.ANSWER} {c}"))
        return np.asarray(scores, dtype=float)
    return reward
