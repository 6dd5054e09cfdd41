"""Training recipes as data: each paper's setup is one TOML file in this folder, every knob with where it comes from.

    resolve(name_or_path, kind, model) -> dict         TrainConfig field -> value, for data ``kind`` and ``model``
    explain(name_or_path, kind, model) -> list[Knob]   the same, each with its source and the selector that chose it
    load(name_or_path) -> Recipe                       a recipe read and checked field by field against TrainConfig
    names() -> list[str]                               the shipped recipes

``name_or_path``: a shipped recipe's name (``dsfb-cifar``) or a TOML file (a user's edited copy). ``kind``: a data kind
of ``crunet.data.detect_kind`` (``cifar10``, ``folder``...). A recipe file has ``name``, ``title``, ``source``,
``notes`` (the choices made where the source is ambiguous) and ``[knobs]``, each ``field = { value = ..., from =
"where it comes from" }`` (in a user's copy a bare ``field = value`` too), ``field`` a TrainConfig field; then
``[[when]]`` tables, applied in file order over the knobs (a later one wins), each selecting by ``kinds`` and/or
``models`` (shell patterns of model names) with its own ``[when.knobs]``. ``model_kwargs`` merge key by key.
``crunet train --recipe`` fills the options not given (``TrainConfig.apply_preset``); ``crunet recipe show`` prints
``explain``.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from crunet.errors import ConfigError, FileFormatError, MissingFileError, UnsupportedError
from crunet.train.config import TrainConfig

RUN_FIELDS = ("model", "data", "out", "resume", "recipe", "preset")  # what a run is, not how it trains
TOP_KEYS = ("name", "title", "source", "notes", "knobs", "when")


@dataclass(frozen=True)
class Knob:
    field: str  # a TrainConfig field, or model_kwargs.<key>
    value: Any
    source: str  # where the value comes from
    selector: str = ""  # the [[when]] that chose it ("" : the base knobs)


@dataclass(frozen=True)
class Variant:
    kinds: tuple[str, ...]
    models: tuple[str, ...]
    knobs: tuple[Knob, ...]

    def applies(self, kind: str | None, model: str | None) -> bool:
        kind_ok = not self.kinds or kind in self.kinds
        model_ok = not self.models or any(fnmatch.fnmatchcase(model or "", p) for p in self.models)
        return kind_ok and model_ok


@dataclass(frozen=True)
class Recipe:
    name: str
    title: str
    source: str
    notes: tuple[str, ...]
    path: str
    knobs: tuple[Knob, ...]
    variants: tuple[Variant, ...]

    def explain(self, kind: str | None, model: str | None) -> list[Knob]:
        """The knobs for data ``kind`` and ``model``: the base ones, each overridden by the matching [[when]]s."""
        chosen = {k.field: k for k in self.knobs}
        for variant in self.variants:
            if variant.applies(kind, model):
                chosen.update({k.field: k for k in variant.knobs})
        return list(chosen.values())

    def resolve(self, kind: str | None, model: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for knob in self.explain(kind, model):
            if knob.field.startswith("model_kwargs."):
                out.setdefault("model_kwargs", {})[knob.field.split(".", 1)[1]] = knob.value
            else:
                out[knob.field] = knob.value
        return out


def names() -> list[str]:
    return sorted(p.name[: -len(".toml")] for p in resources.files(__name__).iterdir() if p.name.endswith(".toml"))


def resolve(name_or_path: str, kind: str | None, model: str | None) -> dict[str, Any]:
    """TrainConfig values (field -> value; ``model_kwargs`` a dict) of the recipe for data ``kind`` and ``model``."""
    return load(name_or_path).resolve(kind, model)


def explain(name_or_path: str, kind: str | None, model: str | None) -> list[Knob]:
    return load(name_or_path).explain(kind, model)


def load(name_or_path: str) -> Recipe:
    """The recipe named (a shipped one) or at a path, checked: an unknown or ill-typed field is one ConfigError."""
    text, where = _read(name_or_path)
    try:
        import tomllib
    except ImportError:  # Python 3.10
        raise UnsupportedError("recipes are TOML files read by tomllib: they need Python 3.11 or newer") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise FileFormatError(f"recipe {where}: not valid TOML ({err})") from None
    _check_keys(data, TOP_KEYS, f"recipe {where}")
    base = _knobs(data.get("knobs", {}), where, "[knobs]", "")
    variants = tuple(_variant(v, where, i) for i, v in enumerate(_list(data.get("when", []), where, "[[when]]")))
    notes = _list(data.get("notes", []), where, "notes")
    return Recipe(str(data.get("name", Path(where).stem)), str(data.get("title", "")), str(data.get("source", "")),
                  tuple(str(n) for n in notes), where, base, variants)


def _read(name_or_path: str) -> tuple[str, str]:
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.is_file() or "/" in name_or_path:
        if not path.is_file():
            raise MissingFileError(f"recipe file {name_or_path} does not exist (a shipped recipe is named without "
                                   f".toml: {', '.join(names())})")
        return path.read_text(encoding="utf-8"), str(path)
    shipped = resources.files(__name__) / f"{name_or_path}.toml"
    if not shipped.is_file():
        raise ConfigError(f"unknown recipe {name_or_path!r}; known: {', '.join(names())} (or a .toml file)")
    return shipped.read_text(encoding="utf-8"), name_or_path


def _variant(table: Any, where: str, index: int) -> Variant:
    label = f"[[when]] #{index + 1}"
    if not isinstance(table, dict):
        raise ConfigError(f"recipe {where}: {label} must be a table")
    _check_keys(table, ("kinds", "models", "knobs"), f"recipe {where}: {label}")
    kinds, models = (tuple(str(s) for s in _list(table.get(k, []), where, f"{label} {k}")) for k in ("kinds", "models"))
    selector = " ".join(f"{k}={','.join(v)}" for k, v in (("kinds", kinds), ("models", models)) if v)
    return Variant(kinds, models, _knobs(table.get("knobs", {}), where, f"{label} knobs", selector))


def _knobs(table: Any, where: str, label: str, selector: str) -> tuple[Knob, ...]:
    if not isinstance(table, dict):
        raise ConfigError(f"recipe {where}: {label} must be a table of TrainConfig fields")
    types = {f.name: str(f.type) for f in fields(TrainConfig)}
    out = []
    for name, entry in table.items():
        value, source = _value_and_source(entry, where, f"{label} {name}")
        if name not in types:
            close = difflib.get_close_matches(name, list(types), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(f"recipe {where}: {label}: unknown field {name!r}{hint}; fields are TrainConfig's")
        if name in RUN_FIELDS:
            raise ConfigError(f"recipe {where}: {label}: {name!r} names the run, not its training: give it as "
                              f"--{name.replace('_', '-')} instead")
        if name == "model_kwargs":
            if not isinstance(value, dict):
                raise ConfigError(f"recipe {where}: {label} model_kwargs must be a table, got {value!r}")
            out += [Knob(f"model_kwargs.{k}", v, source, selector) for k, v in value.items()]
            continue
        if not _accepts(types[name], value):
            raise ConfigError(f"recipe {where}: {label} {name} must be {types[name]}, got {value!r}")
        out.append(Knob(name, float(value) if types[name].startswith("float") else value, source, selector))
    return tuple(out)


def _value_and_source(entry: Any, where: str, label: str) -> tuple[Any, str]:
    if isinstance(entry, dict) and "value" in entry:
        _check_keys(entry, ("value", "from"), f"recipe {where}: {label}")
        return entry["value"], str(entry.get("from", where))
    return entry, where  # a bare value in a user's copy: it comes from that file


def _accepts(annotation: str, value: Any) -> bool:
    """``value`` (as TOML gives it) fits a TrainConfig annotation such as ``float | None`` or ``list[int]``."""
    for option in (o.strip() for o in annotation.split("|")):
        if option.startswith("list[") and isinstance(value, list):
            if all(_accepts(option[5:-1], v) for v in value):
                return True
        elif option == "bool" and isinstance(value, bool):
            return True
        elif option in ("int", "float") and isinstance(value, int | float) and not isinstance(value, bool):
            if option == "float" or isinstance(value, int):
                return True
        elif option == "str" and isinstance(value, str) or option == "dict" and isinstance(value, dict):
            return True
    return False


def _check_keys(table: dict, allowed: tuple[str, ...], label: str) -> None:
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"{label}: unknown key {key!r}{hint}; allowed: {', '.join(allowed)}")


def _list(value: Any, where: str, label: str) -> list:
    if not isinstance(value, list):
        raise ConfigError(f"recipe {where}: {label} must be a list, got {value!r}")
    return value
