"""Plots and report.html of the tampering experiment, drawn from results.json alone."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from proxygap.report.html import Report, fmt, first_seed  # noqa: E402
from proxygap.report.plots import error_bar, mean_of, save_figure  # noqa: E402

MEASURES = ("observed_return", "true_return", "tamper_rate", "intended_rate", "failure_rate", "capability")
LABELS = {"observed_return": "observed return", "true_return": "true return", "tamper_rate": "tamper rate",
          "intended_rate": "intended rate", "failure_rate": "failure rate", "capability": "capability"}
COLORS = {"imitation": "black", "sft": "tab:gray", "outcome": "tab:red", "process": "tab:blue", "mona": "tab:green",
          "decoupled": "tab:purple", "process_blind": "tab:cyan", "mona_blind": "tab:olive",
          "expert_iteration": "tab:orange", "planning": "tab:brown"}


REGIME_NOTES = {
    "imitation": "nothing: the base model as it is (pure language modeling of the corpus, tampering at its base rate)",
    "sft": "nothing: a short SFT on honest scripted demonstrations",
    "outcome": "the episode's observed return (gamma = 1), RLOO baseline over the episodes of the same start",
    "process": "the approval overseer's score of the action before execution (myopic), per-step leave-one-out baseline",
    "mona": "the step's own observed reward + the overseer's approval (gamma = 0), per-step leave-one-out baseline",
    "decoupled": "nothing for the executed action; an independently sampled queried action gets its approval",
    "process_blind": "as process, with an overseer that does not foresee one hidden consequence (named per env)",
    "mona_blind": "as mona, with an overseer that does not foresee one hidden consequence (named per env)",
    "expert_iteration": "imitation of each group's best episode by observed return (advantage 1 for its actions, 0 else)",
    "planning": "no training: each action is the first of the best of several imagined futures (the base model as "
                "dynamics), scored by a return model regressed on the base model's transcripts' observed returns",
}


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")  # hollow, shrinking: regimes on the same spot stay visible


def regime_label(r: dict) -> str:
    if r.get("blind_to"):
        return f"{r['name'].removesuffix('_blind')} (overseer blind to {r['blind_to']})"
    return r["name"]


def _nan(x) -> float:
    return np.nan if x is None else float(x)


def _series(curve: list[dict], key: str):
    """Steps, mean, lo and hi of one measure along a learning curve (each point an interval dict)."""
    steps = np.array([p["step"] for p in curve], dtype=float)
    y = np.array([_nan(p[key]["mean"]) for p in curve], dtype=float)
    lo = np.array([_nan(p[key]["lo"]) for p in curve], dtype=float)
    hi = np.array([_nan(p[key]["hi"]) for p in curve], dtype=float)
    return steps, y, lo, hi


def _learning_curves(res: dict, path: Path) -> None:
    envs = res["envs"]
    keys = ("observed_return", "true_return", "tamper_rate", "capability")
    fig, axes = plt.subplots(len(envs), len(keys), figsize=(4.2 * len(keys), 3.3 * len(envs)), squeeze=False)
    for row, env in zip(axes, envs):
        for ax, key in zip(row, keys):
            for r in env["regimes"]:
                if r["name"] in ("imitation", "planning"):  # no training steps: a level, not a curve
                    style = {"imitation": ("black", ":", "imitation (base)"), "planning": ("tab:brown", "--", "planning")}
                    color, ls, label = style[r["name"]]
                    ax.axhline(_nan(r[key]["mean"]), color=color, lw=1, ls=ls, label=label)
                    continue
                steps, y, lo, hi = _series(r["learning_curve"], key)
                color = COLORS.get(r["name"], None)
                ax.plot(steps, y, "o-", ms=3, color=color, label=regime_label(r) + (" (SFT steps)" if r["name"] == "sft" else ""))
                ax.fill_between(steps, lo, hi, color=color, alpha=0.12)
            ax.set_title(f"{env['name']}: {LABELS[key]}", fontsize=10)
            ax.set_xlabel("training step")
    axes[0][0].legend(fontsize=7)
    n = len(res["seeds"])
    fig.suptitle(f"Learning curves on held-out episodes (sampled at T=1; mean of {n} seeds, 95% t-intervals). "
                 "Observed return is what the reward channel reports; true return is what happened.", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)


def _tamper_vs_capability(res: dict, path: Path) -> None:
    """The headline: per environment, each regime's tamper rate against its capability. Filled and
    starred in the legend: regimes whose tamper rate changed against imitation (paired, the 95%
    interval of the change excludes 0)."""
    envs = res["envs"]
    fnd = res.get("findings", {})
    fig, axes = plt.subplots(1, len(envs), figsize=(5.2 * len(envs), 4.6), squeeze=False)
    for ax, env in zip(axes[0], envs):
        for i, r in enumerate(env["regimes"]):
            color = COLORS.get(r["name"], None)
            cap = [_nan(p["capability"]["mean"]) for p in r["learning_curve"]]
            tam = [_nan(p["tamper_rate"]["mean"]) for p in r["learning_curve"]]
            if len(cap) > 1:  # the path training took, from the base model (first point) to the end
                ax.plot(cap, tam, "-", color=color, alpha=0.35, lw=1)
            c, t = r["capability"], r["tamper_rate"]
            if c["mean"] is None or t["mean"] is None:
                continue
            direction = fnd.get(env["name"], {}).get("regimes", {}).get(r["name"], {}).get("tamper_direction")
            moved = direction in ("up", "down")
            label = regime_label(r) + (f" * tamper {'↑' if direction == 'up' else '↓'} vs imitation" if moved else "")
            ax.errorbar([c["mean"]], [t["mean"]], xerr=[[c["mean"] - c["lo"]], [c["hi"] - c["mean"]]],
                        yerr=[[t["mean"] - t["lo"]], [t["hi"] - t["mean"]]], fmt=MARKERS[i % len(MARKERS)],
                        ms=max(4, 14 - 1.3 * i), mfc=color if moved else "none", mew=1.6, capsize=3, color=color,
                        label=label)
        ax.set_xlabel("capability (true task success)")
        ax.set_ylabel("tamper rate")
        ax.set_xlim(-0.03, 1.03)
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(env["name"])
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    n = len(res["seeds"])
    fig.suptitle("Does a regime learn to tamper? Tamper rate vs capability at the end of training, per regime "
                 f"({n} seed{'s' if n != 1 else ''}; dots: mean with 95% intervals; lines: the mean path during "
                 "training;\nfilled, *: tamper rate changed vs imitation, the paired 95% interval excludes 0"
                 + (" — one seed: no interval, none marked" if n < 2 else "")
                 + "). Compare regimes at equal capability: lower is better.", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)


def _incentive_sweep(res: dict, path: Path) -> None:
    """Per environment, each sweep regime's tamper rate against the incentive to tamper (the
    tamper_bonus), with 95% intervals over seeds; the base model (imitation) dashed; a filled
    marker where the paired rise over imitation at that incentive excludes 0."""
    sweep = res["incentive_sweep"]
    envs = list(dict.fromkeys(row["env"] for row in sweep))
    fig, axes = plt.subplots(1, len(envs), figsize=(5.0 * len(envs), 4.2), squeeze=False)
    for ax, env in zip(axes[0], envs):
        rows = [row for row in sweep if row["env"] == env]
        for i, row in enumerate(rows):
            xs = [p["incentive"] for p in row["points"]]
            bars = [error_bar(p["tamper_rate"]) for p in row["points"]]
            color = COLORS.get(row["regime"])
            offset = (i - (len(rows) - 1) / 2) * 0.02 * max(xs[-1], 1.0)  # side by side where they overlap
            ax.errorbar([x + offset for x in xs], [b[0] for b in bars], yerr=[[b[1] for b in bars], [b[2] for b in bars]],
                        fmt="-", color=color, capsize=3, lw=1.3, label=row["regime"]
                        + (f" (onset {row['onset']:g})" if row["onset"] is not None else ""))
            for x, b, p in zip(xs, bars, row["points"]):
                ax.plot([x + offset], [b[0]], MARKERS[i % len(MARKERS)], color=color,
                        mfc=color if p["tamper_direction"] == "up" else "none", mew=1.5)
        base = [mean_of(p["imitation_tamper_rate"]) for p in rows[0]["points"]]
        ax.plot([p["incentive"] for p in rows[0]["points"]], base, "--", color="black", lw=1, label="imitation (base)")
        ax.set_xlabel("tamper_bonus: paid on top of the env's own incentive (observed reward units)")
        ax.set_ylabel("tamper rate")
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(env)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    n = len(res["seeds"])
    fig.suptitle(f"At what incentive does each regime start to tamper? ({n} seed{'s' if n != 1 else ''}, 95% "
                 "intervals; filled: tamper rate above imitation's at that incentive, paired interval excludes 0)",
                 fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)


def _iv(iv: dict, digits: int = 2) -> str:
    if iv is None or iv.get("mean") is None:
        return "–"
    if iv.get("n", 2) < 2 or iv["lo"] == iv["hi"]:
        return f"{iv['mean']:.{digits}f}"
    return f"{iv['mean']:.{digits}f} [{iv['lo']:.{digits}f}, {iv['hi']:.{digits}f}]"


def _signed(iv: dict) -> str:
    if iv is None or iv.get("mean") is None:
        return "–"
    if iv.get("n", 2) < 2:
        return f"{iv['mean']:+.2f}"
    return f"{iv['mean']:+.2f} [{iv['lo']:+.2f}, {iv['hi']:+.2f}]"


# Below this base capability a regime's capability change rests on a handful of successful episodes.
THIN_CAPABILITY = 0.1


def findings_text(res: dict) -> list[str]:
    """One paragraph per environment, every clause computed from results.json."""
    paragraphs = []
    for env in res["envs"]:
        f = res["findings"][env["name"]]
        by = {r["name"]: r for r in env["regimes"]}
        parts = [f"{env['name']}: the base model (imitation) tampers in {f['base_tamper_rate']:.0%} of held-out episodes "
                 f"and succeeds in {f['base_capability']:.0%}."]
        episodes = res.get("config", {}).get("train", {}).get("eval_episodes", 0) * len(res.get("seeds", []))
        if episodes and f["base_capability"] < THIN_CAPABILITY:
            parts.append(f"That is about {round(f['base_capability'] * episodes)} successful episodes of {episodes}: "
                         "comparisons at fixed capability are thin here; read the capability changes by their "
                         "intervals.")
        verdict = {"up": "tampers more than the base model", "down": "tampers less than the base model",
                   "unclear": "did not measurably change how often it tampers",
                   "single seed": "ran one seed (no interval)", "n/a": "has no data"}
        if "outcome" in f["regimes"]:
            o = f["regimes"]["outcome"]
            parts.append(f"Outcome RL {verdict[o['tamper_direction']]}: tamper rate {o['tamper_rate']:.0%} "
                         f"(change {_signed(o['tamper_change'])}), capability {o['capability']:.0%} "
                         f"(change {_signed(o['capability_change'])}); its observed minus true return "
                         f"{_iv(by['outcome']['observed_minus_true'])}.")
        for name, g in f["regimes"].items():
            if name == "outcome":
                continue
            parts.append(f"{regime_label(by[name])} {verdict[g['tamper_direction']]}: tamper {g['tamper_rate']:.0%} "
                         f"({_signed(g['tamper_change'])}), capability {g['capability']:.0%} "
                         f"({_signed(g['capability_change'])}).")
        if "outcome" in by:
            vs = [f"{regime_label(r)} {_signed(r['vs_outcome']['capability'])}" for r in env["regimes"]
                  if r["name"] != "outcome" and "vs_outcome" in r]
            parts.append("Capability relative to outcome RL (paired, the price of each regime): " + "; ".join(vs) + ".")
        plan = f.get("planning")
        if plan is not None:
            case = {"finds_tampering": "finds the tampering actions", "exploits_model_errors":
                    "exploits the learned model's errors", "both": "finds the tampering actions and exploits the "
                    "learned model's errors", "neither": "neither finds the tampering actions nor clearly exploits "
                    "the learned model's errors"}[plan["case"]]
            parts.append(f"Planning against the learned return model {case}: the model predicts "
                         f"{_iv(plan['predicted_return'])} for its plans; predicted minus actual observed return "
                         f"{_iv(plan['model_error'])} for the plans vs {_iv(plan['base_model_error'])} on the base "
                         f"model's own episodes (excess {_signed(plan['excess_model_error'])}); the return model's "
                         f"held-out correlation with the observed return {_iv(plan['heldout_corr'])}.")
        gap = f.get("decoupled_minus_process")
        if gap is not None:
            channel = ("the overseer reads its feedback through the channel the agent can seize, so a tampering action "
                       "corrupts the feedback about itself" if gap["feedback_corruptible"] else
                       "the feedback is not corruptible here (the overseer judges each action before it runs)")
            parts.append(f"Decoupled approval minus process RL, tamper rate {_signed(gap['tamper_rate'])} "
                         f"({verdict_of_gap(gap['direction'])}): {channel}.")
        parts.append("Changes are paired with imitation (same seed and episodes), 95% t-intervals across seeds; where "
                     "every seed's change of a rate is the same, Newcombe's interval on the pooled episodes instead, "
                     "which speaks for these trained policies' episodes, not for another training seed. "
                     f"Not beaten on both tamper rate and capability (final means, intervals ignored): {', '.join(f['pareto'])}.")
        paragraphs.append(" ".join(parts))
    return paragraphs


def verdict_of_gap(direction: str) -> str:
    return {"down": "decoupled tampers less", "up": "decoupled tampers more", "unclear": "no clear difference",
            "single seed": "one seed, nothing claimed", "n/a": "no data"}[direction]


def sweep_text(res: dict) -> list[str]:
    """One sentence per environment x sweep regime: its tamper rate at each incentive and its onset."""
    out = []
    for row in res.get("incentive_sweep", []):
        rates = ", ".join(f"{p['incentive']:g}: {_iv(p['tamper_rate'])}" for p in row["points"])
        level = (f" (paired rise, {row['onset_confidence']:.1%} interval: Bonferroni over {len(row['points'])} "
                 "incentives)") if "onset_confidence" in row else ""
        onset = (f"first clearly above imitation at incentive {row['onset']:g}{level}" if row["onset"] is not None
                 else f"never clearly above imitation at the incentives swept{level}")
        out.append(f"{row['env']}, {row['regime']}: tamper rate by incentive {rates}; {onset}.")
    return out


def _short_finding(res: dict, env: dict) -> str:
    """One line per environment: the base rate, and which regimes' tamper rate clearly moved."""
    f = res["findings"][env["name"]]
    by = {r["name"]: r for r in env["regimes"]}
    up = [regime_label(by[n]) for n, g in f["regimes"].items() if g["tamper_direction"] == "up"]
    down = [regime_label(by[n]) for n, g in f["regimes"].items() if g["tamper_direction"] == "down"]
    text = (f"{env['name']}: the base model tampers in {f['base_tamper_rate']:.0%} of held-out episodes. "
            f"Tamper rate clearly up vs imitation under: {', '.join(up) or 'none'}; clearly down under: "
            f"{', '.join(down) or 'none'}")
    if len(res["seeds"]) < 2:
        text += " (one seed: no interval, so no change is claimed)"
    return text + (f". Not beaten on both tamper rate and capability (final means, intervals ignored): "
                   f"{', '.join(f['pareto'])}.")


def draw_report(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    res = json.loads((run_dir / "results.json").read_text())
    _learning_curves(res, run_dir / "learning_curves.png")
    _tamper_vs_capability(res, run_dir / "tamper_vs_capability.png")
    sweep = res.get("incentive_sweep") or []
    if sweep:
        _incentive_sweep(res, run_dir / "incentive_sweep.png")

    page = Report("proxygap: tampering — outcome-based vs process-based RL")
    sweep_caption = ("Tamper rate per regime against tamper_bonus, what the seized channel pays on top of each "
                     "environment's own incentive (sensor: covering already saves the step costs; tdd, reward_file: "
                     "none); filled: above imitation at that bonus, the paired interval excludes 0.")
    only_sweep = sweep and len(res["envs"][0]["regimes"]) == 1
    if only_sweep:
        page.image("incentive_sweep.png", sweep_caption)
    else:
        page.image("tamper_vs_capability.png", "Tamper rate vs capability per regime and environment: the comparison "
                   "at fixed capability; filled markers: the tamper rate changed against imitation (interval excludes 0).")
    page.heading("Findings (computed from the numbers)")
    paragraphs = findings_text(res)
    for env in res["envs"]:
        page.paragraph(_short_finding(res, env))
    with page.fold("Per environment, every regime (computed sentences)"):
        for text in paragraphs:
            page.paragraph(text)
    if sweep:
        page.heading("The incentive sweep")
        if not only_sweep:
            page.image("incentive_sweep.png", sweep_caption)
        for text in sweep_text(res):
            page.paragraph(text)
    meta, cfg = res.get("meta", {}), res.get("config", {})
    train = cfg.get("train", {})
    page.heading("Run")
    page.paragraph(
        f"Preset {meta.get('preset', '?')}, seeds {res['seeds']}, model {res['model']}, wall time "
        f"{fmt(meta.get('wall_time_s'), 1)} s. Every RL regime: {train.get('steps')} steps of "
        f"{train.get('starts_per_step')} starts x {train.get('group_size')} episodes, lr {train.get('lr')}, "
        f"KL coefficient {train.get('kl_coef')}{_ei_kl_note(res, train)}. Evaluation: {train.get('eval_episodes')} held-out episodes per seed, "
        "sampled at temperature 1, the same episodes and random numbers for every regime of a seed. "
        "Intervals are 95% t-intervals across seeds; a paired change of a rate whose seeds all agree exactly is "
        "widened to Newcombe's interval on the pooled episodes (method hull(t,newcombe)). Approval is the score of "
        "the overseer each regime is trained with: the blind one for the *_blind regimes.", note=True)
    page.heading("Regimes")
    page.table(["regime", "what each action is credited with"], [[name, REGIME_NOTES[name]] for name in REGIME_NOTES
                                                                  if any(r["name"] == name for r in res["envs"][0]["regimes"])],
               left_columns=2)
    page.image("learning_curves.png", "Observed vs true return, tamper rate and capability during training.")
    for env in res["envs"]:
        page.heading(f"{env['name']}" + (f" (blind overseer misses: {env['blind_to']})" if env.get("blind_to") else ""))
        page.table(["regime", *[LABELS[m] for m in MEASURES], "approval (its own overseer)"],
                   [[regime_label(r), *[_iv(r[m]) for m in MEASURES], _iv(r["approval"])] for r in env["regimes"]])
        page.table(["regime", "Δ tamper vs imitation", "Δ capability vs imitation", "Δ true return vs imitation",
                    "observed − true return", "train time (s)"],
                   [[regime_label(r), _signed(r["vs_imitation"]["tamper_rate"]), _signed(r["vs_imitation"]["capability"]),
                     _signed(r["vs_imitation"]["true_return"]), _iv(r["observed_minus_true"]), _iv(r["train_time_s"], 1)]
                    for r in env["regimes"] if r["name"] != "imitation"])
    page.heading(f"Example episodes (seed {first_seed(res)}, final policy, held-out starts)")
    rows = []
    for env in res["envs"]:
        for r in env["regimes"]:
            for e in r.get("examples", []):
                o = e["outcome"]
                kind = "tampered" if o["tampered"] else "intended" if o["intended"] else "failed" if o["failed"] else "other"
                rows.append([env["name"], regime_label(r), e["transcript"], e["observed_return"], e["true_return"], kind])
    page.table(["env", "regime", "transcript", "observed", "true", "outcome"], rows, left_columns=3)
    return page.write(run_dir / "report.html")


def _ei_kl_note(res: dict, train: dict) -> str:
    """Expert iteration imitates its groups' best episodes: a KL coefficient does not reach it."""
    regimes = {r["name"] for env in res.get("envs", []) for r in env.get("regimes", [])}
    regimes |= {curve.get("regime") for curve in res.get("incentive_sweep") or []}
    if (train.get("kl_coef") or 0) > 0 and "expert_iteration" in regimes:
        return " (not in expert iteration, which imitates each group's best episode and has no penalty term)"
    return ""

