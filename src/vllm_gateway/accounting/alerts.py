"""Budget alerts: 80% and 100% of a key's or team's daily or monthly budget, to a webhook.

After a request with a cost settles, its budgeted subjects are marked; a background loop
(every CHECK_SECONDS, for two rounds so the usage writer's last batch is in) compares
what the books say was spent this UTC day and month with each budget. Since admission
reserves each request's worst case, the books rarely reach a budget exactly: the 100%
alert is also sent when the budget refuses a request (`exhausted`). A crossed threshold
is claimed once in `budget_alerts` (shared by every instance: the first claim wins) and
POSTed as JSON to GATEWAY_ALERT_WEBHOOK, signed with HMAC-SHA256 over
`<timestamp>.<body>` in `X-Gateway-Signature: sha256=<hex>` (timestamp in
`X-Gateway-Timestamp`), retried with backoff on errors and 5xx answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy.exc import SQLAlchemyError

from vllm_gateway.clock import Clock, utc_day
from vllm_gateway.db import alerts as db_alerts
from vllm_gateway.db import usage as db_usage
from vllm_gateway.db.engine import Database
from vllm_gateway.limits.base import BUDGET_PER_DAY, Reservation, Subject
from vllm_gateway.limits.periods import utc_month

if TYPE_CHECKING:
    import aiohttp  # imported when an alert is sent: megabytes no worker needs else

log = logging.getLogger(__name__)

THRESHOLDS = (80, 100)
CHECK_SECONDS = 2.0
ROUNDS = 2
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0)
SIGNATURE_HEADER = "X-Gateway-Signature"
TIMESTAMP_HEADER = "X-Gateway-Timestamp"


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header's value for a body sent at `timestamp`."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


@dataclass(slots=True)
class _Watch:
    subject: Subject
    rounds: int


class BudgetAlerts:
    """Watches budgeted subjects and sends each crossed threshold once."""

    def __init__(
        self,
        database: Database,
        clock: Clock,
        webhook: str | None,
        secret: bytes,
        *,
        check_seconds: float = CHECK_SECONDS,
    ) -> None:
        self._database = database
        self._clock = clock
        self._webhook = webhook
        self._secret = secret
        self._check_seconds = check_seconds
        self._watched: dict[tuple[str, str], _Watch] = {}
        self._task: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._exhausted: set[tuple[str, str, str]] = set()

    def start(self) -> None:
        """Start the checking loop."""
        self._task = asyncio.create_task(self._loop(), name="budget-alerts")

    async def close(self) -> None:
        """Stop checking; give alerts being sent a moment to arrive."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._sends:
            await asyncio.wait(self._sends, timeout=5)
        if self._session is not None:
            await self._session.close()

    def exhausted(self, subject: Subject, reason: str) -> None:
        """A budget refused a request: it is used up, as far as requests go (the 100% alert)."""
        now = self._clock()
        daily = reason == BUDGET_PER_DAY
        period = "day" if daily else "month"
        name = utc_day(now) if daily else utc_month(now)
        first_day = name if daily else name + "-01"
        limits = subject.limits
        budget = limits.daily_budget_usd if daily else limits.monthly_budget_usd
        if budget is None or (subject.kind, subject.id, name) in self._exhausted:
            return
        self._exhausted.add((subject.kind, subject.id, name))  # one claim per period here
        task = asyncio.create_task(
            self._guarded(self._claim(subject, period, name, first_day, budget, 100, now))
        )
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _guarded(self, work: Any) -> None:
        try:
            await work
        except (SQLAlchemyError, OSError) as exc:
            log.warning("budget alert not recorded: %s", exc)

    def spent(self, reservation: Reservation) -> None:
        """A request of these subjects cost something: check their budgets soon."""
        for subject in reservation.subjects:
            if subject.limits.has_budget:
                self._watched[(subject.kind, subject.id)] = _Watch(subject, ROUNDS)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._check_seconds)
            if self._watched:
                await self.check()

    async def check(self) -> None:
        """Compare spending with budgets for every watched subject once."""
        now = self._clock()
        day, month = utc_day(now), utc_month(now)
        for key, watch in list(self._watched.items()):
            watch.rounds -= 1
            if watch.rounds <= 0:
                self._watched.pop(key, None)
            try:
                await self._check_subject(watch.subject, now, day, month)
            except (SQLAlchemyError, OSError) as exc:
                log.warning("budget check for %s %s failed: %s", *key, exc)

    async def _check_subject(self, subject: Subject, now: float, day: str, month: str) -> None:
        limits = subject.limits
        periods = (
            ("day", day, day, limits.daily_budget_usd),
            ("month", month, month + "-01", limits.monthly_budget_usd),
        )
        for period, name, first_day, budget in periods:
            if budget is None:
                continue
            async with self._database.engine.connect() as connection:
                spent = await db_usage.spent_since(connection, subject.kind, subject.id, first_day)
            for threshold in THRESHOLDS:
                if spent >= budget * threshold / 100:
                    await self._claim(
                        subject, period, name, first_day, budget, threshold, now, spent
                    )

    async def _claim(
        self,
        subject: Subject,
        period: str,
        name: str,
        first_day: str,
        budget: float,
        threshold: int,
        now: float,
        spent: float | None = None,
    ) -> None:
        """Record the threshold once across instances; the first to record it sends it."""
        if spent is None:
            async with self._database.engine.connect() as connection:
                spent = await db_usage.spent_since(connection, subject.kind, subject.id, first_day)
        alert = {
            "subject_kind": subject.kind,
            "subject_id": subject.id,
            "period": name,
            "threshold": threshold,
            "sent_at": datetime.fromtimestamp(now, UTC),
            "spent_usd": spent,
            "budget_usd": budget,
        }
        async with self._database.engine.begin() as connection:
            if not await db_alerts.claim_alert(connection, alert):
                return
        log.warning(
            "%s %s reached %d%% of its %s budget ($%.4f of $%g)",
            subject.kind,
            subject.id,
            threshold,
            period,
            spent,
            budget,
        )
        self._send(
            {
                "type": "budget.threshold",
                "subject_kind": subject.kind,
                "subject_id": subject.id,
                "period": period,
                "period_name": name,
                "threshold_percent": threshold,
                "spent_usd": round(spent, 6),
                "budget_usd": budget,
                "ts": now,
            }
        )

    def _send(self, payload: dict[str, Any]) -> None:
        if not self._webhook:
            return
        task = asyncio.create_task(self._deliver(payload))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _deliver(self, payload: dict[str, Any]) -> None:
        """POST one alert, retried on connection errors and 5xx answers."""
        assert self._webhook is not None
        import aiohttp

        body = orjson.dumps(payload)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        for attempt, delay in enumerate((0.0, *RETRY_DELAYS)):
            await asyncio.sleep(delay)
            timestamp = str(int(time.time()))
            headers = {
                "content-type": "application/json",
                TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: sign(self._secret, timestamp, body),
            }
            try:
                async with self._session.post(self._webhook, data=body, headers=headers) as answer:
                    if answer.status < 500:
                        if answer.status >= 400:
                            log.warning("the alert webhook refused an alert: %d", answer.status)
                        return
                    reason = f"HTTP {answer.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                reason = type(exc).__name__
            log.info("alert webhook attempt %d failed (%s)", attempt + 1, reason)
        log.warning("gave up sending a budget alert to the webhook after %d attempts", attempt + 1)
