#!/usr/bin/python3
"""hadeploy heartbeat: one row, rewritten every second on the writable primary.

Runs on every database host (as postgres, over the local socket); it writes only where
PostgreSQL is not in recovery, i.e. on the leader of the region whose cluster takes writes.
Replicas and standby regions replay the row, so "how far behind is this standby" is
``now() - at`` there, and ``pg_last_xact_replay_timestamp()`` stays meaningful even when the
application writes nothing (it only measures the last replayed transaction).
"""

from __future__ import annotations

import os
import sys
import time

import psycopg2

DATABASE = os.environ.get("HADEPLOY_DB", "hadeploy")
REGION = os.environ.get("HADEPLOY_REGION", "")
INTERVAL = float(os.environ.get("HADEPLOY_HEARTBEAT_INTERVAL", "1"))
UPSERT = ("INSERT INTO heartbeat (id, at, region) VALUES (1, clock_timestamp(), %s) "
          "ON CONFLICT (id) DO UPDATE SET at = excluded.at, region = excluded.region")


def beat(conn: psycopg2.extensions.connection) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT pg_is_in_recovery()")
        row = cur.fetchone()
        if row is not None and not row[0]:
            cur.execute(UPSERT, (REGION,))
    conn.commit()


def main() -> int:
    conn = None
    while True:
        started = time.monotonic()
        try:
            if conn is None or conn.closed:
                conn = psycopg2.connect(dbname=DATABASE, host="/var/run/postgresql",
                                        connect_timeout=2, application_name="hadeploy-heartbeat")
            beat(conn)
        except psycopg2.Error as exc:
            sys.stderr.write(f"heartbeat: {type(exc).__name__}: {str(exc).strip()[:200]}\n")
            if conn is not None:
                conn.close()
            conn = None
        time.sleep(max(0.0, INTERVAL - (time.monotonic() - started)))


if __name__ == "__main__":
    sys.exit(main())
