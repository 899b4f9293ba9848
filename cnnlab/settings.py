"""Deployment settings read from environment variables (and, in the app, Streamlit secrets).

The only module of `cnnlab` that reads the environment: the CLI and the app call `load_settings`
once and pass what each library function needs (cache folder, models folder, limits) as arguments.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cnnlab.common.files import user_path

if TYPE_CHECKING:
    from cnnlab.team.tracking import TrackingConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_RUN_DIR = REPO_ROOT / "models" / "demo"
# The local model registry (MLflow's SQLite store, its artifacts beside it) in the models folder, when no
# team server is set; a folder without a run record, so the run store passes it by.
REGISTRY_FILE = "registry/mlflow.db"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Settings:
    """What an operator can configure; see the README's Configuration table."""

    hosted: bool = False
    models_dir: Path = REPO_ROOT / "models"
    cache_dir: Path = Path.home() / ".cache" / "cnnlab"
    datasets_dir: Path = REPO_ROOT / "datasets"
    data_roots: tuple[Path, ...] = ()
    max_upload_mb: int = 200
    max_concurrent_trainings: int = 1
    datasets_url: str | None = None
    max_training_mb: int | None = None
    tracking_uri: str | None = None
    experiment: str = "cnnlab"
    user: str = "unknown"
    devices: tuple[str, ...] = ()

    @property
    def tracking(self) -> TrackingConfig | None:
        """Where runs are published for the team; None (no team tracking) when no URI is set."""
        if not self.tracking_uri:
            return None
        from cnnlab.team.tracking import TrackingConfig

        return TrackingConfig(self.tracking_uri, self.experiment, self.user)

    @property
    def registry_uri(self) -> str:
        """Where models are registered: the team's tracking server when set, else a SQLite store in the models folder."""
        return self.tracking_uri or f"sqlite:///{(self.models_dir / REGISTRY_FILE).resolve()}"

    @property
    def registry(self) -> TrackingConfig:
        """The model registry's connection (`cnnlab.deploy.registry`): `registry_uri`, the experiment, the user."""
        from cnnlab.team.tracking import TrackingConfig

        return TrackingConfig(self.registry_uri, self.experiment, self.user)

    max_session_mb: int | None = None
    max_cache_mb: int | None = None
    max_dataset_megapixels: int | None = None
    # Prepare the built-in sample and import TensorFlow in the background once the first page is shown.
    warm_up: bool = True

    @property
    def max_dataset_pixels(self) -> int | None:
        """The decode budget per dataset in pixels (none: no budget)."""
        return None if self.max_dataset_megapixels is None else self.max_dataset_megapixels * 1_000_000

    @property
    def max_extracted_bytes(self) -> int:
        """How far an uploaded zip may expand on disk: ten times the upload cap, at most 1 GB."""
        return min(10 * self.max_upload_mb * 2**20, 10**9)


def _int(environ: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = environ.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise ValueError(
            f"Environment variable {name} must be a whole number of at least {minimum}. Received: {name}={raw!r}"
        )
    return value


def _limit(environ: Mapping[str, str], name: str, hosted_default: int, minimum: int, hosted: bool) -> int | None:
    """A limit that hosted mode always sets (to `hosted_default` unless given) and local mode only when given."""
    return _int(environ, name, hosted_default, minimum) if hosted or environ.get(name) else None


def _folder(environ: Mapping[str, str], name: str, default: Path) -> Path:
    return user_path(environ.get(name) or default, name)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read settings from `environ` (default: `os.environ`); a bad value is a one-line ValueError.

    Hosted mode (`CNNLAB_HOSTED=1`) allows no server folders, whatever `CNNLAB_DATA_ROOTS` says,
    caps uploads at 50 MB unless a smaller cap is set, runs one training at a time, refuses
    models whose training step would need over 1 GB (CNNLAB_MAX_TRAINING_MB) of memory, gives
    each visitor 300 MB of disk (CNNLAB_MAX_SESSION_MB), the decoded-image cache 2 GB
    (CNNLAB_MAX_CACHE_MB) and a dataset 200 megapixels to decode (CNNLAB_MAX_DATASET_MEGAPIXELS).
    Locally those limits apply only when set. The app's start-up warm-up (`cnnlab.server.warmup`)
    runs in both modes unless CNNLAB_WARM_UP is 0, false, no or off.
    """
    environ = os.environ if environ is None else environ
    hosted = environ.get("CNNLAB_HOSTED", "").strip().lower() in _TRUE
    roots_raw = environ.get("CNNLAB_DATA_ROOTS", "")
    roots = tuple(user_path(p, "CNNLAB_DATA_ROOTS").resolve() for p in roots_raw.split(os.pathsep) if p.strip())
    max_upload = _int(environ, "CNNLAB_MAX_UPLOAD_MB", 50 if hosted else 200, 1)
    models_dir = _folder(environ, "CNNLAB_MODELS_DIR", REPO_ROOT / "models")
    return Settings(
        hosted=hosted,
        models_dir=models_dir,
        cache_dir=_folder(environ, "CNNLAB_CACHE_DIR", Path.home() / ".cache" / "cnnlab"),
        # Beside the models folder by default: the runs and the dataset versions they name travel together.
        datasets_dir=_folder(environ, "CNNLAB_DATASETS_DIR", models_dir.parent / "datasets"),
        data_roots=() if hosted else roots,
        max_upload_mb=min(max_upload, 50) if hosted else max_upload,
        max_concurrent_trainings=1 if hosted else _int(environ, "CNNLAB_MAX_CONCURRENT_TRAININGS", 1, 1),
        datasets_url=environ.get("CNNLAB_DATASETS_URL", "").strip() or None,
        max_training_mb=_limit(environ, "CNNLAB_MAX_TRAINING_MB", 1024, 64, hosted),
        max_session_mb=_limit(environ, "CNNLAB_MAX_SESSION_MB", 300, 1, hosted) if hosted else None,
        max_cache_mb=_limit(environ, "CNNLAB_MAX_CACHE_MB", 2048, 1, hosted),
        max_dataset_megapixels=_limit(environ, "CNNLAB_MAX_DATASET_MEGAPIXELS", 200, 1, hosted),
        tracking_uri=environ.get("CNNLAB_TRACKING_URI", "").strip() or None,
        experiment=environ.get("CNNLAB_EXPERIMENT", "").strip() or "cnnlab",
        user=environ.get("CNNLAB_USER", "").strip() or _os_user(),
        devices=_devices(environ.get("CNNLAB_DEVICES", "")),
        warm_up=environ.get("CNNLAB_WARM_UP", "1").strip().lower() not in _FALSE,
    )


def _devices(raw: str) -> tuple[str, ...]:
    """The device names of CNNLAB_DEVICES (comma-separated, such as "/GPU:0,/GPU:1"); empty: every local GPU."""
    from cnnlab.training.devices import short_name

    try:
        return tuple(short_name(name) for name in raw.split(",") if name.strip())
    except ValueError:
        raise ValueError(
            "Environment variable CNNLAB_DEVICES must list devices such as /GPU:0,/GPU:1 (or be unset: every "
            f"GPU). Received: CNNLAB_DEVICES={raw!r}"
        ) from None


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name and no password-file entry (some containers)
        return "unknown"


def check_data_folder(path: str | Path, settings: Settings) -> Path:
    """Resolve a server folder the user typed, allowing only folders inside the configured roots."""
    if not settings.data_roots:
        raise ValueError(
            "Server folders are disabled on this deployment; upload a zip of class folders instead. "
            f"Received: folder={str(path)!r}"
        )
    folder = user_path(path, "folder").resolve()
    if not any(folder == root or root in folder.parents for root in settings.data_roots):
        allowed = ", ".join(str(r) for r in settings.data_roots)
        raise ValueError(f"That folder is outside the allowed data folders ({allowed}). Received: folder={str(path)!r}")
    if not folder.is_dir():
        raise ValueError(f"Folder not found on the server; check the path. Received: folder={str(path)!r}")
    return folder


def check_upload_size(name: str, size_bytes: int, settings: Settings) -> None:
    """Refuse an upload over the configured cap with a message that says the limit."""
    if size_bytes > settings.max_upload_mb * 1024 * 1024:
        raise ValueError(
            f"'{name}' is {size_bytes / 2**20:.1f} MB, over the {settings.max_upload_mb} MB upload limit; "
            f"upload a smaller file. Received: size={size_bytes}"
        )
