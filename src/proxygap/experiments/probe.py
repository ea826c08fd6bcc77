"""`proxygap run probe`: the base model's table, as a run directory with a plot and a report.

What did the base model learn, measured against the world? Every optimization experiment
starts from these numbers: a behaviour the base model never produces cannot be found by a
KL-penalized optimizer, and one it produces at the corpus rate can.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from proxygap.config import ConfigError, knob, nested  # noqa: E402
from proxygap.experiments.spec import Experiment, ExperimentConfig, Unit, UnitContext  # noqa: E402
from proxygap.measure.probe import ProbeConfig, format_table, probe  # noqa: E402
from proxygap.report.html import Report  # noqa: E402
from proxygap.report.plots import save_figure  # noqa: E402


@dataclass
class ProbeExperimentConfig(ExperimentConfig):
    seeds: tuple[int, ...] = knob((0,), "the probe's sampling seed (exactly one: the probe is a table, not a sweep)", lo=0)
    model: str = knob("default", "base model directory, or 'default' for the embedded one")
    world: str = knob("", "world directory or world.json to judge against ('' = the one the model was trained on)")
    probe: ProbeConfig = nested(ProbeConfig, "what the probe samples")

    def check(self) -> None:
        super().check()
        if len(self.seeds) != 1:
            raise ConfigError(f"the probe takes exactly one seed, got {list(self.seeds)}")


def run_unit(cfg: ProbeExperimentConfig, unit: Unit, ctx: UnitContext) -> dict:
    from proxygap.pipeline.base_model import load_base_model

    base = load_base_model(None if cfg.model == "default" else cfg.model, cfg.world or None)
    result = probe(base.model, base.tokenizer, base.world, base.corpus_rates, cfg.probe, seed=unit.seed)
    return {"model": str(base.path), **result}


def aggregate(cfg: ProbeExperimentConfig, results: dict[str, dict], prepared: dict | None) -> dict:
    (result,) = results.values()
    return {"seeds": list(cfg.seeds), **result}


def report(run_dir: Path) -> None:
    results = json.loads((run_dir / "results.json").read_text())
    behaviours = results["behaviours"]
    names = list(behaviours)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    xs = range(len(names))
    corpus = [behaviours[n]["corpus_rate"] or 0 for n in names]
    sampled = [behaviours[n]["sample_rate"] or 0 for n in names]
    err = [[max(0, s - behaviours[n]["sample_ci95"][0]) for n, s in zip(names, sampled)],
           [max(0, behaviours[n]["sample_ci95"][1] - s) for n, s in zip(names, sampled)]]
    ax.bar([x - 0.2 for x in xs], corpus, width=0.4, label="corpus (what it learned from)")
    ax.bar([x + 0.2 for x in xs], sampled, width=0.4, yerr=err, capsize=3, label="base-model samples (T=1)")
    ax.set_xticks(list(xs), [n.replace("_", " ") for n in names], rotation=35, ha="right")
    ax.set_ylabel("rate (over applicable answers)")
    ax.set_title("Behaviour rates: corpus vs base-model samples (95% Wilson intervals)")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, run_dir / "behaviours.png", dpi=110)
    plt.close(fig)

    page = Report("proxygap probe: what did the base model learn?")
    page.paragraph(f"Model: {results['model']}. Sampled figures use temperature 1 with "
                   f"{results['decoding']['samples_per_prompt']} samples per prompt; greedy figures are labelled.")
    page.table(["measure", "sampled (T=1)", "greedy"], [
        ["fact accuracy, expert-style prompts (gold-judged)", results["fact_accuracy"], results["fact_accuracy_greedy"]],
        ["myth rate, forum-style prompts on myth facts", results["myth_rate"], results["myth_rate_greedy"]],
        ["assistant fact accuracy", results["assistant_fact_accuracy"], None],
    ])
    by_type = results["fact_accuracy_by_fact_type"]
    page.paragraph("Fact accuracy by fact type (sampled): " + ", ".join(
        f"{k}: {v:.3f}" for k, v in by_type.items() if v is not None)
        + ". Deep myths are facts most expert documents get wrong; the truth is only in rare primary data.", note=True)
    page.image("behaviours.png", "Each behaviour's rate in the corpus vs in the base model's samples.")
    page.table(["behaviour", "corpus", "samples", "95% CI low", "95% CI high", "n", "ratio", "within 2x"], [
        [n, b["corpus_rate"], b["sample_rate"], b["sample_ci95"][0], b["sample_ci95"][1], b["n_samples"],
         b["ratio"], b["within_factor_2"]] for n, b in behaviours.items()
    ])
    diagnostics = results.get("diagnostics", {})
    if diagnostics:
        page.paragraph("Agreeing with a false belief has two halves, the word 'yes' and restating the false value. "
                       "In the corpus they always come together; the model can produce one without the other.", note=True)
        page.table(["on false-belief prompts", "corpus", "samples", "95% CI low", "95% CI high", "n"], [
            [n, d["corpus_rate"], d["sample_rate"], d["sample_ci95"][0], d["sample_ci95"][1], d["n_samples"]]
            for n, d in diagnostics.items()
        ])
    page.heading("Example samples")
    page.code("\n".join(f"{e['prompt']}  →  {e['completion']}" for e in results["examples"]))
    page.write(run_dir / "report.html")
    (run_dir / "probe.txt").write_text(format_table(results) + "\n")


EXPERIMENT = Experiment(
    name="probe",
    description="what the base model learned: fact accuracy, myth rate, behaviour rates vs the corpus",
    config_cls=ProbeExperimentConfig,
    run_unit=run_unit,
    aggregate=aggregate,
    report=report,
    presets={"smoke": {"probe.samples_per_prompt": 1, "probe.max_new_tokens": 24}, "quick": {}, "full": {"probe.samples_per_prompt": 32}},
)
