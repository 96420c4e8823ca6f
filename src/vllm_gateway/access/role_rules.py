"""Single sign-on role rules (GATEWAY_OIDC_ROLES): an ID token's groups or email domain to a role.

Rules are tried in order and the first match wins: `group:NAME=ROLE` (a value of the
token's `groups` claim) or `domain:example.com=ROLE` (the email's domain, unless the token
says `email_verified: false`); ROLE `team_manager:TEAM[+TEAM...]` names the teams.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vllm_gateway.access.roles import ROLES


@dataclass(frozen=True, slots=True)
class RoleRule:
    """One `group:NAME=ROLE` or `domain:DOMAIN=ROLE` rule."""

    kind: str  # "group" or "domain"
    value: str
    role: str
    team_ids: tuple[str, ...] = ()


def parse_rules(text: str | None) -> list[RoleRule]:
    """GATEWAY_OIDC_ROLES as rules (ValueError for a malformed one)."""
    rules = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        match, _, role = part.partition("=")
        kind, _, value = match.partition(":")
        role, _, teams = role.strip().partition(":")
        if kind not in ("group", "domain") or not value or role not in ROLES:
            raise ValueError(f"GATEWAY_OIDC_ROLES: cannot read {part!r}")
        team_ids = tuple(team for team in teams.split("+") if team)
        if role == "team_manager" and not team_ids:
            raise ValueError(f"GATEWAY_OIDC_ROLES: {part!r} names no team")
        rules.append(RoleRule(kind, value.strip().lower(), role, team_ids))
    return rules


def role_for(rules: list[RoleRule], claims: dict[str, Any]) -> RoleRule | None:
    """The first rule the ID token's claims match, or None."""
    groups = claims.get("groups") or []
    groups = {str(group).lower() for group in (groups if isinstance(groups, list) else [groups])}
    email = str(claims.get("email") or "").lower()
    verified = claims.get("email_verified", True) is not False
    domain = email.rpartition("@")[2] if "@" in email and verified else ""
    for rule in rules:
        if (rule.kind == "group" and rule.value in groups) or (
            rule.kind == "domain" and rule.value == domain
        ):
            return rule
    return None
