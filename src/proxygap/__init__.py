"""proxygap: what language models learn when optimized against an imperfect training signal.

The Python API, for notebooks and scripts (imported on first use, so ``import proxygap`` stays light)::

    from proxygap import run_experiment, load_results, load_base_model, load_world, Judge, make_env

- ``run_experiment(name, out=..., preset=..., overrides=[...], seeds=...)``: what ``proxygap run`` does;
  returns the run directory. ``load_results(run_dir)``: its results.json as a dict.
  ``compare_runs(a, b)``: the lines ``proxygap compare`` prints.
- ``load_base_model(size_or_dir)``: a base model with its tokenizer, world and corpus rates;
  ``load_world(file_dir_or_model)``: a world alone; ``build_world(WorldConfig(...))``: a new one.
- ``Judge(world)`` is the rater (``RaterFlaws`` its knobs), ``Judge.gold(world)`` the truth;
  ``make_env(name, world, **knobs)`` a tampering environment; ``get_experiment(name)`` an
  experiment's declaration (its config class and presets).
"""

__version__ = "0.1.0"

_API = {
    "run_experiment": ("proxygap.experiments.runner", "run_experiment"),
    "report_run": ("proxygap.experiments.runner", "report_run"),
    "get_experiment": ("proxygap.experiments.catalogue", "get_experiment"),
    "load_results": ("proxygap.experiments.provenance", "load_results"),
    "compare_runs": ("proxygap.experiments.provenance", "compare_runs"),
    "load_base_model": ("proxygap.pipeline.base_model", "load_base_model"),
    "load_world": ("proxygap.pipeline.base_model", "load_world"),
    "build_world": ("proxygap.world.world", "build_world"),
    "WorldConfig": ("proxygap.world.config", "WorldConfig"),
    "Judge": ("proxygap.oversight.judges", "Judge"),
    "RaterFlaws": ("proxygap.oversight.judges", "RaterFlaws"),
    "make_env": ("proxygap.envs", "make"),
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    """The public API, imported when first asked for (PEP 562)."""
    if name not in _API:
        raise AttributeError(f"module 'proxygap' has no attribute {name!r}")
    import importlib

    module, attr = _API[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value
