"""The database tier of an AWS deployment during a failover: the Aurora PostgreSQL Global
Database built by the regional stacks (:mod:`hadeploy.infra.database`).

:class:`AuroraGlobal` is :class:`hadeploy.targets.DataOps` for AWS. Aurora already has the
two moves the lab makes with Patroni, so each maps one to one:

- *switchover* (the writer region answers): ``SwitchoverGlobalCluster`` — Aurora stops
  writes on the old writer, waits until the target has every change, promotes it and makes
  the old writer a secondary: no committed write is lost. :meth:`freeze` has nothing to do
  (the token is 0: Aurora keeps its own), :meth:`switch` calls it and waits until the
  target is the writer.
- *crash failover* (the writer region is down): ``FailoverGlobalCluster`` with
  ``AllowDataLoss`` — the target is promoted with what it has; the estimate ``failover``
  gates on is the replication lag ``watch`` last recorded (CloudWatch's
  ``AuroraGlobalDBReplicationLag`` of the target, milliseconds; Aurora reports no byte
  lag). When the old region recovers, Aurora adds its cluster back as a secondary.
- *settle* has nothing to do: Aurora keeps every cluster in its role.

A region whose RDS API or cluster does not answer is "down": the global cluster, read
from any answering region, still names the dead writer, so its own region is asked too.
Verified against botocore's Stubber (request and response shapes of the RDS and
CloudWatch models) and moto's server for what moto implements — never against AWS.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from hadeploy import patroni
from hadeploy.data import Archiving, DataState, Integrity, Slot, wait_for
from hadeploy.errors import ExitCode, HadeployError
from hadeploy.targets.aws.ops import error_text
from hadeploy.topology import RegionTopology, Topology

# (service, aws_region, timeout) -> boto3 client: hadeploy.targets.aws.ops.ClientFactory
Clients = Any


class AuroraGlobal:
    """Moves the writer of global cluster ``global_id`` between the regions' clusters
    (``clusters``: hadeploy region → (AWS region, DB cluster identifier))."""

    def __init__(self, topo: Topology, global_id: str,
                 clusters: Mapping[str, tuple[str, str]], clients: Clients,
                 timeout: float = 5.0, wait: float = 900.0, poll: float = 5.0) -> None:
        self.topo, self.global_id, self.clusters = topo, global_id, dict(clusters)
        self.clients, self.timeout, self.wait, self.poll = clients, timeout, wait, poll

    def _rds(self, region: str) -> Any:
        return self.clients("rds", self.clusters[region][0], self.timeout)

    # -- what every region's cluster is doing -------------------------------------------

    def _members(self) -> tuple[dict[str, bool], str | None]:
        """{cluster ARN: is writer} from the first region that answers, and any error."""
        errors = []
        for region in self.clusters:
            try:
                found = self._rds(region).describe_global_clusters(
                    GlobalClusterIdentifier=self.global_id)["GlobalClusters"]
            except Exception as exc:  # a dead region: ask the next one
                errors.append(f"{region}: {error_text(exc)}")
                continue
            members = found[0].get("GlobalClusterMembers", []) if found else []
            return {m["DBClusterArn"]: bool(m.get("IsWriter")) for m in members}, None
        return {}, "; ".join(errors) or "no region"

    def _cluster(self, region: str) -> tuple[str | None, str | None]:
        """(the cluster's ARN if it is available, else None; the error or status)."""
        cluster_id = self.clusters[region][1]
        try:
            found = self._rds(region).describe_db_clusters(
                DBClusterIdentifier=cluster_id)["DBClusters"]
        except Exception as exc:
            return None, error_text(exc)
        if not found:
            return None, "no such cluster"
        status = str(found[0].get("Status"))
        return (found[0]["DBClusterArn"], None) if status == "available" else (None, status)

    def _lag_seconds(self, region: str) -> float | None:
        """The secondary cluster's replication lag (CloudWatch, the last 5 minutes)."""
        aws_region, cluster_id = self.clusters[region]
        now = datetime.now(UTC)
        try:
            points = self.clients("cloudwatch", aws_region, self.timeout).get_metric_statistics(
                Namespace="AWS/RDS", MetricName="AuroraGlobalDBReplicationLag",
                Dimensions=[{"Name": "DBClusterIdentifier", "Value": cluster_id}],
                StartTime=now - timedelta(minutes=5), EndTime=now, Period=60,
                Statistics=["Maximum"])["Datapoints"]
        except Exception:
            return None
        if not points:
            return None
        newest = max(points, key=lambda p: p["Timestamp"])
        return round(float(newest["Maximum"]) / 1000.0, 3)

    def observe(self) -> dict[str, DataState]:
        members, error = self._members()
        out = {}
        for region, (_aws_region, cluster_id) in self.clusters.items():
            arn, why = self._cluster(region)
            writer = arn is not None and members.get(arn, False)
            if arn is None:
                member = patroni.Member(cluster_id, "", error=why or error or "unavailable")
            else:
                member = patroni.Member(cluster_id, "", role="primary" if writer
                                        else "standby_leader", state="running")
            lag = None if arn is None or writer else self._lag_seconds(region)
            out[region] = DataState(region, cluster_id, patroni.ClusterView([member]),
                                    lag_bytes=None, lag_seconds=lag)
        return out

    # -- the moves -------------------------------------------------------------------------

    def _arn(self, region: RegionTopology) -> str:
        arn, why = self._cluster(region.name)
        if arn is None:
            raise HadeployError(f"{region.name}'s Aurora cluster is not available ({why})",
                                hint="see the RDS console or 'aws rds describe-db-clusters' "
                                "in that region", code=ExitCode.FAILED)
        return arn

    def _wait_writer(self, region: RegionTopology) -> float:
        def is_writer() -> bool:
            state = self.observe().get(region.name)
            return state is not None and state.role == "primary"
        return wait_for(f"{region.name}'s Aurora cluster becoming the writer", is_writer,
                        self.wait, interval=self.poll)

    def wait_streaming(self, new: RegionTopology, timeout: float) -> float:
        return 0.0  # Aurora's switchover waits for the secondary to catch up itself

    def freeze(self, old: RegionTopology) -> int:
        return 0  # Aurora's switchover stops the old writer itself

    def switch(self, old: RegionTopology, new: RegionTopology, token: int) -> float:
        start = time.monotonic()
        self._rds(new.name).switchover_global_cluster(
            GlobalClusterIdentifier=self.global_id, TargetDbClusterIdentifier=self._arn(new))
        self._wait_writer(new)
        return time.monotonic() - start

    def promote(self, new: RegionTopology) -> float:
        start = time.monotonic()
        self._rds(new.name).failover_global_cluster(
            GlobalClusterIdentifier=self.global_id, TargetDbClusterIdentifier=self._arn(new),
            AllowDataLoss=True)
        self._wait_writer(new)
        return time.monotonic() - start

    def settle(self, region: RegionTopology, primary: RegionTopology, *,
               salvage: bool, wait: float = 0.0) -> str | None:
        return None  # Aurora re-adds a recovered old writer as a secondary itself

    def slots(self, region: RegionTopology, leader: str) -> list[Slot]:
        return []  # Aurora replicates storage, not through slots

    def integrity(self, region: RegionTopology, leader: str) -> Integrity:
        raise HadeployError("hadeploy runs no corruption check on Aurora (its storage "
                            "verifies its own blocks)", code=ExitCode.NOT_AVAILABLE)

    def archiving(self, region: RegionTopology, leader: str) -> Archiving:
        raise HadeployError("Aurora keeps its own continuous backup; there is no WAL "
                            "archive to read", code=ExitCode.NOT_AVAILABLE)
