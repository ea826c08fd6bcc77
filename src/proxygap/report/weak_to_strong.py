"""The `weak-to-strong` report: PGR per supervisor and loss, PGR per supervisor error type, the
accuracies behind each PGR, and the findings computed from results.json."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from proxygap.report.html import Report, fmt  # noqa: E402
from proxygap.report.plots import error_bar as _err, iv_text, mean_of as _m, save_figure  # noqa: E402




def _label(p: dict) -> str:
    return f"{p['weak']}→{p['strong']}" + (" +conf" if p["confidence_loss"] else "")


def plot_pgr(res: dict, path: Path) -> None:
    tasks = sorted({p["task"] for p in res["pairs"]})
    fig, axes = plt.subplots(1, len(tasks), figsize=(6.5 * len(tasks), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        rows = [p for p in res["pairs"] if p["task"] == task]
        m, lo, hi = np.array([_err(p["pgr"]) for p in rows]).T if rows else ([], [], [])
        colors = ["tab:orange" if p["confidence_loss"] else "tab:blue" for p in rows]
        ax.barh(np.arange(len(rows)), m, xerr=[lo, hi], color=colors, capsize=2)
        ax.set_yticks(np.arange(len(rows)), [_label(p) for p in rows], fontsize=7)
        ax.invert_yaxis()
        ax.axvline(0, color="k", lw=0.8)
        ax.axvline(1, color="k", lw=0.8, ls=":")
        ax.set_xlabel("PGR (0: the supervisor's level; 1: the gold-trained ceiling); orange: confidence loss")
        ax.set_title(f"task {task}")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def plot_error_types(res: dict, path: Path) -> None:
    rows = [p for p in res["pairs"] if p["supervisor"] == "rater"]
    causes = sorted({c for p in rows for c in p["pgr_by_error"]})
    if not rows or not causes:
        fig = plt.figure(figsize=(4, 1))
        fig.text(0.1, 0.5, "no rater supervisor in this run")
        save_figure(fig, path)
        plt.close(fig)
        return
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(causes), 0.5 + 0.35 * len(rows)))
    grid = np.array([[_m(p["pgr_by_error"].get(c, {}).get("pgr")) for c in causes] for p in rows])
    im = ax.imshow(grid, cmap="RdBu", vmin=-0.5, vmax=1.5, aspect="auto")
    for i, p in enumerate(rows):
        for j, c in enumerate(causes):
            e = p["pgr_by_error"].get(c)
            if e is not None and np.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2f}\nn={e['n']}", ha="center", va="center", fontsize=6)
    ax.set_xticks(range(len(causes)), causes, rotation=30, fontsize=7)
    ax.set_yticks(range(len(rows)), [f"{p['task']} {_label(p)}" for p in rows], fontsize=7)
    ax.set_title("rater supervisor: per error type, the student's accuracy / the ceiling's on the items "
                 "the rater labels wrongly (1 = corrected as well as gold labels would; 0 = repeated)", fontsize=8)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def draw_report(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    res = json.loads((run_dir / "results.json").read_text())
    plot_pgr(res, run_dir / "pgr.png")
    plot_error_types(res, run_dir / "pgr_by_error.png")
    page = Report("proxygap: weak-to-strong (which supervisor errors does a stronger student repeat?)")
    page.heading("Findings (computed from the numbers)")
    for task, m in res.get("majority_accuracy", {}).items():
        # one ceiling per strong size (every row of a size shares it): count ceilings, not rows
        ceilings = {p["strong"]: p for p in res["pairs"] if p["task"] == task}
        above = sorted(str(s) for s, p in ceilings.items() if p.get("ceiling_above_majority"))
        page.paragraph(f"task {task}: always answering the commoner gold label scores {iv_text(m)}; the gold-trained "
                       f"ceiling beats that for {len(above)} of {len(ceilings)} strong sizes"
                       f"{' (' + ', '.join(above) + ')' if above else ''}. Where it does not, the students learned "
                       "the class balance only, and PGR there says nothing about which errors they repeat.")
    for c in res["findings"]["confidence_loss"]:
        page.paragraph(f"{c['task']} {c['weak']}→{c['strong']} ({c['supervisor']}): PGR {fmt(c['pgr_without'], 2)} "
                       f"without the confidence loss, {fmt(c['pgr_with'], 2)} with it; the student's accuracy, paired "
                       f"by seed: {c['effect']} ({iv_text(c['accuracy_change'])}).")
    for e in res["findings"]["error_types"]:
        loss = "with the confidence loss" if e.get("confidence_loss") else "cross-entropy"
        orders = e.get("orders", [])
        claimed = ("; ".join(f"{o['repeated_more']} repeated more than {o['than']} ({iv_text(o['difference'])})"
                           for o in orders) if orders else "no type repeated more than another by the paired per-seed test")
        page.paragraph(f"{e['task']} {e['weak']}→{e['strong']} ({e['supervisor']}, {loss}): per error type, the "
                       "student's accuracy over the ceiling's "
                       + ", ".join(f"{c} {iv_text(v) if isinstance(v, dict) else fmt(v, 2)}"
                                   for c, v in e["pgr_by_type"].items()) + f"; {claimed}.")
    meta = res.get("meta", {})
    page.paragraph(f"Preset {meta.get('preset', '?')}, seeds {res.get('seeds')}, wall time "
                   f"{fmt(meta.get('wall_time_s'), 1)} s. Intervals: 95% t-intervals across seeds.", note=True)
    page.image("pgr.png", "PGR per pair, supervisor and loss.")
    page.image("pgr_by_error.png", "Per error type of the rater supervisor.")
    page.heading("Pairs")
    page.table(["task", "supervisor", "weak", "strong", "conf loss", "weak acc", "student acc", "ceiling acc",
                "gap (ceiling − weak)", "PGR", "seeds without PGR"],
               [[p["task"], p["supervisor"], p["weak"], p["strong"], "yes" if p["confidence_loss"] else "no",
                 iv_text(p["weak_accuracy"]), iv_text(p["student_accuracy"]), iv_text(p["ceiling_accuracy"]),
                 iv_text(p["gap"]) if "gap" in p else "", iv_text(p["pgr"]), p.get("pgr_undefined_seeds", "")]
                for p in res["pairs"]], left_columns=5)
    page.paragraph("A seed has no PGR where the ceiling does not beat the supervisor beyond the test items' sampling "
                   "noise (Newcombe's interval of the gap excludes 0); pgr_of_means in results.json only where the "
                   "seeds' gap clears 0.", note=True)
    page.heading("Per error type")
    rows = []
    for p in res["pairs"]:
        for c, e in p["pgr_by_error"].items():
            rows.append([p["task"], p["supervisor"], _label(p), c, e["n"], iv_text(e["student"]), iv_text(e["ceiling"]),
                         iv_text(e["pgr"])])
    page.table(["task", "supervisor", "pair", "error type", "n (all seeds)", "student acc", "ceiling acc", "PGR"],
               rows, left_columns=4)
    return page.write(run_dir / "report.html")
