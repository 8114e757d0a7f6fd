#!/usr/bin/python3
"""hadeploy integrity check, run by a systemd timer on every database host.

Only where PostgreSQL takes writes (not in recovery: the writable primary's leader) it runs
``pg_amcheck --heapallindexed`` over the application's database — every table's heap and
every B-tree index, including that each heap tuple is found in its indexes — and reads
PostgreSQL's own data-checksum failure counters (``pg_stat_database``). The result is one
JSON document, written atomically to RESULT; ``hadeploy status`` reads it from the leader.
Exit 0 when nothing is wrong or this host is not the primary, 1 when corruption was found
or the check could not run.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time

BIN = "/usr/lib/postgresql/15/bin"
DATABASE = os.environ.get("HADEPLOY_DB", "hadeploy")
RESULT = os.environ.get("HADEPLOY_INTEGRITY_RESULT",
                        "/var/lib/postgresql/hadeploy-integrity.json")
MAX_FINDINGS = 20


def psql(sql: str) -> str:
    return subprocess.run([f"{BIN}/psql", "-X", "-A", "-t", "-d", DATABASE, "-c", sql],
                          capture_output=True, text=True, check=True, timeout=60).stdout.strip()


def write(doc: dict[str, object]) -> None:
    directory = os.path.dirname(RESULT)
    fd, tmp = tempfile.mkstemp(prefix=".integrity-", dir=directory)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh, sort_keys=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, RESULT)


def main() -> int:
    started = time.monotonic()
    doc: dict[str, object] = {"host": socket.gethostname(), "database": DATABASE,
                              "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        if psql("SELECT pg_is_in_recovery()") != "f":
            return 0  # replicas replay the primary's pages; the primary is checked
        check = subprocess.run([f"{BIN}/pg_amcheck", "--install-missing", "--heapallindexed",
                                "-d", DATABASE], capture_output=True, text=True, timeout=3600,
                               check=False)
        failures = int(psql("SELECT coalesce(sum(checksum_failures), 0) "
                            "FROM pg_stat_database") or 0)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        doc.update(ok=False, error=f"{type(exc).__name__}: {str(exc)[:300]}")
        write(doc)
        return 1
    findings = [line for line in check.stdout.splitlines() if line.strip()]
    # pg_amcheck: 0 nothing found, 2 corruption found, other codes: it could not check.
    doc.update(ok=check.returncode == 0 and failures == 0, amcheck_exit=check.returncode,
               checksum_failures=failures, findings=findings[:MAX_FINDINGS],
               more_findings=max(0, len(findings) - MAX_FINDINGS),
               error=check.stderr.strip()[:300] or None,
               seconds=round(time.monotonic() - started, 3))
    write(doc)
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
