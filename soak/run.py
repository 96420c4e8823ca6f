"""`make faults`: a bounded fault soak against real processes, then a table of what it cost.

A gateway with two workers (PostgreSQL behind a TCP proxy, a private redis-server, the
simulator as its backend, each a process of its own) serves six clients without pause
while each fault of soak/faults.py is injected and mended in turn. After each fault the
load pauses and the key's full concurrency is asked for (a leaked slot would refuse one);
at the end the gateway is stopped and its books are read. Per fault the table gives:

- requests, and their statuses (`reset`: no answer, the gateway was down; `200+error`: a
  stream that ended with an error event);
- events lost: answers with a request id that the books do not hold (billing-grade means 0);
- tokens off: answers whose books disagree with the usage the client was told of;
- slots leaked: concurrency of the key not admitted once the fault was mended;
- recovery: seconds from the mend to the last failed answer (0: none failed after it).

Exit status 1 when an event was lost, a token count was off, a slot leaked, or a gateway
log holds a traceback. Run: `make faults` (about three minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: `python soak/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncpg
import httpx

from soak.faults import FAULTS, Fault
from soak.load import RESET, Answer, Load, ask
from soak.world import ADMIN_KEY, World, running_world

CLIENTS = 6
CONCURRENCY = 8  # the key's limit: more than the clients, so the load alone is never refused
STEADY = 2.0  # seconds of load before each fault
AFTER = 4.0  # seconds of load after each mend
SLOT_DEADLINE = 20.0  # seconds a leak check may wait (lease 6 s, repair after 8 s)
UNRECORDED = {"database_unavailable", "starting"}  # no key could be verified: no event


@dataclass
class Row:
    fault: str
    answers: list[Answer]
    slots_leaked: int
    recovery: float
    events_lost: int = 0
    tokens_off: int = 0


def create_key(world: World) -> str:
    response = httpx.post(
        f"{world.url}/api/v1/keys",
        json={"name": "soak", "max_concurrency": CONCURRENCY, "daily_requests": 10_000_000},
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["key"])


def admitted_at_once(world: World, key: str) -> int:
    """How many of the key's CONCURRENCY slots can be held at once right now."""
    world.clear_faults()
    world.inject({"fault": "delay", "seconds": 1.5, "count": CONCURRENCY})
    with ThreadPoolExecutor(CONCURRENCY) as pool, httpx.Client(timeout=30) as client:
        answers = list(
            pool.map(lambda _: ask(client, world.url, key, stream=False), range(CONCURRENCY))
        )
    world.clear_faults()
    return sum(answer.status == 200 for answer in answers)


def slots_leaked(world: World, key: str) -> int:
    deadline = time.monotonic() + SLOT_DEADLINE
    best = 0
    while time.monotonic() < deadline:
        best = max(best, admitted_at_once(world, key))
        if best == CONCURRENCY:
            break
        time.sleep(1.0)
    return CONCURRENCY - best


def run_fault(world: World, load: Load, key: str, fault: Fault) -> Row:
    first = len(load.answers)
    load.resume()
    time.sleep(STEADY)
    fault.breaks(world)
    time.sleep(fault.hold)
    fault.mends(world)
    mended = time.monotonic()
    time.sleep(AFTER)
    load.pause()
    answers = load.answers[first:]
    failed = [a.at for a in answers if a.at >= mended and (a.status != 200 or a.code)]
    recovery = max(failed) - mended if failed else 0.0
    return Row(fault.name, answers, slots_leaked(world, key), recovery)


def check_books(world: World, rows: list[Row]) -> None:
    """Count, per row, answers missing from the books or recorded with other tokens."""

    async def read() -> dict[str, int]:
        connection = await asyncpg.connect(world.direct_database_url.replace("+asyncpg", ""))
        try:
            rows = await connection.fetch(
                "SELECT request_id, prompt_tokens + completion_tokens AS tokens FROM usage_events"
            )
        finally:
            await connection.close()
        return {row["request_id"]: row["tokens"] for row in rows}

    recorded = asyncio.run(read())
    for row in rows:
        for answer in row.answers:
            if answer.request_id is None or answer.code in UNRECORDED:
                continue
            if answer.request_id not in recorded:
                row.events_lost += 1
            elif answer.tokens is not None and recorded[answer.request_id] != answer.tokens:
                row.tokens_off += 1


def _status(answer: Answer) -> str:
    if answer.status == RESET:
        return "reset"
    return "200+error" if answer.status == 200 and answer.code else str(answer.status)


def statuses(answers: list[Answer]) -> str:
    counts = Counter(_status(answer) for answer in answers)
    return " ".join(f"{status}: {count}" for status, count in sorted(counts.items()))


def table(rows: list[Row]) -> str:
    header = (
        "fault",
        "requests",
        "statuses",
        "events lost",
        "tokens off",
        "slots leaked",
        "recovery",
    )
    lines = [header]
    for row in rows:
        recovery = f"{row.recovery:.1f} s"
        lines.append(
            (
                row.fault,
                str(len(row.answers)),
                statuses(row.answers),
                str(row.events_lost),
                str(row.tokens_off),
                str(row.slots_leaked),
                recovery,
            )
        )
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    rendered = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |"
        for line in lines
    ]
    rendered.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(rendered)


def tracebacks(log: str) -> list[str]:
    """Every traceback in a log, each as its text up to the exception line."""
    blocks, current = [], None
    for line in log.splitlines():
        if line.startswith("Traceback"):
            current = [line]
        elif current is not None:
            current.append(line)
            if not line.startswith((" ", "\t")) and not line.startswith("During handling"):
                blocks.append("\n".join(current))
                current = None
    return blocks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="run only the faults whose name contains this")
    options = parser.parse_args()
    faults = [f for f in FAULTS if not options.only or options.only in f.name]
    with (
        tempfile.TemporaryDirectory(prefix="vgw-soak-") as name,
        running_world(Path(name)) as world,
    ):
        key = create_key(world)
        load = Load(world.url, key, CLIENTS)
        load.start()
        rows = []
        try:
            for fault in faults:
                print(f"… {fault.name}", file=sys.stderr, flush=True)
                rows.append(run_fault(world, load, key, fault))
        finally:
            load.stop()
            world.stop_gateway()  # writes what it holds; what it cannot stays in the journal
        world.start_gateway()  # and is written by the next start
        time.sleep(2.0)
        world.stop_gateway()
        check_books(world, rows)
        found = tracebacks(world.logs())
    print(table(rows))
    print(f"\ngateway log: {len(found)} traceback(s)")
    for block in found:
        print(block, end="\n\n")
    for failure in load.failures:
        print(f"soak client failed: {failure}")
    failed = (
        found or load.failures or any(r.events_lost or r.tokens_off or r.slots_leaked for r in rows)
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
