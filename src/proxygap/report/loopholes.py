"""Plots and report.html of the loopholes experiment, drawn from results.json alone."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from proxygap.report.html import Report, fmt, first_seed  # noqa: E402
from proxygap.report.plots import marked_heatmap, save_figure  # noqa: E402

ARROW = {"up": "↑", "down": "↓", "unclear": ""}


def _iv_text(iv: dict | None, digits: int = 3, signed: bool = False) -> str:
    if not iv or iv.get("mean") is None:
        return "–"
    lo, hi = iv["lo"], iv["hi"]
    f = f"{{:{'+' if signed else ''}.{digits}f}}"
    if lo is None or lo == hi:
        return f.format(iv["mean"])
    return f"{f.format(iv['mean'])} [{f.format(lo)}, {f.format(hi)}]"


def _share_text(share: dict | None) -> str:
    """', a share s [lo, hi] of the gap' from a Fieller interval (ends None: unbounded); '' without one."""
    if not share or share.get("mean") is None:
        return ""
    ends = ("one seed: no interval" if (share.get("n") or 0) < 2 else "unbounded interval" if share.get("lo") is None
            else f"95% {share['lo']:.0%} to {share['hi']:.0%}, Fieller's interval across seeds")
    return f", {share['mean']:.0%} of the gap, {ends}"


def _rate_bar(rate: dict, use_t: bool) -> tuple[float, float, float]:
    """(value, lower error, upper error) of one exploit rate: t-interval across seeds, or with
    one seed the pooled Wilson interval. An undefined rate is NaN: drawn as "n/a", not as a zero."""
    src = rate if use_t else rate["pooled"]
    value = src["mean"]
    if value is None:
        return math.nan, 0.0, 0.0
    lo, hi = src["lo"], src["hi"]
    lo = value if lo is None else max(0.0, lo)  # a t-interval on 3 seeds can leave [0, 1]; a rate cannot
    hi = value if hi is None else min(1.0, hi)
    return value, max(0.0, value - lo), max(0.0, hi - value)


def _grouped_bars(ax, groups: list[str], series: list[tuple[str, list[tuple[float, float, float]]]]) -> None:
    xs = np.arange(len(groups))
    width = 0.85 / max(1, len(series))
    cmap = plt.get_cmap("tab10")
    for i, (label, values) in enumerate(series):
        v = np.array([x[0] for x in values])
        err = np.array([[x[1] for x in values], [x[2] for x in values]])
        at = xs - 0.425 + (i + 0.5) * width
        ax.bar(at, np.nan_to_num(v), width, yerr=np.where(np.isnan(v), 0.0, err), capsize=1.5, color=cmap(i % 10),
               label=label, error_kw={"lw": 0.7})
        for x in at[np.isnan(v)]:
            ax.text(x, 0.0, "n/a", rotation=90, ha="center", va="bottom", fontsize=6, color="0.4")
    ax.set_xticks(xs, [g.replace("_", " ") for g in groups], rotation=30, ha="right")


def _changed(change: dict) -> bool:
    return change.get("direction") in ("up", "down")


def plot_change_heatmap(res: dict, path: Path) -> None:
    """The headline: regime x loophole, the change of the exploit rate against the base model
    (paired by seed); bold and boxed where its 95% interval across seeds excludes 0."""
    regimes = [r for r in res["regimes"] if r["name"] != "base"]
    loopholes = list(res["loopholes"])
    grid = np.array([[np.nan if r["change_vs_base"][h]["mean"] is None else r["change_vs_base"][h]["mean"]
                      for h in loopholes] for r in regimes], dtype=float).reshape(len(regimes), len(loopholes))
    marked = np.array([[_changed(r["change_vs_base"][h]) for h in loopholes] for r in regimes],
                      dtype=bool).reshape(grid.shape)
    texts = [[f"{grid[i, j]:+.2f}" + ("*" if marked[i, j] else "") for j in range(len(loopholes))]
             for i in range(len(regimes))]
    fig, ax = plt.subplots(figsize=(max(8.0, 1.25 * len(loopholes) + 3), max(3.0, 1.2 + 0.5 * len(regimes))))
    if regimes:
        marked_heatmap(ax, grid, [r["name"] for r in regimes], [h.replace("_", " ") for h in loopholes], marked, texts,
                       colorbar_label="exploit rate: regime − base model")
    n = len(res["seeds"])
    how = (f"{n} seeds; bold, boxed, *: the 95% t-interval of the per-seed change excludes 0" if n >= 2 else
           "1 seed: no interval across seeds, so no cell is marked as a change")
    ax.set_title(f"Which loopholes does each regime exploit? Change in exploit rate vs the base model\n({how})",
                 fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def _moved_cells(regimes: list[dict], loopholes: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"up": [], "down": []}
    for r in regimes:
        if r["name"] == "base":
            continue
        for h in loopholes:
            d = r["change_vs_base"][h].get("direction")
            if d in out:
                out[d].append(f"{h} under {r['name']} {_iv_text(r['change_vs_base'][h], signed=True)}")
    return out


def draw_report(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    res = json.loads((run_dir / "results.json").read_text())
    regimes, ablation, fnd = res["regimes"], res["ablation"], res["findings"]
    loopholes = list(res["loopholes"])
    seeds = res["seeds"]
    use_t = len(seeds) >= 2
    interval = "95% t-intervals across seeds" if use_t else "pooled 95% Wilson intervals (one seed)"

    plot_change_heatmap(res, run_dir / "change_vs_base.png")

    # 1. Exploit rates per regime.
    fig, ax = plt.subplots(figsize=(15, 5))
    _grouped_bars(ax, loopholes, [(r["name"], [_rate_bar(r["exploit_rates"][h], use_t) for h in loopholes])
                                  for r in regimes])
    ax.set_ylabel("exploit rate (over answers where it applies)")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"Exploit rate of each loophole under each regime ({_seeds(seeds)}; {interval})")
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    save_figure(fig, run_dir / "exploit_rates.png", dpi=110)
    plt.close(fig)

    # 2. The human-eval blind spot: how much the rater over-rates answers that exploit each loophole.
    fig, axes = plt.subplots(1, 2, figsize=(16, 5))
    for ax, key, title in ((axes[0], "gap_when_fires", "rater − gold on answers where the loophole fires"),
                           (axes[1], "contribution", "contribution to the regime's mean rater − gold gap")):
        series = []
        for r in regimes:
            values = []
            for h in loopholes:
                iv = r["blind_spot"][h][key]
                if iv["mean"] is None:
                    values.append((0.0, 0.0, 0.0))
                else:
                    lo, hi = iv["lo"], iv["hi"]
                    values.append((iv["mean"], max(0.0, iv["mean"] - lo), max(0.0, hi - iv["mean"])))
            series.append((f"{r['name']} (gap {fmt(r['rater_gold_gap']['mean'], 2)})", values))
        _grouped_bars(ax, loopholes, series)
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_title(title)
    axes[0].set_ylabel("reward units (positive: the rater sees more than there is)")
    axes[1].legend(fontsize=7, ncol=2)
    fig.suptitle(f"Human-eval blind spot per loophole ({_seeds(seeds)}; bars: mean, whiskers: 95% t-interval)")
    fig.tight_layout()
    save_figure(fig, run_dir / "blind_spot.png", dpi=110)
    plt.close(fig)

    # 3. Ablation: change of every exploit rate when one rater flaw is switched off.
    done = [f for f in ablation["flaws"] if "skipped" not in f]
    if done:
        fig, ax = plt.subplots(figsize=(13, max(3.5, 1.8 + 0.55 * len(done))))
        grid = np.array([[f["change_vs_full_rater"][h]["mean"] if f["change_vs_full_rater"][h]["mean"] is not None
                          else np.nan for h in loopholes] for f in done])
        lim = max(1e-6, float(np.nanmax(np.abs(grid)))) if np.isfinite(grid).any() else 1.0
        im = ax.imshow(grid, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        for i, f in enumerate(done):
            for j, h in enumerate(loopholes):
                if np.isnan(grid[i, j]):
                    continue
                mark = ARROW[f["change_vs_full_rater"][h]["direction"]]
                ax.text(j, i, f"{grid[i, j]:+.2f}{mark}", ha="center", va="center", fontsize=7)
                if h in f["expected_loopholes"]:
                    ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, lw=1.5, color="black"))
        ax.set_xticks(range(len(loopholes)), [h.replace("_", " ") for h in loopholes], rotation=30, ha="right")
        ax.set_yticks(range(len(done)), [f"{f['flaw']} off" for f in done])
        fig.colorbar(im, ax=ax, label="exploit rate: ablated − full rater")
        ax.set_title(f"Rater-flaw ablation, RL at beta={ablation['kl_coef']:g}; boxed: the loophole the flaw is built "
                     f"to open\n↑/↓: {fnd['criterion']}", fontsize=10)
        fig.tight_layout()
        save_figure(fig, run_dir / "ablation.png", dpi=110)
        plt.close(fig)

    # The page: the headline picture, the findings (short), then the details.
    page = Report("proxygap: loopholes — which rater flaws does each regime exploit?")
    page.image("change_vs_base.png", "Change in each loophole's exploit rate under each regime, against the base "
               "model (per-seed paired difference, mean over seeds). Bold and boxed (*): the 95% interval of the "
               "change excludes 0.")
    page.heading("Findings (computed from the numbers)")
    cells = _moved_cells(regimes, loopholes)
    n_cells = sum(1 for r in regimes if r["name"] != "base") * len(loopholes)
    page.paragraph(f"Of {n_cells} regime × loophole cells, the exploit rate clearly rises in {len(cells['up'])} and "
                   f"clearly falls in {len(cells['down'])} (criterion: {fnd.get('criterion', 'the 95% interval excludes 0')}; "
                   f"each cell is its own test, so about {0.025 * n_cells:.1f} per side would clear by chance alone)."
                   + (" Rises: " + "; ".join(cells["up"]) + "." if cells["up"] else "")
                   + (" Falls: " + "; ".join(cells["down"]) + "." if cells["down"] else ""))
    for key in ("kl_penalty", "ensemble"):
        if fnd.get(key):
            page.paragraph(fnd[key]["sentence"])
    b = fnd["blind_spot"]
    top = (f"the loophole contributing most there is {b['top_loophole']} ({fmt(b['top_contribution'])}"
           f"{_share_text(b.get('top_share_of_gap'))})"
           if b.get("top_loophole") else "no loophole's contribution there clears 0")
    page.paragraph(
        f"Blind spot: the rater over-rates {b['largest_gap_regime']} the most (rater − gold {fmt(b['gap'])}, base "
        f"{fmt(b['base_gap'])}); {top}. Loopholes whose own score term the rater over-rates there (interval "
        f"clears 0): {', '.join(b.get('unseen_by_rater', [])) or 'none'}.")
    if fnd.get("vs_best_of_n"):
        page.paragraph("Gold against best-of-n at the same KL (the policy's gold minus best-of-n's, read on "
                       "best-of-n's measured-KL curve at the policy's KL, paired by seed): " + "; ".join(
                           f"{name} {_iv_text(v['gold_difference'], signed=True)}{ARROW[v.get('direction', 'unclear')]}"
                           + (f" ({v['seeds_beyond_best_of_n']} seed(s) past best-of-n's largest KL, left out: no claim)"
                              if v.get("seeds_beyond_best_of_n") else "")
                           for name, v in fnd["vs_best_of_n"].items()) + ".")
    cap = fnd.get("capability", {})
    page.paragraph("Capability (share of correct answers), change vs base: " + "; ".join(
        f"{name} {_iv_text(c['change'], signed=True)}{ARROW[c.get('direction', 'unclear')]}"
        for name, c in cap.items()) + ".")
    with page.fold("Per loophole and per switched-off rater flaw (computed sentences)"):
        for h in loopholes:
            page.paragraph(fnd["loopholes"][h]["sentence"])
        for a in fnd["ablation"].values():
            page.paragraph(a["sentence"])

    page.heading("Run")
    meta = res.get("meta", {})
    page.paragraph(
        f"Preset {meta.get('preset', '?')}, seeds {seeds}, model {res['model']}, wall time "
        f"{fmt(meta.get('wall_time_s'), 1)} s. Held-out prompts per stratum: "
        + ", ".join(f"{k} {v}" for k, v in res["eval_prompts_per_stratum"].items())
        + ". Numbers are means over seeds with 95% t-intervals across seeds (none with one seed); exploit rates "
        "also carry a pooled 95% Wilson interval (table), which the plots use when there is one seed, on the effective "
        "number of trials (several samples of a prompt are one cluster, not independent trials). RM scores "
        "are the single reward model's, recentred so base samples score 0; KL is in nats per sequence (best-of-n: "
        "the analytic log n − (n−1)/n, an upper bound).", note=True)
    train = res.get("train_prompts_per_stratum")
    if train:
        total = sum(train.values())
        page.paragraph(f"The reward model's pairs and RL's batches are drawn uniformly from {total} training prompts, so "
                       "each stratum gets optimization pressure in proportion to its share: " + ", ".join(
                           f"{k} {v / total:.1%}" for k, v in train.items()) + ".", note=True)

    page.heading("Regimes")
    page.table(["regime", "KL (nats)", "KL measured on the pool", "capability", "RM", "rater", "gold", "rater − gold"], [
        [r["name"], _iv_text(r["kl"], 2), _iv_text(r["kl_pool"], 2) if "kl_pool" in r else "", _iv_text(r["capability"]),
         _iv_text(r["rm"]), _iv_text(r["rater"]), _iv_text(r["gold"]), _iv_text(r["rater_gold_gap"])]
        for r in regimes])
    page.image("exploit_rates.png", "Exploit rate per loophole and regime.")
    page.heading("Exploit rates")
    page.paragraph(f"Mean over seeds with {interval}; below each, the pooled count k/n with its Wilson interval "
                   "on the effective number of trials where the samples of a prompt are correlated (eff.: n over "
                   "the design effect of the prompt clusters; best-of-n: n = applicable prompts, one proxy-picked "
                   "answer each, k its expected count).", note=True)
    rows = []
    for r in regimes:
        rows.append([r["name"]] + [_iv_text(r["exploit_rates"][h]) for h in loopholes])
        rows.append(["  pooled"] + [_pooled_text(r["exploit_rates"][h]["pooled"]) for h in loopholes])
    page.table(["regime", *loopholes], rows)
    page.heading("Change vs the base model")
    page.table(["regime", *loopholes], [
        [r["name"]] + [_iv_text(r["change_vs_base"][h], signed=True) + ARROW[r["change_vs_base"][h].get("direction", "unclear")]
                       for h in loopholes] for r in regimes if r["name"] != "base"])
    page.heading("Human-eval blind spot")
    page.paragraph(
        "Per loophole and regime: rater − gold averaged over the answers where the loophole fires (the gold loss a "
        "human eval by this rater does not see, per such answer), then in parentheses its contribution to the "
        "regime's mean rater − gold gap (rate among all answers × that gap). Contributions overlap where one answer "
        "exploits several loopholes. 'own term' isolates the loophole's own score term.", note=True)
    page.image("blind_spot.png", "Blind spot per loophole.")
    page.table(["loophole", *[r["name"] for r in regimes]], [
        [h] + [f"{fmt(r['blind_spot'][h]['gap_when_fires']['mean'], 2)} ({fmt(r['blind_spot'][h]['contribution']['mean'], 3)})"
               for r in regimes] for h in loopholes])
    page.table(["loophole (own term)", *[r["name"] for r in regimes]], [
        [h] + [fmt(r["blind_spot"][h]["own_term_gap"]["mean"], 2) for r in regimes] for h in loopholes])

    page.heading(f"Rater-flaw ablation (RL at beta={ablation['kl_coef']:g}, one flaw off, RM retrained)")
    if done:
        page.image("ablation.png", "Change of each exploit rate when one flaw is switched off (vs the full rater).")
    page.table(["flaw off", "strength", "built to open", "capability", "gold", "RM agrees w/ rater",
                *loopholes], [
        [f["flaw"], f["strength"], ", ".join(f["expected_loopholes"]) or "–"]
        + ([f["skipped"]] + [""] * (2 + len(loopholes)) if "skipped" in f else
           [_iv_text(f["capability"]), _iv_text(f["gold"]), _iv_text(f["rm_agreement_rater"])]
           + [_iv_text(f["change_vs_full_rater"][h], signed=True) + ARROW[f["change_vs_full_rater"][h]["direction"]]
              for h in loopholes])
        for f in ablation["flaws"]], left_columns=3)

    page.heading("Loopholes")
    page.table(["loophole", "rater flaw that opens it", "score term", "what it is"],
               [[h, d["flaw"], d["term"], d["description"]] for h, d in res["loopholes"].items()], left_columns=4)
    page.paragraph("length_inflation threshold (words, by question kind): " + ", ".join(
        f"{k} > {v}" for k, v in res["length_limits_words"].items()), note=True)
    page.heading(f"Examples (seed {first_seed(res)})")
    rows = []
    for e in res.get("examples", []):
        for i, a in enumerate(e["answers"]):
            rows.append([e["prompt"] if i == 0 else "", a["regime"], a["text"], a["rater"], a["gold"],
                         ", ".join(a["loopholes"]) or "–"])
    page.table(["prompt", "regime", "answer", "rater", "gold", "loopholes"], rows, left_columns=3)
    page.heading("Timings per seed (s)")
    timings = res.get("timings", [])
    if timings:
        keys = list(timings[0])
        page.table(["seed", *keys], [[i, *[t.get(k) for k in keys]] for i, t in enumerate(timings)])
    return page.write(run_dir / "report.html")


def _seeds(seeds: list) -> str:
    return "1 seed" if len(seeds) == 1 else f"{len(seeds)} seeds"


def _pooled_text(p: dict) -> str:
    if p["mean"] is None:
        return "–"
    k = f"{p['k']:.0f}" if float(p["k"]).is_integer() else f"{p['k']:.1f}"
    eff = f" (eff. {p['n_effective']:.0f})" if p.get("n_effective") is not None else ""
    return f"{k}/{p['n']:.0f}{eff} [{p['lo']:.3f}, {p['hi']:.3f}]"
