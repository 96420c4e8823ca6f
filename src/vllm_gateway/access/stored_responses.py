"""Stored /v1/responses answers belong to the key that made them and live on one backend.

vLLM keeps a stored response on the replica that generated it and answers
`GET /v1/responses/{id}` (and `…/cancel`) for any caller that knows the id. The gateway
records who made each response and where, when the answer ends, so that a fetch by another
key is a 404 (indistinguishable from an id that never existed) and a fetch by its owner
goes to the backend that holds it.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from vllm_gateway.db import responses as db_responses
from vllm_gateway.db.engine import Database
from vllm_gateway.errors import GatewayError

log = logging.getLogger(__name__)

_RECENT = 4096  # owners kept in memory: a fetch right after creation needs no query


@dataclass(frozen=True, slots=True)
class Owner:
    """Who made a stored response, and where it is."""

    key_id: str
    backend: str
    alias: tuple[str, str] | None = None  # made through an alias: (public, served) model names


class StoredResponses:
    """Records and looks up the owners of stored responses."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._recent: OrderedDict[str, Owner] = OrderedDict()

    async def remember(self, response_id: str, owner: Owner, now: float) -> None:
        """Record the owner (in memory at once, in the database for every instance)."""
        self._keep(response_id, owner)
        try:
            async with self._database.engine.begin() as connection:
                await db_responses.insert_owner(
                    connection, response_id, owner.key_id, owner.backend, now, owner.alias
                )
        except SQLAlchemyError:
            log.warning(
                "could not record the owner of a stored response; only this worker knows it"
            )

    async def owner(self, response_id: str) -> Owner | None:
        """The owner of a response id, or None when no key of ours made it."""
        owner = self._recent.get(response_id)
        if owner is not None:
            return owner
        try:
            async with self._database.engine.connect() as connection:
                row = await db_responses.fetch_owner(connection, response_id)
        except SQLAlchemyError:
            log.warning("could not look up a stored response: database unavailable")
            raise GatewayError(
                503, "Stored responses are unavailable; retry shortly.", "database_unavailable"
            ) from None
        if row is None:
            return None
        public, served = row["public_model"], row["served_model"]
        alias = (public, served) if public is not None and served is not None else None
        owner = Owner(row["key_id"], row["backend"], alias)
        self._keep(response_id, owner)
        return owner

    def _keep(self, response_id: str, owner: Owner) -> None:
        self._recent[response_id] = owner
        self._recent.move_to_end(response_id)
        while len(self._recent) > _RECENT:
            self._recent.popitem(last=False)
