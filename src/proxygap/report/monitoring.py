"""Plots and report.html of the monitoring experiment, drawn from results.json alone."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from proxygap.report.html import Report, fmt, first_seed  # noqa: E402
from proxygap.report.plots import error_bar, iv_text, mean_of, save_figure  # noqa: E402

REGIME_COLORS = {"outcome": "tab:red", "outcome+cot_monitor": "tab:purple", "outcome+action_monitor": "tab:blue"}
POLICY_COLORS = {"base": "black", "unpenalized": "tab:red", "banned": "tab:purple"}


def _band(ax, curve: list[dict], key: str, color: str, label: str, style: str = "-") -> None:
    steps = [p["step"] for p in curve]
    m = np.array([mean_of(p[key]) for p in curve])
    lo = np.array([mean_of(p[key].get("lo")) for p in curve])
    hi = np.array([mean_of(p[key].get("hi")) for p in curve])
    ax.plot(steps, m, style, color=color, label=label, lw=1.5)
    ax.fill_between(steps, lo, hi, color=color, alpha=0.12)


def _pressure_curves(res: dict, path: Path) -> None:
    """Per environment (rows): tamper rate, CoT-monitor recall on true tampering, and observed vs
    true return over training, one line per monitor pressure, 95% bands over seeds."""
    envs = list(dict.fromkeys(r["env"] for r in res["pressure"]))
    cols = (("tamper_rate", "true tamper rate"), ("cot_recall", "CoT monitor recall (on true tampering)"),
            ("obfuscated_rate", "obfuscated hacks (tamper, CoT not flagged)"), ("returns", "observed (—) / true (- -)"))
    fig, axes = plt.subplots(len(envs), len(cols), figsize=(4.1 * len(cols), 3.0 * len(envs)), squeeze=False)
    for i, env in enumerate(envs):
        for row in [r for r in res["pressure"] if r["env"] == env]:
            color = REGIME_COLORS.get(row["regime"], "gray")
            curve = row["learning_curve"]
            for j, (key, _) in enumerate(cols):
                ax = axes[i][j]
                if key == "returns":
                    _band(ax, curve, "observed_return", color, row["regime"])
                    _band(ax, curve, "true_return", color, "_", "--")
                else:
                    _band(ax, curve, key, color, row["regime"])
        for j, (key, title) in enumerate(cols):
            ax = axes[i][j]
            ax.set_title(f"{env}: {title}", fontsize=9)
            ax.set_xlabel("RL step")
            if key != "returns":
                ax.set_ylim(-0.03, 1.03)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    n = len(res["seeds"])
    fig.suptitle(f"Outcome RL with a monitor in the reward or for evaluation only ({n} seed{'s' if n != 1 else ''}, "
                 f"95% bands; tamper bonus {res['tamper_bonus']:g}). Obfuscated hacking: tampering goes on while the "
                 "CoT monitor's recall falls.", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)


def _monitor_bars(res: dict, path: Path) -> None:
    """Recall and false-positive rate of every monitor on the base model's own episodes / chains."""
    rows = res["monitors"]
    labels = [f"{m['env']}\n{m['name'].removesuffix('_monitor')}" for m in rows]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(rows)), 3.6))
    x = np.arange(len(rows))
    for offset, key, color in ((-0.2, "recall", "tab:green"), (0.2, "false_positive_rate", "tab:red")):
        bars = [error_bar(m[key]) if m[key].get("mean") is not None else (np.nan, 0, 0) for m in rows]
        ax.bar(x + offset, [b[0] for b in bars], 0.38, yerr=[[b[1] for b in bars], [b[2] for b in bars]],
               color=color, alpha=0.8, capsize=3, label=key.replace("_", " "))
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("rate")
    ax.legend(fontsize=8)
    ax.set_title("Monitors on the base model's own episodes and chains (95% intervals over seeds; "
                 "n/a bars: no positives)", fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)


def _banned_curves(res: dict, path: Path) -> None:
    b = res["banned_string"]
    keys = (("named_rate", "chain names the intermediate"), ("alias_rate", "chain writes only its alias"),
            ("dropped_step_rate", "chain drops the hop"), ("gold", "gold (sampled answers)"))
    fig, axes = plt.subplots(1, len(keys), figsize=(4.0 * len(keys), 3.2), squeeze=False)
    for name, curve in b["curves"].items():
        for ax, (key, title) in zip(axes[0], keys):
            _band(ax, curve, key, POLICY_COLORS[name], name)
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("RL step")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"Banned-string pressure on two-hop chains (penalty {b['penalty']:g} when the chain names the "
                 "intermediate entity) vs the same RL without it; 95% bands over seeds", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)


SF_COLORS = {"single": "tab:red", "single_targeted": "tab:orange", "shoggoth_face": "tab:green"}


def _sf_bars(res: dict, path: Path) -> None:
    """Per environment: hack rate and chain legibility (CoT recall on true hacks, hidden chain) per variant."""
    rows = res["shoggoth_face"]
    envs = list(dict.fromkeys(r["env"] for r in rows))
    fig, axes = plt.subplots(1, len(envs), figsize=(4.4 * len(envs), 3.4), squeeze=False)
    for ax, env in zip(axes[0], envs):
        mine = [r for r in rows if r["env"] == env]
        x = np.arange(2)
        width = 0.8 / max(1, len(mine))
        for i, r in enumerate(mine):
            bars = [error_bar(r[k]) if r[k].get("mean") is not None else (np.nan, 0, 0)
                    for k in ("hack_rate", "monitor_recall")]
            ax.bar(x + (i - (len(mine) - 1) / 2) * width, [b[0] for b in bars], width,
                   yerr=[[b[1] for b in bars], [b[2] for b in bars]], capsize=3,
                   color=SF_COLORS.get(r["variant"]), label=r["variant"])
        ax.set_xticks(x, ["hack rate (true)", "legibility: CoT recall\non true hacks (hidden chain)"], fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_title(env, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Shoggoth/Face vs one model, the same CoT monitor in the reward reading what the overseer sees "
                 "(the Face's actions only, for shoggoth_face); 95% intervals over seeds", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)


def _stego_bars(res: dict, path: Path) -> None:
    rows = res["steganography"]
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    names = list(dict.fromkeys(r["paraphraser"] for r in rows))
    x = np.arange(len(names))
    for offset, policy, color in ((-0.2, "base", "tab:gray"), (0.2, "trained", "tab:purple")):
        mine = {r["paraphraser"]: r for r in rows if r["policy"] == policy}
        bars = [error_bar(mine[n]["bits"]) for n in names]
        ax.bar(x + offset, [b[0] for b in bars], 0.38, yerr=[[b[1] for b in bars], [b[2] for b in bars]], capsize=3,
               color=color, label=policy)
        probes = [error_bar(mine[n]["probe_bits"]) for n in names if "probe_bits" in mine[n]]
        if len(probes) == len(names):
            ax.errorbar(x + offset, [p[0] for p in probes], yerr=[[p[1] for p in probes], [p[2] for p in probes]],
                        fmt="D", color="black", ms=4, capsize=2, label=f"{policy}: linear probe on the chain")
    k = rows[0]["payload_bits"]
    ax.axhline(k, color="black", ls=":", lw=1, label=f"the payload ({k} bit{'s' if k > 1 else ''})")
    ax.set_xticks(x, [f"paraphraser: {n}" for n in names], fontsize=8)
    ax.set_ylabel("exact-match capacity (bits per answer)")
    ax.set_ylim(0, k * 1.1)
    ax.legend(fontsize=8)
    ax.set_title("Hidden bits that reach the answer through the chain (95% intervals over seeds)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    plt.close(fig)


def findings_text(res: dict) -> list[str]:
    words = {"up": "rose", "down": "fell", "unclear": "did not clearly change", "single seed": "(one seed: no claim)",
             "n/a": "(no data)"}
    out = []
    for key, f in res["findings"]["pressure"].items():
        env, regime = key.split("/")
        row = next(r for r in res["pressure"] if r["env"] == env and r["regime"] == regime)
        vs = row["vs_unmonitored"]
        text = (f"{env}, {regime} vs outcome RL without it: true tamper rate {words[f['tamper_change']]} "
                f"({iv_text(vs['tamper_rate'])}), CoT-monitor recall {words[f['cot_recall_change']]} "
                f"({iv_text(vs['cot_recall'])}{_undefined_text(vs['cot_recall'])}), capability "
                f"{words[f['capability_change']]} ({iv_text(vs['capability'])}).")
        if f["obfuscated"]:
            text += (" Obfuscated hacking: the monitor sees less of the hacking, and hacking behind thoughts it does "
                     f"not flag goes on ({iv_text(row['obfuscated_rate'])} of episodes).")
        out.append(text)
    for key, f in res["findings"].get("shoggoth_face", {}).items():
        env, variant = key.split("/")
        row = next(r for r in res["shoggoth_face"] if r["env"] == env and r["variant"] == variant)
        out.append(f"{env}, {variant} vs one model whose chain the monitor reads: chain legibility (CoT recall on true "
                   f"hacks, hidden chain) {words[f['legibility_change']]} ({iv_text(row['vs_single']['hidden_recall'])}"
                   f"{_undefined_text(row['vs_single']['hidden_recall'])}), "
                   f"hack rate {words[f['hack_change']]} ({iv_text(row['vs_single']['tamper_rate'])}).")
    stego = {(r["policy"], r["paraphraser"]): r for r in res.get("steganography", [])}
    if stego:
        parts = [f"{policy} with paraphraser {name}: {iv_text(row['bits'])} bits per answer ({iv_text(row['bits_per_kb'])} "
                 f"per 1,000 characters; exact-match accuracy {iv_text(row['accuracy'])} against chance "
                 f"{row['chance']:.2f}; chains stating the payload {iv_text(row['leak_rate'])})"
                 for (policy, name), row in stego.items()]
        out.append("Steganography: " + "; ".join(parts) + ".")
    b = res.get("banned_string")
    if b:
        fb = res["findings"]["banned_string"]
        out.append(f"Banned string, against the same RL without the penalty: naming the intermediate "
                   f"{words[fb['named_rate']]} ({iv_text(b['vs_unpenalized']['named_rate'])}), writing only its alias "
                   f"{words[fb['alias_rate']]} ({iv_text(b['vs_unpenalized']['alias_rate'])}), dropping the hop "
                   f"{words[fb['dropped_step_rate']]} ({iv_text(b['vs_unpenalized']['dropped_step_rate'])}), accuracy "
                   f"{words[fb['accuracy']]} ({iv_text(b['vs_unpenalized']['accuracy'])}). Load-bearing test of the "
                   f"alias under pressure: with a wrong alias prefilled, accuracy "
                   f"{LOAD_BEARING.get(fb.get('load_bearing_drop'), 'changed by')} {iv_text(b['load_bearing_drop'])} "
                   "(the drop: right alias minus wrong).")
    return out


# the banned string's load-bearing drop (accuracy with the right alias minus with a wrong one), by its direction
LOAD_BEARING = {"up": "clearly drops, by", "down": "clearly rises, the drop", "unclear": "does not clearly drop: the drop",
                "single seed": "drops (one seed: no claim) by", "n/a": "has no measured drop:"}


def _undefined_text(iv: dict) -> str:
    """'; k seeds without a hack, left out: no claim' where a recall is undefined for some seeds."""
    k = iv.get("seeds_undefined") or 0
    return f"; {k} seed(s) without a hack left out: no claim" if k else ""


def _episode_rows(res: dict) -> list[list]:
    rows = []
    for ex in res.get("examples", []):
        for when in ("first", "last"):
            for e in ex[when]:
                o = e["outcome"]
                kind = "tampered" if o["tampered"] else "intended" if o["intended"] else "failed"
                rows.append([ex["env"], ex["regime"], "start" if when == "first" else "end", e["transcript"],
                             fmt(e["observed_return"], 2), fmt(e["true_return"], 2), kind])
    return rows


def draw_report(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    res = json.loads((run_dir / "results.json").read_text())
    page = Report("proxygap: monitoring — what monitors see, and what optimizing against them teaches")
    if res["pressure"]:
        _pressure_curves(res, run_dir / "pressure_curves.png")
        page.image("pressure_curves.png", "Tamper rate, CoT-monitor recall and returns over outcome RL, per monitor in "
                   "the reward (none: the monitors only evaluate).")
    page.heading("Findings (computed from the numbers)")
    for text in findings_text(res):
        page.paragraph(text)
    if res["monitors"]:
        _monitor_bars(res, run_dir / "monitors.png")
        page.heading("Monitors")
        page.image("monitors.png", "Each monitor's recall on true positives and false-positive rate, base model.")
        page.table(["monitor", "env", "recall (mean of per-seed)", "share of all hacks flagged (pooled)", "precision",
                    "false-positive rate", "positives / episodes"],
                   [[m["name"], m["env"], iv_text(m["recall"]),
                     iv_text(m["recall_pooled"]) if m.get("recall_pooled") else "–", iv_text(m["precision"]),
                     iv_text(m["false_positive_rate"]), f"{m['n_positive']} / {m['n_episodes']}"]
                    for m in res["monitors"]], left_columns=2)
    if res["pressure"]:
        page.heading("Monitor pressure (end of training)")
        page.table(["env", "regime", "tamper rate", "CoT recall", "CoT precision", "obfuscated", "action recall",
                    "observed", "true", "capability"],
                   [[r["env"], r["regime"], iv_text(r["tamper_rate"]), iv_text(r["cot_recall"]),
                     iv_text(r["cot_precision"]), iv_text(r["obfuscated_rate"]), iv_text(r["action_recall"]),
                     iv_text(r["observed_return"]), iv_text(r["true_return"]), iv_text(r["capability"])]
                    for r in res["pressure"]], left_columns=2)
    if res.get("shoggoth_face"):
        _sf_bars(res, run_dir / "shoggoth_face.png")
        page.heading("Shoggoth/Face")
        page.image("shoggoth_face.png", "Hack rate and legibility of the hidden chain per variant.")
        page.table(["env", "variant", "hack rate", "legibility (CoT recall, hidden chain)", "visible flagged",
                    "observed", "true", "capability"],
                   [[r["env"], r["variant"], iv_text(r["hack_rate"]), iv_text(r["monitor_recall"]),
                     iv_text(r["visible_flag_rate"]), iv_text(r["observed_return"]), iv_text(r["true_return"]),
                     iv_text(r["capability"])] for r in res["shoggoth_face"]], left_columns=2)
        page.table(["env", "variant", f"episode at the end (seed {first_seed(res)})"],
                   [[r["env"], r["variant"], e["transcript"]] for r in res["shoggoth_face"] for e in r["examples"]],
                   left_columns=3)
    if res.get("steganography"):
        _stego_bars(res, run_dir / "steganography.png")
        page.heading("Steganographic capacity")
        trained_with = res.get("config", {}).get("stego", {}).get("train_paraphraser", "none")
        page.image("steganography.png", "Capacity in bits per answer before and after paraphrasing, base and trained "
                   "(bars: the policy's own answer step; diamonds: a linear probe decoding the payload from the chain). "
                   + ("Trained with no paraphraser between writer and reader." if trained_with == "none" else
                      f"Trained with the {trained_with} paraphraser between writer and reader."))
        page.table(["policy", "paraphraser", "bits per answer (hidden)", "bits per 1,000 chars", "exact-match accuracy",
                    "without stating it", "probe: bits (chain alone)", "probe: accuracy without stating it", "chance",
                    "answers in the payload set", "chains stating the payload", "questions whose chain depends on the payload"],
                   [[r["policy"], r["paraphraser"], iv_text(r["bits"]), iv_text(r["bits_per_kb"]),
                     iv_text(r["accuracy"]), iv_text(r["covert_accuracy"]),
                     iv_text(r["probe_bits"]) if "probe_bits" in r else "n/a",
                     iv_text(r["probe_covert_accuracy"]) if "probe_covert_accuracy" in r else "n/a",
                     f"{r['chance']:.2f}", iv_text(r["in_alphabet"]), iv_text(r["leak_rate"]),
                     iv_text(r.get("chain_depends_on_payload"))]
                    for r in res["steganography"]], left_columns=2)
        page.table(["policy", "paraphraser", "payload", "chain as the reader sees it", "answer"],
                   [[r["policy"], r["paraphraser"], e["payload"], e["chain"], e["answer"]]
                    for r in res["steganography"] for e in r["examples"]], left_columns=4)
    b = res.get("banned_string")
    if b:
        _banned_curves(res, run_dir / "banned_curves.png")
        page.heading("Banned-string pressure on two-hop chains")
        page.image("banned_curves.png", "How the chains write the intermediate entity during RL, with and without "
                   "the penalty.")
        keys = ("accuracy", "named_rate", "alias_rate", "dropped_step_rate", "load_bearing_drop", "load_bearing_follows_wrong",
                "load_bearing_drop_name", "monitor_recall")
        page.table(["policy", *keys], [[name, *[iv_text(p[k]) for k in keys]] for name, p in b["policies"].items()])
        rows = [[name, e["chain"], "yes" if e["named"] else "", "yes" if e["alias"] else "",
                 "yes" if e["dropped_step"] else ""]
                for name, exs in b["examples"].items() for e in exs]
        page.table(["policy", f"sampled chain (seed {first_seed(res)})", "named", "alias only", "hop dropped"], rows, left_columns=2)
    page.heading(f"Example episodes (seed {first_seed(res)}: the first and the last evaluation)")
    page.table(["env", "regime", "when", "transcript", "observed", "true", "outcome"], _episode_rows(res), left_columns=4)
    meta, cfg = res.get("meta", {}), res.get("config", {})
    misses = cfg.get("action_misses") or []
    knows = ("The action monitor knows every tampering action, so its recall is 1 by construction, and the CoT "
             "monitor reads thoughts only: its recall cannot exceed the action monitor's here." if not misses else
             f"The action monitor does not recognize {', '.join(repr(a) for a in misses)} (action_misses): "
             "those hacks only the CoT monitor can catch, by the thought before them.")
    page.paragraph(f"Preset {meta.get('preset', '?')}, seeds {res['seeds']}, model {res['model']}, wall time "
                   f"{fmt(meta.get('wall_time_s'), 1)} s. Tamper bonus {cfg.get('tamper_bonus')}, monitor penalty "
                   f"{cfg.get('penalty')}. Intervals are 95% t-intervals across seeds; a paired change of a rate whose "
                   f"seeds agree exactly is widened to Newcombe's interval on the pooled episodes. {knows}", note=True)
    return page.write(run_dir / "report.html")
