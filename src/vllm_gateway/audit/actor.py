"""Actor: who an admin action is attributed to in the audit log."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Actor:
    """The account (or break-glass key, or CLI user) behind an action, and its address."""

    name: str
    role: str
    address: str = ""


def cli_actor() -> Actor:
    """The operating-system user running a CLI command (the CLI holds the database itself)."""
    import getpass  # the CLI's: a serving worker never needs it

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return Actor(name=f"cli:{user}", role="owner", address="local")


SYSTEM = Actor(name="system", role="owner", address="local")
