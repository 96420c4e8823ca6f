"""Admin roles and what each may do: one table, checked by every admin route.

- owner: everything (the break-glass GATEWAY_ADMIN_KEY is an owner);
- admin: keys, teams, prices, usage and the audit log, not admin accounts;
- viewer: read-only: the dashboard, usage, keys, teams and prices;
- team_manager: the keys and usage of their own teams only.
"""

from __future__ import annotations

from typing import Final, Literal

Role = Literal["owner", "admin", "viewer", "team_manager"]
ROLES: Final = ("owner", "admin", "viewer", "team_manager")

_ALL: Final = frozenset(ROLES)
_STAFF: Final = frozenset({"owner", "admin"})

PERMISSIONS: Final[dict[str, frozenset[str]]] = {
    "keys.read": _ALL,
    "keys.write": frozenset({"owner", "admin", "team_manager"}),
    "teams.read": _ALL,
    "teams.write": _STAFF,
    "prices.read": frozenset({"owner", "admin", "viewer"}),
    "prices.write": _STAFF,
    "usage.read": frozenset({"owner", "admin", "viewer"}),
    "team_usage.read": _ALL,
    "audit.read": _STAFF,
    "users.manage": frozenset({"owner"}),
    # For the fleet's admin routes (backends list, drain, resume) when they land.
    "backends.read": frozenset({"owner", "admin", "viewer"}),
    "backends.write": _STAFF,
}
"""Permission -> the roles that have it. A team_manager's are limited to their teams."""

SCOPED: Final = frozenset({"team_manager"})
"""Roles whose permissions reach only their own teams' keys and usage."""


def allows(role: str, permission: str) -> bool:
    """Whether `role` has `permission`."""
    return role in PERMISSIONS[permission]


def check_role(value: str) -> str:
    """`value` if it names a role, else ValueError."""
    if value not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    return value
