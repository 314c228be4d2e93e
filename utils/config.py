"""YAML configs with a parent chain, dotted command-line overrides and validation against the defaults.

A config file may name a parent with `base: other.yaml` (relative to itself); it is merged over the parent.
Each script names its defaults file (train.py: configs/pretrain.yaml, which builds on configs/runtime.yaml).
The defaults chain is the schema: it lists every key the script reads, with a value of the right type.
Any other file, and every override, is checked against it: a key it does not have, or a value of another
type, is a ConfigError that names the key, so a typo never silently trains with a default.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from utils.errors import ConfigError

BASE_KEY = "base"


class Config(dict):
    """A dict whose sections are also reachable as attributes: `cfg.optim.lr` == `cfg["optim"]["lr"]`."""

    def __init__(self, mapping: Mapping[str, Any] | None = None):
        super().__init__()
        for key, value in (mapping or {}).items():
            self[key] = Config(value) if isinstance(value, Mapping) else value

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no key '{name}'") from None

    def to_dict(self) -> dict:
        return {k: v.to_dict() if isinstance(v, Config) else copy.deepcopy(v) for k, v in self.items()}


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config ({error.strerror or error})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: invalid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys, got {type(data).__name__}")
    return data


def _load_chain(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[Path, dict]]:
    """The files from the root defaults down to `path`, each with its own keys (without `base`)."""
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: config inherits from itself through 'base'")
    data = _read_yaml(path)
    parent = data.pop(BASE_KEY, None)
    if parent is None:
        return [(path, data)]
    return _load_chain(path.parent / parent, seen + (path,)) + [(path, data)]


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _coerce(key: str, value: Any, default: Any, source: str) -> Any:
    """`value` in the type of `default`, or a ConfigError naming the key and both types."""
    if default is None or value is None:
        return value  # a null default marks an optional value of free type; null switches a key off
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:  # YAML 1.1 reads '1e-3' (no dot) as a string
                return float(value)
            except ValueError:
                pass
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    elif isinstance(default, list):
        if isinstance(value, list):
            return value
    elif isinstance(default, dict):
        if isinstance(value, dict):
            return value
    raise ConfigError(
        f"{source}: '{key}' must be {_type_name(default)} (like the default {default!r}), "
        f"got {_type_name(value)} {value!r}"
    )


def _merge(schema: dict, base: dict, update: Mapping, source: str, prefix: str = "") -> None:
    """Merge `update` into `base` in place, checking every key and type against `schema`."""
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if key not in schema:
            known = ", ".join(sorted(schema)) or "none"
            raise ConfigError(f"{source}: unknown key '{dotted}' (known keys here: {known})")
        if isinstance(schema[key], dict) and schema[key]:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{source}: '{dotted}' is a section, got {_type_name(value)} {value!r}")
            _merge(schema[key], base[key], value, source, dotted + ".")
        else:
            base[key] = _coerce(dotted, value, schema[key], source)


def parse_override(text: str) -> tuple[list[str], Any]:
    """'optim.lr=5e-4' -> (['optim', 'lr'], '5e-4' parsed as YAML)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{text}': expected key.sub=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def _extend(base: dict, update: Mapping) -> None:
    """Deep-merge a defaults file into its parent: it may add keys, and it may not change a key's type."""
    for key, value in update.items():
        if key in base and isinstance(base[key], dict) and isinstance(value, Mapping):
            _extend(base[key], value)
        elif key in base:
            base[key] = _coerce(key, value, base[key], "defaults")
        else:
            base[key] = copy.deepcopy(value)


def load_config(path: str | Path, overrides: Iterable[str] = (), defaults: str | Path | None = None) -> Config:
    """Load `path` over its parents and `defaults`, apply dotted overrides, validate against the defaults.

    Without `defaults`, `path`'s own chain is the schema (only the overrides are checked).
    """
    chain = _load_chain(Path(path))
    schema_chain = _load_chain(Path(defaults)) if defaults is not None else chain
    schema: dict = {}
    for _, data in schema_chain:
        _extend(schema, data)
    schema_files = {file_path for file_path, _ in schema_chain}
    merged = copy.deepcopy(schema)
    for file_path, data in chain:
        if file_path not in schema_files:
            _merge(schema, merged, data, str(file_path))
    for text in overrides:
        keys, value = parse_override(text)
        nested: Any = value
        for key in reversed(keys):
            nested = {key: nested}
        _merge(schema, merged, nested, f"override '{text}'")
    return Config(merged)


def save_config(cfg: Mapping, path: str | Path) -> None:
    """Write the resolved config (no `base`, every key) so a run directory says exactly what ran."""
    data = cfg.to_dict() if isinstance(cfg, Config) else dict(cfg)
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False))
