"""The run record: what a run folder's `run.json` holds, as frozen, typed data.

This module is the one place that knows run.json's keys. `read_record(data)` turns a parsed
run.json into a `RunRecord` and `RunRecord.to_dict()` turns one back; the dataclasses below are
the schema, each field named as its key. Every run.json written so far is read: the demo's
(from before precision, class weights, fine-tuning and balanced metrics were recorded), and
everything written since. A field an older record lacks (or holds as null) takes its default.

Unknown keys are ignored on purpose: a record written by a later CNN Lab with fields this one
does not know still lists and opens here (they are left out when this version rewrites it).
The exception is a history row, whose unknown keys are kept in `HistoryRow.extra` and written
back: a row is a bag of per-epoch numbers, and a metric this version does not name still draws.
A known field with a value of the wrong type is a one-line `ValueError` naming it (`RunStore`
skips such a record as unreadable).

Every record written from now on says its `schema_version` (`SCHEMA_VERSION`): version 1 is
every run.json written before the number existed (the keys here, any of them missing); version 2
writes every field. A record of a later version than this one is refused, since its fields may
mean something else.

The model and training settings are kept as the mappings `ModelConfig.to_dict()` and
`TrainConfig.to_dict()` wrote (`Run.model_config()` and `Run.train_config()` build the configs):
those classes live above the run store and validate what they are given, and a run whose
settings this version cannot build must still list, to be looked at or deleted.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar, Union, get_args, get_origin, get_type_hints

from cnnlab.common.checks import short_repr

if TYPE_CHECKING:
    from cnnlab.data import SkippedFile
    from cnnlab.model.precision import Precision
    from cnnlab.training.devices import Devices

SCHEMA_VERSION = 2
# "interrupted" is never written: `Run.status` says it of a "running" record whose training is gone.
STATUSES = ("running", "completed", "stopped", "failed", "interrupted", "pruned")


@dataclass(frozen=True)
class DatasetInfo:
    """The dataset a run trained on, as it was when the training started.

    `path`: its folder on the machine that trained it; `fingerprint`: `DatasetReport.fingerprint`
    (names, sizes and times of its files); `num_images` and `counts` (images per class) after the
    files that failed to decode were left out; `num_unreadable` counts those and `unreadable`
    lists the first of them (`MAX_RECORDED_UNREADABLE`, in `cnnlab.training.engine`); `builtin`
    is "sample" for the built-in sample, which is found again on any machine.

    A run trained on a dataset version (`cnnlab.data.versions`) records the dataset's `name`, the
    `version` and the dataset's own folder, `versions_folder` (its manifests and added images); its
    fingerprint is then the version's (image contents and labels). Unversioned runs, and every run
    recorded before versions, have None, None and "".
    """

    path: str = ""
    fingerprint: str | None = None
    num_images: int | None = None
    counts: Mapping[str, int] = field(default_factory=dict)
    num_unreadable: int = 0
    unreadable: tuple[SkippedFile, ...] = ()
    builtin: str | None = None
    name: str | None = None
    version: int | None = None
    versions_folder: str = ""


@dataclass(frozen=True)
class HistoryRow:
    """One epoch of a training, as `cnnlab.training.progress.TrainingProgress` records it.

    `epoch` is 1-based and goes on across a continued run's parent; the Keras metrics (`loss`,
    `accuracy`, `val_loss`, `val_accuracy`; the validation ones only with a validation split) and
    the optimizer's `learning_rate` at the epoch's end; `seconds` the epoch took, `images_seen` and
    `images_per_s` in its training batches; `partial`: a stopped, half-trained epoch; `phase`:
    "head", or "fine_tune" in a backbone's fine-tuning. Metrics it lacks are None and left out of
    `to_dict()`, which is the row `on_epoch` callbacks get and charts draw.
    """

    epoch: int
    loss: float | None = None
    accuracy: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None
    learning_rate: float | None = None
    seconds: float = 0.0
    images_seen: int | None = None
    images_per_s: float | None = None
    partial: bool = False
    phase: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    _leaves_out_none: ClassVar[bool] = True

    def metric(self, name: str) -> float | None:
        """A metric by its Keras name (`val_accuracy`, ...), None when the row has none."""
        known = name != "extra" and name in self.__dataclass_fields__
        value = getattr(self, name) if known else self.extra.get(name)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def to_dict(self) -> dict[str, Any]:
        """The row as run.json and `on_epoch` callbacks hold it (flat, without the metrics it lacks)."""
        return _write(self, HistoryRow)


@dataclass(frozen=True)
class Metrics:
    """A finished run's scores: on the test split with its best model (`test_*`), the best over
    its epochs (`best_val_*`) and its median training throughput. None: not measured (a run that
    ended before its first epoch has none; older runs lack the balanced accuracy and macro F1)."""

    test_accuracy: float | None = None
    test_loss: float | None = None
    test_balanced_accuracy: float | None = None
    test_macro_f1: float | None = None
    best_val_accuracy: float | None = None
    best_val_loss: float | None = None
    train_images_per_s: float | None = None

    _leaves_out_none: ClassVar[bool] = True

    def to_dict(self) -> dict[str, float]:
        """The measured scores by name (what the team server gets)."""
        return _write(self, Metrics)


@dataclass(frozen=True)
class SweepTrial:
    """The sweep a run is a trial of: the Optuna `study`, the `trial` number, and on the retry of a
    trial whose worker died, the trial it retries (`retry_of`)."""

    study: str
    trial: int
    retry_of: int | None = None


@dataclass(frozen=True)
class TeamCopy:
    """The run's copy on the team tracking server (`cnnlab.team.tracking`).

    `key`: the random key its copy is found by; `run_id`: the team run id; `published`: whether
    the copy is whole; `opened`: this folder is a teammate's run opened here (read-only).
    """

    key: str | None = None
    run_id: str | None = None
    published: bool = False
    opened: bool = False


@dataclass(frozen=True)
class FineTuning:
    """Where a backbone's fine-tuning started: its first epoch, the layers it unfroze, its rate."""

    start_epoch: int
    layers: tuple[str, ...] = ()
    learning_rate: float = 0.0


@dataclass(frozen=True)
class TemperatureScaling:
    """The temperature that calibrates the model's probabilities (`cnnlab.analysis.calibration`):
    predictions divide their logits by `temperature`, fitted on `num_images` validation images."""

    temperature: float
    num_images: int = 0


@dataclass(frozen=True)
class RunRecord:
    """A run's `run.json`.

    Written by `RunStore.create`: `id` (the folder name), `name` (display name, renamable),
    `created` (ISO time, UTC), `status` (one of `STATUSES`, as last written; `Run.status` tells a
    dead training's "running" from a live one), `pid` and `host` of its writer, `versions` of the
    libraries that matter for reproducing it. Given by what creates it: `model_config` and
    `train_config` (see the module docstring), `class_names` in label order, `dataset`,
    `precision` (absent on runs from before it was chosen per run: they trained in float32),
    `devices` (what it trains on, chosen again when it resumes; absent on runs from before: one device),
    `owner` (the hosted visitor's id), `sweep`, and for a run continued from another, `parent`
    (its id), `initial_epoch` (the epochs it started after) and `planned_epochs` (the epochs it
    trains to). Written as it trains: `class_weights` (what `fit` was given, by class name; None
    when unweighted), `history`, `phase` and `fine_tune` (a backbone run's phase, and where its
    fine-tuning started; a continued run inherits both), and at the end `metrics`, `best_epoch`,
    `duration_s`, `num_train` (training images) and `error` (a failed run's exception, one line).
    `team` says where it is published. `calibration`: the temperature fitted on the validation split
    at the end of training (or, for a run trained before that, at its first evaluation); None: none
    fitted (no validation images, or none predicted wrong), and predictions are not calibrated.
    """

    id: str = ""
    name: str = ""
    created: str = ""
    status: str = "running"
    pid: int | None = None
    host: str | None = None
    versions: Mapping[str, str] = field(default_factory=dict)
    model_config: Mapping[str, Any] = field(default_factory=dict)
    train_config: Mapping[str, Any] = field(default_factory=dict)
    class_names: tuple[str, ...] = ()
    dataset: DatasetInfo = DatasetInfo()
    precision: Precision | None = None
    devices: Devices | None = None
    class_weights: Mapping[str, float] | None = None
    history: tuple[HistoryRow, ...] = ()
    phase: str | None = None
    fine_tune: FineTuning | None = None
    metrics: Metrics = Metrics()
    best_epoch: int | None = None
    duration_s: float | None = None
    num_train: int | None = None
    sweep: SweepTrial | None = None
    owner: str | None = None
    error: str | None = None
    parent: str | None = None
    initial_epoch: int | None = None
    planned_epochs: int | None = None
    team: TeamCopy | None = None
    calibration: TemperatureScaling | None = None

    def configs(self) -> dict[str, Any]:
        """The model's and the training's settings in one mapping, as recorded (for tables and the team server)."""
        return {**self.model_config, **self.train_config}

    def to_dict(self) -> dict[str, Any]:
        """The record as run.json holds it (every field, None as null), with its `schema_version`."""
        return {"schema_version": SCHEMA_VERSION, **_write(self, RunRecord)}


def read_record(data: Any) -> RunRecord:
    """A parsed run.json as a `RunRecord`; a value of the wrong type, or a record of a later schema,
    is a one-line ValueError."""
    if not isinstance(data, Mapping):
        raise ValueError(f"A run record must be a JSON object. Received: record={short_repr(data)}")
    version = data.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= SCHEMA_VERSION:
        raise ValueError(
            f"This run record is of schema version {version!r}, which this CNN Lab (version {SCHEMA_VERSION} at "
            f"most) cannot read; open it with a newer CNN Lab. Received: schema_version={short_repr(version)}"
        )
    try:
        return _reader(RunRecord)(data)
    except _Invalid as exc:
        path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in exc.path).lstrip(".")
        raise ValueError(
            f"A run record's {path} must be {exc.expected}. Received: {path}={short_repr(exc.value)}"
        ) from None


class _Invalid(Exception):
    """A value of the wrong type; `path` (field names and list indices) grows as it leaves each level."""

    def __init__(self, expected: str, value: Any) -> None:
        super().__init__(expected)
        self.expected, self.value = expected, value
        self.path: list[str | int] = []


Reader = Callable[[Any], Any]
Writer = Callable[[Any], Any]


@cache
def _hints(cls: Any) -> dict[str, Any]:
    """A record dataclass's field types (resolved once)."""
    # Imported on the first record read, so that importing the run store imports neither data nor model.
    from cnnlab.data import SkippedFile
    from cnnlab.model.precision import Precision
    from cnnlab.training.devices import Devices

    return get_type_hints(cls, localns={"SkippedFile": SkippedFile, "Precision": Precision, "Devices": Devices})


def _inner(kind: Any) -> Any | None:
    """`X` of an `X | None` type, else None."""
    args = get_args(kind)
    if get_origin(kind) in (Union, types.UnionType) and type(None) in args:
        return next(arg for arg in args if arg is not type(None))
    return None


@cache
def _reader(kind: Any) -> Reader:
    """A function that checks a (non-null) JSON value against `kind` and returns it typed.

    Built once per type, as the records' history rows make reading a hot path.
    """
    origin, args = get_origin(kind), get_args(kind)
    if _inner(kind) is not None:
        return _reader(_inner(kind))  # a null never gets here: it is the field's default
    if dataclasses.is_dataclass(kind):
        return _object_reader(kind)
    if origin is tuple:
        return _list_reader(_reader(args[0]))
    if origin is Mapping:
        return _mapping_reader(_reader(args[1]))
    if kind is Any:
        return lambda value: value
    if kind is float:
        return _float
    expected = {int: "a whole number", str: "a string", bool: "true or false"}[kind]

    def read(value: Any) -> Any:
        if type(value) is not kind:  # not `isinstance`: true is no whole number here
            raise _Invalid(expected, value)
        return value

    return read


def _float(value: Any) -> float:
    if type(value) not in (float, int):
        raise _Invalid("a number", value)
    return float(value)


def _list_reader(item: Reader) -> Reader:
    def read(value: Any) -> tuple:
        if not isinstance(value, list):
            raise _Invalid("a list", value)
        items: list[Any] = []
        try:
            for entry in value:
                items.append(item(entry))
        except _Invalid as exc:
            raise _at_path(exc, len(items)) from None  # the index of the entry that failed
        return tuple(items)

    return read


def _mapping_reader(item: Reader) -> Reader:
    def read(value: Any) -> dict:
        if not isinstance(value, Mapping):
            raise _Invalid("an object", value)
        found, key = {}, ""
        try:
            for key, entry in value.items():
                found[key] = item(entry)
        except _Invalid as exc:
            raise _at_path(exc, key) from None
        return found

    return read


def _object_reader(cls: Any) -> Reader:
    """A record dataclass from its JSON object: each field read as its type says, or its default when missing
    (or null); unknown keys go to its `extra` mapping if it has one, else nowhere."""
    hints, names = _hints(cls), {f.name for f in dataclasses.fields(cls)}
    fields = [
        (f.name, _reader(hints[f.name]), _required(f, hints[f.name]))
        for f in dataclasses.fields(cls)
        if f.name != "extra"
    ]
    keeps_extra = "extra" in names

    def read(value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise _Invalid("an object", value)
        values, name = {}, ""
        try:
            for name, read_field, required in fields:
                entry = value.get(name)
                if entry is not None:
                    values[name] = read_field(entry)
                elif required:
                    raise _Invalid("given", None)
        except _Invalid as exc:
            raise _at_path(exc, name) from None
        if keeps_extra:
            values["extra"] = {key: entry for key, entry in value.items() if key not in names}
        return cls(**values)

    return read


def _at_path(exc: _Invalid, part: str | int) -> _Invalid:
    exc.path.insert(0, part)
    return exc


def _required(found: dataclasses.Field, kind: Any) -> bool:
    no_default = found.default is dataclasses.MISSING and found.default_factory is dataclasses.MISSING
    return no_default and _inner(kind) is None


def _write(record: Any, cls: Any) -> dict[str, Any]:
    """A record dataclass as its JSON object."""
    return _writer(cls)(record)


@cache
def _writer(kind: Any) -> Writer:
    """A function that turns a typed value of `kind` into JSON (built once per type, like `_reader`)."""
    if _inner(kind) is not None:
        inner = _writer(_inner(kind))
        return lambda value: None if value is None else inner(value)
    if dataclasses.is_dataclass(kind):
        return _object_writer(kind)
    if get_origin(kind) is tuple:
        item = _writer(get_args(kind)[0])
        return lambda value: [item(entry) for entry in value]
    if get_origin(kind) is Mapping:
        item = _writer(get_args(kind)[1])
        return lambda value: {key: item(entry) for key, entry in value.items()}
    return lambda value: value


def _object_writer(cls: Any) -> Writer:
    """A record dataclass as its JSON object: None left out where the class says so (`_leaves_out_none`),
    `extra` keys flattened in after the fields."""
    hints = _hints(cls)
    fields = [(f.name, _writer(hints[f.name])) for f in dataclasses.fields(cls) if f.name != "extra"]
    leaves_out_none = getattr(cls, "_leaves_out_none", False)
    keeps_extra = any(f.name == "extra" for f in dataclasses.fields(cls))

    def write(record: Any) -> dict[str, Any]:
        if not isinstance(record, cls):
            raise TypeError(f"A run record field must be a {cls.__name__}. Received: {short_repr(record)}")
        found = {}
        for name, write_field in fields:
            value = getattr(record, name)
            if value is not None or not leaves_out_none:
                found[name] = write_field(value)
        if keeps_extra:
            found.update((key, value) for key, value in record.extra.items() if key not in found)
        return found

    return write
