"""The `cot` report: faithfulness curves per regime, capability with and without a chain,
capability against exploit rate, distillation, example chains, and the findings computed from
results.json."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from proxygap.report.html import Report, fmt, first_seed  # noqa: E402
from proxygap.report.plots import error_bar as _err, iv_text, mean_of as _m, save_figure  # noqa: E402

INTERVENTIONS = ("early_answering", "adding_mistake", "filler", "paraphrase")




def plot_faithfulness(res: dict, path: Path) -> None:
    """Per size: early answering's unchanged share against steps kept, one line per regime."""
    sizes = sorted({r["size"] for r in res["regimes"]}, key=lambda s: min(r["params"] for r in res["regimes"] if r["size"] == s))
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.6 * len(sizes), 3.8), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        for r in [r for r in res["regimes"] if r["size"] == size]:
            curve = r["faithfulness"]["early_answering"].get("curve", {})
            ks = sorted(curve, key=int)
            m, lo, hi = (np.array([_err(curve[k]) for k in ks]).T if ks else (np.array([]),) * 3)
            line = ax.errorbar([int(k) for k in ks], m, yerr=[lo, hi], fmt="o-", capsize=3, label=r["regime"])
            # The whole chain kept is the answer itself, unchanged by definition: drawn hollow, not measured.
            ax.plot([len(ks) - 1, len(ks)] if ks else [0], [m[-1], 1.0] if ks else [1.0], ls=":",
                    color=line[0].get_color())
            ax.plot([len(ks)], [1.0], "o", mfc="none", color=line[0].get_color())
        ax.set_xticks(range(0, 1 + max([len(r["faithfulness"]["early_answering"].get("curve", {}))
                                        for r in res["regimes"] if r["size"] == size] or [1])))
        ax.set_xlabel("steps of its own chain kept before 'answer :'")
        ax.set_ylabel("answer unchanged")
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(f"early answering, size {size}")
        ax.legend(fontsize=7)
    fig.suptitle("Lanham et al. early answering: a flat line near 1 = the answer does not depend on the chain "
                 "(95% intervals across seeds; hollow: the whole chain, unchanged by definition)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def plot_capability(res: dict, path: Path) -> None:
    """Accuracy with and without a chain per regime and distillation method, and capability vs myth rate."""
    rows = [(f"{r['size']}/{r['regime']}", r) for r in res["regimes"]]
    rows += [(f"{r['size']}/distil-{r['method']}", r) for r in res["distillation"]]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.2))
    y = np.arange(len(rows))
    for offset, key, label in ((-0.2, "accuracy_cot", "with CoT"), (0.2, "accuracy_no_cot", "without CoT")):
        m, lo, hi = np.array([_err(r[key]) for _, r in rows]).T
        a1.barh(y + offset, m, height=0.4, xerr=[lo, hi], capsize=2, label=label)
    for h in res.get("human", []):
        a1.axvline(_m(h["accuracy"]), color="k", ls=":", lw=1)
    a1.set_yticks(y, [n for n, _ in rows], fontsize=7)
    a1.invert_yaxis()
    a1.set_xlabel("gold accuracy on held-out two-hop questions (dotted: the corpus's demonstrators)")
    a1.legend(fontsize=8)
    for name, r in rows:
        x = _err(r["accuracy_cot"] if "distil" not in name else r["accuracy_no_cot"])
        ymyth = _err(r["exploit_rates"].get("myth_answer", {}))
        a2.errorbar(x[0], ymyth[0], xerr=[[x[1]], [x[2]]], yerr=[[ymyth[1]], [ymyth[2]]], fmt="o", capsize=2)
        a2.annotate(name, (x[0], ymyth[0]), fontsize=6)
    a2.set_xlabel("gold accuracy of the regime's own answers (CoT; distilled: direct)")
    a2.set_ylabel("myth-answer rate (sampled)")
    a2.set_title("capability vs exploit", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def _line(name: str, f: dict) -> str:
    return (f"{name}: accuracy with CoT vs base {f['accuracy_cot_change']}; forward pass (no CoT) {f['forward_pass_change']}; "
            f"vs demonstrators {f['vs_human']}; early-answering AOC {fmt(f['early_answering_aoc'][0], 2)} → "
            f"{fmt(f['early_answering_aoc'][1], 2)} ({f['early_answering_aoc_change']}); answers following an added "
            f"mistake {fmt(f['follows_mistake'][0], 2)} → {fmt(f['follows_mistake'][1], 2)} ({f['follows_mistake_change']}); "
            f"trace error {fmt(f['trace_error'][0], 2)} → {fmt(f['trace_error'][1], 2)} ({f['trace_error_change']}); "
            f"myth rate {fmt(f['myth_rate'][0], 2)} → {fmt(f['myth_rate'][1], 2)} ({f['myth_rate_change']}).")


def findings_lines(res: dict) -> list[str]:
    fnd = res["findings"]
    lines = [f"size {s}: CoT gain (accuracy with − without) {fmt(g['gap'], 2)} ({g['direction']}): "
             f"{fmt(g['accuracy_cot'], 2)} with a chain, {fmt(g['accuracy_no_cot'], 2)} without, "
             f"{fmt(g['filler_accuracy'], 2)} with filler tokens in its place."
             for s, g in fnd["cot_gain"].items()]
    lines += [_line(name, f) for name, f in fnd["regimes"].items()]
    for size, o in fnd["outcome_vs_process"].items():
        if "capability" not in o:  # a results.json from before the paired tests: its own words, as it said them
            o = {**o, "trace_error_change": o.get("trace_error_separated") or "not separated (unpaired)",
                 "match_margin": 0.0, "capability": {True: "unresolved", False: "differs"}.get(
                     o.get("matched_capability"), "unknown")}
        lines.append(f"size {size}: outcome vs process RL trace error {fmt(o['trace_error'][0], 2)} vs "
                     f"{fmt(o['trace_error'][1], 2)} (paired, outcome − process: {o['trace_error_change']}); "
                     + {"matched": f"at matched capability (the paired accuracy difference lies within "
                                   f"±{o['match_margin']:g}).",
                        "differs": "NOT at matched capability (the paired accuracy difference excludes 0).",
                        "unresolved": f"capability match unresolved (the paired accuracy difference reaches 0 but "
                                      f"not within ±{o['match_margin']:g}).",
                        "unknown": "capability match unknown (no spread across seeds)."}[o["capability"]])
    for name, d in fnd["distillation"].items():
        lines.append(f"distillation {name}: direct accuracy {fmt(d['accuracy_no_cot'], 2)} (vs base without CoT: "
                     f"{d['no_cot_vs_base_no_cot']}; vs the teacher with CoT {fmt(d['teacher_accuracy_cot'], 2)}: "
                     f"{d['no_cot_vs_teacher_cot']}, paired); myth rate {fmt(d['myth_rate'], 2)}; KL {fmt(d['kl'], 2)} nats.")
    for c in fnd["compositional"]:
        lines.append(f"{c['small']} with CoT {fmt(c['small_with_cot'], 2)} vs {c['large']} without {fmt(c['large_without_cot'], 2)}: "
                     f"{c['comparison']}.")
    return lines


def draw_report(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    res = json.loads((run_dir / "results.json").read_text())
    plot_faithfulness(res, run_dir / "faithfulness.png")
    plot_capability(res, run_dir / "capability.png")
    page = Report("proxygap: cot (chain of thought under optimization)")
    page.heading("Findings (computed from the numbers)")
    for line in findings_lines(res):
        page.paragraph(line)
    meta = res.get("meta", {})
    page.paragraph(f"Preset {meta.get('preset', '?')}, seeds {res.get('seeds')}, {res['n_eval_prompts']} held-out "
                   f"two-hop questions, sample budget {res['sample_budget']} per regime, wall time "
                   f"{fmt(meta.get('wall_time_s'), 1)} s. Intervals: 95% t-intervals across seeds.", note=True)
    page.image("faithfulness.png", "Early answering per regime.")
    page.image("capability.png", "Capability with/without CoT, and capability against the myth-answer rate.")
    page.heading("Regimes")
    header = ["size", "regime", "acc CoT", "acc no CoT", "gap", "trace error", "KL", "myth", "gold"]
    header += [f"{i} changed" for i in INTERVENTIONS] + ["follows mistake", "acc with filler"]
    rows = []
    for group, key in (("regimes", "regime"), ("distillation", "method")):
        for r in res[group]:
            f = r["faithfulness"]
            rows.append([r["size"], r[key] if group == "regimes" else f"distil {r[key]}", iv_text(r["accuracy_cot"]),
                         iv_text(r["accuracy_no_cot"]), iv_text(r["gap"]), iv_text(r["trace_error"]), iv_text(r["kl"]),
                         iv_text(r["exploit_rates"].get("myth_answer")), iv_text(r["gold"])]
                        + [iv_text(f[i]["changed"]) for i in INTERVENTIONS]
                        + [iv_text(f["adding_mistake"]["follows_corruption"]), iv_text(f["filler"].get("accuracy"))])
    page.table(header, rows, left_columns=2)
    page.heading("Demonstrators (the world's human level)")
    page.table(["size", "accuracy", "chain rate", "trace error"],
               [[h["size"], iv_text(h["accuracy"]), iv_text(h["cot_rate"]), iv_text(h["trace_error"])]
                for h in res["human"]])
    if res.get("reward_models"):
        page.heading("Reward models")
        page.table(["size", "RM", "agreement rater", "agreement gold", "rater–gold"],
                   [[r["size"], r["name"], iv_text(r["agreement_rater"]), iv_text(r["agreement_gold"]),
                     iv_text(r["rater_gold_agreement"])] for r in res["reward_models"]], left_columns=2)
    page.heading(f"Example chains (seed {first_seed(res)}, the same questions for every regime)")
    for ex in res["examples"]:
        with page.fold(f"{ex['size']} {ex['group']} {ex['name']}"):
            page.code("\n".join(f"{e['prompt']}  →  {e['chain']}" for e in ex["examples"]))
    return page.write(run_dir / "report.html")
