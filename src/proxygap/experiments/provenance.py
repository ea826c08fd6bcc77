"""Where a run came from, and how two runs differ.

``provenance(config)`` is what every results.json carries beside its numbers: the git commit of
the source tree (with ``+dirty`` for uncommitted changes) or, outside a checkout, the package
version and a content hash of its source files, and a content hash of every base model the
config names, so that two runs' models can be told apart even when both say ``model: default``.

``compare(a, b)`` is ``proxygap compare RUN_A RUN_B``: the config keys that differ, then every
interval's mean (a headline figure: ``{mean, lo, hi, n, method}`` anywhere in the results, outside
curves, examples and per-seed lists) that differs, with both runs' values.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import proxygap
from proxygap.errors import ProxygapError

SCHEMA_VERSION = 2
"""The results.json layout: 2 = every score an interval dict, provenance and schema_version present."""

MODEL_KEYS = ("model", "sizes", "base_only_sizes", "rm_sizes", "policy_sizes", "pairs_model", "pairs", "sampler",
              "backbone")
"""Config fields that name base models (a size name, a directory, 'default'; pairs are 'weak:strong')."""

SKIPPED = {"bon_points", "train_time_s", "wall_time_s", "learning_curve", "curve", "curves", "examples", "per_seed", "per_seed_info", "records", "timings", "meta",
           "config", "points_per_seed", "steganography_curve", "provenance"}


def hash_files(paths: list[Path], root: Path) -> str:
    """sha256 over each file's relative name, its size and its bytes (read in chunks), in name order."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(f"{path.relative_to(root)}\0{path.stat().st_size}\0".encode())
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def source_hash() -> str:
    """A content hash of the installed package's Python sources."""
    root = Path(proxygap.__file__).resolve().parent
    return hash_files([p for p in root.rglob("*.py")], root)


def model_hash(model_dir: Path) -> str | None:
    """A content hash of a model directory's files (weights, config, tokenizer, world)."""
    if not model_dir.is_dir():
        return None
    return hash_files([p for p in model_dir.rglob("*") if p.is_file() and "checkpoint" not in p.parts], model_dir)


def world_file_hash(world: str | Path) -> dict:
    """{"path", "hash"} of the world.json a run's ``world`` knob names (a directory or the file);
    hash None where there is none (the run's own check says so)."""
    path = Path(world)
    path = path / "world.json" if path.is_dir() else path
    return {"path": str(path), "hash": hash_files([path], path.parent) if path.is_file() else None}


def model_refs(config: dict) -> list[str]:
    """Every model a config names, in order, once each (``backbone`` also in a nested section)."""
    refs: list[str] = []
    sections = [config, *[v for v in config.values() if isinstance(v, dict)]]
    for key, value in [(k, sec.get(k)) for k in MODEL_KEYS for sec in sections]:
        for item in (value if isinstance(value, (list, tuple)) else [value]):
            if key == "model" and item == "":
                item = "default"  # what an empty model knob loads
            if not isinstance(item, str) or not item or item in ("base", "shared"):
                continue
            for ref in (item.split(":") if key == "pairs" else [item]):
                if ref not in refs:
                    refs.append(ref)
    return refs


def provenance(config: dict, commit: str | None, run_dir: Path | None = None) -> dict:
    from proxygap.pipeline.base_model import resolve_model_dir

    models = {}
    for ref in model_refs(config):
        try:
            path = resolve_model_dir(ref)
        except ProxygapError:
            models[ref] = {"path": None, "hash": None}
            continue
        models[ref] = {"path": str(path), "hash": model_hash(path)}
    # The source hash always: two dirty trees of one commit are not the same code.
    source = {"commit": commit, "version": proxygap.__version__, "source_hash": source_hash()}
    out = {**source, "models": models}
    if config.get("world"):  # the world every model is judged against, when a run names one
        out["world"] = world_file_hash(config["world"])
    saved = run_dir / "models" if run_dir is not None else None
    if saved is not None and saved.is_dir():  # the run's own optimized models (``save_models``)
        out["saved_models"] = {str(d.relative_to(saved)): model_hash(d)  # not a killed save's hidden leftovers
                               for d in sorted(saved.glob("*/*")) if d.is_dir() and not d.name.startswith(".")}
    return out


# ---------------------------------------------------------------- compare
def _flat(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _flat(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, obj


def _is_interval(d: Any) -> bool:
    return isinstance(d, dict) and {"mean", "lo", "hi"} <= set(d)


def headline(results: Any, prefix: str = "") -> Iterator[tuple[str, float | None]]:
    """(path, mean) of every interval in ``results``; list items are named by their ``name``,
    ``regime``, ``env``... fields where they have them, else by position."""
    if _is_interval(results):
        yield prefix, results["mean"]
        return
    if isinstance(results, dict):
        for k, v in results.items():
            if k not in SKIPPED and not _is_curve(v):
                yield from headline(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(results, list):
        labels = [_label(item) or str(i) for i, item in enumerate(results)]
        for i, (item, label) in enumerate(zip(results, labels)):
            # Items no identifying field tells apart keep their position too: one path per item.
            yield from headline(item, f"{prefix}[{label}#{i}]" if labels.count(label) > 1 else f"{prefix}[{label}]")


LABEL_KEYS = ("env", "name", "regime", "method", "variant", "policy", "paraphraser", "monitor", "size", "task",
              "supervisor", "weak", "strong", "confidence_loss", "flaw", "beta", "kl_coef", "incentive", "base_rate",
              "rm_size", "policy_size", "n_labels", "rater_quality", "quality")
"""Fields that name a list item (an environment, a regime, a cell of a grid) in ``headline``'s paths."""


def _label(item) -> str:
    if not isinstance(item, dict):
        return ""
    return "/".join(f"{k}={item[k]}" if isinstance(item[k], (int, float)) else str(item[k])
                    for k in LABEL_KEYS if k in item and not isinstance(item[k], (dict, list)))


def _is_curve(value) -> bool:
    """A learning curve (a list of points by training step): its end is a headline elsewhere."""
    return isinstance(value, list) and bool(value) and all(isinstance(p, dict) and "step" in p for p in value)


def load_results(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        raise ProxygapError(f"{run_dir} is not a run directory (no results.json)")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ProxygapError(f"{path} is corrupt or not a proxygap results file") from None
    if not isinstance(data, dict) or not isinstance(data.get("experiment"), str):
        raise ProxygapError(f"{path} is not a proxygap results file (no 'experiment' name)")
    check_schema(data, path)
    return data


def check_schema(results: dict, path: Path) -> None:
    """A results file from a newer proxygap is refused rather than half read."""
    version = results.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ProxygapError(f"{path} has schema_version {version!r}: not a proxygap results file "
                            "(a positive integer is expected)")
    if version > SCHEMA_VERSION:
        raise ProxygapError(f"{path} has schema_version {version!r}, newer than this proxygap's "
                            f"({SCHEMA_VERSION}): update proxygap to read it")


def compare(a: dict, b: dict, tolerance: float = 1e-9) -> list[str]:
    """Lines describing how run b differs from run a."""
    lines = []
    if a["experiment"] != b["experiment"]:
        lines.append(f"experiment: {a['experiment']} vs {b['experiment']}")
    ca, cb = dict(_flat(a.get("config", {}))), dict(_flat(b.get("config", {})))
    diff = [k for k in sorted(set(ca) | set(cb)) if ca.get(k, "<absent>") != cb.get(k, "<absent>")]
    lines.append(f"config: {len(diff)} difference{'s' if len(diff) != 1 else ''}")
    lines += [f"  {k}: {ca.get(k, '<absent>')} -> {cb.get(k, '<absent>')}" for k in diff]
    pa, pb = a.get("provenance", {}), b.get("provenance", {})
    for key in ("commit", "version", "source_hash"):
        if pa.get(key) != pb.get(key):
            lines.append(f"provenance.{key}: {pa.get(key)} -> {pb.get(key)}")
    for ref in sorted(set(pa.get("models", {})) | set(pb.get("models", {}))):
        ha, hb = pa.get("models", {}).get(ref, {}).get("hash"), pb.get("models", {}).get(ref, {}).get("hash")
        if ha != hb:
            lines.append(f"provenance.models.{ref}: {ha} -> {hb}")
    ha, hb = dict(headline(a)), dict(headline(b))
    changed = []
    for k in sorted(set(ha) | set(hb)):
        x, y = ha.get(k), hb.get(k)
        if (x is None) != (y is None) or (x is not None and y is not None and abs(x - y) > tolerance):
            changed.append(f"  {k}: {_fmt(x)} -> {_fmt(y)}")
    lines.append(f"headline figures: {len(changed)} of {len(set(ha) | set(hb))} differ")
    return lines + changed


def compare_runs(run_a: str | Path, run_b: str | Path) -> list[str]:
    """``compare`` of two run directories' results."""
    return compare(load_results(run_a), load_results(run_b))


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def versions() -> dict[str, str]:
    """The versions of proxygap, Python and the libraries that compute every number."""
    found = {"proxygap": proxygap.__version__, "python": platform.python_version()}
    for name in ("torch", "transformers", "tokenizers", "numpy", "scipy"):
        try:
            found[name] = str(__import__(name).__version__)
        except ImportError:
            pass
    return found


def hardware() -> dict:
    """This machine: CPU model, torch's ``cpu_capability``, logical CPUs. The same code, seeds and
    threads give bit-identical results on one machine, but torch picks its CPU kernels by instruction
    set, and kernels that sum in another order can flip a sampled token, so a figure may move by one
    episode between machines. A run's meta.json records the driver's; each unit file its own (a Ray
    unit may run elsewhere: meta.json's ``unit_hardware`` names those that differ)."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        capability = None
    return {"cpu": cpu, "cpu_capability": capability, "logical_cpus": os.cpu_count(), "machine": platform.machine()}
