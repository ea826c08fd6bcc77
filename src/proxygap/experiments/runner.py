"""The runner: resolves a config, owns the run directory, runs an experiment's units of work, resumes.

A run directory ``OUT`` holds ``config.yaml`` (the resolved config), ``meta.json`` (seeds,
threads, executor, package versions, command line), ``results.json`` (the numbers, strict
JSON), ``units/`` (each unit's own result) and whatever the experiment's report draws from
``results.json`` alone (PNG plots, ``report.html``), so ``proxygap report OUT`` re-draws it.

While it runs, the run lives in the work area ``OUT.partial/``: every finished unit is written
there atomically (``units/KEY.json``), so after a crash or ``kill -9``, ``--resume`` re-runs
only the missing units and ends with the same ``results.json``. ``OUT.partial`` is renamed to
``OUT`` only once complete: an interrupted run never replaces a good one. A lock (``flock`` on
``.OUT.lock``, released by the kernel when the process dies) refuses a second run to the same
``OUT`` while the first is running.

Config precedence, lowest first: the experiment's defaults < ``--preset`` < ``--config FILE``
< ``--seeds`` / ``--seed-offset`` < ``--set``. Every layer applies every value it names, also
a value equal to a default.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import math
import os
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

import proxygap
from proxygap.config import ConfigError, from_dict, load_config_data, set_paths, to_dict
from proxygap.errors import ProxygapError, shape_error_text
from proxygap.experiments.catalogue import MODULES, get_experiment
from proxygap.experiments.executors import executor, prepare_on_ray, ray_device
from proxygap.experiments.provenance import hardware
from proxygap.experiments.spec import MAX_SEEDS, SEED_MAX, Experiment, Unit
from proxygap.fileio import remove_leftovers, replace_dir, restore_replaced, temp_sibling, write_text_atomic, writing

__all__ = ["MODULES", "get_experiment", "reaggregate_run", "report_run", "resolve_config", "run_experiment"]

PARTIAL_SUFFIX = ".partial"


# ---------------------------------------------------------------- config
def resolve_config(experiment: Experiment, preset: str | None, config_file: str | None, overrides: list[str],
                   seeds: int | str | None = None, seed_offset: int | None = None) -> Any:
    """Defaults < preset < config file < ``--seeds``/``--seed-offset`` < ``--set`` overrides.

    ``seeds`` is a count K (seeds offset..offset+K-1) or an explicit comma-separated list.
    """
    preset = preset or experiment.default_preset
    if preset not in experiment.presets:
        raise ConfigError(
            f"unknown preset {preset!r} for {experiment.name}; choose one of: {', '.join(experiment.presets)}")
    cls = experiment.config_cls
    data = _merge(to_dict(cls()), _seed_count(_nest(experiment.presets[preset])))
    if config_file is not None:
        data = _merge(data, _seed_count(load_config_data(config_file)))
    seed_list = _seed_list(seeds, seed_offset)
    if seed_list is not None:
        data["seeds"] = seed_list
    data = set_paths(cls, data, [_seed_count_override(o) for o in overrides])
    # Validated once, on the final config: a cross-knob check never fires on an intermediate layer.
    cfg = from_dict(cls, data)
    if experiment.preflight is not None:
        from proxygap.pipeline.base_model import judged_against

        with judged_against(getattr(cfg, "world", None)):
            experiment.preflight(cfg)
    return cfg


def _seed_list(seeds: int | str | None, offset: int | None) -> list[int] | None:
    if seeds is None:
        if offset is not None:
            raise ConfigError("--seed-offset needs --seeds K")
        return None
    text = str(seeds).strip()
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--seeds takes a count K or a list like 0,3,7; got {text!r}") from None
    if not values:
        raise ConfigError("--seeds is empty; give a count K or a list like 0,3,7")
    if "," not in text:
        (k,) = values
        if not 1 <= k <= MAX_SEEDS:
            raise ConfigError(f"--seeds must be a count from 1 to {MAX_SEEDS}, got {k}")
        start = offset or 0
        if not 0 <= start <= SEED_MAX - k + 1:
            raise ConfigError(f"--seed-offset must be from 0 to {SEED_MAX - k + 1} (seeds go up to {SEED_MAX}), "
                              f"got {start}")
        return list(range(start, start + k))
    if offset is not None:
        raise ConfigError("--seed-offset applies to a seed count (--seeds K), not to a list of seeds")
    return values


def _seed_count(data: dict) -> dict:
    """``seeds: K`` (a count) in a preset or a file means seeds 0..K-1, as ``--seeds K`` does."""
    seeds = data.get("seeds")
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if not 1 <= seeds <= MAX_SEEDS:
            raise ConfigError(f"seeds={seeds}: give a count from 1 to {MAX_SEEDS} or a list of seeds")
        data = {**data, "seeds": list(range(seeds))}
    return data


def _seed_count_override(item: str) -> str:
    key, _, value = item.partition("=")
    if key.strip() == "seeds" and value.strip().isdigit():
        return f"seeds={json.dumps(_seed_count({'seeds': int(value)})['seeds'])}"
    return item


def _nest(flat: dict[str, Any]) -> dict:
    """{"a.b": 1} -> {"a": {"b": 1}} (presets are written flat)."""
    out: dict = {}
    for path, value in flat.items():
        node = out
        *parents, last = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = list(value) if isinstance(value, tuple) else value
    return out


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _recorded_config(run_dir: Path) -> dict | None:
    """The config.yaml a run recorded, or None if it is missing or corrupt."""
    try:
        recorded = yaml.safe_load((run_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None
    return recorded if isinstance(recorded, dict) and _string_keys(recorded) else None


def _string_keys(node: Any) -> bool:
    """Whether every mapping key in ``node`` is a string, as in every config.yaml a run writes."""
    if isinstance(node, dict):
        return all(isinstance(k, str) and _string_keys(v) for k, v in node.items())
    if isinstance(node, list):
        return all(_string_keys(v) for v in node)
    return True


def _first_difference(a: Any, b: Any, path: str = "", then: str = "interrupted run") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            d = _first_difference(a.get(k), b.get(k), f"{path}.{k}" if path else k, then)
            if d:
                return d
        return None
    return None if a == b else f"{path}: {a!r} ({then}) vs {b!r} (now)"


# ---------------------------------------------------------------- provenance
def _versions() -> dict[str, str]:
    from proxygap.experiments.provenance import versions

    return versions()


def _git_commit() -> str | None:
    """The source tree's commit (with '+dirty' if it has uncommitted changes), when run from a checkout."""
    root = Path(proxygap.__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (commit + ("+dirty" if dirty else "")) or None


def strict_json(obj: Any) -> Any:
    """Non-finite floats become None (results.json is strict JSON); arrays and numpy scalars become lists/numbers."""
    if isinstance(obj, dict):
        return {str(k): strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    if isinstance(obj, float):  # also numpy.float64: a plain float, as a resumed run reads it back
        return float(obj) if math.isfinite(obj) else None
    if hasattr(obj, "tolist"):
        return strict_json(obj.tolist())
    if hasattr(obj, "item"):
        return strict_json(obj.item())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dump_json(obj: Any) -> str:
    return json.dumps(strict_json(obj), indent=1, allow_nan=False) + "\n"


# ---------------------------------------------------------------- the lock and the work area
@contextlib.contextmanager
def _locked(out_dir: Path) -> Iterator[None]:
    lock_path = out_dir.with_name(f".{out_dir.name}.lock")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path, "a+")
    except OSError as e:
        raise ProxygapError(f"cannot write the run directory {out_dir}: {e.strerror or e} "
                            f"({e.filename or out_dir.parent}); choose another --out") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise ProxygapError(f"{out_dir} is being written by another proxygap run ({holder}); "
                            "wait for it to finish or choose another --out") from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%dT%H:%M:%S')}")
        handle.flush()
        yield
    finally:
        # The lock file stays: unlinking it would let a waiter lock the orphaned inode while a new
        # process locks a fresh file of the same name. The kernel releases the lock itself.
        handle.close()



def _where(e: BaseException) -> str:
    """What went wrong and at which line: damage from outside and a bug of ours read alike, so both."""
    frame = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
    return shape_error_text(e) + (f" at {Path(frame.filename).name}:{frame.lineno}" if frame else "")


def _restore_replaced(out_dir: Path) -> None:
    """A run ``replace_dir`` had moved aside when its writer was killed, put back before the stale
    clean-up would delete it (the new one, a ``.partial`` run or a re-aggregation's ``.tmp-*``, is
    finished again by --resume or another --reaggregate)."""
    restored = restore_replaced(out_dir)
    if restored:
        print(f"restored {out_dir} from {restored.name}, left by a proxygap run killed while replacing it",
              file=sys.stderr)


def _units_done(work: Path, units: list[Unit]) -> dict[str, dict]:
    """Results of the units already finished in ``work`` (a torn or corrupt file counts as not done)."""
    done = {}
    for unit in units:
        f = work / "units" / f"{unit.key}.json"
        if f.is_file():
            try:
                data = json.loads(f.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                data = None
            if isinstance(data, dict) and isinstance(data.get("unit"), dict) and data["unit"].get("key") == unit.key \
                    and "result" in data:
                done[unit.key] = data["result"]
            else:  # written atomically, so this is damage from outside: say so rather than re-run it silently
                print(f"{f} is unreadable or not this unit's result; running the unit again", file=sys.stderr)
    return done


# ---------------------------------------------------------------- the run
def run_experiment(name: str, out: str | Path | None = None, preset: str | None = None,
                   config_file: str | None = None, overrides: list[str] | None = None,
                   seeds: int | str | None = None, seed_offset: int | None = None, force: bool = False,
                   resume: bool = False, executor_name: str = "local", ray_address: str | None = None,
                   ray_cpus: int | None = None, progress: bool = True) -> Path:
    """Resolve the config, run every unit of work not yet done, aggregate, draw the report."""
    import torch

    from proxygap.lm.device import compute_on, describe, resolve_device, resolve_dtype

    experiment = get_experiment(name)
    cfg = resolve_config(experiment, preset, config_file, overrides or [], seeds, seed_offset)
    run_units = executor(executor_name, ray_address, ray_cpus)
    on_ray = executor_name == "ray"

    def placed(spec: str, recorded: bool = False) -> tuple[str, str]:
        """(the device units run on, its description), checked where they run: one line before any work."""
        if on_ray:  # the cluster's GPUs, not the driver's; a run started locally on cuda:N resumes on cuda
            device, text = ray_device(spec.split(":")[0] if recorded else spec, ray_address, ray_cpus)
            if device == "cpu":  # bf16 on the cluster's GPUs is checked in the workers, not on the driver's
                resolve_dtype(cfg.dtype, torch.device(device))
            return device, text
        device = resolve_device(spec)
        resolve_dtype(cfg.dtype, device)  # no GPU, no bf16 on it
        return str(device), describe(device)

    # A resume checks the device it recorded, below; Ray's check, which may start a local instance,
    # waits for the run-directory checks, so a directory that exists fails fast.
    checked = None if resume or on_ray else placed(cfg.device)
    if force and resume:
        raise ProxygapError("--force discards an interrupted run and --resume continues it; pass one")
    if resume and out is None:
        raise ProxygapError("--resume needs --out DIR: the run directory to finish")
    out_dir = Path(out) if out is not None else Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    _check_out_dir(out_dir)
    work = out_dir.with_name(out_dir.name + PARTIAL_SUFFIX)
    config_dict = to_dict(cfg)

    with _locked(out_dir):
        _restore_replaced(out_dir)
        # hidden siblings only a killed writer leaves behind (we hold the lock): of OUT and of OUT.partial
        remove_leftovers(out_dir)
        remove_leftovers(out_dir.with_name(out_dir.name + PARTIAL_SUFFIX))
        units = experiment.units(cfg)
        if not units:
            raise ProxygapError(f"experiment {name} has no units of work with this config (nothing to run)")
        if len({u.key for u in units}) != len(units):
            raise ProxygapError(f"experiment {name} declared two units with the same key")
        if force and out_dir.exists():  # replaced at the end, so it must be a run, not any directory
            _check_is_run(out_dir)
        if work.exists():
            if force:
                _check_is_run(work, partial=True)
                shutil.rmtree(work)
            elif not resume:
                n_done = len(_units_done(work, units))
                raise ProxygapError(f"{work} holds an interrupted run ({n_done} of {len(units)} units done); "
                                    "pass --resume to finish it or --force to discard it")
            else:
                previous = _recorded_config(work)
                difference = _first_difference(previous, config_dict) if previous is not None else \
                    "its config.yaml is missing or corrupt"
                if difference:
                    raise ProxygapError(f"cannot resume {work} with a different config ({difference}); "
                                        "rerun with the same command, or --force to start over")
        elif out_dir.exists() and not force:
            if resume and (out_dir / "results.json").is_file():
                from proxygap.experiments.provenance import load_results

                load_results(out_dir)  # a damaged results file is not a complete run: one line, exit 2
                previous = _recorded_config(out_dir)
                difference = _first_difference(previous, config_dict, then="that run") if previous is not None else \
                    "its config.yaml is missing or corrupt, so it cannot be checked against this config"
                if difference:
                    raise ProxygapError(f"{out_dir} is a complete run of a different config ({difference}); "
                                        "--force to replace it, or choose another --out")
                print(f"{out_dir} is already complete; nothing to resume")
                return out_dir
            raise ProxygapError(f"run directory {out_dir} already exists; pass --force to replace it")
        commit = _git_commit()
        if not work.exists():
            first_device = (checked or placed(cfg.device))[0]  # refused before anything is written, also with --resume
            _check_models(config_dict)
            (work / "units").mkdir(parents=True)
            write_text_atomic(work / "config.yaml", yaml.safe_dump(config_dict, sort_keys=False))
            # Threads and device are resolved once, when the run starts: a resume elsewhere runs with
            # the same (and says so when this machine does not have that device). The code's and the
            # models' hashes are recorded so that a resume cannot mix two versions of either.
            write_text_atomic(work / "run.json", dump_json({"threads": cfg.threads or torch.get_num_threads(),
                                                            "device": first_device,
                                                            "origin": _origin(config_dict, commit)}))
        try:
            recorded = json.loads((work / "run.json").read_text())
            threads = int(recorded["threads"])
            device_name = str(recorded.get("device", "cpu"))  # runs from before the knob ran on the CPU
            if threads < 1:
                raise ValueError(threads)
        except (OSError, ValueError, KeyError, TypeError, AttributeError, OverflowError):
            raise ProxygapError(f"{work}/run.json is missing or corrupt; --force to start over") from None
        if resume and isinstance(recorded.get("origin"), dict):  # runs from before the record: unchecked
            _check_same_origin(recorded["origin"], _origin(config_dict, commit), work)
        try:
            device, device_text = placed(device_name, recorded=True)
        except ConfigError as e:
            if on_ray:
                raise
            # The device is part of the run's record: changing it would not resume the same run.
            raise ProxygapError(f"{work} was started on {device_name} and resumes there only, but "
                                f"{str(e).split(' but ', 1)[-1].split(';')[0]}; resume it on a machine with that "
                                "device, or --force to start over here") from None
        meta = {
            "experiment": name,
            "preset": preset or experiment.default_preset,
            "command": " ".join(sys.argv),
            "versions": _versions(),
            "hardware": hardware(),
            "commit": commit,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "seeds": list(cfg.seeds),
            "threads": threads,
            "device": device_text,
            "dtype": cfg.dtype,
            "executor": executor_name if executor_name == "local" else f"ray ({ray_address or 'local instance'})",
        }
        start = time.time()
        prepared = None
        if experiment.prepare is not None:
            prepared_file = work / "prepared.json"
            try:
                prepared = json.loads(prepared_file.read_text()) if prepared_file.is_file() else None
            except (json.JSONDecodeError, UnicodeDecodeError):
                prepared = False
            if prepared is not None and not isinstance(prepared, dict):
                # written atomically, so this is damage from outside; preparing again could make other
                # pools or pairs than the units already finished were made from
                if _units_done(work, units):
                    raise ProxygapError(f"{prepared_file} is corrupt, and units already made from it are in "
                                        f"{work / 'units'}; --force to start over")
                prepared = None
            if prepared is None:
                from proxygap.pipeline.base_model import judged_against

                if on_ray and device == "cuda":  # on a GPU of the cluster, where the units will run
                    prepared = strict_json(prepare_on_ray(ray_address, ray_cpus, name=name, cfg_dict=config_dict,
                                                          work=str(work.resolve()), threads=threads, device=device,
                                                          dtype=cfg.dtype))
                else:
                    with _threads(threads), compute_on(device, cfg.dtype), \
                            judged_against(getattr(cfg, "world", None)):
                        prepared = strict_json(experiment.prepare(cfg, work, progress=progress))
                write_text_atomic(prepared_file, dump_json(prepared))

        done = _units_done(work, units)
        todo = [u for u in units if u.key not in done]
        meta["units"] = {"total": len(units), "resumed": len(done), "run": len(todo)}
        jobs = [(u, {"name": name, "cfg_dict": config_dict, "unit_dict": u.to_dict(), "prepared": prepared,
                     "versions": meta["versions"],
                     "threads": threads, "device": device, "dtype": cfg.dtype, "scratch": str((work / "scratch" / u.key).resolve()),
                     "progress": progress and executor_name == "local",
                     "models": (str((work / "models" / u.key).resolve())
                                if getattr(cfg, "save_models", False) and u.seed == cfg.seeds[0] else None)})
                for u in todo]
        unit_times = {}
        with _threads(threads):
            unit_machines = {}
            for unit, result, seconds, where in run_units(jobs):
                result = strict_json(result)
                write_text_atomic(work / "units" / f"{unit.key}.json",
                                  dump_json({"unit": unit.to_dict(), "result": result, "hardware": where}))
                done[unit.key] = result
                unit_times[unit.key] = round(seconds, 2)
                if where != meta["hardware"]:  # a Ray worker on another kind of machine
                    unit_machines[unit.key] = where
                if progress:
                    print(f"[{name}] unit {unit.key} done ({len(done)}/{len(units)})", file=sys.stderr)
            try:
                results = experiment.aggregate(cfg, {u.key: done[u.key] for u in units}, prepared)
            except ProxygapError:
                raise
            except SHAPE_ERRORS as e:
                if not meta["units"]["resumed"]:
                    raise  # every result was made by this process: a bug, with its traceback
                # A resumed unit's file parsed but lacks what this experiment's results hold: damage from
                # outside (file:line named, in case it is a bug after all).
                raise ProxygapError(f"a unit result in {work / 'units'} is not this experiment's ({_where(e)}); "
                                    "delete the damaged file to re-run its unit, or --force to start over") from e
        meta["wall_time_s"] = round(time.time() - start, 2)
        meta["unit_wall_s"] = unit_times
        if unit_machines:
            meta["unit_hardware"] = unit_machines
        from proxygap.experiments.provenance import provenance

        results = _results_file(name, config_dict, list(cfg.seeds), results,
                                provenance(config_dict, meta["commit"], work), meta)
        write_text_atomic(work / "meta.json", dump_json(meta))
        write_text_atomic(work / "results.json", dump_json(results))
        with writing(work):  # plots and report.html: a full disk names the run, not a traceback
            try:
                experiment.report(work)
            except ProxygapError:
                raise
            except SHAPE_ERRORS as e:
                if not meta["units"]["resumed"]:
                    raise  # drawn from this process's own results: a bug, with its traceback
                raise ProxygapError(f"the report of {work} cannot be drawn from its results ({_where(e)}); a resumed "
                                    f"unit result in {work / 'units'} may be damaged (delete it to re-run its unit), "
                                    "or this is a bug of the report") from e
        shutil.rmtree(work / "scratch", ignore_errors=True)
        replace_dir(work, out_dir)
    return out_dir


def _results_file(name: str, config: dict, seeds: list[int], results: dict, provenance: Any, meta: dict) -> dict:
    """results.json: the experiment's aggregate inside the envelope every run file has."""
    from proxygap.experiments.provenance import SCHEMA_VERSION

    return {"experiment": name, "schema_version": SCHEMA_VERSION, "config": config, "seeds": seeds, **results,
            "provenance": provenance, "meta": meta}


RUN_FILES = ("results.json", "config.yaml", "run.json")
# What reading a damaged but parseable unit or results file raises (or a bug: the messages name file:line).
SHAPE_ERRORS = (KeyError, TypeError, IndexError, AttributeError, ValueError, ZeroDivisionError)


def _check_out_dir(out_dir: Path) -> None:
    """--out names a directory of its own: not the working directory, one above it, or a filesystem root."""
    resolved, here = out_dir.resolve(), Path.cwd().resolve()
    if not out_dir.name or not resolved.name or resolved == here or resolved in here.parents:
        raise ProxygapError(f"--out {str(out_dir) or repr('')} is not a run directory of its own; "
                            "name a new one, e.g. --out runs/NAME")


def _check_is_run(path: Path, partial: bool = False) -> None:
    """--force replaces a run directory only: a directory without a run's files is refused, not deleted."""
    if not path.is_dir() or not any((path / f).is_file() for f in RUN_FILES) and \
            not (not any(path.iterdir()) or (partial and (path / "units").is_dir())):
        raise ProxygapError(f"{path} is not a proxygap run directory (none of {', '.join(RUN_FILES)}); "
                            "--force replaces runs only: choose another --out or remove it yourself")


def _check_models(config_dict: dict) -> None:
    """Every model directory the config names is readable, before the run writes anything: a corrupt
    one would otherwise fail in ``prepare`` and leave an interrupted run behind. Models that do not
    exist yet (built on demand) are the experiment's business."""
    from proxygap.experiments.provenance import model_refs
    from proxygap.lm.model import check_model_files
    from proxygap.pipeline.base_model import resolve_model_dir

    for ref in model_refs(config_dict):
        try:
            path = resolve_model_dir(ref)
        except ProxygapError:
            continue
        if path.exists():
            check_model_files(path)


def _origin(config_dict: dict, commit: str | None) -> dict:
    """What a run's units depend on besides its config: the code (source hash) and each base model's hash."""
    from proxygap.experiments.provenance import provenance

    found = provenance(config_dict, commit)
    return {"source_hash": found["source_hash"], "commit": commit,
            "models": {ref: entry["hash"] for ref, entry in found["models"].items()},
            "world": (found.get("world") or {}).get("hash"), "versions": _versions()}


def _check_same_origin(before: dict, now: dict, work: Path) -> None:
    """Refuse to finish a run whose code or base models changed since it started: its units would
    come from two versions (a model built on demand, unknown at the start, is not compared)."""
    if before.get("source_hash") != now["source_hash"]:
        raise ProxygapError(
            f"cannot resume {work}: proxygap's code changed since the run started (source hash "
            f"{before.get('source_hash')} then, {now['source_hash']} now; commit {before.get('commit')} then, "
            f"{now['commit']} now), so its units would mix two versions; --force to start over")
    for ref, old in (before.get("models") or {}).items():
        new = now["models"].get(ref)
        if old and new and old != new:
            raise ProxygapError(f"cannot resume {work}: model {ref!r} changed since the run started (content hash "
                                f"{old} then, {new} now); --force to start over")
    # the world file the run names (the config holds only its path), and the libraries that compute
    # every number: runs recorded before either was kept are not compared on it
    if before.get("world") and now.get("world") != before["world"]:
        raise ProxygapError(f"cannot resume {work}: the world file it is judged against changed since the run "
                            f"started (content hash {before['world']} then, {now.get('world')} now), so its units "
                            "would be judged against two worlds; --force to start over")
    for package, old in (before.get("versions") or {}).items():
        new = (now.get("versions") or {}).get(package)
        if new != old:
            raise ProxygapError(f"cannot resume {work}: {package} {old} made its units and {new} is installed now, so "
                                f"they would mix two versions; install {package} {old} to resume, or --force to "
                                "start over")


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    import torch

    previous = torch.get_num_threads()
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
        data = json.loads(results_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ProxygapError(f"{results_file} is corrupt or not a proxygap results file") from None
    if not isinstance(data, dict) or data.get("experiment") not in MODULES:
        raise ProxygapError(f"{results_file} is not a proxygap results file (no known 'experiment' key)")
    from proxygap.experiments.provenance import check_schema

    check_schema(data, results_file)
    name = data["experiment"]
    try:
        get_experiment(name).report(run_dir)
    except (KeyError, TypeError, IndexError, ValueError, AttributeError) as e:
        raise ProxygapError(f"{results_file} does not have the shape a {name} report reads "
                            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    return run_dir / "report.html"


def reaggregate_run(run_dir: str | Path) -> Path:
    """Recompute a finished run's results.json from its recorded units with today's ``aggregate``, and re-draw.

    The units (the expensive part: training, sampling) are not re-run; only the statistics over
    them are, so a fix to an experiment's aggregation or to ``measure/`` reaches an old run in
    seconds. The old provenance is kept (it describes the units) and ``meta.reaggregated`` records
    when, at which commit and with which source hash the numbers were recomputed. The run is
    rebuilt in a sibling and swapped in whole, so a failure leaves the old run as it was.
    """
    from proxygap.experiments.provenance import load_results, source_hash
    from proxygap.pipeline.base_model import judged_against

    run_dir = Path(run_dir)
    with _locked(run_dir):
        _restore_replaced(run_dir)
        remove_leftovers(run_dir)  # a killed re-aggregation's copy; we hold the lock
        old = load_results(run_dir)
        name = old["experiment"]
        if name not in MODULES:
            raise ProxygapError(f"{run_dir / 'results.json'} names experiment {name!r}, which this proxygap "
                                f"does not have (one of: {', '.join(MODULES)})")
        experiment = get_experiment(name)
        recorded = _recorded_config(run_dir)
        if recorded is None:
            raise ProxygapError(f"{run_dir}/config.yaml is missing or corrupt: the units cannot be re-aggregated "
                                "without the config they ran with")
        try:
            cfg = from_dict(experiment.config_cls, recorded)
        except ConfigError as e:
            raise ProxygapError(f"{run_dir}/config.yaml no longer resolves with this proxygap ({e}); "
                                "re-run the experiment instead") from None
        units = experiment.units(cfg)
        done = _units_done(run_dir, units) if (run_dir / "units").is_dir() else {}
        missing = [u.key for u in units if u.key not in done]
        if missing:
            raise ProxygapError(f"{run_dir}/units lacks {len(missing)} of {len(units)} unit results "
                                f"(first: {missing[0]}); re-run the experiment (--resume on a .partial run)")
        prepared = None
        prepared_file = run_dir / "prepared.json"
        if experiment.prepare is not None:
            try:
                prepared = json.loads(prepared_file.read_text())
            except (OSError, json.JSONDecodeError, UnicodeDecodeError):
                raise ProxygapError(f"{prepared_file} is missing or corrupt: this experiment's aggregate "
                                    "needs what its prepare step made; re-run the experiment") from None
        try:
            with judged_against(getattr(cfg, "world", None)):
                new = strict_json(experiment.aggregate(cfg, {u.key: done[u.key] for u in units}, prepared))
        except ProxygapError:
            raise
        except SHAPE_ERRORS as e:
            raise ProxygapError(f"a unit result in {run_dir / 'units'} is not what this proxygap's {name} "
                                f"aggregates ({_where(e)}); re-run the experiment") from e
        meta = dict(old.get("meta") or {})
        meta["reaggregated"] = {"at": time.strftime("%Y-%m-%dT%H:%M:%S"), "commit": _git_commit(),
                                "source_hash": source_hash(), "versions": _versions()}
        results = _results_file(name, to_dict(cfg), list(cfg.seeds), new, old.get("provenance"), meta)
        tmp = temp_sibling(run_dir)
        try:
            with writing(tmp):
                shutil.copytree(run_dir, tmp, dirs_exist_ok=True)
                write_text_atomic(tmp / "results.json", dump_json(results))
                write_text_atomic(tmp / "meta.json", dump_json(meta))
                try:
                    experiment.report(tmp)
                except ProxygapError:
                    raise
                except SHAPE_ERRORS as e:
                    raise ProxygapError(f"the report cannot be drawn from the results re-aggregated from "
                                        f"{run_dir / 'units'} ({_where(e)}); a unit result may be damaged, or this "
                                        "is a bug of the report; the run is unchanged") from e
            replace_dir(tmp, run_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return run_dir / "report.html"
