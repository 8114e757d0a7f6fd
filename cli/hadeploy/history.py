"""Probe history: every probe result, from every vantage point, in SQLite.

``<state>/history.sqlite`` keeps one row per probe. ``status`` shows recent history per
region; drills and benchmarks read it to measure detection times. Old rows are pruned
(default: 7 days) so a long-running ``watch`` stays small.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hadeploy.errors import ExitCode, HadeployError

RETENTION_SECONDS = 7 * 24 * 3600

SCHEMA = """
CREATE TABLE IF NOT EXISTS probes (
    ts REAL NOT NULL,            -- unix time of the probe
    vantage TEXT NOT NULL,       -- 'cli' (the machine running hadeploy) or 'probe@<region>'
    region TEXT NOT NULL,        -- the region whose endpoint was probed
    ok INTEGER NOT NULL,         -- 1 healthy, 0 not
    status INTEGER,              -- HTTP status, NULL if no answer
    latency_ms REAL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS probes_region_ts ON probes(region, ts);
CREATE TABLE IF NOT EXISTS data (
    ts REAL NOT NULL,            -- unix time of the observation
    region TEXT NOT NULL,        -- whose database cluster
    role TEXT NOT NULL,          -- primary | standby | down | unknown
    position INTEGER,            -- WAL position (written, or replayed by a standby)
    lag_bytes INTEGER,           -- a standby: behind the primary region, in bytes
    lag_seconds REAL             -- ... and in seconds
);
CREATE INDEX IF NOT EXISTS data_region_ts ON data(region, ts);
"""


@dataclass(frozen=True)
class ProbeRow:
    ts: float
    vantage: str
    region: str
    ok: bool
    status: int | None
    latency_ms: float | None
    error: str | None


class HistoryError(HadeployError):
    def __init__(self, path: Path, exc: Exception) -> None:
        super().__init__(f"probe history {path} cannot be used ({type(exc).__name__}: "
                         f"{str(exc)[:120]})", hint=f"move it away (mv {path} {path}.bak); "
                         "'hadeploy watch' starts a new one", code=ExitCode.BAD_INPUT)


@dataclass(frozen=True)
class DataRow:
    ts: float
    region: str
    role: str
    position: int | None
    lag_bytes: int | None
    lag_seconds: float | None


class History:
    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        try:
            if path.exists() and not path.is_file():
                raise IsADirectoryError(f"{path} is not a file")
            if read_only:
                # Nothing is created or changed: 'status' only reads. Without a write-ahead
                # log (no 'watch' writing) the file is complete and read as immutable, which
                # creates no -wal/-shm file; with one, SQLite reads through the writer's.
                wal = path.with_name(path.name + "-wal").exists()
                mode = "mode=ro" if wal else "mode=ro&immutable=1"
                self.db = sqlite3.connect(f"file:{path}?{mode}", uri=True, timeout=5,
                                          isolation_level=None, check_same_thread=False)
                self.db.execute("SELECT COUNT(*) FROM probes LIMIT 1").fetchone()
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(path, timeout=5, isolation_level=None,
                                          check_same_thread=False)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                self.db.executescript(SCHEMA)
                self.db.execute("PRAGMA quick_check").fetchone()
        except (sqlite3.Error, OSError) as exc:
            raise HistoryError(path, exc) from None
        self._last_prune = 0.0

    def close(self) -> None:
        self.db.close()

    def add(self, rows: Iterable[ProbeRow]) -> None:
        data = [(r.ts, r.vantage, r.region, int(r.ok), r.status, r.latency_ms, r.error)
                for r in rows]
        if not data:
            return
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("INSERT INTO probes VALUES (?, ?, ?, ?, ?, ?, ?)", data)
        now = time.time()
        if now - self._last_prune > 3600:
            self._last_prune = now
            self.db.execute("DELETE FROM probes WHERE ts < ?", (now - RETENTION_SECONDS,))
            self.db.execute("DELETE FROM data WHERE ts < ?", (now - RETENTION_SECONDS,))

    def add_data(self, rows: Iterable[DataRow]) -> None:
        data = [(r.ts, r.region, r.role, r.position, r.lag_bytes, r.lag_seconds) for r in rows]
        if data:
            with self.db:
                self.db.execute("BEGIN")
                self.db.executemany("INSERT INTO data VALUES (?, ?, ?, ?, ?, ?)", data)

    def last_lag(self, region: str, since: float) -> DataRow | None:
        """The last observation of ``region`` as a standby with a measured lag (None also
        for a history written before observations of the database tier existed)."""
        try:
            row = self.db.execute(
                "SELECT ts, region, role, position, lag_bytes, lag_seconds FROM data WHERE "
                "region = ? AND ts >= ? AND lag_bytes IS NOT NULL ORDER BY ts DESC LIMIT 1",
                (region, since)).fetchone()
        except sqlite3.Error:
            return None
        return DataRow(*row) if row else None

    def recent(self, region: str, limit: int = 20) -> list[ProbeRow]:
        cur = self.db.execute(
            "SELECT ts, vantage, region, ok, status, latency_ms, error FROM probes "
            "WHERE region = ? ORDER BY ts DESC LIMIT ?", (region, limit))
        return [ProbeRow(r[0], r[1], r[2], bool(r[3]), r[4], r[5], r[6]) for r in cur]

    def summary(self, region: str, window: float = 300.0) -> dict[str, Any]:
        """Availability and probe counts over the last ``window`` seconds, per vantage."""
        since = time.time() - window
        cur = self.db.execute(
            "SELECT vantage, COUNT(*), SUM(ok), MAX(ts), AVG(latency_ms) FROM probes "
            "WHERE region = ? AND ts >= ? GROUP BY vantage ORDER BY vantage", (region, since))
        vantages = {}
        for vantage, count, ok, last, latency in cur:
            vantages[vantage] = {"probes": count, "ok": int(ok or 0),
                                 "availability": round((ok or 0) / count, 4) if count else None,
                                 "last_at": last,
                                 "avg_latency_ms": round(latency, 1) if latency else None}
        last = self.recent(region, 10)
        return {"window_seconds": window, "vantages": vantages,
                "last": [{"ts": r.ts, "vantage": r.vantage, "ok": r.ok, "status": r.status,
                          "error": r.error} for r in last]}


def history_path(state: Path) -> Path:
    return state / "history.sqlite"


def read_summaries(path: Path, regions: list[str], window: float) -> dict[str, Any]:
    """Per region, :meth:`History.summary`, opened read-only (raises HistoryError)."""
    db = History(path, read_only=True)
    try:
        return {r: db.summary(r, window=window) for r in regions}
    except sqlite3.Error as exc:
        raise HistoryError(path, exc) from None
    finally:
        db.close()
