"""`proxygap run overoptimization`: the Goodhart ladder as optimization grows.

For each seed: a reward model is trained on rater-labelled pairs of base-model samples; then
the base model is optimized against it by best-of-n (one pool, every n) and by KL-penalized
RL (one run per beta). Every sample is scored three times: by the reward model (what is
optimized), by the rater whose labels trained it (what a human eval would report) and by gold
(the world's truth, which nobody in the loop sees). Gao et al. (2022) forms are fitted to each
score against d = sqrt(KL), scores recentred so the base policy scores 0.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from proxygap.config import knob, nested
from proxygap.experiments.runner import Experiment, register
from proxygap.measure.fits import fit_bon, fit_rl
from proxygap.measure.stats import t_interval
from proxygap.oversight.judges import Judge, RaterFlaws
from proxygap.oversight.reward_model import (
    RewardEnsemble, RewardModel, RewardModelConfig, label_pairs, pair_agreement,
)
from proxygap.tasks.prompts import assistant_prompts
from proxygap.train.best_of_n import BestOfNConfig, run_best_of_n
from proxygap.train.rl import RLConfig, train_rl

SCORES = ("rm", "rater", "gold")


@dataclass
class OveroptimizationConfig:
    model: str = knob("default", "base model directory, or 'default' for the embedded one")
    seeds: int = knob(3, "independent repetitions (RM labels, pools, RL runs); intervals are across seeds", lo=1, hi=100)
    n_eval_prompts: int = knob(96, "held-out prompts on which every curve is measured", lo=4)
    prompt_kinds: tuple[str, ...] = knob(("fact", "belief", "recommend"), "assistant question kinds used",
                                         choices=("fact", "belief", "recommend"))
    kl_coefs: tuple[float, ...] = knob((0.0, 0.05, 0.2), "the RL betas swept (KL penalty in the reward)", lo=0)
    n_examples: int = knob(8, "prompts in the table of most-optimized samples", lo=0)
    rater: RaterFlaws = nested(RaterFlaws, "the rater's flaws (all zero = gold)")
    rm: RewardModelConfig = nested(RewardModelConfig, "the reward model")
    bon: BestOfNConfig = nested(BestOfNConfig, "best-of-n")
    rl: RLConfig = nested(RLConfig, "KL-penalized RL (rl.kl_coef is replaced by each of kl_coefs)")


def _sample_pairs(base, world_prompts: list[str], cfg: OveroptimizationConfig,
                  seed: int) -> tuple[list[str], list[str], list[str]]:
    """(prompts, a, b): cfg.rm.n_pairs prompts and two base-model samples for each."""
    from proxygap.lm.sampling import sample

    rng = random.Random(seed)
    prompts = rng.choices(world_prompts, k=cfg.rm.n_pairs)
    gen = torch.Generator().manual_seed(seed + 1)
    doubled = [p for p in prompts for _ in range(2)]
    texts = sample(base.model, base.tokenizer, doubled, cfg.bon.max_new_tokens, generator=gen, batch_size=1024).texts
    return prompts, texts[0::2], texts[1::2]


def _train_reward_model(base, world_prompts: list[str], rater: Judge, gold: Judge, cfg: OveroptimizationConfig,
                        seed: int, pairs: tuple[list[str], list[str], list[str]] | None = None
                        ) -> tuple[RewardEnsemble, dict]:
    """Sample pairs from the base model, label them with the rater, train the RM (ensemble).
    ``pairs`` (from ``_sample_pairs`` with the same seed) skips the sampling: raters compared
    on the same pairs (the loopholes ablation) share it."""
    prompts, a, b = pairs if pairs is not None else _sample_pairs(base, world_prompts, cfg, seed)
    rater_a, rater_b = np.array(rater(prompts, a)), np.array(rater(prompts, b))
    gold_a, gold_b = np.array(gold(prompts, a)), np.array(gold(prompts, b))
    n_held = int(round(cfg.rm.heldout_fraction * len(prompts)))
    train_pairs = label_pairs(prompts[n_held:], a[n_held:], b[n_held:], rater_a[n_held:], rater_b[n_held:],
                              cfg.rater.label_noise, seed)
    backbone = base.path if cfg.rm.backbone == "base" else Path(cfg.rm.backbone)
    members = []
    for i in range(cfg.rm.ensemble_size):
        member = RewardModel.from_backbone(backbone, seed=seed * 100 + i)
        member.fit(train_pairs, cfg.rm, seed=seed * 100 + i)
        members.append(member)
    ensemble = RewardEnsemble(members, cfg.rm.ensemble_combine, cfg.rm.uwo_lambda)
    hp, ha, hb = prompts[:n_held], a[:n_held], b[:n_held]
    rm_a, rm_b = ensemble.score(hp, ha), ensemble.score(hp, hb)
    info = {
        "n_pairs_sampled": len(prompts),
        "n_train_pairs": len(train_pairs),
        "n_heldout_pairs": n_held,
        "agreement_rater": pair_agreement(rm_a, rm_b, rater_a[:n_held], rater_b[:n_held]),
        "agreement_gold": pair_agreement(rm_a, rm_b, gold_a[:n_held], gold_b[:n_held]),
        "rater_gold_agreement": pair_agreement(rater_a[:n_held], rater_b[:n_held], gold_a[:n_held], gold_b[:n_held]),
    }
    return ensemble, info


def _corr(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson correlation; None where either score is constant (then it is undefined)."""
    if x.std() == 0 or y.std() == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def run_seed(cfg: OveroptimizationConfig, base, seed: int, progress: bool = True) -> dict:
    torch.manual_seed(seed)
    world = base.world
    prompts = [p.text for p in assistant_prompts(world, seed, cfg.prompt_kinds)]
    random.Random(seed).shuffle(prompts)
    eval_prompts, train_prompts = prompts[: cfg.n_eval_prompts], prompts[cfg.n_eval_prompts:]
    if not train_prompts:
        raise ValueError(f"n_eval_prompts={cfg.n_eval_prompts} leaves no training prompts (only {len(prompts)})")
    rater, gold = Judge(world, cfg.rater), Judge.gold(world)
    timings = {}
    clock = time.time()

    ensemble, rm_info = _train_reward_model(base, train_prompts, rater, gold, cfg, seed)
    timings["reward_model_s"], clock = time.time() - clock, time.time()

    # Best-of-n from one pool on the evaluation prompts; the RM is recentred on the same base samples.
    bon_cfg = replace(cfg.bon, seed=seed)
    scorers = {"rm": ensemble.score, "rater": rater, "gold": gold}
    bon = run_best_of_n(base.model, base.tokenizer, eval_prompts, scorers, bon_cfg)
    pool = bon["pool"]
    offset = float(pool["scores"]["rm"].mean())
    for m in ensemble.members:
        m.offset += offset
    for point in bon["points"]:
        point["rm"] -= offset
    pool["scores"]["rm"] = pool["scores"]["rm"] - offset
    timings["best_of_n_s"], clock = time.time() - clock, time.time()
    flat = {k: v.ravel() for k, v in pool["scores"].items()}
    base_stats = {
        "rater": float(flat["rater"].mean()), "gold": float(flat["gold"].mean()),
        "rater_gold_corr": _corr(flat["rater"], flat["gold"]),
        "rm_rater_corr": _corr(flat["rm"], flat["rater"]),
        "rm_gold_corr": _corr(flat["rm"], flat["gold"]),
    }

    rl_runs = []
    for beta in cfg.kl_coefs:
        rl_cfg = replace(cfg.rl, kl_coef=beta, seed=seed)
        policy, evals = train_rl(base.model, base.tokenizer, train_prompts, eval_prompts, ensemble.score,
                                 {"rater": rater, "gold": gold}, rl_cfg, progress=progress)
        rl_runs.append({"kl_coef": beta, "points": [e.to_dict() for e in evals],
                        "final_texts": evals[-1].texts[:: rl_cfg.eval_samples_per_prompt]})
        del policy
    timings["rl_s"] = time.time() - clock

    # Most-optimized samples: the base's first sample, the RM's pick of the pool, and RL at the smallest beta.
    examples = []
    rm_pool = pool["scores"]["rm"]
    lowest_beta = min(range(len(rl_runs)), key=lambda i: rl_runs[i]["kl_coef"]) if rl_runs else None
    for i, prompt in enumerate(eval_prompts[: cfg.n_examples]):
        row = pool["texts"][i * cfg.bon.pool_size:(i + 1) * cfg.bon.pool_size]
        best = int(np.argmax(rm_pool[i]))
        example = {"prompt": prompt, "base": row[0], "best_of_n": row[best]}
        if lowest_beta is not None:
            example["rl"] = rl_runs[lowest_beta]["final_texts"][i]
            example["rl_kl_coef"] = rl_runs[lowest_beta]["kl_coef"]
        for key in ("base", "best_of_n", "rl"):
            if key in example:
                example[f"{key}_scores"] = {
                    "rm": float(ensemble.score([prompt], [example[key]])[0]),
                    "rater": rater.score(prompt, example[key]),
                    "gold": gold.score(prompt, example[key]),
                }
        examples.append(example)
    for run in rl_runs:
        run.pop("final_texts")
    return {"seed": seed, "timings": timings, "rm": rm_info, "base": base_stats, "bon_points": bon["points"], "rl": rl_runs,
            "examples": examples}


def _interval(values: list[float]) -> dict:
    if not values:
        return {"mean": None, "lo": None, "hi": None}
    mean, lo, hi = t_interval(np.asarray(values, dtype=float))
    return {"mean": mean, "lo": lo, "hi": hi}


def _fit_or_none(form: str, d: np.ndarray, r: np.ndarray) -> dict | None:
    try:
        return (fit_bon if form == "bon" else fit_rl)(d, r).to_dict()
    except ValueError as e:
        return {"error": str(e)}


def _mean_curve(curves: list[list[dict]], index_keys: tuple[str, ...], keys: tuple[str, ...]) -> list[dict]:
    """Average per-seed curves point by point. For each score also its gain over the seed's own
    base (first point), with an interval on the per-seed gains: the paired, recentred quantity."""
    points = []
    for j, first in enumerate(curves[0]):
        point = {k: first[k] for k in index_keys}
        for key in keys:
            iv = _interval([c[j][key] for c in curves])
            point[key], point[f"{key}_ci"] = iv["mean"], [iv["lo"], iv["hi"]]
            if key in SCORES:
                gain = _interval([c[j][key] - c[0][key] for c in curves])
                point[f"{key}_gain"], point[f"{key}_gain_ci"] = gain["mean"], [gain["lo"], gain["hi"]]
        points.append(point)
    return points


def aggregate(per_seed: list[dict], cfg: OveroptimizationConfig) -> dict:
    """Across seeds: mean curves with t-intervals, Gao fits on every seed's recentred points."""
    bon_curves = [s["bon_points"] for s in per_seed]  # the same n in every seed
    bon_points = _mean_curve(bon_curves, ("n", "kl", "d"), SCORES)
    bon_fits = {}
    for name in SCORES:
        d = np.array([p["d"] for c in bon_curves for p in c])
        r = np.array([p[name] - c[0][name] for c in bon_curves for p in c])
        bon_fits[name] = _fit_or_none("bon", d, r)

    rl = []
    for i, beta in enumerate(cfg.kl_coefs):
        curves = [s["rl"][i]["points"] for s in per_seed]  # the same steps in every seed
        points = _mean_curve(curves, ("step",), ("kl", "kl_k3", "entropy", "length", *SCORES))
        fits = {}
        for name in SCORES:
            # Every seed's own (d, gain) points; d = 0 at step 0 is where the form is not meant to hold.
            d = np.array([np.sqrt(max(p["kl"], 0.0)) for c in curves for p in c[1:]])
            r = np.array([p[name] - c[0][name] for c in curves for p in c[1:]])
            fits[name] = _fit_or_none("rl", d, r)
        rl.append({"kl_coef": beta, "points": points, "per_seed": curves, "fit": fits["gold"], "fits": fits,
                   "final": {k: v for k, v in points[-1].items() if k != "step"}})

    rm_info = {key: _interval([s["rm"][key] for s in per_seed if s["rm"][key] is not None])
               for key in ("agreement_rater", "agreement_gold", "rater_gold_agreement")}
    base = {key: _interval([s["base"][key] for s in per_seed if s["base"][key] is not None])
            for key in per_seed[0]["base"]}
    return {
        "bon": {"points": bon_points, "per_seed": bon_curves, "fit": bon_fits["gold"], "fits": bon_fits},
        "rl": rl,
        "reward_model": rm_info,
        "base": base,
        "findings": findings(bon_points, rl),
    }


def _peak(points: list[dict], kl_key: str = "kl") -> dict:
    """Where mean gold peaks along a curve, and whether the peak is before the curve's end."""
    gold = [p["gold"] for p in points]
    i = int(np.argmax(gold))
    end = points[-1]
    interior = 0 < i < len(points) - 1 and gold[i] > end["gold"]
    return {"peak_kl": max(0.0, points[i][kl_key]), "rises_above_base": bool(i > 0), "peak_gold": gold[i], "start_gold": gold[0], "end_gold": end["gold"],
            "end_kl": end[kl_key], "interior_peak": bool(interior),
            "drop_after_peak": float(gold[i] - end["gold"])}


def findings(bon_points: list[dict], rl: list[dict]) -> dict:
    """Plain statements computed from the curves (nothing here is typed in by hand)."""
    out = {"bon": _peak(bon_points), "rl": {}}
    kls = [p["kl"] for p in bon_points]
    for run in rl:
        out["rl"][str(run["kl_coef"])] = _peak(run["points"])
        kls += [p["kl"] for p in run["points"]]
    out["kl_range"] = [float(min(kls)), float(max(kls))]
    last_bon = bon_points[-1]
    out["rm_gold_gap_at_max_bon"] = float(last_bon["rm"] - (last_bon["gold"] - bon_points[0]["gold"]))
    return out


def run(cfg: OveroptimizationConfig, run_dir: Path) -> dict:
    from proxygap.pipeline.base_model import load_base_model

    base = load_base_model(None if cfg.model == "default" else cfg.model)
    per_seed = []
    for seed in range(cfg.seeds):
        per_seed.append(run_seed(cfg, base, seed))
        (run_dir / "per_seed.json").write_text(json.dumps(per_seed, indent=1))
    result = aggregate(per_seed, cfg)
    result["seeds"] = list(range(cfg.seeds))
    result["model"] = str(base.path)
    result["examples"] = per_seed[0]["examples"]
    result["timings"] = [s["timings"] for s in per_seed]
    return result


def report(run_dir: Path) -> None:
    from proxygap.report.overoptimization import draw_report

    draw_report(run_dir)


register(Experiment(
    name="overoptimization",
    description="proxy vs rater vs gold as optimization (KL) grows, for best-of-n and KL-penalized RL",
    config_cls=OveroptimizationConfig,
    run=run,
    report=report,
    presets={
        "smoke": {"seeds": 1, "n_eval_prompts": 8, "kl_coefs": [0.0, 0.1], "n_examples": 2,
                  "rm.n_pairs": 64, "rm.epochs": 1, "bon.pool_size": 8, "bon.max_new_tokens": 20,
                  "rl.steps": 4, "rl.eval_every": 2, "rl.prompts_per_step": 4, "rl.max_new_tokens": 20},
        # Sized for at most 5 minutes on a 2-core CPU (bench/quickstart.py measures it).
        "quick": {"n_eval_prompts": 64, "rm.n_pairs": 1200, "rl.steps": 40, "rl.prompts_per_step": 8,
                  "rl.eval_every": 8},
        "full": {"seeds": 5, "n_eval_prompts": 256, "kl_coefs": [0.0, 0.01, 0.03, 0.1, 0.3],
                 "rm.n_pairs": 20000, "rm.epochs": 3, "bon.pool_size": 1024, "rl.steps": 1000,
                 "rl.prompts_per_step": 32, "rl.eval_every": 25},
    },
))
