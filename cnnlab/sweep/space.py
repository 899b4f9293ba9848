"""A sweep's search space: which config fields to search, over what, and which objective.

A space names the `ModelConfig` / `TrainConfig` fields to search (an int or float range, or a
list of choices), the fields held fixed, and the objective (`val_accuracy` is maximised,
`val_loss` minimised). It is read from a YAML or JSON file (`load_space`) or a dict
(`space_from_dict`) and checked up front, so a bad value fails before any trial trains.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cnnlab.common.checks import short_repr

if TYPE_CHECKING:
    from cnnlab.model import ModelConfig
    from cnnlab.training.engine import TrainConfig

OBJECTIVES = {"val_accuracy": "maximize", "val_loss": "minimize"}
SPACE_KEYS = ("objective", "params", "fixed")
RANGE_KEYS = ("low", "high", "log")
# Every combination of range ends and choices is checked against the configs up to this many.
MAX_CHECKED_COMBINATIONS = 4096


@lru_cache(maxsize=1)
def _field_kinds() -> dict[str, tuple[str, str]]:
    """Every searchable field: name -> (owner "model" | "train", kind "int" | "float" | "bool" | "str" | "size")."""
    from cnnlab.model import ModelConfig
    from cnnlab.training.engine import TrainConfig

    kinds: dict[str, tuple[str, str]] = {}
    for owner, config_cls in (("model", ModelConfig), ("train", TrainConfig)):
        for f in fields(config_cls):
            default = f.default
            kind = "size" if f.name == "image_size" else type(default).__name__
            kinds[f.name] = (owner, kind)
    return kinds


@dataclass(frozen=True)
class SweepSpace:
    """A validated search space (build it with `load_space` or `space_from_dict`).

    `params` maps a field to a range `{"low", "high", "log"}` or a list of choices; `fixed` maps
    fields to constant values; every other field keeps its config default.
    """

    objective: str
    params: dict[str, Any]
    fixed: dict[str, Any] = field(default_factory=dict)

    @property
    def direction(self) -> Literal["minimize", "maximize"]:
        """The Optuna direction: "maximize" for val_accuracy, "minimize" for val_loss."""
        return "maximize" if OBJECTIVES[self.objective] == "maximize" else "minimize"

    def to_dict(self) -> dict[str, Any]:
        """The space in the sweep file format (JSON-ready)."""
        return json.loads(json.dumps({"objective": self.objective, "params": self.params, "fixed": self.fixed}))

    def default_study_name(self, dataset_key: str = "") -> str:
        """'sweep-<hash>' of the space (and `dataset_key`), the same on every machine."""
        text = json.dumps(self.to_dict(), sort_keys=True) + dataset_key
        return "sweep-" + hashlib.sha256(text.encode()).hexdigest()[:10]

    def suggest(self, trial) -> dict[str, Any]:
        """Ask an Optuna trial for one value of each searched field."""
        kinds = _field_kinds()
        values: dict[str, Any] = {}
        for name, spec in self.params.items():
            if isinstance(spec, list):
                values[name] = trial.suggest_categorical(name, spec)
            elif kinds[name][1] == "float":
                values[name] = trial.suggest_float(name, spec["low"], spec["high"], log=spec["log"])
            else:
                values[name] = trial.suggest_int(name, spec["low"], spec["high"], log=spec["log"])
        return values

    def values(self, name: str) -> list[Any]:
        """Every value a trial may give field `name`: its choices, each whole number of its range (for
        a field of whole numbers), its fixed value, or its config default."""
        spec = self.params.get(name)
        if isinstance(spec, list):
            return spec
        if spec is None:
            if name in self.fixed:
                return [self.fixed[name]]
            from cnnlab.model import ModelConfig
            from cnnlab.training.engine import TrainConfig

            owner = ModelConfig if _field_kinds()[name][0] == "model" else TrainConfig
            return [getattr(owner(), name)]
        return list(range(spec["low"], spec["high"] + 1))

    def corner_configs(self) -> list[tuple[ModelConfig, TrainConfig]]:
        """The configs at the ends of every range and at every choice: each alone, and every
        combination of them when there are at most `MAX_CHECKED_COMBINATIONS`."""
        return [self.configs(values) for values in _corners(self)]

    def configs(self, values: dict[str, Any]) -> tuple[ModelConfig, TrainConfig]:
        """The `(ModelConfig, TrainConfig)` for one set of searched values (plus the fixed ones)."""
        from cnnlab.model import ModelConfig
        from cnnlab.training.engine import TrainConfig

        merged = {**self.fixed, **values}
        kinds = _field_kinds()
        model_part = {k: v for k, v in merged.items() if kinds[k][0] == "model"}
        train_part = {k: v for k, v in merged.items() if kinds[k][0] == "train"}
        train_config = TrainConfig(**train_part)
        if train_config.validation_split <= 0:
            raise ValueError(
                f"A sweep measures {self.objective} on the validation split, so validation_split must be "
                f"above 0. Received: validation_split={train_config.validation_split}"
            )
        return ModelConfig(**model_part), train_config


def load_space(path: str | Path) -> SweepSpace:
    """Read and validate a sweep space file (YAML or JSON)."""
    import yaml

    path = Path(path)
    source = f"Sweep space file {str(path)!r}"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = "not found" if isinstance(exc, FileNotFoundError) else f"unreadable ({type(exc).__name__})"
        raise ValueError(
            f"{source} is {reason}; give a readable YAML or JSON file. Received: space={str(path)!r}"
        ) from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{source} is not valid JSON (line {exc.lineno}: {exc.msg}). Received: space={str(path)!r}"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ValueError(f"{source} is not valid YAML ({where}{problem}). Received: space={str(path)!r}") from None
    return _parse(data, source)


def space_from_dict(d: dict[str, Any]) -> SweepSpace:
    """Validate a space given as a dict in the sweep file format."""
    return _parse(d, "Sweep space")


def _parse(data: Any, source: str) -> SweepSpace:
    if not isinstance(data, dict):
        raise ValueError(
            f"{source} must be a mapping with 'objective', 'params' and 'fixed'. Received: space={short_repr(data)}"
        )
    unknown = [k for k in data if k not in SPACE_KEYS]
    if unknown:
        raise ValueError(
            f"{source}: unknown top-level key; expected {', '.join(SPACE_KEYS)}. Received: {unknown[0]}={short_repr(data[unknown[0]])}"
        )
    objective = data.get("objective", "val_accuracy")
    if objective not in OBJECTIVES:
        raise ValueError(
            f"{source}: objective must be one of {', '.join(OBJECTIVES)}. Received: objective={objective!r}"
        )
    params_raw, fixed_raw = data.get("params"), data.get("fixed") or {}
    if not isinstance(params_raw, dict) or not params_raw:
        raise ValueError(
            f"{source}: 'params' must map at least one field to a range {{low, high}} or a list of choices. "
            f"Received: params={short_repr(params_raw)}"
        )
    if not isinstance(fixed_raw, dict):
        raise ValueError(f"{source}: 'fixed' must map fields to values. Received: fixed={short_repr(fixed_raw)}")
    for section, names in (("params", params_raw), ("fixed", fixed_raw)):
        for name in names:
            if name not in _field_kinds():
                raise ValueError(
                    f"{source}: unknown field {name!r} in {section}; use ModelConfig or TrainConfig field names "
                    f"such as conv_blocks, learning_rate or epochs. Received: {section}.{name}={short_repr(names[name])}"
                )
    both = [name for name in params_raw if name in fixed_raw]
    if both:
        raise ValueError(
            f"{source}: {both[0]} is in both params and fixed; search it or fix it, not both. "
            f"Received: fixed.{both[0]}={short_repr(fixed_raw[both[0]])}"
        )
    params = {name: _parse_param(name, spec, source) for name, spec in params_raw.items()}
    fixed = {name: _parse_fixed(name, value, source) for name, value in fixed_raw.items()}
    space = SweepSpace(objective=objective, params=params, fixed=fixed)
    _check_configs(space, source)
    return space


def _parse_param(name: str, spec: Any, source: str) -> Any:
    kind = _field_kinds()[name][1]
    where = f"params.{name}"
    if isinstance(spec, list):
        if not spec:
            raise ValueError(f"{source}: {where} lists no choices; give at least one value. Received: {where}=[]")
        choices = [_typed(name, kind, value, source, where) for value in spec]
        if len({json.dumps(c) for c in choices}) < len(choices):
            raise ValueError(
                f"{source}: {where} lists a choice twice; list each value once. Received: {where}={spec!r}"
            )
        return choices
    if not isinstance(spec, dict):
        raise ValueError(
            f"{source}: {where} must be a range {{low, high, log}} or a list of choices. Received: {where}={short_repr(spec)}"
        )
    if kind not in ("int", "float", "size"):
        raise ValueError(
            f"{source}: {where} is a {kind} field, so give a list of choices instead of a range. "
            f"Received: {where}={short_repr(spec)}"
        )
    extra = [k for k in spec if k not in RANGE_KEYS]
    if extra or "low" not in spec or "high" not in spec:
        raise ValueError(
            f"{source}: a range needs 'low' and 'high' (and optionally 'log: true'), nothing else. "
            f"Received: {where}={short_repr(spec)}"
        )
    low = _typed(name, kind, spec["low"], source, f"{where}.low")
    high = _typed(name, kind, spec["high"], source, f"{where}.high")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ValueError(f"{source}: {where}.log must be true or false. Received: {where}.log={log!r}")
    if low > high:
        raise ValueError(f"{source}: {where} has low above high; swap them. Received: {where}={short_repr(spec)}")
    if log and low <= 0:
        raise ValueError(f"{source}: a log range needs low above 0. Received: {where}.low={low!r}")
    return {"low": low, "high": high, "log": log}


def _parse_fixed(name: str, value: Any, source: str) -> Any:
    kind = _field_kinds()[name][1]
    if kind == "size" and isinstance(value, list):
        return [_typed(name, "int", v, source, f"fixed.{name}") for v in value]
    return _typed(name, kind, value, source, f"fixed.{name}")


def _typed(name: str, kind: str, value: Any, source: str, where: str) -> Any:
    """`value` as the field's type: ints stay ints, numbers (or numeric text like 1e-4) become floats."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind in ("int", "size") and is_number and isinstance(value, int):
        return value
    if kind == "float":
        if is_number and math.isfinite(value):
            return float(value)
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            if math.isfinite(number):
                return number
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "str" and isinstance(value, str):
        return value
    expected = {
        "int": "a whole number",
        "size": "a whole number (square side)",
        "float": "a number",
        "bool": "true or false",
        "str": "a string",
    }[kind]
    raise ValueError(f"{source}: {name} takes {expected}. Received: {where}={short_repr(value)}")


def _corners(space: SweepSpace) -> list[dict[str, Any]]:
    """Searched values at the range ends and choices: each varied alone, and every combination when few."""
    candidates = {
        name: spec if isinstance(spec, list) else [spec["low"], spec["high"]] for name, spec in space.params.items()
    }
    first = {name: values[0] for name, values in candidates.items()}
    assignments: list[dict[str, Any]] = [first]
    for name, values in candidates.items():
        assignments += [{**first, name: value} for value in values[1:]]
    if math.prod(len(v) for v in candidates.values()) <= MAX_CHECKED_COMBINATIONS:
        names = list(candidates)
        assignments += [dict(zip(names, combo, strict=True)) for combo in itertools.product(*candidates.values())]
    return assignments


def _check_configs(space: SweepSpace, source: str) -> None:
    """Build the configs for the range ends and choices, so a bad value fails now, not mid-sweep."""
    for assignment in _corners(space):
        try:
            space.configs(assignment)
        except (ValueError, TypeError) as exc:
            raise ValueError(
                f"{source}: {_blame(exc, space, assignment)} is rejected: {' '.join(str(exc).split())}"
            ) from None


def _blame(exc: Exception, space: SweepSpace, values: dict[str, Any]) -> str:
    text = str(exc)
    name = text.rsplit("Received: ", 1)[-1].split("=", 1)[0].strip() if "Received: " in text else ""
    if name in space.fixed:
        return f"fixed.{name}"
    if name in values:
        return f"params.{name}={values[name]!r}"
    return "the combination " + ", ".join(f"{k}={v!r}" for k, v in values.items())
