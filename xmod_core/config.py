"""Typed configuration: YAML files + ``key=value`` overrides -> (nested) dataclasses.

A configuration is a tree of dataclasses.  :func:`load_config` reads a YAML file, deep-merges
command-line overrides into it and builds the dataclass with :func:`from_dict`, which checks
every value against the field's annotation and rejects unknown keys::

    @dataclass
    class Optim:
        lr: float = 4e-4
        betas: tuple[float, ...] = (0.9, 0.999)

    @dataclass
    class TrainConfig:
        stage: Literal["2d_burn_in", "joint"] = "joint"
        out_dir: Path = Path("out/train")
        optim: Optim = field(default_factory=Optim)

    cfg = load_config(TrainConfig, "config/train.yaml", ["optim.lr=1e-3", "stage=joint"])

Supported field types: ``bool`` (only true/false, never 0/1 or strings), ``int`` (not bool),
``float`` (ints accepted and converted), ``str``, ``pathlib.Path`` (from a string),
``Literal[...]``, ``Optional[X]`` / ``X | None`` (and other unions, first match wins),
``list[X]``, ``tuple[X, ...]``, fixed ``tuple[X, Y]``, ``dict[K, V]``, nested dataclasses and
``typing.Any``.  Every error is a :class:`ConfigError` naming the full dotted key
(``optim.betas[1]``).  Annotations are resolved with :func:`typing.get_type_hints`, so
``from __future__ import annotations`` works (the dataclasses must live at module level).

YAML is parsed with a safe loader that also reads ``1e-3`` as a float (PyYAML's YAML 1.1
resolver alone would return the string ``"1e-3"``); otherwise it is :func:`yaml.safe_load`.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import re
import types
import typing
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path, PurePath
from typing import Any, Literal, TypeVar, Union

import yaml

__all__ = ["ConfigError", "from_dict", "to_dict", "config_hash", "parse_overrides", "load_config",
           "yaml_load"]

T = TypeVar("T")
_NONE = type(None)


class ConfigError(ValueError):
    """Invalid configuration: unknown or missing key, wrong type, unreadable file, bad override."""


class _Loader(yaml.SafeLoader):
    """SafeLoader whose float resolver also accepts ``1e-3`` / ``1E5`` (YAML 1.2 style)."""


_Loader.yaml_implicit_resolvers = {k: [r for r in v if r[0] != "tag:yaml.org,2002:float"]
                                   for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def yaml_load(text: str) -> Any:
    """``yaml.safe_load`` that reads ``1e-3`` as a float (see module docstring)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader


# --------------------------------------------------------------------------------------------
# dict -> dataclass


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _type_name(tp: Any) -> str:
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return repr(tp).replace("typing.", "").replace("pathlib.", "")


@lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except NameError as exc:  # an annotation names something not visible at module level
        raise TypeError(f"cannot resolve the annotations of {cls.__qualname__}: {exc}") from exc


def _init_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.init]


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, checking keys and value types recursively.

    ``where`` is the dotted key of ``data`` itself (prefix of every error message).  Keys absent
    from ``data`` take the dataclass defaults; a missing field without default, an unknown key
    or a value of the wrong type raises :class:`ConfigError`.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"from_dict needs a dataclass type, got {cls!r}")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or 'config'}: expected a mapping for {cls.__name__}, "
                          f"got {type(data).__name__} {data!r}")
    fields = _init_fields(cls)
    names = [f.name for f in fields]
    unknown = [k for k in data if k not in names]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key), names, n=1)
        hint = f" (did you mean {_join(where, close[0])!r}?)" if close else ""
        raise ConfigError(f"unknown key {_join(where, str(key))!r}{hint}; valid keys"
                          f"{' of ' + repr(where) if where else ''}: {', '.join(names)}")
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for f in fields:
        key = _join(where, f.name)
        if f.name in data:
            kwargs[f.name] = _convert(hints[f.name], data[f.name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required key {key!r} ({_type_name(hints[f.name])})")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:  # validation in __post_init__
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{where or cls.__name__}: {exc}") from exc


def _bad(key: str, tp: Any, value: Any) -> ConfigError:
    return ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")


def _convert(tp: Any, value: Any, key: str) -> Any:
    """Check/convert one value against annotation ``tp``; ``key`` names it in errors."""
    if tp is Any:
        return value
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise _bad(key, tp, value)
        return from_dict(tp, value, key)
    if origin is Literal:
        # exact type match, so that True does not pass for 1 nor 1 for 1.0
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise ConfigError(f"{key}: expected one of {list(args)!r}, got {value!r}")
    if origin is Union or origin is types.UnionType:
        if value is None:
            if _NONE in args:
                return None
            raise _bad(key, tp, value)
        options = [a for a in args if a is not _NONE]
        if len(options) == 1:  # Optional[X]: X's own, more precise error
            return _convert(options[0], value, key)
        for option in options:
            try:
                return _convert(option, value, key)
            except ConfigError:
                continue
        raise _bad(key, tp, value)
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _bad(key, tp, value)
        if not args:
            items = list(value)
        elif origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected {len(args)} items ({_type_name(tp)}), "
                                  f"got {len(value)}: {value!r}")
            items = [_convert(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value))]
        else:
            items = [_convert(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin or tp) is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise _bad(key, tp, value)
        if not args:
            return dict(value)
        return {_convert(args[0], k, f"{key} (key {k!r})"): _convert(args[1], v, f"{key}.{k}")
                for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _bad(key, tp, value)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _bad(key, tp, value)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _bad(key, tp, value)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _bad(key, tp, value)
    if isinstance(tp, type) and issubclass(tp, PurePath):
        if isinstance(value, (str, PurePath)):
            return tp(value)
        raise _bad(key, tp, value)
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise _bad(key, tp, value)
    raise TypeError(f"{key}: unsupported config field type {tp!r}")


# --------------------------------------------------------------------------------------------
# dataclass -> plain data, hashing


def to_dict(cfg: Any) -> Any:
    """Plain YAML/JSON-able data of a config: dataclasses -> dicts (init fields only),
    tuples -> lists, paths -> str; ``from_dict(type(cfg), to_dict(cfg)) == cfg``."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in _init_fields(type(cfg))}
    if isinstance(cfg, Mapping):
        return {k: to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, PurePath):
        return str(cfg)
    return cfg


def config_hash(cfg: Any, length: int = 16) -> str:
    """Stable short id of a configuration: the first ``length`` hex digits of the sha256 of the
    canonical JSON (sorted keys, no whitespace) of :func:`to_dict`."""
    canon = json.dumps(to_dict(cfg), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canon.encode()).hexdigest()[:length]


# --------------------------------------------------------------------------------------------
# overrides, files


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["a.b.c=value", ...]`` -> nested dict; each value is parsed as YAML (``lr=1e-3``,
    ``flag=true``, ``sizes=[1,2]``, ``name='007'``).  Later items win over earlier ones."""
    out: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, str) or "=" not in item:
            raise ConfigError(f"malformed override {item!r}: expected key=value")
        dotted, text = item.split("=", 1)
        parts = dotted.strip().split(".")
        if not all(p.strip() for p in parts):
            raise ConfigError(f"malformed override {item!r}: empty key or key component")
        try:
            value = yaml_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {exc}") from exc
        node = out
        for i, part in enumerate(parts[:-1]):
            part = part.strip()
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r} conflicts with an earlier override of "
                                  f"{'.'.join(parts[:i + 1])!r}")
            node = child
        node[parts[-1].strip()] = value
    return out


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge: mappings merge key by key, anything else replaces."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge(dict(out[k]), v)
        else:
            out[k] = dict(v) if isinstance(v, Mapping) else v
    return out


def load_config(cls: type[T], path: str | Path,
                overrides: Sequence[str] | Mapping[str, Any] = ()) -> T:
    """Read YAML ``path``, deep-merge ``overrides`` (``key=value`` strings or a nested mapping)
    and build ``cls``.  An empty file means all defaults.  Errors are :class:`ConfigError`
    naming the file (and the key)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    try:
        data = yaml_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path}: invalid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: top level must be a mapping, "
                          f"got {type(data).__name__}")
    over = dict(overrides) if isinstance(overrides, Mapping) else parse_overrides(list(overrides))
    try:
        return from_dict(cls, _merge(data, over))
    except ConfigError as exc:
        origin = f"{path} with overrides {list(overrides)!r}" if over else str(path)
        raise ConfigError(f"{origin}: {exc}") from exc
