"""The `scaling` report: Gao et al. (2022) Fig. 3/4-style alpha and beta against RM size and labels,
gold vs KL per policy size and per rater quality, and the findings computed from the fits."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from proxygap.report.html import Report, fmt  # noqa: E402
from proxygap.report.plots import save_figure  # noqa: E402


def _m(x) -> float:
    if isinstance(x, dict):
        x = x.get("mean")
    return np.nan if x is None else float(x)


def _err(iv: dict) -> tuple[float, float, float]:
    m = _m(iv)
    lo, hi = _m(iv.get("lo")), _m(iv.get("hi"))
    return m, (m - lo) if np.isfinite(lo) else 0.0, (hi - m) if np.isfinite(hi) else 0.0


def _cells(res: dict, **fixed) -> list[dict]:
    return [c for c in res["cells"] if all(c[k] == v for k, v in fixed.items())]


def reference_slice(res: dict) -> dict:
    """The slice the single-axis plots hold fixed: gold labels (the lowest quality factor), the
    largest RM and label count, and the middle policy size."""
    return {"rater_quality": min(res["rater_qualities"]), "rm_size": res["rm_sizes"][-1],
            "n_labels": max(res["n_labels"]), "policy_size": res["policy_sizes"][len(res["policy_sizes"]) // 2]}


def plot_alpha_beta(res: dict, path: Path) -> None:
    ref = reference_slice(res)
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    cmap = plt.get_cmap("viridis")
    fixed = {"rater_quality": ref["rater_quality"], "policy_size": ref["policy_size"]}
    for col, key in enumerate(("alpha", "beta")):
        ax = axes[0, col]
        for i, n in enumerate(res["n_labels"]):
            cells = sorted(_cells(res, n_labels=n, **fixed), key=lambda c: res["rm_sizes"].index(c["rm_size"]))
            x = _rm_axis(cells)
            m, lo, hi = np.array([_err(c["fit"][key]) for c in cells]).T if cells else ([], [], [])
            ax.errorbar(x, m, yerr=[lo, hi], fmt="o-", capsize=3, color=cmap(i / max(1, len(res["n_labels"]) - 1) * 0.85),
                        label=f"{n} labels")
        ax.set_xscale("log")
        ref_cells = sorted(_cells(res, n_labels=res["n_labels"][-1], **fixed), key=lambda c: res["rm_sizes"].index(c["rm_size"]))
        _ticks(ax, _rm_axis(ref_cells), [c["rm_size"] + (f"\n{c['rm_params'] / 1e6:.2f}M" if c["rm_params"] else "")
                                         for c in ref_cells])
        ax.set_xlabel("reward-model parameters" if all(c["rm_params"] for c in ref_cells) else "reward model")
        ax.set_title(f"best-of-n gold fit: {key} vs RM size")
        ax.legend(fontsize=8)
        ax = axes[1, col]
        for i, rm in enumerate(res["rm_sizes"]):
            cells = sorted(_cells(res, rm_size=rm, **fixed), key=lambda c: c["n_labels"])
            m, lo, hi = np.array([_err(c["fit"][key]) for c in cells]).T if cells else ([], [], [])
            ax.errorbar([c["n_labels"] for c in cells], m, yerr=[lo, hi], fmt="s-", capsize=3,
                        color=cmap(i / max(1, len(res["rm_sizes"]) - 1) * 0.85), label=f"RM {rm}")
        ax.set_xscale("log")
        _ticks(ax, res["n_labels"], [str(n) for n in res["n_labels"]])
        ax.set_xlabel("RM training labels")
        ax.set_title(f"{key} vs labels")
        ax.legend(fontsize=8)
    fig.suptitle(f"Gao et al. forms, gold = d(α − βd) fitted per seed (95% intervals across seeds); policy "
                 f"{ref['policy_size']}, rater quality {ref['rater_quality']:g}", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def _rm_axis(cells: list[dict]) -> list[float]:
    """Parameters where every RM's are known, else positions 1, 2, ... (never the two mixed on one axis)."""
    if all(c.get("rm_params") for c in cells):
        return [c["rm_params"] for c in cells]
    return [j + 1 for j in range(len(cells))]


def _ticks(ax, values, labels) -> None:
    ax.set_xticks(values, labels)
    ax.minorticks_off()
    ax.axhline(0, color="grey", lw=0.5)


def _gain_curve(points: list[dict], kl_key: str = "kl"):
    d = np.sqrt(np.maximum([_m(p[kl_key]) for p in points], 0.0))
    g = [p["gold_gain"] for p in points]
    return d, np.array([_m(x) for x in g]), np.array([_m(x["lo"]) for x in g]), np.array([_m(x["hi"]) for x in g])


def plot_curves(res: dict, axis: str, path: Path, title: str) -> None:
    """Gold gain vs sqrt(KL) along one axis, the others at the reference slice; dashed: vs the KL
    measured on the pool."""
    ref = reference_slice(res)
    values = {"policy_size": res["policy_sizes"], "rater_quality": res["rater_qualities"], "rm_size": res["rm_sizes"],
              "n_labels": res["n_labels"]}[axis]
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    cmap = plt.get_cmap("plasma")
    for i, v in enumerate(values):
        cell = next(iter(_cells(res, **{**ref, axis: v})), None)
        if cell is None or not cell["bon_points"]:
            continue
        color = cmap(i / max(1, len(values) - 1) * 0.8)
        d, y, lo, hi = _gain_curve(cell["bon_points"])
        ax.plot(d, y, "o-", ms=3, color=color, label=f"{axis.replace('_', ' ')} {v}")
        ax.fill_between(d, lo, hi, color=color, alpha=0.15)
        if "kl_pool" in cell["bon_points"][0]:
            d_pool, y, _, _ = _gain_curve(cell["bon_points"], "kl_pool")
            ax.plot(d_pool, y, "--", color=color, alpha=0.6)
        if "rl" in cell:
            d, y, _, _ = _gain_curve(cell["rl"]["points"])
            ax.plot(d, y, "^:", ms=3, color=color, alpha=0.8)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("d = sqrt(KL)  (solid: log n − (n−1)/n; dashed: KL measured on the pool; dotted triangles: RL)")
    ax.set_ylabel("gold − base gold")
    fixed = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in ref.items() if k != axis)
    ax.set_title(f"{title} ({fixed})", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def trend_sentence(label: str, trend: dict, key: str) -> str:
    n = len(trend["slices"])
    if not n:
        return f"{label}: {trend.get('note', 'no slices to compare')}."
    s = trend["slices"][0]
    chance = trend.get("expected_by_chance_per_side")
    chance_text = f"; about {chance:g} per side expected by chance alone" if chance is not None else ""
    reasons = []
    if trend.get("seed_lacks_value"):
        reasons.append(f"{trend['seed_lacks_value']} of them because a seed has no value: censored or no fit")
    undefined = trend.get("gated_by_undefined_r2", 0)
    if trend.get("gated_by_fit", 0) - undefined:
        reasons.append(f"{trend['gated_by_fit'] - undefined} because a fit they rest on has R² below "
                       f"{trend['min_r2_gate']:g}, though the interval alone excludes 0")
    if undefined:
        reasons.append(f"{undefined} because a fit they rest on has no R² (gold the same at every KL: nothing for "
                       "the form to explain), though the interval alone excludes 0")
    why_text = f" ({'; '.join(reasons)})" if reasons else ""
    gate = trend.get("min_r2_gate")
    gate_text = f", on fits with R² of at least {gate:g}" if gate else ""
    r2 = trend.get("min_r2")
    r2_text = f"; the worst per-seed fit of any slice has R² {r2:.2f}" if r2 is not None else ""
    return (f"{label}: {key} from {s['from']} to {s['to']} moved down in {trend['down']} and up in {trend['up']} of {n} "
            f"slices (95% interval of the paired per-seed change excludes 0{gate_text}{chance_text}); no claim in "
            f"{trend['no_claim']}{why_text}{r2_text}.")


def rl_vs_bon_sentence(rows: list[dict]) -> str:
    """RL against best-of-n at RL's own final KL (best-of-n read at that KL on its measured curve)."""
    if not rows:
        return "RL vs best-of-n at equal KL: no cell with RL."
    parts = [f"policy {r['policy_size']} (RM {r['rm_size']}, {r['n_labels']} labels, quality {r['rater_quality']:g}): "
             + (f"{r['gold_gain_difference']:+.3f}, " if r["gold_gain_difference"] is not None else "")
             + (r["direction"] or "no claim") for r in rows]
    return ("RL's gold gain minus best-of-n's at the KL RL ended at (paired per seed; no claim where the interval "
            "reaches 0, or RL went past the pool's largest KL): " + "; ".join(parts) + ".")


def draw_report(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    res = json.loads((run_dir / "results.json").read_text())
    plot_alpha_beta(res, run_dir / "alpha_beta.png")
    plot_curves(res, "policy_size", run_dir / "policy_size.png", "Gold vs KL per policy size")
    plot_curves(res, "rater_quality", run_dir / "rater_quality.png", "Gold vs KL per rater quality")
    plot_curves(res, "rm_size", run_dir / "rm_size.png", "Gold vs KL per RM size")
    fnd = res["findings"]
    page = Report("proxygap: scaling (Gao et al. 2022 §4 on the model family)")
    page.image("alpha_beta.png", "α and β of gold's best-of-n fit against RM size and RM labels.")
    page.heading("Findings (computed from the fits)")
    lines = [trend_sentence("RM size", fnd["rm_size"][k], k) for k in ("alpha", "beta", "d_star")]
    lines += [trend_sentence("labels", fnd["n_labels"][k], k) for k in ("alpha", "beta", "d_star")]
    lines += [trend_sentence("policy size", fnd["policy_size"]["d_star"], "gold's peak d*")]
    if "policy_size_pool_kl" in fnd:
        lines += [trend_sentence("policy size, on the KL measured on each pool", fnd["policy_size_pool_kl"]["d_star"],
                                 "gold's peak d*")]
    if "rl_vs_bon" in fnd:
        lines.append(rl_vs_bon_sentence(fnd["rl_vs_bon"]))
    if "rater_quality_trend" in fnd:
        lines += [trend_sentence("rater quality", fnd["rater_quality_trend"][k], k) for k in ("alpha", "beta", "d_star")]
    for q, r in fnd["rater_quality"].items():
        chance = f" (about {r['expected_by_chance']:g} of each expected by chance alone)" if "expected_by_chance" in r else ""
        trained = {n: v for n, v in r.get("n_train_pairs", {}).items() if v is not None}
        labels_text = ("; its reward models trained on " + " / ".join(f"{v:.0f}" for v in trained.values()) + " of "
                       + " / ".join(trained) + " labels (held out and tied pairs dropped)") if trained else ""
        lines.append(f"rater quality {q}: gold rises above the base in {r['gold_rises']} of {r['cells']} cells, peaks "
                     f"then falls in {r['gold_peaks_then_falls']}, ends below the base in {r['gold_ends_below_base']}"
                     f"{chance}{labels_text}.")
    page.paragraph(" ".join(lines))
    meta = res.get("meta", {})
    page.paragraph(f"Preset {meta.get('preset', '?')}, seeds {res['seeds']}, wall time {fmt(meta.get('wall_time_s'), 1)} s. "
                   "Each reward model is trained on pairs of one sampler's answers labelled by the rater at the cell's "
                   "quality (0 = gold labels, Gao et al.'s setup); gold's gain over each policy's base is fitted per seed; "
                   "intervals are 95% t-intervals across seeds."
                   + (" With one seed there is no interval, so no trend, rise or peak above is claimed: run two seeds "
                      "or more (--seeds 3) for claims." if len(res["seeds"]) < 2 else ""), note=True)
    page.image("policy_size.png", "Policy-size dependence of gold's curve (Gao et al.: weak).")
    page.image("rater_quality.png", "Where optimizing the rater helps gold, and where it only hurts.")
    page.image("rm_size.png", "Gold's curve per RM size.")
    page.heading("Cells")
    rows = []
    for c in res["cells"]:
        f = c["fit"]
        rows.append([c["rm_size"], c["policy_size"], c["n_labels"], _m(c.get("n_train_pairs", {}).get("mean")),
                     c["rater_quality"], _iv(f["alpha"]), _iv(f["beta"]), _d_star(f["d_star"]), _iv(f["r2"]),
                     _iv(c["rm_agreement_gold"])])
    page.table(["RM", "policy", "labels", "trained on", "quality", "α", "β", "d*", "R²", "RM–gold agreement"], rows,
               left_columns=5)
    page.paragraph("labels: n_labels; trained on: the labels left after the held-out share and the pairs the rater "
                   "tied (mean over seeds). d*: where each seed's fitted curve peaks, 0 where it only falls; withheld "
                   "('censored') where a seed's curve has no maximum or peaks beyond the fitted range.", note=True)
    return page.write(run_dir / "report.html")


def _d_star(iv: dict) -> str:
    censored = iv.get("no_maximum", 0) + iv.get("beyond_range", 0)
    at_base = f", {iv['at_base']} at 0" if iv.get("at_base") else ""
    if censored:
        return f"censored in {censored} of {len(iv.get('per_seed', []))} seeds{at_base}"
    return _iv(iv) + (f" ({iv['at_base']} of {len(iv['per_seed'])} seeds at 0)" if iv.get("at_base") else "")


def _iv(iv: dict) -> str:
    m, lo, hi = _m(iv), _m(iv.get("lo")), _m(iv.get("hi"))
    if not np.isfinite(m):
        return "-"
    return f"{m:.3g} [{lo:.3g}, {hi:.3g}]" if np.isfinite(lo) else f"{m:.3g}"
