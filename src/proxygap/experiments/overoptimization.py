"""`proxygap run overoptimization`: the Goodhart ladder as optimization grows.

For each seed: a reward model is trained on rater-labelled pairs of base-model samples; then
the base model is optimized against it by best-of-n (one pool, every n) and by KL-penalized
RL (one run per beta). Every sample is scored three times: by the reward model (what is
optimized), by the rater whose labels trained it (what a human eval would report) and by gold
(the world's truth, which nobody in the loop sees). Gao et al. (2022) forms are fitted to each
score against d = sqrt(KL), scores recentred so the base policy scores 0.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from proxygap.config import ConfigError, knob, nested, to_dict
from proxygap.experiments.spec import Experiment, ExperimentConfig, Unit, UnitContext
from proxygap.measure.best_of_n import gain_beyond_best_of_n
from proxygap.measure.fits import fit_dict
from proxygap.measure.intervals import (NONNEGATIVE, SIGNED_UNIT, UNIT, curve_intervals, moved, peak_along,
                                        seed_interval)
from proxygap.oversight.judges import Judge, RaterFlaws
from proxygap.pipeline.reward_model import (RewardModelConfig, heldout_pairs, recentre_on, sample_pairs,
                                            train_reward_model, training_pairs)
from proxygap.tasks.splits import eval_train_split
from proxygap.train.best_of_n import BestOfNConfig, run_best_of_n
from proxygap.train.dpo import DPOConfig, DPOScheduleConfig, implicit_reward_agreement, reference_logps, train_dpo
from proxygap.train.rl import RLConfig, train_rl

SCORES = ("rm", "rater", "gold")


@dataclass
class OveroptimizationConfig(ExperimentConfig):
    model: str = knob("default", "base model directory, or 'default' for the embedded one")
    n_eval_prompts: int = knob(96, "held-out prompts on which every curve is measured", lo=4)
    prompt_kinds: tuple[str, ...] = knob(("fact", "belief", "recommend"), "assistant question kinds used",
                                         choices=("fact", "belief", "recommend"))
    kl_coefs: tuple[float, ...] = knob((0.0, 0.05, 0.2), "the RL betas swept (KL penalty per nat; rl.kl_in: reward or loss)", lo=0)
    n_examples: int = knob(8, "prompts in the table of most-optimized samples", lo=0)
    rater: RaterFlaws = nested(RaterFlaws, "the rater's flaws (all zero = gold)")
    rm: RewardModelConfig = nested(RewardModelConfig, "the reward model")
    bon: BestOfNConfig = nested(BestOfNConfig, "best-of-n")
    rl: RLConfig = nested(RLConfig, "KL-penalized RL, one run per beta of kl_coefs")
    direct_losses: tuple[str, ...] = knob(("dpo", "ipo"), "direct alignment methods trained on the RM's own "
                                                          "rater-labelled pairs (none: ())", choices=("dpo", "ipo"))
    direct_betas: tuple[float, ...] = knob((0.05, 0.2, 1.0), "the betas of DPO and IPO (their KL regularization)",
                                           lo=0)
    direct: DPOScheduleConfig = nested(DPOScheduleConfig, "DPO and IPO training (evaluated on the held-out prompts as RL is: "
                                          "rl.max_new_tokens, rl.eval_samples_per_prompt)")

    def check(self) -> None:
        super().check()
        if self.direct_losses and (not self.direct_betas or min(self.direct_betas) <= 0):
            raise ConfigError("direct_betas must be non-empty and > 0 when direct_losses is set (DPO/IPO need beta > 0)")
        if not self.kl_coefs:
            raise ConfigError("kl_coefs is empty; give at least one beta")
        if self.n_examples > self.n_eval_prompts:
            raise ConfigError(f"n_examples={self.n_examples} is more than n_eval_prompts={self.n_eval_prompts}")
        for name in ("kl_coefs", "direct_betas", "direct_losses", "prompt_kinds"):  # each value names a run or a curve
            values = list(getattr(self, name))
            if len({f"{v:g}" if isinstance(v, float) else v for v in values}) != len(values):
                raise ConfigError(f"{name} lists a value twice: {values}")
        if self.rl.steps < 1:
            raise ConfigError(f"rl.steps={self.rl.steps}: RL would be the base model under another name; give at least 1")
        if self.direct_losses and self.direct.steps < 1:
            raise ConfigError(f"direct.steps={self.direct.steps}: DPO/IPO would be the base model; give at least 1 "
                              "(or set direct_losses=[])")
        if self.bon.max_new_tokens != self.rl.max_new_tokens:
            raise ConfigError(f"bon.max_new_tokens={self.bon.max_new_tokens} must equal rl.max_new_tokens="
                              f"{self.rl.max_new_tokens}: best-of-n, RL and DPO share one KL axis and one base policy")


def preflight(cfg: OveroptimizationConfig) -> None:
    """The limits that depend on the model: prompts its world has, its context length."""
    from proxygap.pipeline.base_model import check_fits, load_world_for_model

    world = load_world_for_model(cfg.model)
    eval_train_split(world, 0, cfg.prompt_kinds, cfg.n_eval_prompts)
    check_fits(cfg.model, max(cfg.rm.max_new_tokens, cfg.bon.max_new_tokens, cfg.rl.max_new_tokens))


def _corr(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson correlation; None where either score is constant (then it is undefined)."""
    if x.std() == 0 or y.std() == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def run_unit(cfg: OveroptimizationConfig, unit: Unit, ctx: UnitContext) -> dict:
    """One seed: the reward model, best-of-n from one pool, RL at every beta."""
    from proxygap.pipeline.base_model import load_base_model_cached

    seed = unit.seed
    base = load_base_model_cached(cfg.model)
    world = base.world
    eval_prompts, train_prompts = eval_train_split(world, seed, cfg.prompt_kinds, cfg.n_eval_prompts)
    rater, gold = Judge(world, cfg.rater), Judge.gold(world)
    progress = ctx.progress
    timings = {}
    clock = time.time()

    pairs = sample_pairs(base, train_prompts, cfg.rm, seed)
    ensemble, rm_info = train_reward_model(base, train_prompts, rater, gold, cfg.rm, seed, pairs=pairs)
    for i, member in enumerate(ensemble.members):
        ctx.save_model(f"reward_model_{i}", member, member.tokenizer, world)
    timings["reward_model_s"], clock = time.time() - clock, time.time()

    # Best-of-n from one pool on the evaluation prompts; the RM is recentred on the same base samples.
    scorers = {"rm": ensemble.score, "rater": rater, "gold": gold}
    bon = run_best_of_n(base.model, base.tokenizer, eval_prompts, scorers, cfg.bon, seed=seed)
    pool = bon["pool"]
    offset = recentre_on(ensemble, pool["scores"]["rm"])
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
        policy, evals = train_rl(base.model, base.tokenizer, train_prompts, eval_prompts, ensemble.score,
                                 {"rater": rater, "gold": gold}, cfg.rl, kl_coef=beta, seed=seed, progress=progress)
        rl_runs.append({"kl_coef": beta, "points": [e.to_dict() for e in evals],
                        "final_texts": evals[-1].texts[:: cfg.rl.eval_samples_per_prompt]})
        ctx.save_model(f"rl_beta_{beta:g}", policy, base.tokenizer, world)
        del policy
    timings["rl_s"], clock = time.time() - clock, time.time()

    # DPO and IPO on the RM's own training pairs (the same rater labels), no RM in the loop: the RM is logged.
    direct = {}
    preference = training_pairs(pairs, rater, cfg.rm, seed) if cfg.direct_losses else []
    # Evaluated as RL is (same sample length and count), so every curve shares the x-axis's meaning.
    direct_cfg = DPOConfig(**to_dict(cfg.direct), max_new_tokens=cfg.rl.max_new_tokens,
                           eval_samples_per_prompt=cfg.rl.eval_samples_per_prompt)
    # Each policy read as a reward model, on the pairs the RM's agreement is measured on.
    held = heldout_pairs(pairs, cfg.rm)
    held_scores = {name: (np.array(judge(held.prompts, held.a)), np.array(judge(held.prompts, held.b)))
                   for name, judge in (("rater", rater), ("gold", gold))} if cfg.direct_losses else {}
    if cfg.direct_losses:  # the reference is the same model for every run: its log-probs once per seed
        ref_train = reference_logps(base.model, base.tokenizer, preference)
        ref_held = reference_logps(base.model, base.tokenizer, list(zip(held.prompts, held.a, held.b)))
    for name in cfg.direct_losses:
        direct[name] = []
        for beta in cfg.direct_betas:
            policy, evals = train_dpo(base.model, base.tokenizer, preference, eval_prompts, ensemble.score,
                                      {"rater": rater, "gold": gold}, direct_cfg, beta=beta,
                                      loss_type="sigmoid" if name == "dpo" else "ipo", seed=seed, progress=progress,
                                      ref_logps=ref_train)
            ctx.save_model(f"{name}_beta_{beta:g}", policy, base.tokenizer, world)
            agreement = implicit_reward_agreement(policy, base.model, base.tokenizer, held.prompts, held.a, held.b,
                                                  held_scores, length_normalized=name == "ipo", ref_logps=ref_held)
            direct[name].append({"beta": beta, "n_pairs": len(preference), "points": [e.to_dict() for e in evals],
                                 "implicit_agreement": agreement})
    timings["direct_s"] = time.time() - clock

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
            "direct": direct, "examples": examples}


AGREEMENT, DIFFERENCE = UNIT, SIGNED_UNIT
KL_BOUNDS = {"kl": NONNEGATIVE, "kl_k3": NONNEGATIVE, "kl_pool": NONNEGATIVE}


def _interval(values: list[float], bounds: tuple[float, float] | None = None) -> dict:
    return seed_interval(values, bounds=bounds)


def implicit_agreement_intervals(agreements: list[dict], rm_infos: list[dict]) -> dict:
    """Across seeds, a direct policy's agreement as a reward model (``implicit_agreement``) with the
    rater and gold, and its difference from the RM trained on the same labels, measured on the
    same held-out pairs and paired by seed (``implicit_minus_rm_agreement``)."""
    judges = ("rater", "gold")
    return {
        "implicit_agreement": {j: _interval([a[j] for a in agreements if a[j] is not None], AGREEMENT) for j in judges},
        "implicit_minus_rm_agreement": {
            j: _interval([a[j] - rm[f"agreement_{j}"] for a, rm in zip(agreements, rm_infos, strict=True)
                          if a[j] is not None and rm[f"agreement_{j}"] is not None], DIFFERENCE) for j in judges}}


def _vs_best_of_n(curves: list[list[dict]], bon_curves: list[list[dict]]) -> dict:
    """Per seed, a run's gold gain at its last evaluation minus best-of-n's gold gain at the same KL
    (best-of-n's measured-KL curve read at the run's k1 KL, both on the same held-out prompts);
    None for a seed whose run went past the pool's largest KL."""
    diffs = [gain_beyond_best_of_n(c[-1]["gold"] - c[0]["gold"], c[-1]["kl"], bon)
             for c, bon in zip(curves, bon_curves, strict=True)]
    iv = seed_interval(diffs, per_seed=True)
    beyond = sum(d is None for d in diffs)
    # the seeds past the pool's KL optimized hardest: no direction from the others alone
    return {"gold_gain_difference": iv, "direction": moved(iv) if beyond == 0 else None, "seeds_beyond_pool": beyond,
            "end_kl_per_seed": [c[-1]["kl"] for c in curves]}


def aggregate(per_seed: list[dict], cfg: OveroptimizationConfig) -> dict:
    """Across seeds: mean curves with t-intervals, Gao fits on every seed's recentred points."""
    bon_curves = [s["bon_points"] for s in per_seed]  # the same n in every seed
    bon_points = curve_intervals(bon_curves, ("n", "kl", "d"), (*SCORES, "kl_pool"), SCORES, KL_BOUNDS)
    bon_fits = {}
    for name in SCORES:
        d = np.array([p["d"] for c in bon_curves for p in c])
        r = np.array([p[name] - c[0][name] for c in bon_curves for p in c])
        bon_fits[name] = fit_dict("bon", d, r)

    rl = []
    for i, beta in enumerate(cfg.kl_coefs):
        curves = [s["rl"][i]["points"] for s in per_seed]  # the same steps in every seed
        points = curve_intervals(curves, ("step",), ("kl", "kl_k3", "entropy", "length", *SCORES), SCORES, KL_BOUNDS)
        fits = {}
        for name in SCORES:
            # Every seed's own (d, gain) points; d = 0 at step 0 is where the form is not meant to hold.
            d = np.array([np.sqrt(max(p["kl"], 0.0)) for c in curves for p in c[1:]])
            r = np.array([p[name] - c[0][name] for c in curves for p in c[1:]])
            fits[name] = fit_dict("rl", d, r)
        rl.append({"kl_coef": beta, "points": points, "per_seed": curves, "fit": fits["gold"], "fits": fits,
                   "final": {k: v for k, v in points[-1].items() if k != "step"},
                   "vs_bon_at_equal_kl": _vs_best_of_n(curves, bon_curves)})

    direct = {}
    for name in cfg.direct_losses:
        direct[name] = []
        for i, beta in enumerate(cfg.direct_betas):
            curves = [s["direct"][name][i]["points"] for s in per_seed]
            points = curve_intervals(curves, ("step",), ("kl", "kl_k3", *SCORES), SCORES, KL_BOUNDS)
            agreement = [s["direct"][name][i]["implicit_agreement"] for s in per_seed]
            direct[name].append({"beta": beta, "points": points, "per_seed": curves,
                                 "n_pairs": [s["direct"][name][i]["n_pairs"] for s in per_seed],
                                 **implicit_agreement_intervals(agreement, [s["rm"] for s in per_seed]),
                                 "final": {k: v for k, v in points[-1].items() if k != "step"},
                                 "vs_bon_at_equal_kl": _vs_best_of_n(curves, bon_curves)})

    rm_info = {key: _interval([s["rm"][key] for s in per_seed if s["rm"][key] is not None], AGREEMENT)
               for key in ("agreement_rater", "agreement_gold", "rater_gold_agreement")}
    base = {key: _interval([s["base"][key] for s in per_seed if s["base"][key] is not None],
                           DIFFERENCE if key.endswith("_corr") else None)
            for key in per_seed[0]["base"]}
    return {
        "bon": {"points": bon_points, "per_seed": bon_curves, "fit": bon_fits["gold"], "fits": bon_fits},
        "rl": rl,
        "reward_model": rm_info,
        "base": base,
        **direct,
        "findings": {**findings(bon_points, rl, bon_curves),
                     "direct": {f"{name} beta={run['beta']:g}": _peak(run["points"], run["per_seed"])
                                for name, runs in direct.items() for run in runs},
                     # each run's gold against best-of-n's at the run's own KL, paired by seed
                     "vs_best_of_n": {**{f"rl beta={run['kl_coef']:g}": _vs_summary(run) for run in rl},
                                      **{f"{name} beta={run['beta']:g}": _vs_summary(run)
                                         for name, runs in direct.items() for run in runs}}},
    }


def _vs_summary(run: dict) -> dict:
    v = run["vs_bon_at_equal_kl"]
    return {k: v["gold_gain_difference"][k] for k in ("mean", "lo", "hi", "n")} | {
        "direction": v["direction"], "seeds_beyond_pool": v["seeds_beyond_pool"]}


def _peak(points: list[dict], curves: list[list[dict]], kl_key: str = "kl") -> dict:
    """Where mean gold peaks along a curve; a rise above the base, a peak before the end and a fall
    below the base are claimed only where the per-seed gain (or drop) clears its interval."""
    p = peak_along(points, "gold", curves, x_key=kl_key)
    return {"peak_kl": p["peak_x"], "peak_gold": p["peak"], "start_gold": p["start"], "end_gold": p["end"],
            "end_kl": p["end_x"], "gain_at_peak": p["gain_at_peak"], "gain_at_end": p["gain_at_end"],
            "drop_after_peak": p["drop_after_peak"], "peak_confidence": p["peak_confidence"],
            "rises_above_base": p["rises_above_base"],
            "interior_peak": p["interior_peak"], "ends_below_base": p["ends_below_base"]}


def findings(bon_points: list[dict], rl: list[dict], bon_curves: list[list[dict]]) -> dict:
    """Plain statements computed from the curves (nothing here is typed in by hand). ``bon_curves``:
    each seed's own best-of-n points (each of ``rl`` carries its own in ``per_seed``)."""
    out = {"bon": _peak(bon_points, bon_curves), "rl": {}}
    kls = [p["kl"] for p in bon_points]
    for run in rl:
        out["rl"][str(run["kl_coef"])] = _peak(run["points"], run["per_seed"])
        kls += [p["kl"]["mean"] for p in run["points"]]
    # best-of-n's by the formula (an upper bound), RL's by its k1 estimate: the span of the x-axis, not one measure
    out["kl_range"] = [float(min(kls)), float(max(kls))]
    return out


def aggregate_units(cfg: OveroptimizationConfig, results: dict[str, dict], prepared: dict | None) -> dict:
    from proxygap.pipeline.base_model import resolve_model_dir

    per_seed = [results[f"seed={s}"] for s in cfg.seeds]
    result = aggregate(per_seed, cfg)
    result["model"] = str(resolve_model_dir(cfg.model))
    result["examples"] = per_seed[0]["examples"]
    result["timings"] = [s["timings"] for s in per_seed]
    return result


def report(run_dir: Path) -> None:
    from proxygap.report.overoptimization import draw_report

    draw_report(run_dir)


EXPERIMENT = Experiment(
    name="overoptimization",
    description="proxy vs rater vs gold as optimization (KL) grows, for best-of-n and KL-penalized RL",
    config_cls=OveroptimizationConfig,
    run_unit=run_unit,
    aggregate=aggregate_units,
    preflight=preflight,
    report=report,
    presets={
        "smoke": {"seeds": [0], "n_eval_prompts": 8, "kl_coefs": [0.0, 0.1], "n_examples": 2,
                  "rm.n_pairs": 64, "rm.epochs": 1, "rm.max_new_tokens": 20, "bon.pool_size": 8, "bon.max_new_tokens": 20,
                  "rl.steps": 4, "rl.eval_every": 2, "rl.prompts_per_step": 4, "rl.max_new_tokens": 20,
                  "direct_betas": [0.2], "direct.steps": 2, "direct.eval_every": 1, "direct.batch_size": 4},
        # Sized for at most 5 minutes on a 2-core CPU (bench/quickstart.py measures it).
        "quick": {"n_eval_prompts": 64, "rm.n_pairs": 1200, "rl.steps": 40, "rl.prompts_per_step": 8,
                  "rl.eval_every": 8,
                  # Two betas a decade apart, 30 steps: DPO and IPO add about a minute per seed, not three.
                  "direct_betas": [0.1, 1.0], "direct.steps": 30, "direct.eval_every": 10},
        "full": {"seeds": [0, 1, 2, 3, 4], "n_eval_prompts": 256, "kl_coefs": [0.0, 0.01, 0.03, 0.1, 0.3],
                 "rm.n_pairs": 20000, "rm.epochs": 3, "bon.pool_size": 1024, "rl.steps": 1000,
                 "rl.prompts_per_step": 32, "rl.eval_every": 25, "direct_betas": [0.01, 0.03, 0.1, 0.3, 1.0],
                 "direct.steps": 600, "direct.eval_every": 50},
    },
)
