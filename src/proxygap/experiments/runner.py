"""Experiments as declarative specs, and the run directory every one of them writes.

A run directory holds ``config.yaml`` (the resolved config), ``meta.json`` (seeds, package
versions, command line), ``results.json`` (the numbers) and whatever the experiment's report
draws from ``results.json`` alone (PNG plots, ``report.html``), so ``proxygap report DIR``
re-draws it without re-running. A run is written to a temporary sibling directory and renamed
into place only when complete: an interrupted run never replaces a good one.
"""

from __future__ import annotations

import contextlib
import json
import platform
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import proxygap
from proxygap.config import ConfigError, apply_overrides, from_dict, load_config, to_dict
from proxygap.errors import ProxygapError
from proxygap.fileio import replace_dir, temp_sibling


@dataclass
class Experiment:
    """One experiment: a config dataclass, named presets, a run function and a report function."""

    name: str
    description: str
    config_cls: type
    run: Callable[[Any, Path], dict]  # (resolved config, run dir) -> results (JSON-ready)
    report: Callable[[Path], None]  # draws plots and report.html from run_dir/results.json
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)  # preset -> overrides ("a.b": value)
    default_preset: str = "quick"


REGISTRY: dict[str, Experiment] = {}


def register(experiment: Experiment) -> Experiment:
    REGISTRY[experiment.name] = experiment
    return experiment


def get_experiment(name: str) -> Experiment:
    from proxygap.experiments import catalogue  # noqa: F401  (registers the experiments)

    if name not in REGISTRY:
        raise ConfigError(f"unknown experiment {name!r}; choose one of: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def resolve_config(experiment: Experiment, preset: str | None, config_file: str | None,
                   overrides: list[str], seeds: int | None = None) -> Any:
    """Defaults, then the preset, then a config file, then ``--seeds``, then ``--set`` overrides."""
    preset = preset or experiment.default_preset
    if preset not in experiment.presets:
        raise ConfigError(
            f"unknown preset {preset!r} for {experiment.name}; choose one of: {', '.join(experiment.presets)}")
    cfg = apply_overrides(experiment.config_cls(), [f"{k}={_as_override(v)}" for k, v in experiment.presets[preset].items()])
    if config_file is not None:
        file_cfg = load_config(experiment.config_cls, config_file)
        # The file overrides the preset only where it differs from the defaults.
        base, given = to_dict(experiment.config_cls()), to_dict(file_cfg)
        cfg = from_dict(experiment.config_cls, _merge(to_dict(cfg), _diff(base, given)))
    if seeds is not None:
        cfg = apply_overrides(cfg, [f"seeds={seeds}"])
    return apply_overrides(cfg, overrides) if overrides else cfg


def _as_override(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value))
    return str(value)


def _diff(base: dict, given: dict) -> dict:
    out = {}
    for k, v in given.items():
        if isinstance(v, dict):
            sub = _diff(base.get(k, {}), v)
            if sub:
                out[k] = sub
        elif base.get(k) != v:
            out[k] = v
    return out


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _versions() -> dict[str, str]:
    versions = {"proxygap": proxygap.__version__, "python": platform.python_version()}
    for name in ("torch", "transformers", "tokenizers", "numpy", "scipy"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            pass
    return versions


def run_experiment(name: str, out: str | Path | None = None, preset: str | None = None,
                   config_file: str | None = None, overrides: list[str] | None = None,
                   seeds: int | None = None, force: bool = False) -> Path:
    """Resolve the config, run, write the run directory atomically, draw the report."""
    experiment = get_experiment(name)
    cfg = resolve_config(experiment, preset, config_file, overrides or [], seeds)
    out_dir = Path(out) if out is not None else Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if out_dir.exists() and not force:
        raise ProxygapError(f"run directory {out_dir} already exists; pass --force to replace it")
    tmp = temp_sibling(out_dir)
    try:
        meta = {
            "experiment": name,
            "preset": preset or experiment.default_preset,
            "command": " ".join(sys.argv),
            "versions": _versions(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        (tmp / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        start = time.time()
        with _torch_threads(getattr(cfg, "threads", 0)):
            results = experiment.run(cfg, tmp)
        meta["wall_time_s"] = round(time.time() - start, 2)
        results = {"experiment": name, "config": to_dict(cfg), "meta": meta, **results}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        (tmp / "results.json").write_text(json.dumps(results, indent=1, default=_json_default))
        experiment.report(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_dir(tmp, out_dir)
    return out_dir


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` torch CPU threads (0: torch's default), restoring the previous number after.
    An experiment opts in with a ``threads`` config field."""
    import torch

    previous = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def report_run(run_dir: str | Path) -> Path:
    """Re-draw a run's plots and report from its results.json, without re-running."""
    run_dir = Path(run_dir)
    results_file = run_dir / "results.json"
    if not results_file.is_file():
        raise ProxygapError(f"{run_dir} is not a run directory (no results.json)")
    try:
        name = json.loads(results_file.read_text())["experiment"]
    except (json.JSONDecodeError, KeyError):
        raise ProxygapError(f"{results_file} is corrupt or not a proxygap results file") from None
    get_experiment(name).report(run_dir)
    return run_dir / "report.html"


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")
