"""GATEWAY_BACKENDS_FILE: a fleet described in TOML.

    [[backends]]
    url = "http://10.0.0.1:8000/v1"
    name = "gpu-a"                 # optional; host:port by default
    api_key_env = "GPU_A_KEY"      # or api_key = "..."; neither: VLLM_API_KEY
    weight = 2                     # optional, default 1: share of the load
    models = ["llama-3.1-8b"]      # optional: pinned; by default read from /v1/models
    max_concurrency = 64           # optional: the gateway sends at most this many at once
    labels = { zone = "eu-1" }     # optional, shown in the admin pages

    [aliases]
    chat = { "llama-3.1-8b" = 90, "llama-3.1-8b-new" = 10 }   # public name = weighted targets
    fast = "llama-3.1-8b"

Everything is checked at start-up: a bad file stops the gateway with the file's name, the
entry and what is wrong, never a traceback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vllm_gateway.routing.backend import BackendSpec, url_name
from vllm_gateway.settings import backend_url_problem

_BACKEND_FIELDS = frozenset(
    {"url", "name", "api_key", "api_key_env", "weight", "models", "max_concurrency", "labels"}
)


class FleetFileError(ValueError):
    """The fleet file cannot be used; the message says where and why."""


@dataclass(slots=True)
class Fleet:
    """The backends and the model aliases of a fleet."""

    backends: list[BackendSpec]
    aliases: dict[str, dict[str, float]] = field(default_factory=dict)


def load_fleet(path: str) -> Fleet:
    """Read and check a fleet file."""
    import tomllib  # only with a fleet file (0.2 MiB a worker otherwise)

    try:
        document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise FleetFileError(f"{path}: cannot be read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise FleetFileError(f"{path}: not valid TOML ({exc})") from None
    return parse_fleet(document, path)


def parse_fleet(document: dict[str, Any], where: str) -> Fleet:
    """Check a parsed fleet document."""
    unknown = set(document) - {"backends", "aliases"}
    if unknown:
        raise FleetFileError(f"{where}: unknown section {sorted(unknown)[0]!r}")
    entries = document.get("backends")
    if not isinstance(entries, list) or not entries:
        raise FleetFileError(f"{where}: needs at least one [[backends]] entry")
    backends = [backend_spec(entry, f"{where}: backends[{i}]") for i, entry in enumerate(entries)]
    names = [spec.name for spec in backends]
    for name in names:
        if names.count(name) > 1:
            raise FleetFileError(f"{where}: two backends are called {name!r}")
    aliases = document.get("aliases", {})
    if not isinstance(aliases, dict):
        raise FleetFileError(f"{where}: [aliases] must be a table")
    return Fleet(
        backends, {str(n): alias_targets(t, f"{where}: aliases.{n}") for n, t in aliases.items()}
    )


def backend_spec(entry: Any, where: str) -> BackendSpec:
    """One backend's settings (a fleet file entry or an admin API body)."""
    if not isinstance(entry, dict):
        raise FleetFileError(f"{where}: must be a table")
    unknown = set(entry) - _BACKEND_FIELDS
    if unknown:
        raise FleetFileError(f"{where}: unknown field {sorted(unknown)[0]!r}")
    url = entry.get("url")
    if not isinstance(url, str):
        raise FleetFileError(f"{where}: url must start with http:// or https://")
    problem = backend_url_problem(url)
    if problem is not None:
        raise FleetFileError(f"{where}: {problem}")
    name = entry.get("name", url_name(url))
    if not isinstance(name, str) or not name or len(name) > 100:
        raise FleetFileError(f"{where}: name must be a string of 1 to 100 characters")
    return BackendSpec(
        url=url.rstrip("/"),
        name=name,
        api_key=_api_key(entry, where),
        weight=_weight(entry.get("weight", 1), f"{where}: weight"),
        models=_models(entry.get("models"), where),
        labels=_labels(entry.get("labels", {}), where),
        max_concurrency=_cap(entry.get("max_concurrency"), where),
    )


def alias_targets(value: Any, where: str) -> dict[str, float]:
    """An alias's backend model names and their weights."""
    if isinstance(value, str) and value:
        return {value: 1.0}
    if not isinstance(value, dict) or not value:
        raise FleetFileError(f"{where}: must be a model name or a table of model = weight")
    targets = {
        str(model): _weight(weight, f"{where}.{model}", zero=True)
        for model, weight in value.items()
    }
    if not any(targets.values()):
        raise FleetFileError(f"{where}: at least one weight must be above 0")
    return targets


def _api_key(entry: dict[str, Any], where: str) -> str | None:
    key, env = entry.get("api_key"), entry.get("api_key_env")
    if key is not None and env is not None:
        raise FleetFileError(f"{where}: api_key and api_key_env are exclusive")
    if env is not None:
        if not isinstance(env, str) or env not in os.environ:
            raise FleetFileError(f"{where}: api_key_env names no set environment variable")
        return os.environ[env]
    if key is not None and (not isinstance(key, str) or not key):
        raise FleetFileError(f"{where}: api_key must be a non-empty string")
    return key


def _weight(value: Any, where: str, *, zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FleetFileError(f"{where}: must be a number")
    if not (0 <= value <= 1000 if zero else 0 < value <= 1000):
        raise FleetFileError(f"{where}: must be {'from 0' if zero else 'above 0'} to 1000")
    return float(value)


def _models(value: Any, where: str) -> frozenset[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(m, str) and m for m in value):
        raise FleetFileError(f"{where}: models must be a list of model names")
    return frozenset(value)


def _labels(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise FleetFileError(f"{where}: labels must be a table of strings")
    return {str(k): v for k, v in value.items()}


def _cap(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100_000:
        raise FleetFileError(f"{where}: max_concurrency must be a whole number from 1 to 100000")
    return value
