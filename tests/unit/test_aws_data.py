"""The aws database moves (Aurora Global Database) against botocore's Stubber: every request
and response is checked against the RDS and CloudWatch service models, so a wrong parameter
name or shape fails here. The calls are the ones a failover makes: observe (global cluster
members, each region's cluster, the secondary's lag), switchover, crash failover. Nothing
reaches AWS."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

boto3 = pytest.importorskip("boto3")
from botocore.stub import ANY, Stubber  # noqa: E402

from hadeploy.targets.aws.data import AuroraGlobal  # noqa: E402
from hadeploy.topology import (  # noqa: E402
    DnsEndpoint,
    Role,
    SharedStorage,
    Standby,
    StorageType,
    Target,
    Topology,
)
from hadeploy.topology import RegionTopology as R  # noqa: E402

ACCOUNT = "123456789012"
CLUSTERS = {"east": ("us-east-1", "hd-demo-east"), "west": ("eu-west-1", "hd-demo-west")}


def arn(region: str) -> str:
    aws_region, cluster = CLUSTERS[region]
    return f"arn:aws:rds:{aws_region}:{ACCOUNT}:cluster:{cluster}"


def topology() -> Topology:
    def region(name: str, role: Role) -> R:
        return R(name, role, Standby.HOT, f"{name}.elb", f"https://{name}.elb", "", 0,
                 SharedStorage(StorageType.EFS, f"fs-{name}"))
    return Topology("demo", Target.AWS, DnsEndpoint("route53", 53, "example.com", "app", 60),
                    (region("east", Role.PRIMARY), region("west", Role.SECONDARY)))


class Stubs:
    """One stubbed client per (service, AWS region), handed out like the real factory."""

    def __init__(self) -> None:
        self.clients: dict[tuple[str, str], Any] = {}
        self.stubbers: dict[tuple[str, str], Stubber] = {}

    def __call__(self, service: str, aws_region: str, timeout: float) -> Any:
        return self.client(service, aws_region)

    def client(self, service: str, aws_region: str) -> Any:
        key = (service, aws_region)
        if key not in self.clients:
            self.clients[key] = boto3.session.Session(
                aws_access_key_id="x", aws_secret_access_key="x").client(
                service, region_name=aws_region)
            self.stubbers[key] = Stubber(self.clients[key])
            self.stubbers[key].activate()
        return self.clients[key]

    def stub(self, service: str, aws_region: str) -> Stubber:
        self.client(service, aws_region)
        return self.stubbers[(service, aws_region)]

    def done(self) -> None:
        for stubber in self.stubbers.values():
            stubber.assert_no_pending_responses()


def members(writer: str) -> dict[str, Any]:
    return {"GlobalClusters": [{"GlobalClusterIdentifier": "hd-demo", "GlobalClusterMembers": [
        {"DBClusterArn": arn(r), "IsWriter": r == writer} for r in CLUSTERS]}]}


def cluster(region: str, status: str = "available") -> dict[str, Any]:
    return {"DBClusters": [{"DBClusterIdentifier": CLUSTERS[region][1],
                            "DBClusterArn": arn(region), "Status": status}]}


def expect_observe(stubs: Stubs, writer: str, *, east: str = "available",
                   lag_ms: float | None = 850.0, east_api_down: bool = False) -> None:
    rds_east, rds_west = stubs.stub("rds", "us-east-1"), stubs.stub("rds", "eu-west-1")
    if east_api_down:
        rds_east.add_client_error("describe_global_clusters", "ServiceUnavailable",
                                  expected_params={"GlobalClusterIdentifier": "hd-demo"})
        rds_west.add_response("describe_global_clusters", members(writer),
                              {"GlobalClusterIdentifier": "hd-demo"})
        rds_east.add_client_error("describe_db_clusters", "ServiceUnavailable",
                                  expected_params={"DBClusterIdentifier": "hd-demo-east"})
    else:
        rds_east.add_response("describe_global_clusters", members(writer),
                              {"GlobalClusterIdentifier": "hd-demo"})
        rds_east.add_response("describe_db_clusters", cluster("east", east),
                              {"DBClusterIdentifier": "hd-demo-east"})
    rds_west.add_response("describe_db_clusters", cluster("west"),
                          {"DBClusterIdentifier": "hd-demo-west"})
    for region, (aws_region, cluster_id) in CLUSTERS.items():
        if region == writer or (region == "east" and (east_api_down or east != "available")):
            continue
        points = [] if lag_ms is None else [
            {"Timestamp": datetime(2026, 11, 28, 12, 0, tzinfo=UTC), "Maximum": 10.0},
            {"Timestamp": datetime(2026, 11, 28, 12, 1, tzinfo=UTC), "Maximum": lag_ms}]
        stubs.stub("cloudwatch", aws_region).add_response(
            "get_metric_statistics", {"Datapoints": points},
            {"Namespace": "AWS/RDS", "MetricName": "AuroraGlobalDBReplicationLag",
             "Dimensions": [{"Name": "DBClusterIdentifier", "Value": cluster_id}],
             "StartTime": ANY, "EndTime": ANY, "Period": 60, "Statistics": ["Maximum"]})


def aurora(stubs: Stubs) -> AuroraGlobal:
    return AuroraGlobal(topology(), "hd-demo", CLUSTERS, stubs, wait=5.0, poll=0.01)


def test_observe_reports_the_writer_and_the_secondary_lag_in_seconds():
    stubs = Stubs()
    expect_observe(stubs, "east")
    states = aurora(stubs).observe()
    assert states["east"].role == "primary" and states["west"].role == "standby"
    assert states["west"].lag_seconds == 0.85  # the newest datapoint, milliseconds → s
    assert states["west"].lag_bytes is None  # Aurora reports no byte lag
    stubs.done()


def test_a_writer_whose_region_does_not_answer_is_down_not_primary():
    """The global cluster, read from a live region, still names the dead writer: its own
    region must be asked, or a crash failover would be taken for a switchover."""
    stubs = Stubs()
    expect_observe(stubs, "east", east_api_down=True)
    states = aurora(stubs).observe()
    assert states["east"].role == "down" and "ServiceUnavailable" in (
        states["east"].view.members[0].error or "")
    assert states["west"].role == "standby"
    stubs.done()


def expect_move_to_west(stubs: Stubs, operation: str, **params: Any) -> None:
    """West's cluster is looked up, then ``operation`` targets it in west's region."""
    rds = stubs.stub("rds", "eu-west-1")
    rds.add_response("describe_db_clusters", cluster("west"),
                     {"DBClusterIdentifier": "hd-demo-west"})
    rds.add_response(operation, {}, {"GlobalClusterIdentifier": "hd-demo",
                                     "TargetDbClusterIdentifier": arn("west"), **params})


def test_switchover_calls_aurora_and_waits_until_the_target_writes():
    stubs = Stubs()
    west = topology().region("west")
    expect_move_to_west(stubs, "switchover_global_cluster")
    expect_observe(stubs, "east")  # still switching
    expect_observe(stubs, "west")  # done
    ops = aurora(stubs)
    assert ops.freeze(topology().region("east")) == 0
    assert ops.switch(topology().region("east"), west, 0) >= 0
    stubs.done()


def test_crash_failover_allows_data_loss_explicitly():
    stubs = Stubs()
    west = topology().region("west")
    expect_move_to_west(stubs, "failover_global_cluster", AllowDataLoss=True)
    expect_observe(stubs, "west", east_api_down=True)
    aurora(stubs).promote(west)
    stubs.done()


def test_a_target_cluster_that_is_not_available_is_a_clear_error():
    from hadeploy.errors import HadeployError

    stubs = Stubs()
    stubs.stub("rds", "eu-west-1").add_response(
        "describe_db_clusters", cluster("west", "modifying"),
        {"DBClusterIdentifier": "hd-demo-west"})
    with pytest.raises(HadeployError, match="west's Aurora cluster is not available"):
        aurora(stubs).promote(topology().region("west"))
    stubs.done()


def test_region_ops_operate_the_global_database_only_when_up_recorded_one(tmp_path):
    from hadeploy import config
    from hadeploy.state import StateDir
    from hadeploy.targets.aws.ops import AwsRegionOps, OperateDoc, RegionOperate

    def doc(with_db: bool) -> OperateDoc:
        return OperateDoc(zone="example.com", record="app", ttl=60, mode="failover",
                          checker_regions=[], regions={r: RegionOperate(
                              aws_region=a, alb_dns_name=f"{r}.elb", hosts=2, standby="hot",
                              db_cluster_id=c if with_db else None,
                              db_global_cluster_id="hd-demo" if with_db else None)
                              for r, (a, c) in CLUSTERS.items()})

    dep = config.parse({"name": "demo", "regions": [
        {"name": "east", "role": "primary", "lab_subnet": "10.91.1.0/24"},
        {"name": "west", "role": "secondary", "lab_subnet": "10.91.2.0/24"}]})
    state = StateDir(tmp_path / "demo")
    ops = AwsRegionOps(dep, state, doc(True), client_factory=Stubs(), topo=topology())
    assert isinstance(ops.data, AuroraGlobal) and ops.data.clusters == CLUSTERS
    assert AwsRegionOps(dep, state, doc(False), client_factory=Stubs(),
                        topo=topology()).data is None


def test_status_shows_the_aurora_view_of_every_region():
    from hadeploy.status import DataReaders, data_status

    stubs = Stubs()
    expect_observe(stubs, "west", east_api_down=True)
    doc = data_status(topology(), 1.0, DataReaders(observe=aurora(stubs).observe))
    assert doc["west"].role == "primary" and doc["west"].leader == "hd-demo-west"
    assert doc["east"].role == "down" and doc["east"].slots is None
    stubs.done()


# --- storage: a failover promotes the target's EFS replica before its health guard ---------

def storage_ops(tmp_path, stubs: Stubs):
    from hadeploy import config
    from hadeploy.state import StateDir
    from hadeploy.targets.aws.ops import AwsRegionOps, OperateDoc, RegionOperate

    doc = OperateDoc(zone="example.com", record="app", ttl=60, mode="failover",
                     checker_regions=[], regions={r: RegionOperate(
                         aws_region=a, alb_dns_name=f"{r}.elb", hosts=2, standby="hot",
                         efs_id=f"fs-{r}") for r, (a, _c) in CLUSTERS.items()})
    dep = config.parse({"name": "demo", "regions": [
        {"name": "east", "role": "primary", "lab_subnet": "10.91.1.0/24"},
        {"name": "west", "role": "secondary", "lab_subnet": "10.91.2.0/24"}]})
    return AwsRegionOps(dep, StateDir(tmp_path / "demo"), doc, client_factory=stubs,
                        topo=topology())


def replication(source: str, dest: str) -> dict[str, Any]:
    return {"Replications": [{
        "SourceFileSystemId": source, "SourceFileSystemRegion": "us-east-1",
        "SourceFileSystemArn": f"arn:aws:elasticfilesystem:us-east-1:{ACCOUNT}:"
                               f"file-system/{source}",
        "OriginalSourceFileSystemArn": f"arn:aws:elasticfilesystem:us-east-1:{ACCOUNT}:"
                                       f"file-system/{source}",
        "CreationTime": datetime(2026, 11, 28, tzinfo=UTC),
        "Destinations": [{"Status": "ENABLED", "FileSystemId": dest,
                          "Region": "eu-west-1"}]}]}


def test_a_failover_to_a_replica_region_promotes_its_file_system_first(tmp_path):
    """Prepare (before the health guard) deletes the replication into the target's file
    system from the target's own region; when the source region's side does not answer,
    only this region's side (DeletionMode LOCAL_CONFIGURATION_ONLY)."""
    stubs = Stubs()
    efs = stubs.stub("efs", "eu-west-1")
    efs.add_response("describe_replication_configurations",
                     replication("fs-east", "fs-west"), {"FileSystemId": "fs-west"})
    efs.add_response("delete_replication_configuration", {},
                     {"SourceFileSystemId": "fs-east"})
    ops = storage_ops(tmp_path, stubs)
    actions = ops.prepare(topology().region("west"), timeout=5)
    assert actions == ["promoted the file system fs-west of west: replication from fs-east "
                       "deleted; writable within minutes"]
    stubs.done()
    # the source region is down: its side cannot be deleted
    stubs = Stubs()
    efs = stubs.stub("efs", "eu-west-1")
    efs.add_response("describe_replication_configurations",
                     replication("fs-east", "fs-west"), {"FileSystemId": "fs-west"})
    efs.add_client_error("delete_replication_configuration", "InternalServerError",
                         expected_params={"SourceFileSystemId": "fs-east"})
    efs.add_response("delete_replication_configuration", {},
                     {"SourceFileSystemId": "fs-east",
                      "DeletionMode": "LOCAL_CONFIGURATION_ONLY"})
    text = storage_ops(tmp_path, stubs).promote_storage(topology().region("west"), 5)
    assert "this region's side only" in text and "InternalServerError" in text
    stubs.done()


def test_nothing_to_promote_when_the_file_system_replicates_nowhere_or_is_the_source(tmp_path):
    stubs = Stubs()
    efs = stubs.stub("efs", "us-east-1")
    efs.add_client_error("describe_replication_configurations", "ReplicationNotFound",
                         expected_params={"FileSystemId": "fs-east"})
    efs.add_response("describe_replication_configurations",
                     replication("fs-east", "fs-west"), {"FileSystemId": "fs-east"})
    ops = storage_ops(tmp_path, stubs)
    assert ops.promote_storage(topology().region("east"), 5) == ""
    assert ops.promote_storage(topology().region("east"), 5) == ""  # east is the source
    stubs.done()
    stubs = Stubs()
    stubs.stub("efs", "eu-west-1").add_client_error(
        "describe_replication_configurations", "AccessDeniedException", http_status_code=403,
        expected_params={"FileSystemId": "fs-west"})
    text = storage_ops(tmp_path, stubs).promote_storage(topology().region("west"), 5)
    assert text.startswith("could not promote the file system fs-west of west") \
        and text.endswith("it stays read-only")
