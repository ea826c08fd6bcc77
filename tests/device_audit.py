"""A CPU-only check for what would mix devices on a GPU (this machine has none).

Inside ``lm.device.compute_on("cuda")`` every tensor made without a device lands on the GPU, so
two kinds of call break there while passing on a CPU:
- a factory (``torch.rand``, ``randint``, ``randperm``, ...) drawing from a ``torch.Generator``
  (always a CPU one in proxygap) without naming the device: the default device makes it a CUDA
  draw from a CPU generator, which torch refuses;
- ``.numpy()`` (or ``np.asarray``) of a tensor that did not come from ``.cpu()``/``.to("cpu")``
  or an explicit ``device="cpu"``: on a GPU it is a CUDA tensor, which numpy cannot read;
- a tensor made without a device where ``lm.device.explicitly_placed`` has taken the
  default-device mode off (the hot loops): on a GPU it would be a CPU tensor among CUDA ones.
  The audit sees this only when the mode is on to begin with, as on a GPU: audited runs enter
  ``torch.device("cpu")`` as a mode for that reason.
:class:`DeviceAudit` is a torch function mode that records each such call site in proxygap's
code while a real run goes on.
"""

from __future__ import annotations

import traceback

from torch.overrides import TorchFunctionMode, _get_current_function_mode_stack
from torch.utils._device import DeviceContext, _device_constructors

FACTORIES = _device_constructors()


class DeviceAudit(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.cpu_tensors: set[int] = set()  # ids of tensors known to be on the CPU on every machine
        self.problems: dict[tuple[str, str], int] = {}  # (kind, proxygap file:line) -> count
        self.calls = 0

    @staticmethod
    def _site() -> str:
        for frame in reversed(traceback.extract_stack()[:-3]):
            if "/proxygap/" in frame.filename and "device_audit" not in frame.filename:
                return f"{frame.filename.rsplit('/proxygap/', 1)[-1]}:{frame.lineno}"
        return "outside proxygap"

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.calls += 1
        name = getattr(func, "__name__", str(func))
        if func in FACTORIES and kwargs.get("generator") is not None and "device" not in kwargs:
            key = ("generator draw without a device", self._site())
            self.problems[key] = self.problems.get(key, 0) + 1
        if name in ("numpy", "__array__") and args and id(args[0]) not in self.cpu_tensors:
            key = ("numpy of a tensor not moved to the CPU", self._site())
            self.problems[key] = self.problems.get(key, 0) + 1
        if func in FACTORIES and kwargs.get("device") is None and not any(
                isinstance(mode, DeviceContext) for mode in _get_current_function_mode_stack()):
            key = ("tensor made without a device where the default-device mode is off", self._site())
            self.problems[key] = self.problems.get(key, 0) + 1
        out = func(*args, **kwargs)
        to_cpu = name == "to" and any(str(a) == "cpu" for a in [*args[1:], *kwargs.values()])
        if name == "cpu" or to_cpu or (func in FACTORIES and str(kwargs.get("device")) == "cpu"):
            self.cpu_tensors.add(id(out))
        return out
