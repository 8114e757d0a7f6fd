"""``up``, ``plan`` and ``down`` over the one Target interface. Commands render; this
module acts. ``up`` applies exactly the plan that ``plan`` prints: both come from
:func:`hadeploy.targets.plan`, computed under the deployment lock for ``up``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from hadeploy.targets import ApplyHooks, ApplyReport, Plan, Target, plan


def up(target: Target[Any], *, converge: bool = False, hooks: ApplyHooks | None = None,
       confirm: Callable[[Plan], None] = lambda _plan: None, drift: bool = False
       ) -> ApplyReport:
    """Plan and apply under the deployment lock. ``confirm`` sees the plan first (aws asks
    on a terminal, like ``pulumi up``); it raises to abort with nothing changed. ``drift``:
    compare the hosts with the roles first, and configure the regions that differ."""
    with target.state.lock("up"):
        changes = plan(target, converge=converge, drift=drift)
        if target.confirm_apply and changes.changes:
            confirm(changes)
        return target.apply(changes, hooks or ApplyHooks())


def down(target: Target[Any], *, log: Callable[[str], None],
         delete_backups: bool = False) -> list[str]:
    """Remove everything the deployment created; keep the audit log, and keep the backups
    (with the key that decrypts them) unless ``delete_backups``."""
    start = time.monotonic()
    with target.state.lock("down"):
        removed = target.destroy(log, delete_backups=delete_backups)
        target.state.clear(keep_backups=not delete_backups)
        target.state.audit("down", target=target.dep.target.value, removed=len(removed),
                           delete_backups=delete_backups,
                           seconds=round(time.monotonic() - start, 1))
        return removed

