"""Model aliases: a public model name served by weighted backend model names (canary splits).

`chat = {"m-v1" = 90, "m-v2" = 10}` sends about nine requests in ten for `chat` to backends
serving m-v1 and one in ten to m-v2; keys, limits and the books see `chat`, the backend sees
the name it serves. /v1/models lists the public names instead of the names behind them.
"""

from __future__ import annotations

import random
from collections.abc import Mapping


class Aliases:
    """The alias table."""

    def __init__(self, table: Mapping[str, Mapping[str, float]], rng: random.Random | None = None):
        self.table = {name: dict(targets) for name, targets in table.items()}
        self._choices = {
            name: ([t for t, w in targets.items() if w > 0], [w for w in targets.values() if w > 0])
            for name, targets in self.table.items()
        }
        self._random = rng or random.Random()
        self.hidden = frozenset(t for targets in self.table.values() for t in targets)
        """Backend model names only reachable through an alias."""

    def __contains__(self, name: object) -> bool:
        return name in self.table

    def __bool__(self) -> bool:
        return bool(self.table)

    def target(self, name: str) -> str:
        """The backend model for one request for `name` (itself when not an alias)."""
        choice = self._choices.get(name)
        if choice is None:
            return name
        targets, weights = choice
        if len(targets) == 1:
            return targets[0]
        return self._random.choices(targets, weights)[0]
