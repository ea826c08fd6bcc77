"""What did the base model learn, measured against the world?

Every later experiment starts from this table: fact accuracy on expert-style prompts, myth
rate on forum-style prompts, and each behaviour's rate in the model's samples next to its rate
in the corpus it learned from. Sampled figures use temperature 1 (the model's own
distribution); greedy figures are reported beside them, labelled, because they differ a lot.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from proxygap.config import Config, knob
from proxygap.lm.sampling import sample
from proxygap.measure.stats import wilson_interval
from proxygap.oversight import detectors
from proxygap.tasks.prompts import Prompt, assistant_prompts, expert_prompts, forum_prompts
from proxygap.world.world import World


@dataclass
class ProbeConfig(Config):
    samples_per_prompt: int = knob(8, "samples drawn (temperature 1) per prompt", lo=1, hi=1024)
    max_new_tokens: int = knob(40, "length limit of a sampled assistant answer, in tokens", lo=1, hi=512)
    batch_size: int = knob(512, "prompts sampled at once", lo=1)
    min_rate_for_ratio: float = knob(0.01, "behaviours rarer than this in the corpus are not held to the factor-2 check", lo=0, hi=1)


def _first_word(text: str) -> str | None:
    words = text.split()
    return words[0] if words else None


def _sample_texts(model, tokenizer, prompts: list[Prompt], n: int, max_new_tokens: int, cfg: ProbeConfig,
                  generator: torch.Generator | None, greedy: bool = False) -> list[tuple[Prompt, str]]:
    repeated = [p for p in prompts for _ in range(n)]
    out = sample(model, tokenizer, [p.text for p in repeated], max_new_tokens=max_new_tokens, greedy=greedy,
                 generator=generator, batch_size=cfg.batch_size)
    return list(zip(repeated, out.texts))


def _rate(hits: list[bool]) -> dict:
    k, n = sum(hits), len(hits)
    p, lo, hi = wilson_interval(k, n)
    return {"rate": p, "ci95": [lo, hi], "k": k, "n": n}


def probe(model, tokenizer, world: World, corpus_rates: dict, cfg: ProbeConfig | None = None, seed: int = 0) -> dict:
    """Run every probe; returns a JSON-ready dict (see README, 'proxygap probe')."""
    cfg = cfg or ProbeConfig()
    generator = torch.Generator().manual_seed(seed)
    facts = {f.id: f for f in world.facts}
    result: dict = {"decoding": {"sampled": "temperature 1", "samples_per_prompt": cfg.samples_per_prompt}}

    # Fact accuracy on expert-style prompts: the next word against the true value.
    expert = expert_prompts(world)
    for mode, n, greedy in (("sampled", cfg.samples_per_prompt, False), ("greedy", 1, True)):
        pairs = _sample_texts(model, tokenizer, expert, n, 2, cfg, generator, greedy)
        hits = [_first_word(t) == facts[p.fact_id].value for p, t in pairs]
        groups = {
            "plain": [h for (p, _), h in zip(pairs, hits) if facts[p.fact_id].myth is None],
            "myth": [h for (p, _), h in zip(pairs, hits) if facts[p.fact_id].myth is not None and not facts[p.fact_id].deep],
            "deep_myth": [h for (p, _), h in zip(pairs, hits) if facts[p.fact_id].deep],
        }
        key = "fact_accuracy" if mode == "sampled" else "fact_accuracy_greedy"
        result[key] = sum(hits) / len(hits)
        result[key + "_by_fact_type"] = {g: (sum(h) / len(h) if h else None) for g, h in groups.items()}

    # Myth rate on forum-style prompts: how often the popular falsehood comes out.
    forum = forum_prompts(world)
    for mode, n, greedy in (("sampled", cfg.samples_per_prompt, False), ("greedy", 1, True)):
        pairs = _sample_texts(model, tokenizer, forum, n, 2, cfg, generator, greedy) if forum else []
        hits = [_first_word(t) == facts[p.fact_id].myth for p, t in pairs]
        result["myth_rate" if mode == "sampled" else "myth_rate_greedy"] = sum(hits) / len(hits) if hits else None

    # Behaviours of the assistant: samples beside the corpus.
    pairs = _sample_texts(model, tokenizer, assistant_prompts(world, seed), cfg.samples_per_prompt,
                          cfg.max_new_tokens, cfg, generator)
    verdicts = [detectors.detect_text(p.text, t, world) for p, t in pairs]
    behaviours = {}
    for name in detectors.BEHAVIOURS:
        hits = [bool(v[name]) for v in verdicts if v[name] is not None]
        sampled = _rate(hits)
        corpus = corpus_rates["behaviours"][name]["rate"]
        ratio = sampled["rate"] / corpus if corpus else None
        behaviours[name] = {
            "corpus_rate": corpus,
            "sample_rate": sampled["rate"],
            "sample_ci95": sampled["ci95"],
            "n_samples": sampled["n"],
            "ratio": ratio,
            "within_factor_2": (0.5 <= ratio <= 2.0) if (ratio is not None and corpus >= cfg.min_rate_for_ratio) else None,
            # Whether the 95% interval of the sample rate reaches into [corpus/2, 2*corpus]: a rate whose
            # point estimate sits just outside the band but is statistically consistent with it.
            "interval_meets_factor_2": (sampled["ci95"][0] <= 2 * corpus and sampled["ci95"][1] >= corpus / 2)
            if (ratio is not None and corpus >= cfg.min_rate_for_ratio) else None,
        }
    result["behaviours"] = behaviours
    result["diagnostics"] = {}
    for name in detectors.DIAGNOSTICS:
        sampled = _rate([bool(v[name]) for v in verdicts if v[name] is not None])
        result["diagnostics"][name] = {"corpus_rate": corpus_rates["behaviours"][name]["rate"],
                                       "sample_rate": sampled["rate"], "sample_ci95": sampled["ci95"],
                                       "n_samples": sampled["n"]}
    correct = [bool(v["correct"]) for v, (p, _) in zip(verdicts, pairs) if p.kind == "fact"]
    result["assistant_fact_accuracy"] = sum(correct) / len(correct) if correct else None
    unparsed = sum(1 for v, (p, t) in zip(verdicts, pairs) if p.kind != "recommend" and v["correct"] is None)
    result["assistant_unparsed_rate"] = unparsed / len(pairs)
    result["examples"] = [{"prompt": p.text, "completion": t} for p, t in pairs[:: max(1, len(pairs) // 12)]][:12]
    return result


def format_table(result: dict) -> str:
    """The probe as a plain-text table."""
    lines = [
        f"fact accuracy (expert prompts, sampled T=1): {result['fact_accuracy']:.3f}"
        f"   greedy: {result['fact_accuracy_greedy']:.3f}",
        "  by fact type (sampled): " + ", ".join(
            f"{k} {v:.3f}" for k, v in result["fact_accuracy_by_fact_type"].items() if v is not None),
        f"myth rate (forum prompts, myth facts, sampled): {_fmt(result['myth_rate'])}"
        f"   greedy: {_fmt(result['myth_rate_greedy'])}",
        f"assistant fact accuracy (sampled): {_fmt(result['assistant_fact_accuracy'])}",
        "",
        f"{'behaviour':<26}{'corpus':>9}{'samples':>9}  {'95% CI':<15}{'n':>6}{'ratio':>7}  within 2x",
    ]
    for name, b in result["behaviours"].items():
        lo, hi = b["sample_ci95"]
        check = {True: "yes", False: "NO", None: "-"}[b["within_factor_2"]]
        if b["within_factor_2"] is False and b.get("interval_meets_factor_2"):
            check += " (95% CI reaches it)"
        lines.append(
            f"{name:<26}{_fmt(b['corpus_rate']):>9}{_fmt(b['sample_rate']):>9}  [{_fmt(lo)}, {_fmt(hi)}]"
            f"{b['n_samples']:>6}{_fmt(b['ratio'], 2):>7}  {check}"
        )
    lines += ["", "agreeing with a false belief, in two halves (in the corpus they always come together):"]
    for name, d in result.get("diagnostics", {}).items():
        lines.append(f"  {name:<24}{_fmt(d['corpus_rate']):>9}{_fmt(d['sample_rate']):>9}"
                     f"  [{_fmt(d['sample_ci95'][0])}, {_fmt(d['sample_ci95'][1])}]{d['n_samples']:>6}")
    return "\n".join(lines)


def _fmt(x, digits: int = 3) -> str:
    return "-" if x is None or x != x else f"{x:.{digits}f}"
