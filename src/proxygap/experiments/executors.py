"""Executors hand an experiment's units of work to workers: in this process (serial), or as Ray tasks.

Both call :func:`execute_unit`, which applies the unit's seed to every RNG and the run's thread
count to torch before the unit runs, so a unit gives the same result wherever it runs.
Nothing here is home-made distribution: the Ray executor is ``ray.remote`` tasks on an
existing cluster (``address``) or on a local instance it starts.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from proxygap.errors import ProxygapError
from proxygap.experiments.spec import Unit, UnitContext

EXECUTORS = ("local", "ray")


def apply_seed(seed: int) -> None:
    """Seed every global RNG a unit may touch (python, numpy, torch)."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def execute_unit(name: str, cfg_dict: dict, unit_dict: dict, prepared: dict | None, threads: int,
                 scratch: str, progress: bool, models: str | None = None, device: str = "cpu",
                 dtype: str = "fp32", versions: dict | None = None) -> dict:
    """Run one unit of experiment ``name`` from plain data (what a Ray task receives), on ``device``
    in ``dtype`` (``lm.device.compute_on``). ``versions``: the driver's libraries, which a worker
    must have too (a Ray worker's environment is its own), so that no run mixes two versions."""
    import torch

    if versions is not None:
        from proxygap.experiments.provenance import versions as here

        found = here()
        for package, wanted in versions.items():
            if found.get(package) != wanted:
                raise ProxygapError(f"unit {unit_dict.get('key')} runs where {package} is {found.get(package)}, but "
                                    f"the run's driver has {wanted}: a run must not mix two versions; install "
                                    f"{package} {wanted} on every worker")

    from proxygap.config import from_dict
    from proxygap.experiments.catalogue import get_experiment
    from proxygap.lm.device import compute_on

    experiment = get_experiment(name)
    cfg = from_dict(experiment.config_cls, cfg_dict)
    unit = Unit.from_dict(unit_dict)
    torch.set_num_threads(threads)
    apply_seed(unit.seed)
    Path(scratch).mkdir(parents=True, exist_ok=True)
    from proxygap.pipeline.base_model import judged_against

    with compute_on(device, dtype), judged_against(getattr(cfg, "world", None)):
        return experiment.run_unit(cfg, unit, UnitContext(unit.seed, Path(scratch), prepared, progress,
                                                          Path(models) if models else None))


Job = tuple[Unit, dict]  # (unit, keyword arguments of execute_unit)
Done = tuple[Unit, dict, float, dict]  # (unit, its result, its own wall time in seconds, the machine it ran on)


def timed_unit(**kwargs: Any) -> tuple[dict, float, dict]:
    """``execute_unit``'s result, its wall time and the machine (``provenance.hardware``), measured
    where the unit runs (units of a Ray run overlap, so the driver's clock between two completions is
    not any unit's time, and its machine need not be theirs)."""
    from proxygap.experiments.provenance import hardware

    start = time.perf_counter()
    result = execute_unit(**kwargs)
    return result, time.perf_counter() - start, hardware()


def run_local(jobs: list[Job]) -> Iterator[Done]:
    for unit, kwargs in jobs:
        yield (unit, *timed_unit(**kwargs))


def ray_module() -> Any:
    try:
        import ray
    except ImportError:
        raise ProxygapError("--executor ray needs Ray: pip install -e '.[ray]' (or pip install 'ray>=2.9')") from None
    return ray


def ray_started(address: str | None = None, num_cpus: int | None = None) -> Any:
    """The ``ray`` module, initialized: on the cluster at ``address``, or a local instance with
    ``num_cpus`` (unless Ray is already initialized in this process)."""
    ray = ray_module()
    if not ray.is_initialized():
        try:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise ProxygapError(f"cannot start or reach Ray (address={address or 'local'}): "
                                f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return ray


def ray_device(spec: str, address: str | None = None, num_cpus: int | None = None) -> tuple[str, str]:
    """(device of every unit, its description) for a Ray run, resolved against the cluster's GPUs,
    not this machine's: the driver of a cluster run is often a node without one. ``auto`` is
    ``cuda`` when the cluster has a GPU; each unit then holds one, which is plain ``cuda`` inside
    its worker, so ``cuda:N`` (one GPU of one machine) is refused."""
    from proxygap.config import ConfigError
    from proxygap.lm.device import parse_device

    kind, index = parse_device(spec)
    if kind == "cpu":
        return "cpu", "cpu"
    if index is not None:
        raise ConfigError(f"device={spec!r} names one GPU of one machine; with --executor ray use device=cuda "
                          "(each unit gets a GPU of the cluster)")
    gpus = ray_started(address, num_cpus).cluster_resources().get("GPU", 0)
    if not gpus:
        if kind == "auto":
            return "cpu", "cpu"
        raise ConfigError(f"device={spec!r} but the Ray cluster ({address or 'local instance'}) has no GPU; "
                          "use device=cpu or device=auto")
    return "cuda", f"cuda (Ray cluster with {gpus:g} GPU(s), one per unit)"


def execute_prepare(name: str, cfg_dict: dict, work: str, threads: int, device: str, dtype: str) -> Any:
    """An experiment's ``prepare`` from plain data, on ``device`` (what a Ray task receives)."""
    import torch

    from proxygap.config import from_dict
    from proxygap.experiments.catalogue import get_experiment
    from proxygap.lm.device import compute_on
    from proxygap.pipeline.base_model import judged_against

    experiment = get_experiment(name)
    cfg = from_dict(experiment.config_cls, cfg_dict)
    torch.set_num_threads(threads)
    with compute_on(device, dtype), judged_against(getattr(cfg, "world", None)):
        return experiment.prepare(cfg, Path(work), progress=False)  # a worker's bars reach no terminal


def _get(ray, ref, what: str) -> Any:
    """``ray.get``, with a user's error (bad config, no GPU, full disk) re-raised as one line."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, (ProxygapError, OSError)):  # one line, as in a serial run
            raise cause from None
        raise
    except ray.exceptions.RayError as e:  # a worker that died (out of memory, killed)
        raise ProxygapError(f"{what}'s Ray worker died ({type(e).__name__}); "
                            "--resume reruns the units not finished") from None


def prepare_on_ray(address: str | None = None, num_cpus: int | None = None, **kwargs: Any) -> Any:
    """``execute_prepare`` as one Ray task holding a GPU: where the units will run, not on the driver."""
    ray = ray_started(address, num_cpus)
    remote = ray.remote(num_cpus=1, num_gpus=1, max_retries=0)(execute_prepare)
    return _get(ray, remote.remote(**kwargs), "prepare")


def run_ray(jobs: list[Job], address: str | None = None, num_cpus: int | None = None) -> Iterator[Done]:
    """Each unit a Ray task of one CPU (and one GPU on a CUDA device), yielded as it finishes. With
    no ``address`` (and no Ray already initialized in this process) a local Ray instance is started,
    with ``num_cpus``."""
    ray = ray_started(address, num_cpus)
    # A unit on a GPU holds a whole one: Ray sets each worker's CUDA_VISIBLE_DEVICES, so inside
    # the worker that GPU is plain ``cuda``.
    on_gpu = any(str(kwargs.get("device", "cpu")).startswith("cuda") for _, kwargs in jobs)
    remote = ray.remote(num_cpus=1, num_gpus=1 if on_gpu else 0, max_retries=0)(timed_unit)
    pending = {remote.remote(**({**kwargs, "device": "cuda"} if on_gpu else kwargs)): unit for unit, kwargs in jobs}
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                unit = pending.pop(ref)
                result, seconds, where = _get(ray, ref, f"unit {unit.key}")
                yield unit, result, seconds, where
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)


def check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """A one-line error when a cluster's ``host:port`` does not answer: ``ray.init`` itself retries
    for minutes and prints a line per try. ``auto`` (Ray finds the cluster) is left to Ray."""
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if address == "auto" or not sep:
        return
    if not port.isdigit() or not host:
        raise ProxygapError(f"--ray-address {address!r} is not host:port (or ray://host:port, or auto)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise ProxygapError(f"cannot reach Ray at {address}: {e.strerror or e}; is the cluster up?") from None


def executor(name: str, address: str | None = None, num_cpus: int | None = None
             ) -> Callable[[list[Job]], Iterator[Done]]:
    if name == "local":
        if address:
            raise ProxygapError("--ray-address needs --executor ray")
        return run_local
    if name == "ray":
        if num_cpus is not None and num_cpus < 1:
            raise ProxygapError(f"--ray-cpus must be at least 1 (a Ray instance without CPUs runs no unit), got {num_cpus}")
        ray_module()  # fail before any work if Ray is missing
        if address:
            check_reachable(address)
        return lambda jobs: run_ray(jobs, address, num_cpus)
    raise ProxygapError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
