"""The experiments by name. Each experiment module defines ``EXPERIMENT``; nothing registers itself,
so importing an experiment never imports the runner or another experiment."""

from __future__ import annotations

import importlib

from proxygap.config import ConfigError
from proxygap.experiments.spec import Experiment

MODULES = {
    "probe": "proxygap.experiments.probe",
    "overoptimization": "proxygap.experiments.overoptimization",
    "loopholes": "proxygap.experiments.loopholes",
    "kl-prior": "proxygap.experiments.kl_prior",
    "tampering": "proxygap.experiments.tampering",
    "scaling": "proxygap.experiments.scaling",
    "cot": "proxygap.experiments.cot",
    "weak-to-strong": "proxygap.experiments.weak_to_strong",
    "monitoring": "proxygap.experiments.monitoring",
}


def get_experiment(name: str) -> Experiment:
    if name not in MODULES:
        raise ConfigError(f"unknown experiment {name!r}; choose one of: {', '.join(sorted(MODULES))}")
    return importlib.import_module(MODULES[name]).EXPERIMENT
