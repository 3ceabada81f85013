"""The gateway's background upkeep: ledger moves and SQLite tidying, each on its own clock."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest

from chatapp.config import ServerConfig, load_config
from chatapp.paths import shipped_config_path
from server import app as gateway_app


class _Ledger:
    """Counts flushes; the first one fails like a locked database would."""

    def __init__(self) -> None:
        self.calls = 0
        self.threads: set[int] = set()

    def flush(self) -> int:
        self.calls += 1
        self.threads.add(threading.get_ident())
        if self.calls == 1:
            raise sqlite3.OperationalError("database is locked")
        return 0


class _Housekeeper:
    def __init__(self) -> None:
        self.calls = 0

    def tidy(self) -> bool:
        self.calls += 1
        return True


async def _run_for(seconds: float, *tasks: asyncio.Task[None]) -> None:
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def test_flushes_go_on_after_a_failed_one_off_the_event_loop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ledger = _Ledger()

    async def main() -> None:
        flusher = asyncio.create_task(gateway_app._flush_forever(ledger, 0.05))  # type: ignore[arg-type]
        await _run_for(0.4, flusher)

    asyncio.run(main())
    assert ledger.calls >= 3  # the failure was logged, not fatal
    assert threading.get_ident() not in ledger.threads
    assert "flush failed; will retry" in caplog.text


def test_tidying_keeps_its_own_pace_whatever_the_flush_interval() -> None:
    ledger, housekeeper = _Ledger(), _Housekeeper()

    async def main() -> None:
        flusher = asyncio.create_task(gateway_app._flush_forever(ledger, 3600))  # type: ignore[arg-type]
        tidier = asyncio.create_task(gateway_app._tidy_forever(housekeeper, 0.05))  # type: ignore[arg-type]
        await _run_for(0.4, flusher, tidier)

    asyncio.run(main())
    assert ledger.calls == 0
    assert housekeeper.calls >= 3


def test_the_shipped_config_flushes_the_ledger_every_30_seconds() -> None:
    # Each flush holds streams up a few ms (DuckDB takes the GIL back): not every second.
    shipped = load_config(shipped_config_path())
    assert shipped.server.ledger_flush_seconds == ServerConfig().ledger_flush_seconds == 30.0
