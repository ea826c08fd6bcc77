"""What an experiment declares: its config, presets, units of work, how to run one, how to aggregate.

The runner (``experiments.runner``) owns everything else: resolving the config, the run
directory and its lock, seeds, torch threads and RNGs, resuming, and the executor that runs
the units (local or Ray). An experiment never imports another one, nor the runner.

A **unit** is one independent piece of work, e.g. one seed × one config cell. Its result is a
JSON-ready dict that depends only on the resolved config, the unit (its key, seed and params)
and the optional ``prepare`` output — never on which other units ran before it in the same
process — so a resumed run, or the same units spread over a Ray cluster, ends with the same
``results.json`` as an uninterrupted serial run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proxygap.config import Config, ConfigError, knob

SEED_MAX = 2**31 - 1  # seeds derived from a seed (seed * 100 + i, ...) stay within every RNG's range
MAX_SEEDS = 10_000  # a count of seeds (units of work) beyond any real run: a typo, refused before it is built


@dataclass
class ExperimentConfig(Config):
    """Knobs every experiment has; the runner reads them, the experiment never overrides them."""

    seeds: tuple[int, ...] = knob((0, 1, 2), "the seeds, one unit of work (or one row of units) each; intervals are "
                                  "across seeds. `--seeds K [--seed-offset S]` gives S..S+K-1, `--seeds 3,7,9` a list",
                                  lo=0, hi=SEED_MAX)
    world: str = knob("", "a world directory or world.json every model of the run is judged against, e.g. for a "
                          "model directory without its own world.json ('': each model's own)")
    save_models: bool = knob(False, "save the optimized policies and reward models of the first seed's units as "
                                    "Hugging Face directories under OUT/models/<unit>/<name>/ (with their content "
                                    "hashes in results.json's provenance)")
    threads: int = knob(0, "torch CPU threads in every unit of work; 0: torch's default on this machine, resolved "
                        "once and recorded, so every executor runs with the same number. On a CPU shared with "
                        "other jobs, 1 can be many times faster than oversubscribed threads", lo=0, hi=512)
    device: str = knob("auto", "where every model of the run computes: auto (CUDA when present, else the CPU; "
                               "resolved once when the run starts and recorded), cpu, cuda or cuda:N")
    dtype: str = knob("fp32", "compute precision: fp32, or bf16 (mixed precision: autocast, weights and optimizer "
                              "state stay fp32)", choices=("fp32", "bf16"))

    def check(self) -> None:
        if not self.seeds:
            raise ConfigError("seeds is empty; give at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds repeats a value: {list(self.seeds)}")
        from proxygap.lm.device import parse_device

        parse_device(self.device)  # the spelling only: whether this machine has it is the runner's check


@dataclass(frozen=True)
class Unit:
    """One unit of work. ``key`` names its result file (letters, digits, ``=,._-``)."""

    key: str
    seed: int
    params: dict = field(default_factory=dict, hash=False, compare=False)

    def to_dict(self) -> dict:
        return {"key": self.key, "seed": self.seed, "params": self.params}

    @staticmethod
    def from_dict(data: dict) -> Unit:
        return Unit(data["key"], int(data["seed"]), dict(data.get("params", {})))


@dataclass
class UnitContext:
    """What the runner hands a unit: its seed is already applied to torch, numpy and random."""

    seed: int
    scratch: Path  # a directory private to this unit (kept in the run's work area)
    prepared: dict | None = None  # the experiment's ``prepare`` output, if it has one
    progress: bool = True  # whether progress bars may be drawn (False inside Ray workers)
    models: Path | None = None  # where this unit saves its models; None: it saves none (``save_models``)

    def save_model(self, name: str, model, tokenizer, world=None) -> Path | None:
        """Save ``model`` (a Hugging Face model, or a reward model with ``.model``) and its tokenizer
        as ``models/<name>/`` when the run saves models; returns the directory, or None.

        With ``world``, the directory also gets the world's config (``proxygap_world.json``, as a
        base model has), so ``load_base_model(dir)`` and ``--set model=dir`` pair it with that world;
        a reward model's recentring offset goes to ``proxygap_reward_model.json``."""
        if self.models is None:
            return None
        import json

        from proxygap.config import to_dict
        from proxygap.pipeline.base_model import WORLD_FILE

        from proxygap.fileio import remove_leftovers, replace_dir, temp_sibling, writing

        out = self.models / name
        remove_leftovers(out)  # what a save killed in an earlier try of this unit left beside it
        tmp = temp_sibling(out)  # whole or not at all: a unit killed while saving leaves no half a model
        try:
            with writing(out):
                getattr(model, "model", model).save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)
                if world is not None:
                    (tmp / WORLD_FILE).write_text(json.dumps(to_dict(world.config), indent=1, sort_keys=True))
                if hasattr(model, "offset"):
                    (tmp / "proxygap_reward_model.json").write_text(json.dumps(
                        {"offset": float(model.offset), "score": "the scalar head's output minus offset"}, indent=1))
            replace_dir(tmp, out)
        except BaseException:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return out


def seed_units(cfg: ExperimentConfig, **params: Any) -> list[Unit]:
    """The common case: one unit per seed."""
    return [Unit(f"seed={s}", s, dict(params)) for s in cfg.seeds]


@dataclass
class Experiment:
    """One experiment. ``run_unit(cfg, unit, ctx)`` and ``aggregate(cfg, results, prepared)`` are
    pure functions of their arguments; ``report(run_dir)`` draws from ``run_dir/results.json`` alone."""

    name: str
    description: str
    config_cls: type
    run_unit: Callable[[Any, Unit, UnitContext], dict]
    aggregate: Callable[[Any, dict[str, dict], dict | None], dict]  # (cfg, unit key -> result, prepared)
    report: Callable[[Path], None]
    units: Callable[[Any], list[Unit]] = seed_units
    # Shared work done once before any unit (e.g. pretraining base models); JSON-ready, persisted.
    prepare: Callable[..., dict] | None = None  # (cfg, run dir, progress=...) -> plain data
    # Checks that need more than the config alone (the model's context length, the prompts its
    # world has), run when the config is resolved, before any work: raise ConfigError.
    preflight: Callable[[Any], None] | None = None
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)  # preset -> overrides ("a.b": value)
    default_preset: str = "quick"
