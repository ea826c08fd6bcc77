"""The device and dtype knobs: resolution, errors, the compute context, and a run that records them.

This machine has no GPU: CUDA is exercised by resolving against a patched ``torch.cuda`` (what
``auto`` picks, which errors fire) and by :mod:`device_audit`, which flags on a CPU run every
call that would mix devices on a GPU. The GPU itself is ``bench/gpu_check.sh``'s job.
"""

import contextlib
import json

import pytest
import torch

from device_audit import DeviceAudit
from proxygap.cli import main
from proxygap.config import ConfigError
from proxygap.lm import device as device_module
from proxygap.lm.device import compute_on, current_device, explicitly_placed, resolve_device, resolve_dtype
from proxygap.lm.model import load_model


@pytest.fixture
def fake_gpus(monkeypatch):
    """torch.cuda as a machine with ``n`` GPUs (bf16 or not) would answer, without touching a GPU."""
    def install(n: int = 1, bf16: bool = True):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: n > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100-SXM2-16GB")
    return install


def test_cpu_explicit_and_auto_falls_back_to_cpu(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")


def test_auto_picks_cuda_when_present(fake_gpus):
    fake_gpus(2)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("CUDA") == torch.device("cuda", 0)


@pytest.mark.parametrize("spec, words", [("tpu", "not a device"), ("cuda:x", "not a device"),
                                         ("cpu:0", "not a device"), ("cuda", "no CUDA GPU")])
def test_bad_devices_name_the_problem(spec, words, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=words):
        resolve_device(spec)


def test_a_gpu_index_past_the_last_is_refused(fake_gpus):
    fake_gpus(1)
    with pytest.raises(ConfigError, match=r"1 CUDA device\(s\): cuda:0\.\.cuda:0"):
        resolve_device("cuda:1")


def test_bf16_where_unsupported_is_refused(fake_gpus):
    fake_gpus(1, bf16=False)
    with pytest.raises(ConfigError, match="V100.*no bfloat16 support"):
        resolve_dtype("bf16", torch.device("cuda", 0))
    assert resolve_dtype("fp32", torch.device("cuda", 0)) == torch.float32
    assert resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16  # autocast on the CPU
    with pytest.raises(ConfigError, match="not a precision"):
        resolve_dtype("fp16", torch.device("cpu"))


@pytest.mark.parametrize("argv, words", [
    (["run", "overoptimization", "--preset", "smoke", "--device", "tpu"], "'tpu' is not a device"),
    (["run", "overoptimization", "--preset", "smoke", "--set", "device=cuda"], "no CUDA GPU"),
    (["probe", "--device", "cuda:0"], "no CUDA GPU"),
    (["pretrain", "--out", "unused", "--device", "cuda"], "no CUDA GPU"),
    (["run", "overoptimization", "--preset", "smoke", "--set", "dtype=fp16"], "dtype"),
])
def test_device_errors_are_one_line_and_exit_2(argv, words, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err, err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "unused").exists()  # nothing started


def test_bf16_on_an_unsupported_gpu_exits_2_before_work(fake_gpus, tmp_path, monkeypatch, capsys):
    fake_gpus(1, bf16=False)
    monkeypatch.chdir(tmp_path)
    assert main(["run", "overoptimization", "--preset", "smoke", "--device", "cuda", "--dtype", "bf16"]) == 2
    assert "no bfloat16 support" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_compute_on_sets_the_default_device_and_autocast(tiny_base_dir):
    assert current_device() == torch.device("cpu")
    with compute_on("cpu", "bf16") as dev:
        assert dev == torch.device("cpu") and current_device() == dev
        model, _ = load_model(tiny_base_dir)
        assert next(model.parameters()).dtype == torch.float32  # fp32 master weights under bf16
        x = torch.ones(2, 3)
        assert (x @ x.T).dtype == torch.bfloat16  # autocast is on
    with compute_on("cpu", "fp32"):
        assert (torch.ones(2, 3) @ torch.ones(3, 2)).dtype == torch.float32


def test_load_model_follows_the_current_device(tiny_base_dir, monkeypatch):
    """``load_model`` puts the model where ``compute_on`` says (here a recorded ``.to``; no GPU)."""
    seen = []
    # A device that is not the CPU, recorded and not moved to: a loader that ignored the current
    # device (or put the model on the CPU by habit) would not ask for it.
    elsewhere = torch.device("meta")
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *a, **k: (seen.append(a[0] if a else k.get("device")), self)[1])
    monkeypatch.setattr("proxygap.lm.model.current_device", lambda: elsewhere)
    load_model(tiny_base_dir)
    assert elsewhere in seen, seen


def test_a_run_records_its_device_and_dtype(tmp_path):
    from proxygap.experiments.runner import run_experiment

    out = run_experiment("overoptimization", out=tmp_path / "run", preset="smoke", progress=False,
                         overrides=["device=cpu", "dtype=bf16", "seeds=[0]"])
    results = json.loads((out / "results.json").read_text())
    assert results["meta"]["device"] == "cpu" and results["meta"]["dtype"] == "bf16"
    assert results["config"]["device"] == "cpu"
    assert json.loads((out / "run.json").read_text())["device"] == "cpu"


def test_resume_on_a_machine_without_the_recorded_device_says_so(tmp_path, monkeypatch, capsys):
    """A run started on a GPU and resumed on a CPU-only machine: one line, exit 2, the work kept."""
    from proxygap.experiments.runner import run_experiment

    out = tmp_path / "run"
    monkeypatch.setattr("proxygap.experiments.executors.execute_unit", _stop)
    with pytest.raises(KeyboardInterrupt):  # stopped at its first unit, as Ctrl-C would: OUT.partial stays
        run_experiment("overoptimization", out=out, preset="smoke", progress=False, overrides=["seeds=[0]"])
    monkeypatch.undo()
    partial = tmp_path / "run.partial"
    recorded = json.loads((partial / "run.json").read_text())
    (partial / "run.json").write_text(json.dumps({**recorded, "device": "cuda:0"}))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["run", "overoptimization", "--preset", "smoke", "--out", str(out), "--resume",
                 "--set", "seeds=[0]", "--quiet"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err
    assert partial.is_dir() and not out.exists()


def _stop(*args, **kwargs):
    raise KeyboardInterrupt


@contextlib.contextmanager
def _audited(monkeypatch):
    """Every ``compute_on`` of the run (prepare, units, pretraining) also runs the device audit,
    with the default-device mode on as it is on a GPU (on the CPU ``compute_on`` skips it)."""
    audit = DeviceAudit()
    original = device_module.compute_on

    @contextlib.contextmanager
    def audited(*args, **kwargs):
        with original(*args, **kwargs) as dev, torch.device(dev), audit:
            yield dev
    monkeypatch.setattr(device_module, "compute_on", audited)
    yield audit


@pytest.mark.parametrize("experiment", ["overoptimization", "tampering"])
def test_nothing_in_a_run_would_mix_devices_on_a_gpu(experiment, tmp_path, monkeypatch):
    with _audited(monkeypatch) as audit:
        from proxygap.experiments.runner import run_experiment

        run_experiment(experiment, out=tmp_path / "run", preset="smoke", progress=False, overrides=["seeds=[0]"])
    assert audit.calls > 10_000  # the audit saw the run's tensor work
    assert audit.problems == {}, audit.problems


def test_nothing_in_pretraining_or_the_probe_would_mix_devices(tmp_path, monkeypatch, capsys):
    from conftest import TINY_RECIPE

    with _audited(monkeypatch) as audit:
        argv = ["pretrain", "--out", str(tmp_path / "base"), "--quiet", "--probe", "--device", "cpu"]
        for item in TINY_RECIPE:
            argv += ["--set", item.replace("train.steps=60", "train.steps=4")]
        assert main(argv) == 0
    assert audit.calls > 1_000
    assert audit.problems == {}, audit.problems


def test_the_audit_catches_what_would_break_on_a_gpu():
    """The check can fail: the three patterns it exists for are flagged, their fixes are not."""
    with torch.device("cpu"), DeviceAudit() as audit:
        gen = torch.Generator().manual_seed(0)
        torch.rand(3, generator=gen)
        torch.ones(3).numpy()
        torch.rand(3, generator=gen, device=gen.device)
        torch.ones(3).cpu().numpy()
        torch.zeros(2)  # the default-device mode places it
        with explicitly_placed():
            torch.zeros(2)  # nothing places it
            torch.zeros(2, device="cpu")
    kinds = sorted(kind for kind, _ in audit.problems)
    assert kinds == ["generator draw without a device", "numpy of a tensor not moved to the CPU",
                     "tensor made without a device where the default-device mode is off"], audit.problems
    assert sum(audit.problems.values()) == 3


def _device_modes() -> list:
    from torch.overrides import _get_current_function_mode_stack
    from torch.utils._device import DeviceContext

    return [type(m).__name__ for m in _get_current_function_mode_stack() if isinstance(m, DeviceContext)]


def test_explicitly_placed_takes_the_default_device_mode_off_and_puts_it_back():
    with DeviceAudit() as recorder:  # a mode that is not the device mode stays on
        with torch.device("cpu"):
            assert _device_modes() == ["DeviceContext"]
            with explicitly_placed():
                assert _device_modes() == []
                torch.ones(1, device="cpu")
            assert _device_modes() == ["DeviceContext"]
            with pytest.raises(RuntimeError), explicitly_placed():
                raise RuntimeError("the mode comes back after an error too")
            assert _device_modes() == ["DeviceContext"]
        assert _device_modes() == []  # torch.device's own exit found its mode where it left it
    assert recorder.calls >= 2  # the recorder above the device mode saw the calls inside
    with explicitly_placed():  # no mode on: nothing to do
        assert _device_modes() == []


def test_the_hot_loops_run_without_the_default_device_mode(tiny_base_dir):
    """Sampling and log-probs (each token's forward pass) run with the mode off, so on a GPU its
    Python call per torch op is not paid there; every tensor they make names its device."""
    from proxygap.lm.sampling import sample, sequence_logprobs

    model, tokenizer = load_model(tiny_base_dir)
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(_device_modes()))
    with torch.device("cpu"), DeviceAudit() as audit:
        s = sample(model, tokenizer, ["hi", "hi", "a b"], max_new_tokens=4, generator=torch.Generator().manual_seed(0),
                   fast=False)
        sequence_logprobs(model, s.prompt_ids, s.prompt_mask, s.tokens, s.mask, fast=False)
        s = sample(model, tokenizer, ["hi", "a b"], max_new_tokens=4, generator=torch.Generator().manual_seed(0))
        sequence_logprobs(model.eval(), s.prompt_ids, s.prompt_mask, s.tokens, s.mask)
    assert len(seen) >= 3 and all(modes == [] for modes in seen), seen
    assert audit.problems == {}, audit.problems


def _run_on_local_ray(tmp_path, capsys, num_gpus: int, *settings: str) -> tuple[int, str]:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, num_gpus=num_gpus, include_dashboard=False, log_to_driver=False)
    try:
        rc = main(["run", "overoptimization", "--preset", "smoke", "--seeds", "1", "--executor", "ray", "--quiet",
                   "--out", str(tmp_path / "run"), *settings])
    finally:
        ray.shutdown()
    ours = [line for line in capsys.readouterr().err.splitlines() if line.startswith("proxygap")]  # not Ray's log
    return rc, "\n".join(ours)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a driver without a GPU")
def test_with_ray_auto_follows_the_clusters_gpus_not_the_drivers(tmp_path, capsys):
    """A local Ray instance that declares one GPU, on this GPU-less machine: ``auto`` resolves to
    CUDA from the cluster's resources (the driver has none), the work goes to a worker holding a
    GPU, and that worker's torch finds no CUDA: one line, exit 2, the device recorded."""
    rc, err = _run_on_local_ray(tmp_path, capsys, 1)
    assert rc == 2 and len(err.splitlines()) == 1 and "no CUDA GPU" in err, err
    assert json.loads((tmp_path / "run.partial" / "run.json").read_text())["device"] == "cuda"


def test_with_ray_cuda_on_a_cluster_without_gpus_is_one_line(tmp_path, capsys):
    rc, err = _run_on_local_ray(tmp_path, capsys, 0, "--device", "cuda")
    assert rc == 2 and len(err.splitlines()) == 1 and "the Ray cluster (local instance) has no GPU" in err, err
    assert not (tmp_path / "run.partial").exists()  # refused before any work


def test_with_ray_a_gpu_index_is_refused(tmp_path, capsys):
    pytest.importorskip("ray")
    assert main(["run", "overoptimization", "--preset", "smoke", "--executor", "ray", "--device", "cuda:1",
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "use device=cuda" in err, err


def test_a_resume_of_a_run_not_started_checks_the_device_before_writing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "run"
    assert main(["run", "overoptimization", "--preset", "smoke", "--resume", "--out", str(out), "--device", "cuda"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err
    assert not out.with_name("run.partial").exists() and not out.exists()  # nothing half-written to trip a retry


def test_with_ray_an_existing_run_directory_fails_before_ray_starts(tmp_path, capsys):
    ray = pytest.importorskip("ray")
    out = tmp_path / "run"
    out.mkdir()
    assert main(["run", "overoptimization", "--preset", "smoke", "--executor", "ray", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert not ray.is_initialized()  # the device check (which reaches the cluster) comes after the cheap checks
