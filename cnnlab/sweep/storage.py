"""Where studies live: any SQLAlchemy database (SQLite in the models folder by default, PostgreSQL
for a team), opened with retries because workers starting together race to create the tables.
A study records its search space, so a process joining it with another space is refused.
"""

from __future__ import annotations

import json
import random
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnlab.runs.store import RunStore

if TYPE_CHECKING:
    from cnnlab.sweep.space import SweepSpace

SPACE_ATTR = "cnnlab_space"
STORAGE_ATTEMPTS = 6


def default_storage(store: RunStore) -> str:
    """The default study database: `sqlite:///<store root>/sweeps.db`."""
    root = store.root.expanduser().resolve()
    return f"sqlite:///{root / 'sweeps.db'}"


def masked_url(url: str) -> str:
    """The storage URL with any password hidden, for messages and output."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL has no password to find
        return url


def open_storage(url: str, fault_handling: dict[str, Any] | None = None):
    """An Optuna RDBStorage, retried because workers starting together race to create the tables.

    `fault_handling` holds RDBStorage's heartbeat arguments (see `cnnlab.sweep.faults`).
    """
    import optuna
    from sqlalchemy import exc as sa_exc

    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    _create_sqlite_folder(url)
    for attempt in range(1, STORAGE_ATTEMPTS + 1):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats are "experimental"
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **(fault_handling or {}))
        except (sa_exc.ArgumentError, ImportError) as exc:
            raise ValueError(
                f"Not a usable SQLAlchemy storage URL ({_first_line(exc)}); use e.g. sqlite:///sweeps.db or "
                f"postgresql+psycopg2://user@host/db. Received: storage={masked_url(url)!r}"
            ) from None
        except (sa_exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:
            if attempt == STORAGE_ATTEMPTS:
                raise ValueError(
                    f"Could not open the sweep storage ({_first_line(exc)}); check the URL and that the database "
                    f"is reachable. Received: storage={masked_url(url)!r}"
                ) from None
            time.sleep(random.uniform(0.2, 0.6) * attempt)
    raise AssertionError("unreachable")


def _create_sqlite_folder(url: str) -> None:
    """SQLite creates the database file but not its folder (a fresh models folder, say)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return  # reported with a clear message when the storage is opened
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:200] if lines else type(exc).__name__


def open_study(storage_url: str, study_name: str, space: SweepSpace, sampler, pruner, fault_handling=None):
    """Create the study, or join it when another process already did (same space required)."""
    import optuna
    from sqlalchemy import exc as sa_exc

    for attempt in range(1, STORAGE_ATTEMPTS + 1):
        storage = open_storage(storage_url, fault_handling)
        try:
            study = optuna.create_study(
                storage=storage,
                study_name=study_name,
                direction=space.direction,
                sampler=sampler,
                pruner=pruner,
                load_if_exists=True,
            )
            break
        except (sa_exc.SQLAlchemyError, optuna.exceptions.StorageInternalError):
            if attempt == STORAGE_ATTEMPTS:
                raise
            time.sleep(random.uniform(0.2, 0.6) * attempt)
    stored = study.user_attrs.get(SPACE_ATTR)
    if stored is None:
        study.set_user_attr(SPACE_ATTR, space.to_dict())
    elif json.dumps(stored, sort_keys=True) != json.dumps(space.to_dict(), sort_keys=True):
        raise ValueError(
            f"Study {study_name!r} already exists with a different search space; use the same space file "
            f"or a new study name. Received: study_name={study_name!r}"
        )
    if study.direction.name.lower() != space.direction:
        raise ValueError(
            f"Study {study_name!r} already exists and {study.direction.name.lower()}s its objective; "
            f"use a new study name for {space.objective}. Received: study_name={study_name!r}"
        )
    return study
