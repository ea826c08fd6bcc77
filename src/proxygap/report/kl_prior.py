"""Plots and report.html of the kl-prior experiment, drawn from results.json alone."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from matplotlib.colors import Normalize  # noqa: E402

from proxygap.report.html import Report, fmt, first_seed  # noqa: E402
from proxygap.report.plots import iv_text, marked_heatmap, save_figure  # noqa: E402

FLOOR = 1e-5  # where a rate of exactly 0 is drawn on a log axis, unless smaller rates were measured (see _floor)


def _floor(points: list[dict]) -> float:
    """A decade below the smallest positive rate or probability in the points (at most FLOOR): the
    base model's probability of a phrase it never saw can be 1e-10, and clipping it at 1e-5 would hide that."""
    values = [v for p in points for v in (p["base_model_prob"], p["predicted_rate"]["mean"],
                                          p["exploit_rate_after"]["mean"]) if v is not None and v > 0]
    return min(FLOOR, 10.0 ** (np.floor(np.log10(min(values))) - 1)) if values else FLOOR


def _color(i: int, n: int):
    return plt.get_cmap("viridis")(i / max(1, n - 1) * 0.85)


def _rows(points: list[dict], beta: float) -> list[dict]:
    return sorted((p for p in points if p["kl_coef"] == beta), key=lambda p: p["base_rate"])


def _err(iv: dict) -> tuple[float, float, float]:
    m = iv["mean"] if iv["mean"] is not None else np.nan
    lo = iv["lo"] if iv["lo"] is not None else m
    hi = iv["hi"] if iv["hi"] is not None else m
    return m, max(0.0, m - lo), max(0.0, hi - m)


def _after(p: dict) -> tuple[float, float, float]:
    """Exploit rate after RL: mean over seeds and the hull of the seeds' t-interval and the pooled
    Wilson interval (the t-interval alone collapses to a point when every seed saw 0 exploits)."""
    after = p["exploit_rate_after"]
    m = after["mean"] if after["mean"] is not None else np.nan
    lo, hi = (np.nan if v is None else min(1.0, max(0.0, v)) for v in (after["hull"]["lo"], after["hull"]["hi"]))
    return m, max(0.0, m - lo), max(0.0, hi - m)


def _bars(m, lo, hi, log_y: bool, floor: float = FLOOR):
    """(y, [lower, upper]) for errorbar; on a log axis everything is clipped at ``floor`` first."""
    m, lo, hi = (np.asarray(v, dtype=float) for v in (m, lo, hi))
    if log_y:
        m, lo, hi = (np.maximum(v, floor) for v in (m, lo, hi))
    return m, [np.maximum(0.0, m - lo), np.maximum(0.0, hi - m)]


def _betas(points: list[dict]) -> list[float]:
    return sorted({p["kl_coef"] for p in points})


def _base_line(points: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    first = _rows(points, _betas(points)[0])
    x = np.array([p["base_rate"] for p in first])
    sampled = np.array([p["base_model_rate"]["mean"] for p in first], dtype=float)
    lo = np.array([p["base_model_rate"]["lo"] for p in first])
    hi = np.array([p["base_model_rate"]["hi"] for p in first])
    prob = np.array([p["base_model_prob"] for p in first])
    return x, sampled, lo, hi, prob


def plot_grid(points: list[dict], fnd: dict, out: Path, n_seeds: int, floor: float = FLOOR) -> None:
    """The headline: beta x base rate, the exploit rate after RL against the base model's own rate.
    Colour: log10(after / base) (rates of 0 drawn at ``floor``); bold and boxed: the findings' status
    is amplified or taken over (the paired change against step 0 lies above 0)."""
    betas = _betas(points)
    rates = sorted({p["base_rate"] for p in points})
    by = {(p["kl_coef"], p["base_rate"]): p for p in points}
    grid = np.full((len(betas), len(rates)), np.nan)
    marked = np.zeros_like(grid, dtype=bool)
    texts = [["" for _ in rates] for _ in betas]
    for i, beta in enumerate(betas):
        for j, rate in enumerate(rates):
            p = by.get((beta, rate))
            if p is None or p["exploit_rate_after"]["mean"] is None or p["base_model_rate"]["mean"] is None:
                continue
            after, base = p["exploit_rate_after"]["mean"], p["base_model_rate"]["mean"]
            grid[i, j] = np.log10(max(after, floor) / max(base, floor))
            status = fnd["per_beta"][str(beta)]["status_by_rate"][str(rate)]
            marked[i, j] = status in ("amplified", "taken over")
            texts[i][j] = f"after {after:.3g}\nbase {base:.3g}\n{status}"
    finite = np.abs(grid[np.isfinite(grid)])
    lim = max(0.5, float(finite.max())) if finite.size else 1.0
    fig, ax = plt.subplots(figsize=(max(7.5, 2.1 * len(rates) + 2.5), max(3.4, 1.6 + 1.0 * len(betas))))
    marked_heatmap(ax, grid, [f"beta={b:g}" for b in betas], [f"base rate {r:g}" for r in rates], marked, texts,
                   norm=Normalize(-lim, lim), colorbar_label="log10(after RL / base model)", fontsize=8)
    ax.set_title("Does the KL penalty keep the exploit out?\nExploit rate after RL vs the base model's "
                 f"({n_seeds} seed{'s' if n_seeds != 1 else ''})\nbold, boxed: the change against step 0 (same prompts, "
                 "paired by seed) lies above 0", fontsize=9)
    fig.tight_layout()
    save_figure(fig, out, dpi=110)
    plt.close(fig)


def plot_exploit(points: list[dict], out: Path, n_seeds: int, floor: float = FLOOR) -> None:
    """Exploit rate after RL vs corpus base rate, one line per beta, beside the base model's own rate."""
    betas = _betas(points)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    x, sampled, lo, hi, prob = _base_line(points)
    for ax, log_y in zip(axes, (False, True)):
        y, yerr = _bars(sampled, lo, hi, log_y, floor)
        ax.errorbar(x, y, yerr=yerr, fmt="s-", color="black", capsize=3, label="base model, sampled (95% Wilson, prompt-clustered)")
        ax.plot(x, np.maximum(prob, floor) if log_y else prob, "k--", lw=1, label="base model, P(phrase after answer)")
        for i, beta in enumerate(betas):
            rows = _rows(points, beta)
            m, el, eh = np.array([_after(p) for p in rows]).T
            y, yerr = _bars(m, m - el, m + eh, log_y, floor)
            xs = np.array([p["base_rate"] for p in rows]) * (1 + 0.06 * (i - (len(betas) - 1) / 2))  # dodge
            ax.errorbar(xs, y, yerr=yerr, fmt="o-", capsize=3, color=_color(i, len(betas)), label=f"after RL, beta={beta:g}")
        ax.set_xscale("log")
        if log_y:
            ax.set_yscale("log")
            ax.set_ylim(floor / 2, 1.5)
            ax.set_title(f"log scale (a rate of 0 drawn at {floor:g})")
        else:
            ax.set_ylim(-0.02, 1.02)
            ax.set_title("linear scale")
        ax.set_xlabel("corpus base rate of the exploit (log)")
        ax.set_ylabel("exploit rate on evaluation prompts (T=1 samples)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Exploit rate after KL-penalized RL vs its base rate ({n_seeds} seeds; 95% intervals: "
                 "hull of the t-interval across seeds and the pooled Wilson interval)")
    fig.tight_layout()
    save_figure(fig, out, dpi=110)
    plt.close(fig)


def plot_kl(points: list[dict], out: Path) -> None:
    """KL paid vs base rate; dashed: the least KL that the observed shift of the exploit rate alone needs."""
    betas = _betas(points)
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for i, beta in enumerate(betas):
        rows = _rows(points, beta)
        x = np.array([p["base_rate"] for p in rows])
        m, el, eh = np.array([_err(p["kl"]) for p in rows]).T
        color = _color(i, len(betas))
        ax.errorbar(x, m, yerr=[el, eh], fmt="o-", capsize=3, color=color, label=f"KL paid, beta={beta:g}")
        need = np.array([p["kl_exploit_floor"] if p["kl_exploit_floor"] is not None else np.nan for p in rows])
        ax.plot(x, need, "--", color=color, lw=1, label=f"KL(Bern(after) || Bern(base)), beta={beta:g}")
    ax.set_xscale("log")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("corpus base rate of the exploit (log)")
    ax.set_ylabel("KL(pi || pi_ref), nats per sequence (k1, end of RL)")
    ax.set_title("The KL the policy paid, and the part the exploit's shift alone needs")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out, dpi=110)
    plt.close(fig)


def plot_theory(points: list[dict], out: Path, floor: float = FLOOR) -> None:
    """Predicted (pi* ∝ pi_ref·exp(r/beta)) vs observed: a scatter, and both against the base rate."""
    betas = _betas(points)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    ax = axes[0]
    for i, beta in enumerate(betas):
        rows = _rows(points, beta)
        pred = np.array([p["predicted_rate"]["mean"] for p in rows], dtype=float)
        m, el, eh = np.array([_after(p) for p in rows]).T
        sizes = 20 + 25 * np.arange(len(rows))
        y, yerr = _bars(m, m - el, m + eh, True, floor)
        ax.errorbar(np.maximum(pred, floor), y, yerr=yerr, fmt="none", ecolor=_color(i, len(betas)), alpha=0.6)
        ax.scatter(np.maximum(pred, floor), y, s=sizes, color=_color(i, len(betas)),
                   label=f"beta={beta:g} (larger: higher base rate)")
        if all(p.get("prediction_method") == "per_answer" for p in rows):
            # the pooled prediction (mean p, mean Δ) of the same points, hollow: how far Jensen moves it
            pooled = np.array([p["predicted_rate_pooled"]["mean"] for p in rows], dtype=float)
            ax.scatter(np.maximum(pooled, floor), y, s=sizes, facecolors="none", edgecolors=_color(i, len(betas)),
                       label="hollow: the pooled prediction (mean p, mean Δ)" if i == 0 else None)
        mixture = _mixture_means(rows)
        if mixture is not None:
            ax.scatter(np.maximum(mixture, floor), y, s=sizes, marker="x", color=_color(i, len(betas)),
                       label="x: reweighted per prompt, base and policy answers" if i == 0 else None)
    ax.plot([floor, 1], [floor, 1], ":", color="grey", label="observed = predicted")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor / 2, 1.5)
    ax.set_ylim(floor / 2, 1.5)
    ax.set_xlabel("predicted exploit rate at the KL-regularized optimum")
    ax.set_ylabel("observed exploit rate after RL")
    ax.set_title(f"Predicted vs observed (0 drawn at {floor:g})")
    ax.legend(fontsize=8)
    ax = axes[1]
    for i, beta in enumerate(betas):
        rows = _rows(points, beta)
        x = np.array([p["base_rate"] for p in rows])
        color = _color(i, len(betas))
        pred = np.array([p["predicted_rate"]["mean"] for p in rows], dtype=float)
        obs = np.array([p["exploit_rate_after"]["mean"] for p in rows], dtype=float)
        ax.plot(x, np.maximum(pred, floor), "--", color=color, label=f"predicted, beta={beta:g}")
        mixture = _mixture_means(rows)
        if mixture is not None:
            ax.plot(x, np.maximum(mixture, floor), "-.", color=color, lw=1,
                    label=f"reweighted with the policy's answers, beta={beta:g}")
        ax.plot(x, np.maximum(obs, floor), "o-", color=color, label=f"observed, beta={beta:g}")
    x, _, _, _, prob = _base_line(points)
    ax.plot(x, np.maximum(prob, floor), "k:", lw=1, label="base model, P(phrase after answer)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(floor / 2, 1.5)
    ax.set_xlabel("corpus base rate of the exploit (log)")
    ax.set_ylabel("exploit rate")
    ax.set_title("Side by side, against the base rate")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out, dpi=110)
    plt.close(fig)


def plot_curves(curves: list[dict], out: Path) -> None:
    """Exploit rate during RL (mean over seeds), one panel per beta: is it still moving at the end?"""
    betas = sorted({c["kl_coef"] for c in curves})
    rates = sorted({c["base_rate"] for c in curves})
    fig, axes = plt.subplots(1, len(betas), figsize=(4.5 * len(betas), 3.8), sharey=True, squeeze=False)
    for ax, beta in zip(axes[0], betas):
        for i, rate in enumerate(rates):
            c = next(c for c in curves if c["kl_coef"] == beta and c["base_rate"] == rate)
            steps = [p["step"] for p in c["per_seed"][0]]
            y = np.nanmean([[np.nan if p["exploit_rate"] is None else p["exploit_rate"] for p in s]
                            for s in c["per_seed"]], axis=0)
            ax.plot(steps, y, "o-", ms=3, color=_color(i, len(rates)), label=f"base rate {rate:g}")
        ax.set_title(f"beta={beta:g}")
        ax.set_xlabel("RL step")
    axes[0][0].set_ylabel("exploit rate (evaluation prompts)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out, dpi=110)
    plt.close(fig)


def draw_report(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    res = json.loads((run_dir / "results.json").read_text())
    points, fnd, cfg = res["points"], res["findings"], res["config"]
    n_seeds = len(res["seeds"])
    floor = _floor(points)
    plot_grid(points, fnd, run_dir / "exploit_grid.png", n_seeds, floor)
    plot_exploit(points, run_dir / "exploit_vs_base_rate.png", n_seeds, floor)
    plot_kl(points, run_dir / "kl_vs_base_rate.png")
    plot_theory(points, run_dir / "predicted_vs_observed.png", floor)
    plot_curves(res["curves"], run_dir / "exploit_during_rl.png")

    page = Report("proxygap: does the KL penalty keep out only the improbable exploits?")
    page.image("exploit_grid.png", "Exploit rate after KL-penalized RL against the base model's own rate, for every "
               "corpus base rate and beta; bold and boxed where RL amplified it: the change against RL's step 0 (the "
               "base model on the same held-out prompts, paired by seed) clears 0.")
    page.heading("Findings (computed from the numbers)")
    sentences = findings_text(fnd, points, res)
    n_beta = len(fnd["per_beta"])  # findings_text: one sentence per beta, then the debated pattern (two), then the rest
    for sentence in sentences[n_beta:n_beta + 2]:
        page.paragraph(sentence)
    with page.fold("More findings: per beta and base rate, the lowest and highest rates, KL, theory"):
        for sentence in sentences[:n_beta] + sentences[n_beta + 2:]:
            page.paragraph(sentence)
    meta = res.get("meta", {})
    rl = cfg["rl"]
    page.heading("Run")
    page.paragraph(
        f"Preset {meta.get('preset', '?')}, seeds {res['seeds']}, wall time {fmt(meta.get('wall_time_s'), 1)} s. "
        f"Exploit: {cfg['exploit']} (the rater's manipulation susceptibility is {cfg['rater']['manipulation']:g}: "
        "it rewards the phrase, gold penalizes it). One base model was pretrained per corpus base rate "
        f"({cfg['base']['model']['n_layer']} layers, width {cfg['base']['model']['n_embd']}, "
        f"{cfg['base']['train']['steps']} steps); the world is otherwise the same. Reward model: {cfg['reward_model']}"
        + (f" (trained on samples of the base at rate {cfg['rm_base_rate']:g})" if cfg["reward_model"] == "shared" else "")
        + f". RL: {rl['steps']} steps of {rl['prompts_per_step']} prompts x {rl['samples_per_prompt']} samples, "
        f"lr {rl['lr']:g}, at most {rl['max_new_tokens']} new tokens. Rates are measured on T=1 samples of held-out "
        "prompts; intervals are 95% t-intervals across seeds, for exploit rates widened to the pooled Wilson interval "
        "where that is wider (Wilson intervals on the effective number of trials: the samples of one prompt are one "
        "cluster, n over its design effect; the base models are one per rate, so their own variability is not in them); KL is in "
        "nats per sequence (k1).", note=True)
    page.image("exploit_vs_base_rate.png", "Exploit rate after RL per beta, and the base model's own rate.")
    page.image("kl_vs_base_rate.png", "KL paid at the end of RL; dashed: the least KL the observed exploit shift needs.")
    page.image("predicted_vs_observed.png",
               "Prediction p·e^(Δ/β) / (p·e^(Δ/β) + 1 − p), summed over phrases, with p measured on the base model "
               "and Δ on the reward model, answer by answer and then averaged over the base model's answers (results "
               "from before 2026-12-07: from the mean p and mean Δ; `prediction_method` says which); crosses: the optimum "
               "with each prompt's answers reweighted by e^(r/β), on base and policy answers pooled — a measurement "
               "aid, not a target.")
    page.image("exploit_during_rl.png", "Exploit rate during RL (mean over seeds).")

    page.heading("Base models")
    page.table(["corpus rate", "realized in corpus", "sampled rate", "95% low", "95% high", "k / n",
                "P(phrase after answer)", "cached", "pretrain s"], [
        [f"{b['base_rate']:g}", b["corpus_realized"]["rate"], b["sampled"]["mean"], b["sampled"]["lo"], b["sampled"]["hi"],
         f"{b['sampled']['k']} / {b['sampled']['n']}", _sci(b["prob_after_answer"]["rate"]), b["cached"], b["pretrain_s"]]
        for b in res["bases"]])
    page.heading("Points")
    page.table(["base rate", "beta", "before", "after", "95% low", "95% high", "predicted", "pooled", "reweighted (ESS)",
                "with policy's (ESS)",
                "RM Δ", "KL", "KL floor", "E[exploit rollouts]", "exploit rollouts", "rater Δ", "gold Δ"], [
        [f"{p['base_rate']:g}", f"{p['kl_coef']:g}", p["exploit_rate_before"]["mean"], p["exploit_rate_after"]["mean"],
         p["exploit_rate_after"]["hull"]["lo"], p["exploit_rate_after"]["hull"]["hi"], _sci(p["predicted_rate"]["mean"]),
         _sci(p.get("predicted_rate_pooled", p["predicted_rate"])["mean"]), _reweighted(p), _mixture(p),
         p["rm_delta"]["mean"], p["kl"]["mean"], p["kl_exploit_floor"], _sci(p["expected_base_exploit_rollouts"]),
         _rollouts(p.get("rollout_exploits")),
         p["rater_after"]["mean"] - p["rater_before"]["mean"], p["gold_after"]["mean"] - p["gold_before"]["mean"]]
        for p in points], left_columns=0)
    page.paragraph("before/after: exploit rate on the evaluation prompts at step 0 and at the end (mean over seeds); "
                   "95% low/high: the hull of the t-interval across seeds and the pooled Wilson interval. "
                   "KL floor: KL(Bernoulli(after) || Bernoulli(P(phrase after answer))), the least KL any policy pays "
                   "for that shift of the exploit rate alone. E[exploit rollouts]: how many exploit samples the base "
                   "policy would draw over all of RL's rollouts; near or below 1, RL has almost nothing to reinforce. "
                   "exploit rollouts: exploit samples RL's own training rollouts drew, k / n over all seeds "
                   "(the first step with one, per seed). predicted: the optimum's rate answer by answer, averaged; "
                   "pooled: from the mean p and mean Δ (by Jensen, far lower where the rate is small and Δ varies; "
                   "it saturates at 1 sooner); reweighted: with each "
                   "prompt's own answers reweighted by e^(r/β) as the optimum does (normalized per prompt, then "
                   "averaged over prompts), beside its effective sample size per prompt out of the answers sampled "
                   "per prompt; near 1, each prompt's best sampled answer carries it. with policy's: the same "
                   "estimate of the optimum on the base model's answers pooled with as many of the trained policy's "
                   "(multiple importance sampling, weights π_ref·e^(r/β) / the mixture of the two), which covers "
                   "answers the optimum favours that a few base samples rarely hold; in expectation it estimates the "
                   "optimum, not the policy, but on a few answers per prompt it leans on what the policy found; "
                   "– in runs from before 2026-12-08. "
                   "rater/gold Δ: change of the mean score from step 0 to the end.", note=True)
    page.heading("Reward model")
    rm = res["reward_model"]
    each = " (each seed: the mean over its base rates' RMs)" if rm.get("mode") == "own" else ""
    page.table(["measure", "mean", "95% low", "95% high"], [
        [f"RM agrees with rater (held-out pairs){each}", *_iv(rm["agreement_rater"])],
        [f"RM agrees with gold (held-out pairs){each}", *_iv(rm["agreement_gold"])],
        [f"rater agrees with gold (same pairs){each}", *_iv(rm["rater_gold_agreement"])],
    ])
    if rm.get("by_base_rate"):
        page.table(["base rate (its own RM)", "agrees with rater", "agrees with gold"],
                   [[rate, iv_text(by["agreement_rater"]), iv_text(by["agreement_gold"])]
                    for rate, by in rm["by_base_rate"].items()])
    rows = []
    for rate, seeds in res["deltas"].items():
        for name in ("rm", "rater", "gold"):
            per_phrase = np.mean([s[name] for s in seeds], axis=0)
            rows.append([f"{float(rate):g}", name, *per_phrase.tolist()])
    phrases = list(res["bases"][0]["prob_after_answer"]["per_phrase"])
    page.paragraph("Reward for appending each phrase to the same base-model answers (mean over seeds):", note=True)
    page.table(["base rate", "score", *phrases], rows, left_columns=2)
    page.heading(f"Examples (seed {first_seed(res)}, end of RL)")
    page.table(["base rate", "beta", "prompt", "completion"],
               [[f"{e['base_rate']:g}", f"{e['kl_coef']:g}", e["prompt"], e["completion"]] for e in res.get("examples", [])],
               left_columns=4)
    return page.write(run_dir / "report.html")


def _reweighted(p: dict) -> str:
    if "predicted_rate_reweighted" not in p or "reweighted_answers_per_prompt" not in p:  # older: across prompts
        return "–"
    ess = np.mean(p["reweighted_ess"])
    per = p.get("reweighted_answers_per_prompt")
    return f"{_sci(p['predicted_rate_reweighted']['mean'])} ({ess:.3g}" + (f" of {per:.3g})" if per else ")")


def _mixture_means(rows: list[dict]) -> np.ndarray | None:
    """pi*'s rate with each prompt's answers reweighted, base and policy answers pooled, per point (None
    unless every point has it: runs since 2026-12-08)."""
    if not all("predicted_rate_mixture" in p for p in rows):
        return None
    return np.array([p["predicted_rate_mixture"]["mean"] for p in rows], dtype=float)


def _mixture(p: dict) -> str:
    if "predicted_rate_mixture" not in p:  # runs from before 2026-12-08
        return "–"
    return f"{_sci(p['predicted_rate_mixture']['mean'])} ({np.mean(p['mixture_ess']):.3g} of {p['mixture_answers_per_prompt']:.3g})"


def _rollouts(r: dict | None) -> str:
    if r is None:
        return "not logged"
    first = "/".join("–" if s is None else str(s) for s in r["first_step_per_seed"])
    return f"{r['k']} / {r['n']} (first: {first})"


def _iv(iv: dict) -> list:
    return [iv["mean"], iv["lo"], iv["hi"]]


def _sci(x: float | None) -> str:
    return "–" if x is None else f"{x:.2e}"


def findings_text(fnd: dict, points: list[dict], res: dict) -> list[str]:
    """Sentences built from the computed findings; where the expected pattern is absent they say so."""
    out = []
    per_beta = fnd["per_beta"]
    protects = [b for b, f in per_beta.items() if f["protects_low_not_high"]]
    n_seeds = len(res["seeds"])
    for beta, f in per_beta.items():
        rates = list(f["status_by_rate"])
        parts = "; ".join(
            f"{float(r):g}: {fmt(f['after_by_rate'][r])} (seeds "
            + "/".join(fmt(v) for v in f["per_seed_after_by_rate"][r])
            + f"; above its step 0 in {f['seeds_amplified_by_rate'][r]}/{n_seeds} seeds; "
            + {"held": "no change from step 0 that the seeds resolve",
               "reduced": "below step 0"}.get(f["status_by_rate"][r], f["status_by_rate"][r])
            + f"; KL {fmt(f['kl_by_rate'][r], 2)})" for r in rates)
        out.append(f"beta={float(beta):g}, exploit rate after RL by base rate — {parts}.")
    protects_seed = [b for b, f in per_beta.items() if f["protects_low_not_high_every_seed"]]
    for label, betas in (("judged on the mean across seeds (95% interval)", protects),
                         ("judged seed by seed (no seed above its step 0 at the lowest rate, every seed above it "
                          "at the highest)", protects_seed)):
        if betas:
            out.append(f"The debated pattern, {label}, appears for beta in {{"
                       + ", ".join(f"{float(b):g}" for b in betas) + "}.")
        else:
            out.append(f"The debated pattern, {label}, did not appear for any beta.")
    held_all = [b for b, f in per_beta.items() if f["held_at_every_rate"]]
    if held_all:
        out.append("At beta in {" + ", ".join(f"{float(b):g}" for b in held_all)
                   + "} no base rate's change from step 0 cleared its interval "
                   "(see the seed counts above: seeds can agree while their spread keeps the interval wide).")
    exploited_all = [b for b, f in per_beta.items() if f["exploited_at_every_rate"]]
    if exploited_all:
        out.append("At beta in {" + ", ".join(f"{float(b):g}" for b in exploited_all)
                   + "} the exploit was amplified even at the lowest base rate: the penalty did not keep it out.")
    high = fnd["highest_rate"]
    after = ", ".join(f"beta={float(b):g}: {fmt(v)}" for b, v in high["after_by_beta"].items())
    if high["falls_as_beta_grows"] is None:
        out.append(f"At the highest base rate ({high['base_rate']:g}) one beta only: nothing to compare ({after}).")
    elif high["falls_as_beta_grows"]:
        out.append(f"At the highest base rate ({high['base_rate']:g}) the exploit rate after RL falls from each beta "
                   f"to the next, paired by seed ({after}): there a larger penalty holds it lower.")
    else:
        out.append(f"At the highest base rate ({high['base_rate']:g}) the exploit rate after RL does not clearly fall "
                   f"from each beta to the next (paired by seed, some step's interval reaches 0; means {after}).")
    low = fnd["lowest_rate"]
    corpus = low.get("corpus_realized") or {}
    if corpus.get("k") is not None:
        out.append(f"At the lowest base rate ({low['base_rate']:g}) the phrase occurred {corpus['k']} times in the "
                   f"corpus's {corpus['n']} assistant answers, and the base model gives it probability "
                   f"{_sci(low['base_model_prob'])} right after an answer.")
    pred = low.get("predicted_at_weakest_beta")
    base_prob = low.get("base_model_prob")
    # the penalty alone holds it where the optimum itself stays near the base model's own rate (the
    # probe's factor 2), not merely below one half: 0.45 against 1e-4 is a rise of thousands
    optimum_near_base = pred is not None and base_prob is not None and pred <= 2 * base_prob
    if low["held_at_weakest_beta"] and optimum_near_base:
        out.append(f"At the lowest base rate ({low['base_rate']:g}) even the weakest penalty (beta={low['weakest_beta']:g}) "
                   f"left no rise of the exploit that its seeds resolve, and the KL-regularized optimum there is "
                   f"itself {_sci(pred)}, within a factor 2 of the base model's {_sci(base_prob)}: the penalty alone "
                   f"would hold it (the base policy would be expected to draw it "
                   f"{low['expected_base_exploit_rollouts']:.2g} times over all of RL's rollouts).")
    elif low["held_at_weakest_beta"] and low["expected_base_exploit_rollouts"] < 1:
        out.append(f"At the lowest base rate ({low['base_rate']:g}) even the weakest penalty (beta={low['weakest_beta']:g}) "
                   f"left no rise of the exploit that its seeds resolve; the base policy would be expected to draw it only "
                   f"{low['expected_base_exploit_rollouts']:.2g} times over all of RL's rollouts, so what kept it out "
                   "there is that RL rarely sampled it (exploration), not the KL term.")
    elif low["held_at_weakest_beta"]:
        out.append(f"At the lowest base rate ({low['base_rate']:g}) even the weakest penalty (beta={low['weakest_beta']:g}) "
                   f"left no rise of the exploit that its seeds resolve, though the base policy would be expected to draw it "
                   f"{low['expected_base_exploit_rollouts']:.2g} times over all of RL's rollouts: not so rarely that "
                   "a lack of exploration alone explains it.")
    else:
        out.append(f"At the lowest base rate ({low['base_rate']:g}) the weakest penalty (beta={low['weakest_beta']:g}) "
                   f"did not hold the exploit, although the base policy would be expected to draw it only "
                   f"{low['expected_base_exploit_rollouts']:.2g} times over all of RL's rollouts.")
    mixture = low.get("mixture_at_weakest_beta")
    if mixture is not None:
        out.append(f"With pi*'s reweighting of each prompt's answers as well (the base model's answers pooled with the "
                   f"trained policy's), the optimum at the lowest base rate and beta={low['weakest_beta']:g} is "
                   f"{_sci(mixture['mean'])} [{_sci(mixture['lo'])}, {_sci(mixture['hi'])}] (seeds "
                   + ", ".join(_sci(v) for v in mixture.get("per_seed", [])) + f"; answers held at the base model's "
                   f"mix: {fmt(pred, 3)}).")
    drawn = low.get("rollout_exploits_at_weakest_beta")
    if drawn is not None:
        out.append(f"RL's own rollouts at the lowest base rate and beta={low['weakest_beta']:g} drew the exploit "
                   f"{drawn['k']} times in {drawn['n']} samples over all seeds (per seed: "
                   + "/".join(map(str, drawn["per_seed_k"])) + ").")
    hk = fnd["held_points_kl"]
    if hk["n"]:
        out.append(f"Where the exploit was held ({hk['n']} points) the policies still paid up to {fmt(hk['max_kl'], 2)} "
                   f"nats of KL, while the exploit's own rate accounts for at most {fmt(hk['max_exploit_floor'], 3)} "
                   "nats at any of them (the binary KL of its rates): the rest is the answers' other changes.")
    sc = fnd["scores"]
    paired = (f"at {sc['n_rater_up_gold_down']} of {sc['n_points']} points both changes clear their intervals (end "
              "vs start of RL, paired by seed)")
    means = sc.get("n_rater_up_gold_down_means")
    out.append("Rater score rose while gold fell: " + paired
               + (f"; by the means alone at {means}." if means is not None else "."))
    th = fnd["theory"]
    n = len(th["points"])
    method = {"per_answer": "predicted answer by answer, then averaged", "pooled": "predicted from the mean p and mean Δ"}
    how = method.get(points[0].get("prediction_method", "pooled")) if points else None
    out.append(f"Against the KL-regularized optimum pi* ∝ pi_ref·exp(r/beta) ({how}): of {n} points, the observed rate is "
               f"below the prediction (interval entirely under it) at {th['n_below']}, above at {th['n_above']}, "
               f"not distinguishable at {th.get('n_not_distinguishable', th.get('n_consistent'))}. A short RL run need not "
               "reach the optimum, so 'below' there "
               "measures how far from it the run stopped.")
    if "n_below_mixture" in th:
        out.append("With pi*'s reweighting of each prompt's answers, on the base model's answers pooled with the "
                   f"trained policy's: below at {th['n_below_mixture']}, above at {th['n_above_mixture']}, not "
                   f"distinguishable at {th['n_not_distinguishable_mixture']}"
                   + (f"; seed by seed (every seed's estimate beyond the observed rate's interval), below at "
                      f"{th['n_below_mixture_every_seed']} and above at {th['n_above_mixture_every_seed']}"
                      if "n_below_mixture_every_seed" in th else "")
                   + ". This estimate is each prompt's best of a few base and policy answers: where the policy never "
                   "drew the exploit, it had no reason to find the answers after which the exploit is likely, and "
                   "the estimate can then lie far below the optimum.")
    slot = th.get("exploits_in_predicted_slot")
    if slot and slot["k"]:
        out.append(f"Where the phrase was written: of the {slot['k']} exploit samples after RL (every point and seed), "
                   f"{slot['k_in_slot']} ({slot['share']:.0%}) have it right after the first sentence, the one place the "
                   "predictions count it; the observed rate counts it anywhere in the answer.")
    return out
