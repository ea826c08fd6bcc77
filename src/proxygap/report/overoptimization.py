"""Plots and report.html of the overoptimization experiment, drawn from results.json alone."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from proxygap.report.html import Report, fmt, first_seed  # noqa: E402
from proxygap.report.plots import iv_text, save_figure  # noqa: E402

COLORS = {"rm": "tab:blue", "rater": "tab:orange", "gold": "tab:green"}
LABELS = {"rm": "reward model (optimized)", "rater": "rater (human eval)", "gold": "gold (truth)"}


def _m(x) -> float:
    """A point's number: an interval's mean (RL's measured KL) or the number itself (best-of-n's n, KL)."""
    if isinstance(x, dict):
        x = x["mean"]
    return np.nan if x is None else float(x)


def _curve(points: list[dict], name: str, kl_key: str = "kl"):
    """sqrt(KL), the mean gain over the base, and its interval (from per-seed paired gains)."""
    d = np.sqrt(np.maximum([_m(p[kl_key]) for p in points], 0.0))
    gain = [p[f"{name}_gain"] for p in points]
    y = np.array([_m(g) for g in gain])
    lo = np.array([_m(g["lo"]) for g in gain])
    hi = np.array([_m(g["hi"]) for g in gain])
    return d, y, lo, hi


def _with_gains(res: dict) -> dict:
    """A schema-1 file has no paired ``<score>_gain``: fill each from the mean curve less its base
    (the seeds' interval shifted alike, not the paired one), so an old run still draws."""
    def fill(points: list[dict]) -> None:
        for name in ("rm", "rater", "gold"):
            if not points or all(f"{name}_gain" in p for p in points) or name not in points[0]:
                continue
            base = _m(points[0][name])
            for p in points:
                iv = p[name] if isinstance(p[name], dict) else {"mean": p[name]}
                p[f"{name}_gain"] = {k: None if iv.get(k) is None else iv[k] - base for k in ("mean", "lo", "hi")}

    fill(res.get("bon", {}).get("points", []))
    for run in [*res.get("rl", []), *res.get("dpo", []), *res.get("ipo", [])]:
        fill(run.get("points", []))
        if run.get("points"):
            run["final"] = {k: v for k, v in run["points"][-1].items() if k != "step"}
    return res


def _claim(p: dict, n_seeds: int) -> str:
    """What the seeds support saying about gold along one curve (from findings' _peak)."""
    if p["interior_peak"]:
        return "gold peaks, then falls"
    if p["rises_above_base"]:
        return "gold rises above the base"
    if p["ends_below_base"]:
        return "gold ends below the base"
    return "no clear gold change (1 seed: no interval)" if n_seeds < 2 else "no clear gold change"


def plot_headline(res: dict, path: Path) -> None:
    """The question at a glance: RM, rater and gold gain vs sqrt(KL), one panel per optimizer
    (best-of-n, then RL at each beta), with 95% intervals; the claimed gold peak starred."""
    bon, rl, fnd = res["bon"], res["rl"], res["findings"]
    n_seeds = len(res["seeds"])
    panels = [("best-of-n", bon["points"], fnd["bon"])] + [
        (f"RL beta={r['kl_coef']:g}", r["points"], fnd["rl"][str(r["kl_coef"])]) for r in rl]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 4.2), sharey=True, squeeze=False)
    for ax, (label, points, peak) in zip(axes[0], panels):
        for name in ("rm", "rater", "gold"):
            d, y, lo, hi = _curve(points, name)
            ax.plot(d, y, "o-", ms=3, color=COLORS[name], label=LABELS[name])
            ax.fill_between(d, lo, hi, color=COLORS[name], alpha=0.15)
        if label == "best-of-n" and points and "kl_pool" in points[0]:
            # The same gold gains at the KL best-of-n pays on this pool (repeats make it less than log n - (n-1)/n).
            d, y, _, _ = _curve(points, "gold", "kl_pool")
            ax.plot(d, y, "s--", ms=3, color=COLORS["gold"], alpha=0.6, label="gold vs measured KL (pool)")
        if peak["interior_peak"] or peak["rises_above_base"]:
            ax.plot([np.sqrt(peak["peak_kl"])], [peak["peak_gold"] - peak["start_gold"]], "*", ms=14,
                    color=COLORS["gold"], mec="black")
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_title(f"{label}: {_claim(peak, n_seeds)}", fontsize=9)
        ax.set_xlabel("d = sqrt(KL), KL in nats")
    axes[0][0].set_ylabel("score − base-model score")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"Does gold follow the optimized reward model? ({n_seeds} seed{'s' if n_seeds != 1 else ''}; "
                 "bands: 95% t-intervals of the per-seed gain; star: a gold peak the intervals support)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def _fit_line(ax, fit: dict | None, form: str, d_max: float, color: str) -> None:
    if not fit or "alpha" not in fit:
        return
    d = np.linspace(1e-3, d_max, 200)
    y = d * (fit["alpha"] - fit["beta"] * (d if form == "bon" else np.log(d)))
    ax.plot(d, y, "--", color=color, lw=1, alpha=0.8)


def plot_direct(res: dict, path: Path) -> None:
    """DPO and IPO curves (one per beta) against sqrt(KL), with best-of-n (grey) and RL (thin) on the same axes."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), sharex=True)
    cmap = {"dpo": plt.get_cmap("Oranges"), "ipo": plt.get_cmap("Purples")}
    for ax, name in zip(axes, ("rm", "rater", "gold")):
        d, y, _, _ = _curve(res["bon"]["points"], name)
        ax.plot(d, y, "s-", color="grey", label="best-of-n", alpha=0.7)
        for run in res["rl"]:
            d, y, _, _ = _curve(run["points"], name)
            ax.plot(d, y, "-", color="tab:green", lw=0.8, alpha=0.6)
        for method in ("dpo", "ipo"):
            runs = res.get(method, [])
            for i, run in enumerate(runs):
                d, y, lo, hi = _curve(run["points"], name)
                ax.errorbar(d, y, yerr=[y - lo, hi - y], fmt="o-", ms=3, capsize=2,
                            color=cmap[method](0.45 + 0.5 * i / max(1, len(runs) - 1)),
                            label=f"{method.upper()} beta={run['beta']:g}")
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_title(LABELS[name])
        ax.set_xlabel("d = sqrt(KL)   (KL: nats per sequence, k1; thin green: RL)")
    axes[0].set_ylabel("score - base-model score")
    axes[0].legend(fontsize=7)
    fig.suptitle("Direct alignment on the RM's rater-labelled pairs beside best-of-n and RL on one KL axis (95% intervals)")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def draw_report(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    res = _with_gains(json.loads((run_dir / "results.json").read_text()))
    bon, rl, fnd = res["bon"], res["rl"], res["findings"]
    n_seeds = len(res["seeds"])

    # 1. Best-of-n ladder.
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in ("rm", "rater", "gold"):
        d, y, lo, hi = _curve(bon["points"], name)
        ax.plot(d, y, "o-", color=COLORS[name], label=LABELS[name])
        ax.fill_between(d, lo, hi, color=COLORS[name], alpha=0.15)
        _fit_line(ax, bon["fits"].get(name), "bon", d.max(), COLORS[name])
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("d = sqrt(KL)   (KL = log n - (n-1)/n nats: analytic, an upper bound when samples repeat)")
    ax.set_ylabel("score - base-model score")
    ax.set_title(f"Best-of-n: the Goodhart ladder ({n_seeds} seeds, 95% t-intervals; dashed: Gao fits)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, run_dir / "bon_ladder.png", dpi=110)
    plt.close(fig)

    # 2. RL ladder: one panel per score; thin lines are single seeds, thick lines their mean.
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), sharex=True)
    cmap = plt.get_cmap("viridis")
    for ax, name in zip(axes, ("rm", "rater", "gold")):
        d, y, _, _ = _curve(bon["points"], name)
        ax.plot(d, y, "s-", color="grey", label="best-of-n (mean)", alpha=0.7)
        for i, run in enumerate(rl):
            color = cmap(i / max(1, len(rl) - 1) * 0.85)
            for seed_points in run.get("per_seed", []):
                sd = np.sqrt(np.maximum([_m(p["kl"]) for p in seed_points], 0.0))
                ax.plot(sd, [p[name] - seed_points[0][name] for p in seed_points], "-", lw=0.8, alpha=0.35,
                        color=color)
            d, y, lo, hi = _curve(run["points"], name)
            ax.errorbar(d, y, yerr=[y - lo, hi - y], fmt="o-", ms=3, lw=2, capsize=2, color=color,
                        label=f"RL beta={run['kl_coef']:g}")
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_title(LABELS[name])
        ax.set_xlabel("d = sqrt(KL)   (KL: nats per sequence, k1)")
    axes[0].set_ylabel("score - base-model score")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"RL beside best-of-n on one KL axis ({n_seeds} seeds: thin = one seed, thick = mean with 95% interval)")
    fig.tight_layout()
    save_figure(fig, run_dir / "rl_ladder.png", dpi=110)
    plt.close(fig)

    # 3. End of training vs beta.
    fig, ax = plt.subplots(figsize=(7, 4.5))
    betas = [run["kl_coef"] for run in rl]
    xs = np.arange(len(betas))
    for k, name in enumerate(("rm", "rater", "gold")):
        final = [run["points"][-1][f"{name}_gain"] for run in rl]
        mean = np.array([_m(f) for f in final])
        lo = np.array([_m(f["lo"]) for f in final])
        hi = np.array([_m(f["hi"]) for f in final])
        ax.errorbar(xs + (k - 1) * 0.08, mean, yerr=[mean - lo, hi - mean], fmt="o-", capsize=3,
                    color=COLORS[name], label=LABELS[name])
    ax.set_xticks(xs, [f"{b:g}\nKL={_m(run['points'][-1]['kl']):.1f}" for b, run in zip(betas, rl)])
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("beta (KL coefficient); final KL in nats")
    ax.set_ylabel("score at end of training - base score")
    ax.set_title("End of RL vs KL penalty (cf. Stiennon et al. 2020, Fig. 5)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, run_dir / "gold_vs_beta.png", dpi=110)
    plt.close(fig)

    plot_headline(res, run_dir / "goodhart.png")
    has_direct = any(res.get(name) for name in ("dpo", "ipo"))
    if has_direct:
        plot_direct(res, run_dir / "direct_ladder.png")

    # The page: the headline picture, the findings (short), then the details.
    page = Report("proxygap: reward-model overoptimization")
    page.image("goodhart.png", "Reward model (optimized), rater (human eval) and gold (truth) vs sqrt(KL) for "
               "best-of-n and RL at each beta, scores relative to the base model.")
    page.heading("Findings (computed from the curves)")
    page.paragraph(_findings_text(fnd, res))
    meta = res.get("meta", {})
    page.paragraph(f"Preset {meta.get('preset', '?')}, seeds {res['seeds']}, model {res['model']}, "
                   f"wall time {fmt(meta.get('wall_time_s'), 1)} s. Scores are recentred so the base model scores 0; "
                   "intervals are 95% t-intervals across seeds; a rise, peak or fall of gold is claimed only where the "
                   "interval of the per-seed change excludes 0; KL is in nats per sequence.", note=True)
    page.image("bon_ladder.png", "Best-of-n: reward model, rater and gold vs sqrt(KL).")
    page.image("rl_ladder.png", "KL-penalized RL at several beta, best-of-n in grey.")
    page.image("gold_vs_beta.png", "Where each beta ends: the RM keeps rising with less penalty; does gold?")
    if has_direct:
        page.image("direct_ladder.png", "DPO and IPO on the RM's own rater-labelled pairs, beside best-of-n and RL "
                   "on one KL axis (the RM is logged, never used by them).")
        rows = []
        for name in ("dpo", "ipo"):
            for run in res.get(name, []):
                f = run["final"]
                p = fnd.get("direct", {}).get(f"{name} beta={run['beta']:g}", {})
                agree, vs_rm = run.get("implicit_agreement", {}), run.get("implicit_minus_rm_agreement", {})
                rows.append([name, run["beta"], _signed_iv(f["kl"]),
                             " / ".join(iv_text(agree.get(j)) for j in ("rater", "gold")),
                             " / ".join(_signed_iv(vs_rm[j]) if j in vs_rm else "n/a" for j in ("rater", "gold")),
                             _signed_iv(f["rm_gain"]),
                             _signed_iv(f["rater_gain"]), _signed_iv(f["gold_gain"]), _claim(p, n_seeds) if p else ""])
        page.table(["method", "beta", "final KL", "implicit RM agrees with rater / gold",
                    "minus the RM's agreement (paired)", "RM gain", "rater gain", "gold gain", "gold"], rows,
                   left_columns=2)
    page.heading("Gao et al. fits")
    rows = []
    for label, fits, form in [("best-of-n", bon["fits"], "d(α − βd)")] + [
            (f"RL beta={r['kl_coef']:g}", r["fits"], "d(α − β log d)") for r in rl]:
        for name in ("rm", "rater", "gold"):
            f = fits.get(name) or {}
            where = {"at_base": "falls from the base", "beyond_range": f"beyond the fitted d ≤ {f.get('d_max', 0):.2f}",
                     "below_range": f"before the first measured d = {f.get('d_min', 0):.2f}: falls over the range",
                     "none": "no maximum (still rising)"}.get(f.get("peak"), "")
            rows.append([label, name, form, f.get("alpha"), f.get("beta"), f.get("r2"), f.get("d_star"),
                         "; ".join(x for x in (where, f.get("error", "")) if x)])
    page.table(["curve", "score", "form", "α", "β", "R² (d > 0)", "peak d*", "note"], rows, left_columns=3)
    page.heading("Reward model and rater on base-model samples")
    rm, base = res["reward_model"], res["base"]
    page.table(["measure", "mean", "95% low", "95% high"], [
        ["RM agrees with rater (held-out pairs)", *_iv(rm["agreement_rater"])],
        ["RM agrees with gold (held-out pairs)", *_iv(rm["agreement_gold"])],
        ["rater agrees with gold (same pairs)", *_iv(rm["rater_gold_agreement"])],
        ["corr(rater, gold) on base samples", *_iv(base["rater_gold_corr"])],
        ["corr(RM, gold) on base samples", *_iv(base["rm_gold_corr"])],
    ])
    page.heading(f"Most-optimized samples (seed {first_seed(res)})")
    rows = []
    for e in res.get("examples", []):
        for key in ("base", "best_of_n", "rl"):
            if key in e:
                s = e[f"{key}_scores"]
                label = key if key != "rl" else f"rl (beta={e['rl_kl_coef']:g})"
                rows.append([e["prompt"] if key == "base" else "", label, e[key], s["rm"], s["rater"], s["gold"]])
    page.table(["prompt", "policy", "completion", "RM", "rater", "gold"], rows, left_columns=3)
    return page.write(run_dir / "report.html")


def _iv(iv: dict | None) -> list:
    iv = iv or {}
    return [iv.get("mean"), iv.get("lo"), iv.get("hi")]


def _findings_text(fnd: dict, res: dict) -> str:
    lo, hi = fnd["kl_range"]
    parts = [f"KL range reached: {lo:.2f} to {hi:.2f} nats per sequence."]
    b = fnd["bon"]
    parts.append(_peak_sentence("Best-of-n", b))
    for beta, p in fnd["rl"].items():
        parts.append(_peak_sentence(f"RL beta={float(beta):g}", p))
    for run in res.get("rl", []):
        kls = run.get("vs_bon_at_equal_kl", {}).get("end_kl_per_seed")
        if kls and len(kls) > 1:
            parts.append(f"RL beta={run['kl_coef']:g} ended at KL " + ", ".join(f"{k:.1f}" for k in kls)
                         + " in its seeds.")
    vs = fnd.get("vs_best_of_n", {})
    if vs:
        parts.append("Gold against best-of-n at the same KL (each run's gold gain at its end minus best-of-n's, read on "
                     "best-of-n's measured-KL curve at the run's KL, paired by seed): " + "; ".join(
                         f"{name} {_signed_iv(v)}" + (f" {v['direction']}" if v.get("direction") else
                                                      " (past best-of-n's largest KL)" if v.get("mean") is None else
                                                      f" (no claim: {v['seeds_beyond_pool']} seed(s) past best-of-n's "
                                                      "largest KL left out)" if v.get("seeds_beyond_pool") else
                                                      " (no claim)")
                         for name, v in vs.items()) + ".")
    gold_fit = res["bon"]["fit"] or {}
    if gold_fit.get("r2") is not None:
        parts.append(f"Best-of-n gold fit R² = {gold_fit['r2']:.2f}.")
    return " ".join(parts)


def _signed_iv(iv: dict) -> str:
    if iv.get("mean") is None:
        return "n/a"
    if iv.get("n", 0) < 2 or iv["lo"] == iv["hi"]:
        return f"{iv['mean']:+.3f}"
    return f"{iv['mean']:+.3f} [{iv['lo']:+.3f}, {iv['hi']:+.3f}]"


def _kl(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _peak_sentence(label: str, p: dict) -> str:
    peak, end = _signed_iv(p["gain_at_peak"]), _signed_iv(p["gain_at_end"])
    # the peak's intervals are Bonferroni's over the points it was chosen among; the end's are 95%
    conf = f"{100 * p['peak_confidence']:.1f}% interval" if p.get("peak_confidence") else "interval"
    if p["interior_peak"]:
        return (f"{label}: gold peaks at KL {_kl(p['peak_kl'])} ({peak} vs base, {conf}) "
                f"and falls by {_signed_iv(p['drop_after_peak'])} to {end} by KL {_kl(p['end_kl'])}.")
    if p["rises_above_base"]:
        return (f"{label}: gold rises above the base ({peak} at KL {_kl(p['peak_kl'])}, {conf}); at the end {end} "
                f"at KL {_kl(p['end_kl'])}.")
    if p["ends_below_base"]:
        return f"{label}: gold ends below the base: {end} (95% interval) at KL {_kl(p['end_kl'])}."
    if p["gain_at_end"].get("n", 0) < 2:
        return (f"{label}: gold's highest mean is {peak} vs base at KL {_kl(p['peak_kl'])}, ending at {end} at KL "
                f"{_kl(p['end_kl'])}; one seed gives no interval, so no rise or fall is claimed.")
    return (f"{label}: no gold change clears its interval (best {peak} at KL {_kl(p['peak_kl'])}, {conf}; "
            f"end {end} at KL {_kl(p['end_kl'])}, 95%).")
