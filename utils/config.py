"""Configs: defaults declared in code, YAML files and dotted command-line overrides on top, every value checked.

Where the keys come from
- A script's root config is a dataclass (e.g. `tasks.pretrain.PretrainConfig`). Its fields are the keys, with
  their types, defaults and checks: `lr: PositiveFloat = 1e-3`, where `PositiveFloat = Annotated[float,
  Range(gt=0)]`. A field whose type is a dataclass is a section.
- A pluggable part (a backbone, an image encoder, a weighter) is a section `{name: ..., <its own keys>}`,
  declared with `choose(REGISTRY, default_name)`. REGISTRY is a plain dict from names to constructors; the
  keys of part `name` are the keyword-only parameters of `REGISTRY[name]` (the ones after `*`), with their
  annotations and defaults. Adding a part is one constructor plus one registry line.
- `signature_section(callable)` makes a section of a callable's keyword-only parameters (e.g. the `loss`
  section is PretrainObjective's).

What a file or override may do
- A YAML file only overrides; `base: other.yaml` (relative to the file) names a parent it is merged over.
- `key.sub=value` on the command line overrides last; values are parsed as YAML (`optim.lr=5e-4`).
- In a part section, a layer that names another part starts the section afresh from that part's defaults
  (`weighting.name=dwa` drops the keys of the weighter it replaces). `.name` overrides apply before the others.
- A key that is not declared, a value of another type or outside its range is a ConfigError naming the key
  and the file or override, raised before any work starts.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Iterable, Mapping, Union

import yaml

from utils.errors import ConfigError
from utils.files import atomic_write_text

BASE_KEY = "base"


# ------------------------------------------------------------------------------------------- value checks
@dataclass(frozen=True)
class Range:
    """Numbers (or every number of a list) within the given bounds."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def check(self, value) -> str | None:
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, float) and not math.isfinite(item):
                return f"must be a finite number, got {item}"
            for bound, ok, word in ((self.ge, lambda v, b: v >= b, ">="), (self.gt, lambda v, b: v > b, ">"),
                                    (self.le, lambda v, b: v <= b, "<="), (self.lt, lambda v, b: v < b, "<")):
                if bound is not None and not ok(item, bound):
                    return f"must be {self.describe()}, got {item}"
        return None

    def describe(self) -> str:
        low = f">= {self.ge:g}" if self.ge is not None else f"> {self.gt:g}" if self.gt is not None else ""
        high = f"<= {self.le:g}" if self.le is not None else f"< {self.lt:g}" if self.lt is not None else ""
        return " and ".join(part for part in (low, high) if part)


@dataclass(frozen=True)
class OneOf:
    """A value (or every item of a list) from a fixed set."""

    choices: tuple

    def __init__(self, *choices):
        object.__setattr__(self, "choices", tuple(choices))

    def check(self, value) -> str | None:
        for item in value if isinstance(value, list) else [value]:
            if item not in self.choices:
                return f"unknown value {item!r} (choose from {', '.join(map(str, self.choices))})"
        return None


@dataclass(frozen=True)
class Length:
    """A list of exactly `n` items, or of at least `min` items."""

    n: int | None = None
    min: int | None = None

    def check(self, value) -> str | None:
        if value is None:
            return None
        if self.n is not None and len(value) != self.n:
            return f"needs exactly {self.n} values, got {len(value)}"
        if self.min is not None and len(value) < self.min:
            return f"needs at least {self.min} value{'s' if self.min > 1 else ''}, got {len(value)}"
        return None


@dataclass(frozen=True)
class Pattern:
    """A string matching a regular expression as a whole; `meaning` says what is expected."""

    regex: str
    meaning: str

    def check(self, value) -> str | None:
        for item in value if isinstance(value, list) else [value]:
            if not re.fullmatch(self.regex, item):
                return f"expected {self.meaning}, got {item!r}"
        return None


@dataclass(frozen=True)
class ConfigKeys:
    """A list of dotted keys of the config it belongs to (a section name covers its keys), e.g. resume_allow.
    Checked by load_config once the whole config is resolved: a key's own value cannot tell."""

    def check(self, value) -> str | None:
        return None


PositiveInt = Annotated[int, Range(ge=1)]
NonNegativeInt = Annotated[int, Range(ge=0)]
PositiveFloat = Annotated[float, Range(gt=0)]
NonNegativeFloat = Annotated[float, Range(ge=0)]
Fraction = Annotated[float, Range(ge=0, lt=1)]  # EWMA factors, dropout, fractions of a set


# ------------------------------------------------------------------------------------------- the schema
@dataclass
class Key:
    type: Any
    default: Any
    checks: tuple = ()


@dataclass
class Section:
    keys: dict  # name -> Key | Section | Part


@dataclass
class Part:
    """A section `{name: ..., keys}` whose keys are those of the part it names. In a part's own signature,
    `backbone: Annotated[Mapping, Part(REGISTRY)] = {"name": "default"}` declares a sub-part."""

    registry: Mapping[str, Callable]
    default: str | None = None


def choose(registry: Mapping[str, Callable], default: str):
    """A dataclass field for a pluggable part picked by name from `registry`."""
    if default not in registry:
        raise ValueError(f"choose: default {default!r} is not in the registry {sorted(registry)}")
    return field(default_factory=lambda: {"name": default}, metadata={"part": Part(registry, default)})


def signature_section(function: Callable):
    """A dataclass field for a section holding the keyword-only parameters of `function`."""
    return field(default_factory=dict, metadata={"signature": function})


def _split_annotation(annotation) -> tuple[Any, tuple]:
    if typing.get_origin(annotation) is Annotated:
        base, *checks = typing.get_args(annotation)
        return base, tuple(checks)
    return annotation, ()


def part_keys(function: Callable) -> Section:
    """The keyword-only parameters of `function` as a Section (every one needs a default)."""
    target = getattr(function, "func", function)  # functools.partial
    hints = typing.get_type_hints(target.__init__ if inspect.isclass(target) else target, include_extras=True)
    keys = {}
    for name, parameter in inspect.signature(function).parameters.items():
        if parameter.kind is not inspect.Parameter.KEYWORD_ONLY:
            continue
        if parameter.default is inspect.Parameter.empty:
            raise TypeError(f"{function}: config parameter '{name}' needs a default")
        base, checks = _split_annotation(hints.get(name, Any))
        parts = [check for check in checks if isinstance(check, Part)]
        if parts:  # a sub-part, e.g. the pretraining model's point_backbone: its default names the part
            keys[name] = Part(parts[0].registry, parameter.default["name"])
        else:
            keys[name] = Key(base, parameter.default, checks)
    return Section(keys)


def schema_of(root: type) -> Section:
    """The Section of a config dataclass: fields, nested dataclasses, parts and signature sections."""
    hints = typing.get_type_hints(root, include_extras=True)
    keys = {}
    for item in dataclasses.fields(root):
        if "part" in item.metadata:
            keys[item.name] = item.metadata["part"]
        elif "signature" in item.metadata:
            keys[item.name] = part_keys(item.metadata["signature"])
        elif dataclasses.is_dataclass(hints[item.name]):
            keys[item.name] = schema_of(hints[item.name])
        else:
            default = item.default if item.default_factory is dataclasses.MISSING else item.default_factory()
            base, checks = _split_annotation(hints[item.name])
            keys[item.name] = Key(base, default, checks)
    return Section(keys)


# ------------------------------------------------------------------------------------------- values
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


def _type_name(annotation) -> str:
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation))
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation) or (Any,)
        return f"a list of {_type_name(item)}"
    return "null" if annotation is type(None) else getattr(annotation, "__name__", str(annotation))


def flatten(data: Mapping, prefix: str = "") -> dict[str, Any]:
    """{'optim': {'lr': 1}} -> {'optim.lr': 1}"""
    flat = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def covered(key: str, prefixes) -> bool:
    """Whether dotted `key` is one of `prefixes` or lies inside one of them (a section covers its keys)."""
    return any(key == prefix or key.startswith(prefix + ".") for prefix in prefixes)


def _value_name(value) -> str:
    return "null" if value is None else type(value).__name__


def _coerce(value, annotation):
    """`value` as `annotation` (bool, int, float, str, list[T], T | None, Any), or raise TypeError."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value
    if origin in (Union, types.UnionType):
        for option in typing.get_args(annotation):
            try:
                return _coerce(value, option)
            except TypeError:
                continue
        raise TypeError
    if annotation is type(None):
        if value is None:
            return None
        raise TypeError
    if origin is list:
        (item,) = typing.get_args(annotation) or (Any,)
        if not isinstance(value, list):
            raise TypeError
        return [_coerce(v, item) for v in value]
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:  # YAML 1.1 reads '1e-3' (no dot) as a string
                return float(value)
            except ValueError:
                pass
    elif annotation is str:
        if isinstance(value, str):
            return value
    raise TypeError


def _check_value(key: Key, value, dotted: str, source: str):
    try:
        value = _coerce(value, key.type)
    except TypeError:
        raise ConfigError(f"{source}: '{dotted}' must be {_type_name(key.type)} (like the default "
                          f"{key.default!r}), got {_value_name(value)} {value!r}") from None
    if value is not None:
        for check in key.checks:
            problem = check.check(value)
            if problem:
                raise ConfigError(f"{source}: '{dotted}' {problem}")
    return value


Layer = tuple[str, Mapping]  # (where it comes from, the values it sets)


def _resolve(section: Section, layers: list[Layer], prefix: str) -> dict:
    for source, data in layers:
        unknown = sorted(set(data) - set(section.keys))
        if unknown:
            known = ", ".join(sorted(section.keys)) or "none"
            raise ConfigError(f"{source}: unknown key '{prefix}{unknown[0]}' (known keys here: {known})")
    out = {}
    for name, spec in section.keys.items():
        dotted = f"{prefix}{name}"
        own = [(source, data[name]) for source, data in layers if name in data]
        if isinstance(spec, Key):
            out[name] = _check_value(spec, own[-1][1], dotted, own[-1][0]) if own else copy.deepcopy(spec.default)
            continue
        for source, value in own:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{source}: '{dotted}' is a section, got {_value_name(value)} {value!r}")
        if isinstance(spec, Section):
            out[name] = _resolve(spec, own, dotted + ".")
        else:
            out[name] = _resolve_part(spec, own, dotted)
    return out


def _check_config_keys(section: Section, layers: list[Layer], keys: list[str], prefix: str = "") -> None:
    """Every ConfigKeys value names one of `keys` (the resolved config's dotted keys)."""
    for name, spec in section.keys.items():
        own = [(source, data[name]) for source, data in layers if name in data]
        if isinstance(spec, Section):
            _check_config_keys(spec, [(source, value) for source, value in own if isinstance(value, Mapping)],
                               keys, f"{prefix}{name}.")
        elif isinstance(spec, Key) and own and any(isinstance(check, ConfigKeys) for check in spec.checks):
            source, value = own[-1]
            for item in value or []:
                if not any(covered(key, [item]) for key in keys):
                    raise ConfigError(f"{source}: {prefix}{name}: unknown key '{item}'")


def _resolve_part(part: Part, layers: list[Layer], dotted: str) -> dict:
    chosen, start = part.default, 0
    if chosen is None and not any("name" in data for _, data in layers):
        raise ConfigError(f"'{dotted}' needs a name (choose from {', '.join(part.registry)})")
    for index, (source, data) in enumerate(layers):
        if "name" in data:
            name = data["name"]
            if name not in part.registry:
                raise ConfigError(f"{source}: '{dotted}.name' unknown value {name!r} (choose from "
                                  f"{', '.join(part.registry)})")
            if name != chosen:
                chosen, start = name, index
    own = [(source, {k: v for k, v in data.items() if k != "name"}) for source, data in layers[start:]]
    return {"name": chosen, **_resolve(part_keys(part.registry[chosen]), own, dotted + ".")}


# ------------------------------------------------------------------------------------------- files
class DuplicateKey(yaml.YAMLError):
    def __init__(self, key, mark):
        super().__init__(f"key {key!r} appears twice")
        self.key, self.line = key, mark.line + 1


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a mapping holding the same key twice (PyYAML keeps the last one silently,
    so a config with `lr:` twice would run with whichever came last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<:` merges may be overridden by design
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, typing.Hashable):
                if key in seen:
                    raise DuplicateKey(key, key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)


def parse_yaml(text: str):
    """YAML text -> data, as yaml.safe_load but refusing duplicate keys (DuplicateKey)."""
    return yaml.load(text, Loader=UniqueKeyLoader)


def read_yaml(path: str | Path, what: str = "config"):
    """The YAML data in `path`, or a ConfigError naming the file and the cause (unreadable, not UTF-8, invalid
    YAML, a key given twice)."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read {what} ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text (byte {error.start}); save the {what} as UTF-8") from None
    try:
        return parse_yaml(text)
    except DuplicateKey as error:
        raise ConfigError(f"{path}: key '{error.key}' appears twice (again at line {error.line})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: invalid YAML{where}") from None


def _read_yaml(path: Path) -> dict:
    data = read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys, got {type(data).__name__}")
    return data


def _load_chain(path: Path, seen: tuple[Path, ...] = ()) -> list[Layer]:
    """The files from the root parent down to `path`, each with its own keys (without `base`)."""
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: config inherits from itself through 'base'")
    data = _read_yaml(path)
    parent = data.pop(BASE_KEY, None)
    if parent is None:
        return [(str(path), data)]
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: 'base' must be a file name, got {parent!r}")
    return _load_chain(path.parent / parent, seen + (path,)) + [(str(path), data)]


def parse_override(text: str) -> tuple[list[str], Any]:
    """'optim.lr=5e-4' -> (['optim', 'lr'], '5e-4' parsed as YAML)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{text}': expected key.sub=value")
    try:
        value = parse_yaml(raw) if raw.strip() else None
    except DuplicateKey as error:
        raise ConfigError(f"override '{text}': key '{error.key}' appears twice") from None
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def _nest(keys: list[str], value) -> dict:
    for key in reversed(keys):
        value = {key: value}
    return value


def load_config(path: str | Path | None, overrides: Iterable[str] = (), schema: type | None = None,
                verbatim: Mapping[str, Any] | None = None) -> Config:
    """The defaults of `schema` (a config dataclass), then the YAML chain of `path`, then `overrides`
    ('key.sub=value', parsed as YAML), then `verbatim` ({'key.sub': value}, taken as given: paths from flags).
    Every value is checked; the first problem is a ConfigError naming the key and where it was set."""
    layers = _load_chain(Path(path)) if path is not None else []
    parsed = [(f"override '{text}'", parse_override(text)) for text in overrides]
    parsed.sort(key=lambda item: item[1][0][-1] != "name")  # a part's name first: it resets its section
    layers += [(source, _nest(keys, value)) for source, (keys, value) in parsed]
    for key, value in (verbatim or {}).items():
        layers.append((f"--{key.rsplit('.', 1)[-1].replace('_', '-')}", _nest(key.split("."), value)))
    section = schema_of(schema)
    resolved = _resolve(section, layers, "")
    _check_config_keys(section, layers, list(flatten(resolved)))
    return Config(resolved)


def save_config(cfg: Mapping, path: str | Path) -> None:
    """Write the resolved config (every key, no `base`) so a run directory says exactly what ran."""
    data = cfg.to_dict() if isinstance(cfg, Config) else dict(cfg)
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))


def require_points_for_k(key: str, k: int, point_counts: Mapping[str, int]) -> None:
    """A rule between keys that every point script has: k nearest neighbours need at least k points per cloud.
    `point_counts` maps the dotted keys of the point counts to their values; a ConfigError names them all."""
    if any(k > count for count in point_counts.values()):
        counts = ", ".join(f"{name}={count}" for name, count in point_counts.items())
        raise ConfigError(f"{key}={k} needs at least that many points per cloud, but {counts}")


def build_part(registry: Mapping[str, Callable], section: Mapping, *args, where: str | None = None, **kwargs):
    """`registry[section.name](*args, **kwargs, **the section's other keys)`, the section checked like a config
    file (a section from load_config passes unchanged; a hand-written dict gets the part's defaults).

    With `where` (the section's dotted name), a ValueError of the constructor (a rule between keys, e.g. a
    warm-up shorter than a window) becomes a ConfigError naming the section.
    """
    where_name = where or "config"
    section = _resolve_part(Part(registry), [(where_name, section)], where_name)  # checked, defaults filled
    params = {k: copy.deepcopy(v) for k, v in section.items() if k != "name"}
    try:
        return registry[section["name"]](*args, **kwargs, **params)
    except ValueError as error:
        if where is None:
            raise
        raise ConfigError(f"{where} ({section['name']}): {error}") from None
