"""Settings of a node or a coordinator: defaults < TOML file < environment < command-line flags.

Owns: `TomlSettings` (the source order, and unknown keys as errors that name the key, so a
typo never silently falls back to a default), `load_settings`, `ConfigError`, and the
platformdirs folders both components keep their files in. node/config.py and
coordinator/config.py declare their fields on top of it; they never import each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import platformdirs
from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

CONFIG_DIR = Path(platformdirs.user_config_dir("dataswarm"))
DATA_DIR = Path(platformdirs.user_data_dir("dataswarm"))

S = TypeVar("S", bound="TomlSettings")


class ConfigError(Exception):
    """The configuration cannot be used; the message names the setting and the fix."""


class TomlSettings(BaseSettings):
    """Init values (flags), then the environment, then the TOML file named in `model_config`."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls)


def load_settings(cls: type[S], default_file: Path, path: Path | None = None, **flags: Any) -> S:
    """The effective settings of `cls`. `path`: a file the user named (it must exist), else `default_file`
    if it exists; `flags`: command-line values (None means not given)."""
    file = path or default_file
    if path is not None and not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    prefix = cls.model_config.get("env_prefix", "")
    toml_file = file if file.exists() else None
    config = SettingsConfigDict(env_prefix=prefix, extra="forbid", toml_file=toml_file)
    from_file = type(f"{cls.__name__}FromFile", (cls,), {"model_config": config})
    given = {k: v for k, v in flags.items() if v is not None}
    try:
        return cls.model_validate(from_file(**given).model_dump())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"setting {where!r} in {file} or the environment: {first['msg']}") from None
    except ValueError as exc:  # malformed TOML
        raise ConfigError(f"config file {file} is not valid TOML: {exc}") from None
