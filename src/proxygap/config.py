"""Typed, validated configuration shared by every proxygap command.

Every knob is a dataclass field made with :func:`knob`, which carries a one-line help text
and, where it matters, a valid range or a set of choices (TRL's style: one documented field
per knob). Configs load from YAML/JSON files and take ``--set path.to.field=value``
overrides; an unknown key or an out-of-range value raises :class:`ConfigError` with a
one-line message naming it, never a silent default.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
import math
import threading
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

from proxygap.errors import ProxygapError

T = TypeVar("T")


class ConfigError(ProxygapError, ValueError):
    """A config key, value or file is wrong. The CLI prints it on one line and exits 2."""


_building = threading.local()  # set while from_dict builds a config: it validates with the key's full path


class Config:
    """Base of every config dataclass: a config is validated when it is constructed, so code
    that builds one directly (not through a file or ``--set``) is checked too."""

    # Keys a user may reach for that this class does not have because something else sets them:
    # key -> where to set it instead, shown by the unknown-key error (merged along the class's bases).
    SET_ELSEWHERE: ClassVar[dict[str, str]] = {"seed": "every unit's seed is one of the run's seeds: --seeds or seeds=..."}

    def __post_init__(self) -> None:
        if not getattr(_building, "active", False):
            validate(self)


@contextlib.contextmanager
def _deferred_validation():
    previous = getattr(_building, "active", False)
    _building.active = True
    try:
        yield
    finally:
        _building.active = previous


def knob(
    default: Any,
    help: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    choices: tuple | None = None,
) -> Any:
    """A documented config field. ``lo``/``hi`` are inclusive bounds; ``choices`` a closed set."""
    metadata = {"help": help, "lo": lo, "hi": hi, "choices": choices}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple (immutable) as the default of a sequence knob")
    if dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=lambda: default, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def nested(cls: type, help: str = "") -> Any:
    """A field holding a nested config section."""
    return dataclasses.field(default_factory=cls, metadata={"help": help})


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(value: Any, typ: Any, where: str) -> Any:
    """Convert ``value`` (from YAML/JSON or a ``--set`` string) to the field's type."""
    origin = typing.get_origin(typ)
    if origin is typing.Union or str(origin) == "types.UnionType":
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _coerce(value, args[0], where)
    if dataclasses.is_dataclass(typ):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a section (mapping), got {value!r}")
        return from_dict(typ, value, prefix=where + ".")
    if origin is tuple:
        args = typing.get_args(typ)
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.strip().startswith("[") else [
                v.strip() for v in value.split(",") if v.strip()
            ]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        item_type = args[0] if args else str
        return tuple(_coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value))
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
            return False
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if typ is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = int(value.strip())  # '12' exactly; '1e3' and '2.0' go the float way below
        if isinstance(value, int):  # exact (float() would round it, or overflow); range checks come after
            return value
        try:
            as_float = float(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{where} must be an integer, got {value!r}") from None
        if not as_float.is_integer():
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return int(as_float)
    if typ is float:
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{where} must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{where} must be a finite number, got {value!r}")
        return number
    if typ is str:
        return str(value)
    return value


def _unknown_key(cls: type, key: str, prefix: str) -> ConfigError:
    names = [f.name for f in dataclasses.fields(cls)]
    close = difflib.get_close_matches(key, names, n=1)
    elsewhere = next((base.__dict__["SET_ELSEWHERE"][key] for base in cls.__mro__
                      if key in base.__dict__.get("SET_ELSEWHERE", {})), None)
    hint = f" ({elsewhere})" if elsewhere else f" (did you mean {prefix}{close[0]}?)" if close else ""
    return ConfigError(f"unknown config key {prefix}{key}{hint}")


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build ``cls`` from a mapping; unknown keys are errors."""
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise _unknown_key(cls, key, prefix)
        kwargs[key] = _coerce(value, hints[key], prefix + key)
    with _deferred_validation():
        obj = cls(**kwargs)
    validate(obj, prefix)
    return obj


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain, JSON-ready mapping of a config (tuples become lists)."""

    def convert(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: convert(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (tuple, list)):
            return [convert(x) for x in v]
        return v

    return convert(cfg)


def validate(cfg: Any, prefix: str = "") -> None:
    """Check every knob's range and choices, recursively, then the config's own ``check()``."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        name = prefix + f.name
        if dataclasses.is_dataclass(value):
            validate(value, name + ".")
            continue
        meta = f.metadata
        values = value if isinstance(value, tuple) else (value,)
        for v in values:
            if meta.get("choices") is not None and v not in meta["choices"]:
                raise ConfigError(f"{name}={v!r} is not one of {', '.join(map(str, meta['choices']))}")
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{name}={v} is not a finite number")
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                lo, hi = meta.get("lo"), meta.get("hi")
                if (lo is not None and v < lo) or (hi is not None and v > hi):
                    lo_s = "-inf" if lo is None else lo
                    hi_s = "inf" if hi is None else hi
                    raise ConfigError(f"{name}={v} is out of range [{lo_s}, {hi_s}]")
                if isinstance(v, int) and abs(v) >= 2 ** 63:  # a knob with no upper bound still feeds torch
                    raise ConfigError(f"{name}={v} is out of range (beyond a 64-bit integer)")
    check = getattr(cfg, "check", None)
    if callable(check):
        try:
            check()
        except ConfigError as e:
            raise ConfigError(f"{prefix[:-1]}: {e}" if prefix else str(e)) from None


def set_paths(cls: type, data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Write ``path.to.field=value`` strings into the raw mapping ``data`` of a ``cls`` config (keys
    checked here, values coerced and validated when the mapping is built): several layers can be
    stacked this way and validated once, so a cross-knob check sees the final config, not a step."""
    data = json.loads(json.dumps(data))  # a deep copy of plain data
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects path.to.field=value, got {item!r}")
        path, raw = item.split("=", 1)
        if not path.strip():
            raise ConfigError(f"--set {item!r} names no field: use path.to.field=value")
        keys = path.strip().split(".")
        node: Any = data
        section: Any = cls
        for i, key in enumerate(keys):
            prefix = ".".join(keys[:i]) + "." if i else ""
            names = {f.name for f in dataclasses.fields(section)}
            if key not in names:
                raise _unknown_key(section, key, prefix)
            typ = _hints(section)[key]
            if i == len(keys) - 1:
                if dataclasses.is_dataclass(typ):
                    raise ConfigError(f"{path} is a section; set one of its fields")
                node[key] = raw
            else:
                if not dataclasses.is_dataclass(typ):
                    raise ConfigError(f"{'.'.join(keys[: i + 1])} is not a section")
                if not isinstance(node.get(key), dict):
                    node[key] = to_dict(typ())
                node = node[key]
                section = typ
    return data


def apply_overrides(cfg: T, overrides: list[str] | tuple[str, ...]) -> T:
    """Apply ``path.to.field=value`` strings; returns a new, validated config."""
    return from_dict(type(cfg), set_paths(type(cfg), to_dict(cfg), overrides))


def load_config_data(path: str | Path) -> dict[str, Any]:
    """The raw mapping in a YAML/JSON config file (keys and values are checked when it is applied)."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"config file {p} is a directory; give a YAML or JSON file")
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        text = p.read_text()
        data = json.loads(text) if p.suffix == ".json" else (yaml.safe_load(text) or {})
    except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as e:
        mark = getattr(e, "problem_mark", None)  # YAML's position; JSON's is in its one-line message
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        reason = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"config file {p} is not valid YAML/JSON{where}: {reason}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping at the top level")
    return data


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> T:
    """Defaults, then a YAML/JSON file, then ``--set`` overrides; validated at each step."""
    cfg = from_dict(cls, load_config_data(path) if path is not None else {})
    return apply_overrides(cfg, list(overrides)) if overrides else cfg


def describe(cls: type, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(path, default, help) for every knob, for ``--help``-style listings and docs."""
    rows = []
    instance = cls()
    for f in dataclasses.fields(cls):
        value = getattr(instance, f.name)
        if dataclasses.is_dataclass(value):
            rows.extend(describe(type(value), prefix + f.name + "."))
        else:
            rows.append((prefix + f.name, value, f.metadata.get("help", "")))
    return rows
