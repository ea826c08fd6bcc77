"""Where and in what precision models compute: the ``device`` and ``dtype`` knobs.

One mechanism for every layer: :func:`compute_on` makes the device torch's default device
(``with torch.device(...)``) and, for ``bf16``, turns on ``torch.autocast``. Inside it every
model a loader returns (``lm.model.load_model``), every model or head built, and every tensor
made without an explicit device lands on that device, so sampling, reward models, every regime
and the probe run there without any of them naming a device. The runner enters it around
``prepare`` and around every unit; ``proxygap pretrain`` and ``proxygap probe`` around their work.

What stays on the CPU on purpose: ``torch.Generator`` objects (seeded streams must be the
same on every machine; draws from them are made on the CPU and moved), and whatever is turned
into numpy (``.cpu()`` first).

``bf16`` is mixed precision (autocast), not half-precision weights: parameters, gradients and
optimizer state stay float32, the matmuls run in bfloat16, softmax and losses in float32
(autocast's own lists). That is what a bf16 run of TRL or nanoGPT means, and small models
trained with bf16 weights and AdamW lose their updates to rounding.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

try:  # private in torch: without it, explicitly_placed() does nothing
    from torch.utils._device import DeviceContext
except ImportError:  # pragma: no cover
    DeviceContext = None

from proxygap.config import ConfigError

DEVICE_HELP = "auto (CUDA when present, else the CPU), cpu, cuda or cuda:N"
DTYPES = ("fp32", "bf16")
DTYPE_HELP = ("fp32, or bf16: mixed precision (autocast; weights and optimizer state stay fp32), on a GPU that "
              "supports it or on the CPU")


def parse_device(spec: str) -> tuple[str, int | None]:
    """``auto``/``cpu``/``cuda``/``cuda:N`` -> (kind, index or None), whatever this machine has; a
    ConfigError for anything else. What a config checks; ``resolve_device`` also checks the machine."""
    kind, _, index = str(spec).strip().lower().partition(":")
    if kind not in ("auto", "cpu", "cuda") or (index and (kind != "cuda" or not index.isdigit())):
        raise ConfigError(f"device={spec!r} is not a device; choose {DEVICE_HELP}")
    return kind, int(index) if index else None


def resolve_device(spec: str) -> torch.device:
    """``auto``/``cpu``/``cuda``/``cuda:N`` -> a torch device that exists here, or a ConfigError naming why not."""
    kind, index = parse_device(spec)
    if kind == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    if kind == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"device={spec!r} but this machine has no CUDA GPU (torch {torch.__version__}, "
                          f"CUDA build: {torch.version.cuda or 'none'}); use device=cpu or device=auto")
    n = torch.cuda.device_count()
    if index is not None and index >= n:
        raise ConfigError(f"device={spec!r} but this machine has {n} CUDA device(s): cuda:0..cuda:{n - 1}")
    return torch.device("cuda", index if index is not None else torch.cuda.current_device())


def resolve_dtype(spec: str, device: torch.device) -> torch.dtype:
    """``fp32``/``bf16`` -> the compute dtype on ``device``, or a ConfigError when the device cannot do it."""
    text = str(spec).strip().lower()
    if text not in DTYPES:
        raise ConfigError(f"dtype={spec!r} is not a precision; choose {' or '.join(DTYPES)}")
    if text == "fp32":
        return torch.float32
    if device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        name = torch.cuda.get_device_name(device)
        raise ConfigError(f"dtype=bf16 but {device} ({name}) has no bfloat16 support; use dtype=fp32")
    return torch.bfloat16


def describe(device: torch.device) -> str:
    """The device as a run's metadata records it: ``cuda:0 (NVIDIA H100 80GB HBM3)`` or ``cpu``."""
    return f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else str(device)


@contextlib.contextmanager
def compute_on(device: str | torch.device = "cpu", dtype: str = "fp32") -> Iterator[torch.device]:
    """Run the body with ``device`` as torch's default device and, for ``bf16``, under autocast."""
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    low = resolve_dtype(dtype, dev)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    # torch.device(...) as a context is a TorchFunctionMode: a Python call on every torch op, 12%
    # of an RL step of the s model on a CPU. Where the default device already is the one asked
    # for (the CPU, normally), entering it changes nothing but the speed, so it is skipped.
    placed = contextlib.nullcontext() if torch.get_default_device() == dev else torch.device(dev)
    with placed, torch.autocast(dev.type, dtype=torch.bfloat16, enabled=low == torch.bfloat16):
        yield dev


@contextlib.contextmanager
def explicitly_placed() -> Iterator[None]:
    """Run the body without the default-device mode that ``compute_on`` enters on a GPU.

    That mode is a Python ``TorchFunctionMode``: every torch call pays a Python round trip,
    which on a GPU, where a small model's ops are bound by kernel launches, can cost as much as
    the kernels. The hot loops (sampling, per-token log-probs) place every tensor they make on
    their inputs' device, so inside them the mode changes nothing but the speed (a test checks
    that they make no tensor without a device). The mode is put back in its place on the stack
    when the body ends; other modes (profilers, tests' recorders) stay on throughout.
    Where torch lacks the private stack functions this relies on, it does nothing.
    """
    push, pop, depth = (getattr(torch._C, name, None) for name in
                        ("_push_on_torch_function_stack", "_pop_torch_function_stack", "_len_torch_function_stack"))
    if DeviceContext is None or push is None or pop is None or depth is None or depth() == 0:
        yield
        return
    stack = [pop() for _ in range(depth())][::-1]  # bottom first
    kept = [mode for mode in stack if not isinstance(mode, DeviceContext)]
    for mode in kept:
        push(mode)
    try:
        yield
    finally:
        # Each mode back where it was: ``with torch.device(...)`` pops whatever is on top when it exits.
        now = [pop() for _ in range(depth())][::-1]  # the kept modes, then any the body left on
        for mode in stack + now[len(kept):]:
            push(mode)


def current_device() -> torch.device:
    """The device models are put on now: ``compute_on``'s, else the CPU."""
    return torch.get_default_device()
