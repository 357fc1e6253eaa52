"""Settings handed from ``faregate serve`` to its worker processes through the environment.

The only place (with ``credentials``) that reads ``os.environ``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CONFIG_ENV = "FAREGATE_CONFIG"
METRICS_DIR_ENV = "FAREGATE_METRICS_DIR"
LOG_LEVEL_ENV = "FAREGATE_LOG_LEVEL"
INSTANCE_ENV = "FAREGATE_INSTANCE"


@dataclass(frozen=True, slots=True)
class Runtime:
    config_path: Path
    metrics_dir: Path | None
    log_level: str = "info"
    instance: str | None = None


def export(config_path: Path, metrics_dir: Path | None, log_level: str, instance: str) -> None:
    os.environ[CONFIG_ENV] = str(config_path)
    os.environ[INSTANCE_ENV] = instance
    os.environ[LOG_LEVEL_ENV] = log_level
    if metrics_dir is not None:
        os.environ[METRICS_DIR_ENV] = str(metrics_dir)


def current() -> Runtime:
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise RuntimeError(f"{CONFIG_ENV} is not set: start workers with `faregate serve -c FILE`")
    metrics = os.environ.get(METRICS_DIR_ENV)
    return Runtime(Path(path), Path(metrics) if metrics else None, os.environ.get(LOG_LEVEL_ENV, "info"), os.environ.get(INSTANCE_ENV))


def proxy_env() -> dict[str, str]:
    """``https_proxy``, ``http_proxy`` and ``no_proxy`` for the upstream client (``faregate.proxies``);
    the lower-case variable wins when both spellings are set, as in curl and Python's urllib. The
    values may carry proxy credentials: they go to ``faregate.proxies`` and nowhere else."""
    found: dict[str, str] = {}
    for name in ("https_proxy", "http_proxy", "no_proxy"):
        value = os.environ.get(name)
        if value is None:
            value = os.environ.get(name.upper())
        if value is not None:
            found[name] = value
    return found


def master_key_from_env() -> str | None:
    """The key `faregate reload/verify` present to a running gateway."""
    return os.environ.get("FAREGATE_MASTER_KEY")


def no_color() -> bool:
    """NO_COLOR (https://no-color.org): set and not empty, the CLI prints no ANSI colour."""
    return bool(os.environ.get("NO_COLOR"))
