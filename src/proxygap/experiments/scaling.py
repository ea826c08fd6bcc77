"""`proxygap run scaling`: Gao et al. (2022) §4 on the model family.

A grid of reward-model size x policy size x number of RM training labels x rater quality. The
rater quality q scales every flaw of the rater, label noise included: q = 0 labels with gold
(Gao et al.'s synthetic setup: the proxy RM learns the gold judge from finitely many labels),
q = 1 with the rater as configured. For each (RM size, labels, quality, seed) one reward model
is trained on pairs of one fixed sampler's answers (``pairs_model``, as Gao et al.'s RMs saw
one initial policy's samples); then every policy size is optimized against it by best-of-n
(one pool, every n) and, for a stated subset of cells, by KL-penalized RL. Gold's gain over
the policy's base is fitted with Gao's forms per seed: intervals on alpha, beta, d* and R² are
across seeds.

What does not depend on the cell is drawn once per seed, in ``prepare``: the RM's pairs (one draw
of max(n_labels); its first heldout_fraction x max(n_labels) pairs are the held-out block every
RM of the seed is measured on, and a cell with n labels trains on the next n x (1 -
heldout_fraction), so training sets are nested) and each policy's best-of-n pool (every RM of
that seed picks from the same samples). Axes are listed smallest first (checked): findings
compare the first and the last value of each.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from proxygap.config import ConfigError, knob, nested, to_dict
from proxygap.experiments.spec import Experiment, ExperimentConfig, Unit, UnitContext
from proxygap.measure.best_of_n import gain_beyond_best_of_n
from proxygap.measure.fits import fit_dict
from proxygap.measure.intervals import curve_intervals, moved, peak_along, seed_interval
from proxygap.oversight.judges import Judge, RaterFlaws
from proxygap.pipeline.reward_model import (Pairs, RewardModelConfig, RewardModelFitConfig, pair_length_knob, recentre_on,
                                            sample_pairs, train_reward_model)
from proxygap.pipeline.base_model import parameter_count
from proxygap.tasks.splits import eval_train_split
from proxygap.train.best_of_n import BestOfNConfig, powers_of_two, sample_pool, score_pool
from proxygap.train.rl import RLConfig, train_rl

SCORES = ("rm", "rater", "gold")
FIT_KEYS = ("alpha", "beta", "d_star", "r2")


@dataclass
class ScalingRewardModelConfig(RewardModelFitConfig):
    """The reward models' knobs but the two each cell sets: labels (n_labels) and backbone (rm_sizes)."""

    SET_ELSEWHERE: ClassVar[dict[str, str]] = {"n_pairs": "each cell's labels: set n_labels",
                                               "backbone": "each cell's reward model: set rm_sizes"}
    max_new_tokens: int = pair_length_knob()

    def for_cell(self, n_pairs: int, backbone: str = "base") -> RewardModelConfig:
        return RewardModelConfig(**to_dict(self), n_pairs=n_pairs, backbone=backbone)


@dataclass
class ScalingConfig(ExperimentConfig):
    rm_sizes: tuple[str, ...] = knob(("xs", "s", "m"), "reward-model backbones: shipped size names or model "
                                                        "directories (one tokenizer and world with the policies)")
    policy_sizes: tuple[str, ...] = knob(("xs", "s", "m"), "policies: shipped size names or model directories")
    n_labels: tuple[int, ...] = knob((300, 1200), "RM training labels: rater-labelled pairs per reward model "
                                                   "(a share rm.heldout_fraction of them is held out)", lo=16)
    rater_qualities: tuple[float, ...] = knob((0.0, 0.5, 1.0), "rater quality: the factor on every flaw of `rater` "
                                                               "(0 = gold labels, 1 = the rater as configured)",
                                              lo=0, hi=1)
    pairs_model: str = knob("s", "the model whose answers make every RM's training pairs (size name or directory)")
    rl_cells: str = knob("reference", "cells that also get KL-penalized RL: none; reference (the largest RM and "
                                       "label count at the lowest rater quality: the slice the report's curves hold "
                                       "fixed, every policy size); largest_labels; or all",
                         choices=("none", "reference", "largest_labels", "all"))
    min_fit_r2: float = knob(0.5, "a trend's slice claims nothing where a fit it rests on (either cell, any seed) has "
                                  "R² below this, or none (gold the same at every KL): the fitted form does not "
                                  "describe that curve, so its parameters' change says little (0 = no gate)",
                       lo=0, hi=1)
    rl_kl_coef: float = knob(0.05, "beta of the RL runs (KL penalty per nat; rl.kl_in: reward or loss)", lo=0)
    n_eval_prompts: int = knob(64, "held-out prompts on which every curve is measured", lo=4)
    prompt_kinds: tuple[str, ...] = knob(("fact", "belief", "recommend"), "assistant question kinds used",
                                         choices=("fact", "belief", "recommend"))
    rater: RaterFlaws = nested(RaterFlaws, "the rater's flaws at quality 1 (each scaled by the cell's quality)")
    rm: ScalingRewardModelConfig = nested(ScalingRewardModelConfig, "the reward models (their labels and backbone "
                                                                    "are each cell's n_labels and RM size)")
    bon: BestOfNConfig = nested(BestOfNConfig, "best-of-n")
    rl: RLConfig = nested(RLConfig, "KL-penalized RL of the cells named by rl_cells")

    def check(self) -> None:
        super().check()
        for name in ("rm_sizes", "policy_sizes", "n_labels", "rater_qualities"):
            values = getattr(self, name)
            if not values:
                raise ConfigError(f"{name} is empty; give at least one value")
            if len(set(values)) != len(values):
                raise ConfigError(f"{name} repeats a value: {list(values)}")
        for name in ("n_labels", "rater_qualities"):
            values = list(getattr(self, name))
            if values != sorted(values):
                raise ConfigError(f"{name}={values} must be listed smallest first (findings compare the first "
                                  "with the last)")
        # Gao's forms have two parameters and pass through (0, 0): the n = 1 point (and RL's step 0)
        # carries nothing, so a fit with a residual needs at least 3 points beyond it.
        n_max = self.bon.max_n or self.bon.pool_size
        if len(powers_of_two(n_max)) - 1 < 3:
            raise ConfigError(f"best-of-n up to n={n_max} gives {len(powers_of_two(n_max)) - 1} points beyond n=1; "
                              "the two-parameter Gao fit needs at least 3: set bon.pool_size (or bon.max_n) to 8 or more")
        n_rl = self.rl.steps // self.rl.eval_every + bool(self.rl.steps % self.rl.eval_every)
        if self.rl_cells != "none" and n_rl < 3:
            raise ConfigError(f"rl.steps={self.rl.steps} with rl.eval_every={self.rl.eval_every} gives {n_rl} "
                              "evaluations after step 0; the RL fit needs at least 3: raise rl.steps, lower "
                              "rl.eval_every, or set rl_cells=none")


def preflight(cfg: ScalingConfig) -> None:
    """Every model must be judged against one world with one tokenizer, and fit the lengths asked."""
    import json

    from proxygap.pipeline.base_model import check_fits, load_world_for_model, resolve_model_dir

    worlds = {}
    for model in dict.fromkeys((cfg.pairs_model, *cfg.rm_sizes, *cfg.policy_sizes)):
        world = load_world_for_model(model)
        worlds[model] = world.to_json()
        vocab = resolve_model_dir(model) / "tokenizer.json"
        worlds[model] += json.dumps(json.loads(vocab.read_text())["model"]["vocab"], sort_keys=True) if vocab.is_file() else ""
        check_fits(model, max(cfg.rm.max_new_tokens, cfg.bon.max_new_tokens, cfg.rl.max_new_tokens))
    first = next(iter(worlds))
    for model, text in worlds.items():
        if text != worlds[first]:
            raise ConfigError(f"model {model!r} has another world or tokenizer than {first!r}; every RM, policy and the "
                              "pairs model must come from one world (the shipped sizes do)")
    for name in ("rm_sizes", "policy_sizes"):
        params = [parameter_count(m) for m in getattr(cfg, name)]
        if None not in params and params != sorted(params):
            raise ConfigError(f"{name}={list(getattr(cfg, name))} must be listed smallest first (parameters "
                              f"{params}): findings compare the first with the last")
    eval_train_split(load_world_for_model(cfg.pairs_model), 0, cfg.prompt_kinds, cfg.n_eval_prompts)


def units(cfg: ScalingConfig) -> list[Unit]:
    """One unit per (RM size, labels, rater quality, seed): it trains the RM once and optimizes every policy size."""
    return [Unit(f"rm{i}-labels{n}-q{q:g}-seed{seed}", seed, {"rm_size": rm, "n_labels": n, "rater_quality": q})
            for seed in cfg.seeds for i, rm in enumerate(cfg.rm_sizes) for n in cfg.n_labels
            for q in cfg.rater_qualities]


def wants_rl(cfg: ScalingConfig, params: dict) -> bool:
    largest = params["n_labels"] == max(cfg.n_labels)
    if cfg.rl_cells == "reference":
        return (largest and params["rm_size"] == cfg.rm_sizes[-1]
                and params["rater_quality"] == min(cfg.rater_qualities))
    return cfg.rl_cells == "all" or (cfg.rl_cells == "largest_labels" and largest)


def prepare(cfg: ScalingConfig, run_dir: Path, progress: bool = True) -> dict:
    """Per seed: the RM pairs (max(n_labels) of them, from pairs_model) and every policy's pool."""
    from proxygap.pipeline.base_model import load_base_model_cached

    sampler = load_base_model_cached(cfg.pairs_model)
    out = {}
    for seed in cfg.seeds:
        eval_prompts, train_prompts = eval_train_split(sampler.world, seed, cfg.prompt_kinds, cfg.n_eval_prompts)
        pairs = sample_pairs(sampler, train_prompts, cfg.rm.for_cell(max(cfg.n_labels)), seed)
        pools = {}
        for size in cfg.policy_sizes:
            base = load_base_model_cached(size)
            pools[size] = sample_pool(base.model, base.tokenizer, eval_prompts, cfg.bon, seed=seed)
        out[str(seed)] = {"pairs": {"prompts": pairs.prompts, "a": pairs.a, "b": pairs.b}, "pools": pools}
    return out


def run_unit(cfg: ScalingConfig, unit: Unit, ctx: UnitContext) -> dict:
    from proxygap.pipeline.base_model import load_base_model_cached, resolve_model_dir

    seed, params = unit.seed, unit.params
    sampler = load_base_model_cached(cfg.pairs_model)
    world = sampler.world
    eval_prompts, train_prompts = eval_train_split(world, seed, cfg.prompt_kinds, cfg.n_eval_prompts)
    rater, gold = Judge(world, cfg.rater.scaled(params["rater_quality"])), Judge.gold(world)
    n = params["n_labels"]
    rm_cfg = cfg.rm.for_cell(n, str(resolve_model_dir(params["rm_size"])))
    drawn = ctx.prepared[str(seed)]
    held = round(cfg.rm.heldout_fraction * max(cfg.n_labels))  # one held-out block for every label count
    end = held + n - round(cfg.rm.heldout_fraction * n)
    pairs = Pairs(drawn["pairs"]["prompts"][:end], drawn["pairs"]["a"][:end], drawn["pairs"]["b"][:end])
    clock = time.time()
    ensemble, rm_info = train_reward_model(sampler, train_prompts, rater, gold, rm_cfg, seed, pairs=pairs,
                                           n_heldout=held)
    timings = {"reward_model_s": time.time() - clock}
    for i, member in enumerate(ensemble.members):  # saved as trained, before any policy's recentring
        ctx.save_model(f"reward_model_{i}", member, member.tokenizer, world)

    policies = []
    for size in cfg.policy_sizes:
        clock = time.time()
        base = load_base_model_cached(size)
        bon = score_pool(eval_prompts, drawn["pools"][size], {"rm": ensemble.score, "rater": rater, "gold": gold}, cfg.bon)
        shift = recentre_on(ensemble, bon["pool"]["scores"]["rm"])  # this policy's base scores 0 under the RM
        points = [{**p, "rm": p["rm"] - shift} for p in bon["points"]]
        d = np.array([p["d"] for p in points])
        fits = {name: fit_dict("bon", d, np.array([p[name] - points[0][name] for p in points])) for name in SCORES}
        entry = {"policy_size": size, "bon_points": points, "bon_fits": fits}
        if wants_rl(cfg, params):
            policy, evals = train_rl(base.model, base.tokenizer, train_prompts, eval_prompts, ensemble.score,
                                     {"rater": rater, "gold": gold}, cfg.rl, kl_coef=cfg.rl_kl_coef, seed=seed,
                                     progress=ctx.progress)
            ctx.save_model(f"rl_policy_{size}", policy, base.tokenizer, base.world)
            rl_points = [e.to_dict() for e in evals]
            for p in rl_points:
                p.pop("texts", None)
            rd = np.array([np.sqrt(max(p["kl"], 0.0)) for p in rl_points[1:]])
            entry["rl_points"] = rl_points
            entry["rl_fits"] = {name: fit_dict("rl", rd, np.array([p[name] - rl_points[0][name] for p in rl_points[1:]]))
                                for name in SCORES}
            del policy
        for m in ensemble.members:  # undo this policy's recentring for the next one
            m.offset -= shift
        timings[f"policy_{size}_s"] = time.time() - clock
        policies.append(entry)
    return {"seed": seed, **params, "rm": rm_info, "policies": policies, "timings": timings}


# ---------------------------------------------------------------- aggregation
CENSORED = ("none", "beyond_range")  # a d* the fitted range does not locate: no maximum, or past d_max


def _fit_intervals(fits: list[dict]) -> dict:
    """Per fitted quantity, the interval across seeds. d*'s interval is over every seed or none: a
    seed whose curve falls from the start counts as d* = 0; where any seed's d* is censored (no
    maximum, or past the fitted range), the interval is withheld and the censored seeds counted,
    since dropping them would keep only the seeds that peak early."""
    out = {}
    peaks = [f.get("peak") for f in fits]
    for key in FIT_KEYS:
        per_seed = [f.get(key) for f in fits]
        if key == "d_star":
            per_seed = [None if p in CENSORED else v for v, p in zip(per_seed, peaks)]
        values = [v for v in per_seed if v is not None]
        withheld = key == "d_star" and any(p in CENSORED for p in peaks)
        out[key] = {**seed_interval([] if withheld else values), "per_seed": per_seed}
    # a d* below the first measured d is kept (an early peak, between the base and d_min), but counted
    out["d_star"].update({"at_base": peaks.count("at_base"), "no_maximum": peaks.count("none"),
                          "beyond_range": peaks.count("beyond_range"), "below_range": peaks.count("below_range")})
    out["peak"] = peaks
    out["errors"] = [f["error"] for f in fits if "error" in f]
    return out


def _pool_kl_fit(points: list[dict]) -> dict:
    """Gold's best-of-n fit on the KL measured on the pool (``d_pool``) instead of the formula's: a
    policy whose samples repeat more pays less KL for the same n, which the formula's d hides."""
    if any("d_pool" not in p for p in points):
        return {"error": "no measured KL in this run's curves (an older run)"}
    return fit_dict("bon", np.array([p["d_pool"] for p in points]),
                    np.array([p["gold"] - points[0]["gold"] for p in points]))


def _rl_vs_bon(seeds: list[dict]) -> dict:
    """Per seed, RL's gold gain at its last evaluation minus best-of-n's gold gain at the same KL
    (best-of-n's curve read at RL's KL, both KLs measured on the same held-out prompts); None for a
    seed whose RL went past the largest KL the pool measures (no best-of-n point to compare)."""
    diffs, kls = [], []
    for s in seeds:
        last, first = s["rl_points"][-1], s["rl_points"][0]
        kls.append(last["kl"])
        diffs.append(gain_beyond_best_of_n(last["gold"] - first["gold"], last["kl"], s["bon_points"]))
    iv = seed_interval(diffs, per_seed=True)
    beyond = sum(d is None for d in diffs)
    # the seeds past the pool's KL optimized hardest: no direction from the others alone
    return {"gold_gain_difference": iv, "rl_kl": seed_interval(kls), "direction": moved(iv) if beyond == 0 else None,
            "seeds_beyond_pool": beyond}


def aggregate_units(cfg: ScalingConfig, results: dict[str, dict], prepared: dict | None) -> dict:
    by_cell: dict[tuple, list[dict]] = {}
    for unit in units(cfg):
        r = results[unit.key]
        for entry in r["policies"]:
            key = (unit.params["rm_size"], entry["policy_size"], unit.params["n_labels"], unit.params["rater_quality"])
            by_cell.setdefault(key, []).append({**entry, "rm": r["rm"], "seed": r["seed"]})
    cells = []
    for (rm_size, policy_size, n_labels, quality), seeds in by_cell.items():
        curves = [s["bon_points"] for s in seeds]
        cell = {
            "rm_size": rm_size, "policy_size": policy_size, "n_labels": n_labels, "rater_quality": quality,
            "rm_params": parameter_count(rm_size), "policy_params": parameter_count(policy_size), "seeds": [s["seed"] for s in seeds],
            "fit": _fit_intervals([s["bon_fits"]["gold"] for s in seeds]),
            "fit_rm": _fit_intervals([s["bon_fits"]["rm"] for s in seeds]),
            "fit_pool_kl": _fit_intervals([_pool_kl_fit(s["bon_points"]) for s in seeds]),
            "bon_points": curve_intervals(curves, ("n", "kl", "d"), (*SCORES, "kl_pool"), SCORES),
            "gold_peak": peak_along(curve_intervals(curves, ("n", "kl", "d"), SCORES, SCORES), "gold", curves),
            "rm_agreement_gold": seed_interval([s["rm"]["agreement_gold"] for s in seeds]),
            "rm_agreement_rater": seed_interval([s["rm"]["agreement_rater"] for s in seeds]),
            # the labels the RM was fitted on: n_labels less the held-out share and the pairs this
            # rater tied (dropped), which depend on its quality
            "n_train_pairs": seed_interval([s["rm"]["n_train_pairs"] for s in seeds]),
        }
        if all("rl_points" in s for s in seeds):
            rl_curves = [s["rl_points"] for s in seeds]
            cell["rl"] = {"kl_coef": cfg.rl_kl_coef,
                          "points": curve_intervals(rl_curves, ("step",), ("kl", *SCORES), SCORES),
                          "fit": _fit_intervals([s["rl_fits"]["gold"] for s in seeds]),
                          "gold_peak": peak_along(curve_intervals(rl_curves, ("step",), ("kl", *SCORES), SCORES), "gold",
                                                  rl_curves),
                          "vs_bon_at_equal_kl": _rl_vs_bon(seeds)}
        cells.append(cell)
    result = {"seeds": list(cfg.seeds), "rm_sizes": list(cfg.rm_sizes), "policy_sizes": list(cfg.policy_sizes),
              "n_labels": list(cfg.n_labels), "rater_qualities": list(cfg.rater_qualities), "cells": cells}
    result["findings"] = findings(result, results, cfg)
    result["timings"] = {k: r["timings"] for k, r in results.items()}
    return result


def _cell(res: dict, rm_size, policy_size, n_labels, rater_quality) -> dict | None:
    return next((c for c in res["cells"] if (c["rm_size"], c["policy_size"], c["n_labels"], c["rater_quality"])
                 == (rm_size, policy_size, n_labels, rater_quality)), None)


def _paired_change(a: dict, b: dict, key: str, fit: str = "fit") -> dict | None:
    """Interval across seeds of b's fitted ``key`` minus a's; None (no claim) where a seed lacks it
    in either cell (for d*: where either cell has a censored seed)."""
    if fit not in a or fit not in b:
        return None
    pa, pb = a[fit][key]["per_seed"], b[fit][key]["per_seed"]
    if not pa or any(v is None for v in (*pa, *pb)):
        return None
    return seed_interval([y - x for x, y in zip(pa, pb)])


def _trend(res: dict, axis: str, key: str, fit: str = "fit", min_r2: float = 0.0) -> dict:
    """How ``key`` (a gold fit's alpha, beta or d*) changes from the smallest to the largest value of
    ``axis`` (rm_size / n_labels / policy_size / rater_quality), in every slice of the other axes: per slice the
    paired change across seeds and whether it moved; then how many slices moved up and down, and the
    worst fit (smallest R², any seed) the slices rest on. ``fit``: the cells' fit on the formula's
    KL ('fit') or on the KL measured on the pool ('fit_pool_kl'). A slice whose worst fit has R² below
    ``min_r2`` claims nothing (``gated_by_fit`` counts those whose interval alone would have moved)."""
    order = {"rm_size": res["rm_sizes"], "n_labels": res["n_labels"], "policy_size": res["policy_sizes"],
             "rater_quality": res["rater_qualities"]}[axis]
    if len(order) < 2:
        return {"slices": [], "up": 0, "down": 0, "no_claim": 0, "note": f"one value of {axis}: nothing to compare"}
    lo_value, hi_value = order[0], order[-1]
    others = [a for a in ("rm_size", "policy_size", "n_labels", "rater_quality") if a != axis]
    seen, slices = set(), []
    for c in res["cells"]:
        fixed = tuple(c[a] for a in others)
        if fixed in seen:
            continue
        seen.add(fixed)
        args = dict(zip(others, fixed))
        a = _cell(res, **{**args, axis: lo_value})
        b = _cell(res, **{**args, axis: hi_value})
        if a is None or b is None:
            continue
        change = _paired_change(a, b, key, fit)
        r2 = [v for c in (a, b) for v in c.get(fit, {}).get("r2", {}).get("per_seed", [])]
        # a seed's R² that is not finite (None on disk: gold flat at every d > 0, no variance for the
        # form to explain, or a failed fit) fails the gate wherever it stands in the list
        undefined = any(v is None or not math.isfinite(v) for v in r2)
        finite = [v for v in r2 if v is not None and math.isfinite(v)]
        worst = min(finite) if finite else None
        interval_moved = moved(change) if change else None
        # min_r2 0: no gate at all; no R² recorded: nothing to gate on
        well_fit = min_r2 <= 0 or not undefined and (worst is None or worst >= min_r2)
        slices.append({**args, "from": lo_value, "to": hi_value, "change": change,
                       "moved": interval_moved if well_fit else None, "min_r2": worst, "r2_undefined": undefined,
                       "gated_by_fit": interval_moved is not None and not well_fit})
    count = lambda d: sum(s["moved"] == d for s in slices)  # noqa: E731
    # With no true change, a 95% interval excludes 0 on one given side in about 2.5% of slices; the
    # slices share reward models and pools, so these counts are correlated, not independent trials.
    r2 = [s["min_r2"] for s in slices if s["min_r2"] is not None]
    return {"slices": slices, "up": count("up"), "down": count("down"),
            "no_claim": sum(s["moved"] is None for s in slices),
            # of no_claim, slices where a seed has no value to pair (for d*: censored, no maximum or
            # past the fitted range; for alpha and beta: a fit that failed)
            "seed_lacks_value": sum(s["change"] is None for s in slices),
            "min_r2": min(r2) if r2 else None,
            "min_r2_gate": min_r2,
            "gated_by_fit": sum(s["gated_by_fit"] for s in slices),
            # of gated_by_fit, slices where a seed's fit has no R² at all (gold flat at every d > 0)
            "gated_by_undefined_r2": sum(s["gated_by_fit"] and s["r2_undefined"] for s in slices),
            "expected_by_chance_per_side": round(0.025 * len(slices), 2)}


def findings(res: dict, results: dict, cfg: ScalingConfig) -> dict:
    """Plain statements computed from the fits (nothing typed in by hand)."""
    out = {}
    gate = cfg.min_fit_r2
    for axis in ("rm_size", "n_labels"):
        out[axis] = {key: _trend(res, axis, key, min_r2=gate) for key in ("alpha", "beta", "d_star")}
    out["policy_size"] = {key: _trend(res, "policy_size", key, min_r2=gate) for key in ("d_star", "alpha", "beta")}
    # The same on the KL measured on each policy's pool: bigger policies' samples may repeat differently.
    out["policy_size_pool_kl"] = {key: _trend(res, "policy_size", key, "fit_pool_kl", min_r2=gate)
                                  for key in ("d_star", "alpha", "beta")}
    out["rl_vs_bon"] = [{k: c[k] for k in ("rm_size", "policy_size", "n_labels", "rater_quality")}
                        | {"direction": c["rl"]["vs_bon_at_equal_kl"]["direction"],
                           "gold_gain_difference": c["rl"]["vs_bon_at_equal_kl"]["gold_gain_difference"]["mean"]}
                        for c in res["cells"] if "vs_bon_at_equal_kl" in c.get("rl", {})]
    # Every quality labels the same pairs and best-of-n reads the same pools: paired by seed.
    out["rater_quality_trend"] = {key: _trend(res, "rater_quality", key, min_r2=gate) for key in ("alpha", "beta", "d_star")}
    peaks = []
    for c in res["cells"]:
        p = c["gold_peak"]
        peaks.append({k: c[k] for k in ("rm_size", "policy_size", "n_labels", "rater_quality")}
                     | {"rises_above_base": p["rises_above_base"], "interior_peak": p["interior_peak"],
                        "ends_below_base": p["ends_below_base"], "peak_x": p["peak_x"]})
    out["rater_quality"] = {
        str(q): {"cells": sum(p["rater_quality"] == q for p in peaks),
                 "gold_rises": sum(p["rises_above_base"] for p in peaks if p["rater_quality"] == q),
                 "gold_peaks_then_falls": sum(p["interior_peak"] for p in peaks if p["rater_quality"] == q),
                 "gold_ends_below_base": sum(p["ends_below_base"] for p in peaks if p["rater_quality"] == q),
                 # each claim is a one-sided test at 2.5% (the rise Bonferroni-corrected for the chosen peak)
                 "expected_by_chance": round(0.025 * sum(p["rater_quality"] == q for p in peaks), 2),
                 # per label count, the labels its reward models were fitted on (mean over cells and seeds)
                 "n_train_pairs": {str(n): _mean_or_none([c["n_train_pairs"]["mean"] for c in res["cells"]
                                                          if c["rater_quality"] == q and c["n_labels"] == n])
                                   for n in res["n_labels"]}}
        for q in res["rater_qualities"]}
    out["peaks"] = peaks
    return out


def _mean_or_none(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def report(run_dir: Path) -> None:
    from proxygap.report.scaling import draw_report

    draw_report(run_dir)


EXPERIMENT = Experiment(
    name="scaling",
    description="Gao et al. 2022 §4 on the model family: RM size x policy size x RM labels x rater quality",
    config_cls=ScalingConfig,
    run_unit=run_unit,
    aggregate=aggregate_units,
    units=units,
    prepare=prepare,
    preflight=preflight,
    report=report,
    presets={
        "smoke": {"seeds": [0], "rm_sizes": ["xs", "s"], "policy_sizes": ["xs", "s"], "n_labels": [32, 64],
                  "rater_qualities": [0.0, 1.0], "rl_cells": "largest_labels", "n_eval_prompts": 8,
                  "rm.epochs": 1, "rm.max_new_tokens": 16, "bon.pool_size": 8, "bon.max_new_tokens": 16,
                  "rl.steps": 3, "rl.eval_every": 1, "rl.prompts_per_step": 4, "rl.max_new_tokens": 16},
        # Sized for at most 20 minutes on a 2-core CPU.
        "quick": {"seeds": [0, 1, 2], "rm_sizes": ["xs", "s", "m"], "policy_sizes": ["xs", "s", "m"],
                  "n_labels": [300, 1200], "rater_qualities": [0.0, 0.5, 1.0], "rl_cells": "reference",
                  "n_eval_prompts": 48, "bon.pool_size": 32, "rl.steps": 32, "rl.prompts_per_step": 8,
                  "rl.eval_every": 8},
        # For a GPU or a cluster; add l (not shipped) as a directory: --set rm_sizes=xs,s,m,DIR/model
        "full": {"seeds": [0, 1, 2, 3, 4], "rm_sizes": ["xs", "s", "m"], "policy_sizes": ["xs", "s", "m"],
                 "n_labels": [300, 1000, 3000, 10000], "rater_qualities": [0.0, 0.25, 0.5, 0.75, 1.0],
                 "rl_cells": "largest_labels", "n_eval_prompts": 256, "rm.epochs": 3, "bon.pool_size": 1024,
                 "rl.steps": 500, "rl.prompts_per_step": 32, "rl.eval_every": 25},
    },
)
