"""Route53Provider against moto's real HTTP server (no AWS account, no network).

Relies only on what moto models faithfully: zones, health checks,
failover alias records, UPSERT batches, simple paging, error codes. Not on GetChange
timing, health-check status or DELETE with a SetIdentifier. Error paths that moto cannot
produce (AccessDenied, expired tokens, a looping or endless paginator) use botocore's
Stubber on a client of the same shape.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from hadeploy.dns.route53 import Endpoint, Route53Provider
from hadeploy.errors import ExitCode, HadeployError

ZONE = "example.test"
EU = Endpoint("hadeploy-eu-1234.eu-west-1.elb.amazonaws.com", "Z32O12XQLNTSW2")
US = Endpoint("hadeploy-us-5678.us-east-1.elb.amazonaws.com", "Z35SXDOTRQ7X7K")




@pytest.fixture
def r53(url: str) -> Any:
    """A separate client that sets up and inspects the zone (not the one under test)."""
    return boto3.client("route53", endpoint_url=url, region_name="us-east-1")


def make_zone(r53: Any, name: str = ZONE) -> str:
    resp = r53.create_hosted_zone(Name=name, CallerReference=f"{name}-{time.time_ns()}")
    return str(resp["HostedZone"]["Id"]).rsplit("/", 1)[-1]


def a_sets(r53: Any, zone_id: str, name: str = f"app.{ZONE}.") -> list[dict[str, Any]]:
    sets = r53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    return [s for s in sets if s["Name"] == name and s["Type"] == "A"]


def count_calls(provider: Route53Provider, operation: str) -> list[str]:
    """Every ``operation`` the provider's own client makes (appended, asserted later).
    before-parameter-build reaches every handler, also when a Stubber answers the call."""
    calls: list[str] = []
    provider.client().meta.events.register(
        f"before-parameter-build.route53.{operation}", lambda **_kw: calls.append(operation))
    return calls


# --- plain mode ----------------------------------------------------------------------------

def test_plain_replace_then_read(url: str, r53: Any) -> None:
    make_zone(r53)
    dns = Route53Provider(ZONE, endpoint_url=url, timeout=2)
    assert dns.read("app") == []
    dns.replace("app", 60, ["192.0.2.10", "192.0.2.11"])
    assert dns.read("app") == ["192.0.2.10", "192.0.2.11"]
    assert dns.read(f"app.{ZONE}.") == ["192.0.2.10", "192.0.2.11"]
    waited = dns.wait_visible("app", ["192.0.2.11", "192.0.2.10"], timeout=5)
    assert 0 <= waited < 5


def test_plain_change_is_one_batch_with_one_value(url: str, r53: Any) -> None:
    zone_id = make_zone(r53)
    dns = Route53Provider(ZONE, endpoint_url=url, timeout=2)
    dns.replace("app", 60, ["192.0.2.10"])
    changes = count_calls(dns, "ChangeResourceRecordSets")
    dns.replace("app", 30, ["198.51.100.7"])
    assert changes == ["ChangeResourceRecordSets"]
    sets = a_sets(r53, zone_id)
    assert len(sets) == 1
    assert sets[0]["ResourceRecords"] == [{"Value": "198.51.100.7"}]
    assert sets[0]["TTL"] == 30
    assert dns.read("app") == ["198.51.100.7"]
    dns.wait_visible("app", ["198.51.100.7"], timeout=5)


def test_plain_alias_to_a_known_load_balancer(url: str, r53: Any) -> None:
    zone_id = make_zone(r53)
    dns = Route53Provider(ZONE, endpoint_url=url, endpoints={"eu": EU, "us": US}, timeout=2)
    dns.replace("app", 60, [EU.dns_name])
    (rrset,) = a_sets(r53, zone_id)
    assert rrset["AliasTarget"]["DNSName"].rstrip(".") == EU.dns_name
    assert rrset["AliasTarget"]["HostedZoneId"] == EU.hosted_zone_id
    assert "ResourceRecords" not in rrset
    assert dns.read("app") == [EU.dns_name]
    with pytest.raises(HadeployError) as err:
        dns.replace("app", 60, ["lb.elsewhere.example"])
    assert err.value.code is ExitCode.BAD_INPUT


def test_paging_reads_past_other_names(url: str, r53: Any) -> None:
    """Page size 1: the record is found on the right page; other names end the listing."""
    zone_id = make_zone(r53)
    for name, ip in (("aaa", "192.0.2.1"), ("app", "192.0.2.2"), ("zzz", "192.0.2.3")):
        r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [{
            "Action": "UPSERT", "ResourceRecordSet": {
                "Name": f"{name}.{ZONE}.", "Type": "A", "TTL": 60,
                "ResourceRecords": [{"Value": ip}]}}]})
    dns = Route53Provider(ZONE, endpoint_url=url, timeout=2, page_size=1)
    lists = count_calls(dns, "ListResourceRecordSets")
    assert dns.read("app") == ["192.0.2.2"]
    assert dns.read("zzz") == ["192.0.2.3"]
    assert len(lists) == 2


# --- failover mode ---------------------------------------------------------------------------

def make_failover(r53: Any) -> tuple[str, dict[str, Endpoint]]:
    """Zone, one health check per region, PRIMARY eu / SECONDARY us (as infra/dns.py)."""
    zone_id = make_zone(r53)
    endpoints = {}
    for region, ep in (("eu", EU), ("us", US)):
        hc = r53.create_health_check(CallerReference=f"hc-{region}", HealthCheckConfig={
            "Type": "HTTPS", "FullyQualifiedDomainName": ep.dns_name, "Port": 443,
            "ResourcePath": "/healthz", "RequestInterval": 10, "FailureThreshold": 3})
        endpoints[region] = Endpoint(ep.dns_name, ep.hosted_zone_id,
                                     hc["HealthCheck"]["Id"])
    changes = [{"Action": "CREATE", "ResourceRecordSet": {
        "Name": f"app.{ZONE}.", "Type": "A", "SetIdentifier": region, "Failover": kind,
        "HealthCheckId": endpoints[region].health_check_id,
        "AliasTarget": {"HostedZoneId": endpoints[region].hosted_zone_id,
                        "DNSName": endpoints[region].dns_name, "EvaluateTargetHealth": True}}}
        for region, kind in (("eu", "PRIMARY"), ("us", "SECONDARY"))]
    r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": changes})
    return zone_id, endpoints


def by_role(sets: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["Failover"]: s for s in sets}


def test_failover_swaps_primary_and_secondary_in_one_batch(url: str, r53: Any) -> None:
    zone_id, endpoints = make_failover(r53)
    dns = Route53Provider(ZONE, zone_id=zone_id, mode="failover", endpoints=endpoints,
                          endpoint_url=url, timeout=2)
    assert dns.read("app") == [EU.dns_name]
    changes = count_calls(dns, "ChangeResourceRecordSets")
    dns.replace("app", 60, [US.dns_name])
    assert changes == ["ChangeResourceRecordSets"]
    assert dns.read("app") == [US.dns_name]
    dns.wait_visible("app", [US.dns_name], timeout=5)

    sets = a_sets(r53, zone_id)
    assert len(sets) == 2
    roles = by_role(sets)
    assert set(roles) == {"PRIMARY", "SECONDARY"}
    assert roles["PRIMARY"]["SetIdentifier"] == "eu"  # identifiers never change
    assert roles["SECONDARY"]["SetIdentifier"] == "us"
    assert roles["PRIMARY"]["AliasTarget"]["DNSName"].rstrip(".") == US.dns_name
    assert roles["PRIMARY"]["HealthCheckId"] == endpoints["us"].health_check_id
    assert roles["SECONDARY"]["AliasTarget"]["DNSName"].rstrip(".") == EU.dns_name
    assert roles["SECONDARY"]["HealthCheckId"] == endpoints["eu"].health_check_id
    assert all(s["AliasTarget"]["EvaluateTargetHealth"] is True for s in sets)

    dns.replace("app", 60, [EU.dns_name])  # and back
    roles = by_role(a_sets(r53, zone_id))
    assert roles["PRIMARY"]["AliasTarget"]["DNSName"].rstrip(".") == EU.dns_name
    assert roles["SECONDARY"]["AliasTarget"]["DNSName"].rstrip(".") == US.dns_name
    assert len(changes) == 2


def test_failover_to_the_current_primary_leaves_secondary(url: str, r53: Any) -> None:
    zone_id, endpoints = make_failover(r53)
    dns = Route53Provider(ZONE, mode="failover", endpoints=endpoints, endpoint_url=url,
                          timeout=2)
    dns.replace("app", 60, [EU.dns_name])
    roles = by_role(a_sets(r53, zone_id))
    assert roles["PRIMARY"]["AliasTarget"]["DNSName"].rstrip(".") == EU.dns_name
    assert roles["SECONDARY"]["AliasTarget"]["DNSName"].rstrip(".") == US.dns_name


def test_failover_refuses_unknown_target_and_wrong_layout(url: str, r53: Any) -> None:
    zone_id, endpoints = make_failover(r53)
    dns = Route53Provider(ZONE, mode="failover", endpoints=endpoints, endpoint_url=url,
                          timeout=2)
    changes = count_calls(dns, "ChangeResourceRecordSets")
    with pytest.raises(HadeployError) as err:
        dns.replace("app", 60, ["192.0.2.9"])
    assert err.value.code is ExitCode.BAD_INPUT
    plain = Route53Provider(ZONE, endpoints=endpoints, endpoint_url=url, timeout=2)
    with pytest.raises(HadeployError) as err:
        plain.read("app")
    assert err.value.code is ExitCode.BAD_INPUT
    assert "failover" in (err.value.hint or "")
    assert changes == []
    assert len(a_sets(r53, zone_id)) == 2


def test_wait_visible_runs_the_pluggable_dns_check(url: str, r53: Any) -> None:
    make_zone(r53)
    seen: list[tuple[list[str], str, list[str]]] = []
    answers = iter(["ns-1 answers ['192.0.2.1']", None])

    def check(servers: list[str], fqdn: str, expected: list[str], timeout: float) -> str | None:
        seen.append((servers, fqdn, expected))
        return next(answers)

    dns = Route53Provider(ZONE, endpoint_url=url, timeout=2, dns_check=check)
    dns.replace("app", 60, ["192.0.2.20"])
    dns.wait_visible("app", ["192.0.2.20"], timeout=5)
    assert len(seen) == 2
    servers, fqdn, expected = seen[0]
    assert len(servers) == 4 and all("awsdns" in s for s in servers)  # the DelegationSet
    assert (fqdn, expected) == (f"app.{ZONE}.", ["192.0.2.20"])
    assert Route53Provider(ZONE, endpoint_url=url).dns_check is None  # moto: skipped


# --- refusals and errors ---------------------------------------------------------------------

def test_empty_address_list_is_refused(url: str, r53: Any) -> None:
    zone_id = make_zone(r53)
    dns = Route53Provider(ZONE, endpoint_url=url, timeout=2)
    dns.replace("app", 60, ["192.0.2.10"])
    changes = count_calls(dns, "ChangeResourceRecordSets")
    with pytest.raises(HadeployError) as err:
        dns.replace("app", 60, [])
    assert err.value.code is ExitCode.REFUSED
    assert changes == []
    assert a_sets(r53, zone_id)[0]["ResourceRecords"] == [{"Value": "192.0.2.10"}]


def test_wrong_zone_name_is_bad_input(url: str, r53: Any) -> None:
    make_zone(r53)
    dns = Route53Provider("nope.test", endpoint_url=url, timeout=2)
    with pytest.raises(HadeployError) as err:
        dns.replace("app", 60, ["192.0.2.10"])
    assert err.value.code is ExitCode.BAD_INPUT
    assert "nope.test" in err.value.message


def test_wrong_zone_id_is_bad_input(url: str, r53: Any) -> None:
    make_zone(r53)
    dns = Route53Provider(ZONE, zone_id="Z0000000NOSUCHZONE", endpoint_url=url, timeout=2)
    with pytest.raises(HadeployError) as err:
        dns.read("app")
    assert err.value.code is ExitCode.BAD_INPUT
    assert "Z0000000NOSUCHZONE" in err.value.message and ZONE in err.value.message


def test_zone_id_of_another_zone_is_bad_input(url: str, r53: Any) -> None:
    make_zone(r53)
    other = make_zone(r53, "other.test")
    with pytest.raises(HadeployError) as err:
        Route53Provider(ZONE, zone_id=other, endpoint_url=url, timeout=2).read("app")
    assert err.value.code is ExitCode.BAD_INPUT
    assert "other.test" in err.value.message


@pytest.mark.parametrize("record", ["app.other.test.", "app.notexample.test."])
def test_record_outside_the_zone_is_bad_input(url: str, r53: Any, record: str) -> None:
    zone_id = make_zone(r53)
    dns = Route53Provider(ZONE, endpoint_url=url, timeout=2)
    for call in (lambda: dns.read(record), lambda: dns.replace(record, 60, ["192.0.2.1"])):
        with pytest.raises(HadeployError) as err:
            call()
        assert err.value.code is ExitCode.BAD_INPUT
        assert record in err.value.message and ZONE in err.value.message
    assert a_sets(r53, zone_id, record) == []


def test_missing_credentials_is_environment(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    dns = Route53Provider(ZONE, endpoint_url=url, timeout=2)
    with pytest.raises(HadeployError) as err:
        dns.read("app")
    assert err.value.code is ExitCode.ENVIRONMENT
    assert "credentials" in err.value.message and ZONE in err.value.message
    assert "AWS_PROFILE" in (err.value.hint or "")


def test_unreachable_endpoint_is_environment_and_fast(moto_url: str) -> None:
    with socket.socket() as sock:  # a port that was just free: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dns = Route53Provider(ZONE, endpoint_url=f"http://127.0.0.1:{port}", timeout=1)
    start = time.monotonic()
    with pytest.raises(HadeployError) as err:
        dns.replace("app", 60, ["192.0.2.10"])
    elapsed = time.monotonic() - start
    assert err.value.code is ExitCode.ENVIRONMENT
    assert "unreachable" in err.value.message and str(port) in err.value.message
    assert elapsed < 5


def stubbed(moto_url: str) -> tuple[Route53Provider, Stubber]:
    """A provider whose client answers from a Stubber (moto cannot deny or expire)."""
    client = boto3.client("route53", region_name="us-east-1", endpoint_url=moto_url)
    stub = Stubber(client)
    stub.activate()
    return Route53Provider(ZONE, zone_id="Z1", client_factory=lambda: client), stub


@pytest.mark.parametrize(("code", "status", "words"), [
    ("AccessDenied", 403, "denied"),
    ("ExpiredToken", 403, "expired"),
    ("InvalidClientTokenId", 403, "rejected"),
])
def test_denied_or_expired_credentials_are_environment(moto_url: str, code: str, status: int,
                                                       words: str) -> None:
    dns, stub = stubbed(moto_url)
    stub.add_client_error("get_hosted_zone", service_error_code=code,
                          service_message="nope", http_status_code=status)
    with pytest.raises(HadeployError) as err:
        dns.read("app")
    assert err.value.code is ExitCode.ENVIRONMENT
    assert words in err.value.message and ZONE in err.value.message
    stub.assert_no_pending_responses()


def _zone_response() -> dict[str, Any]:
    return {"HostedZone": {"Id": "/hostedzone/Z1", "Name": f"{ZONE}.", "CallerReference": "r"},
            "DelegationSet": {"NameServers": ["ns-1.awsdns-01.org"]}}


def _alias_set(ident: str, kind: str, ep: Endpoint) -> dict[str, Any]:
    return {"Name": f"app.{ZONE}.", "Type": "A", "SetIdentifier": ident, "Failover": kind,
            "AliasTarget": {"HostedZoneId": ep.hosted_zone_id, "DNSName": f"{ep.dns_name}.",
                            "EvaluateTargetHealth": True}}


def test_paging_follows_next_record_identifier(moto_url: str) -> None:
    """AWS splits one name's failover sets across pages with NextRecordIdentifier (moto
    cannot: it ignores StartRecordIdentifier)."""
    dns, stub = stubbed(moto_url)
    dns.mode, dns.endpoints, dns.page_size = "failover", {"eu": EU, "us": US}, 1
    stub.add_response("get_hosted_zone", _zone_response(), {"Id": "Z1"})
    base = {"HostedZoneId": "Z1", "StartRecordName": f"app.{ZONE}.", "StartRecordType": "A",
            "MaxItems": "1"}
    stub.add_response("list_resource_record_sets", {
        "ResourceRecordSets": [_alias_set("us", "SECONDARY", US)], "IsTruncated": True,
        "NextRecordName": f"app.{ZONE}.", "NextRecordType": "A", "NextRecordIdentifier": "eu",
        "MaxItems": "1"}, base)
    stub.add_response("list_resource_record_sets", {
        "ResourceRecordSets": [_alias_set("eu", "PRIMARY", EU)], "IsTruncated": False,
        "MaxItems": "1"}, {**base, "StartRecordIdentifier": "eu"})
    assert dns.read("app") == [EU.dns_name]
    stub.assert_no_pending_responses()


def test_a_repeating_page_stops_with_an_error(moto_url: str) -> None:
    dns, stub = stubbed(moto_url)
    dns.mode, dns.endpoints, dns.page_size = "failover", {"eu": EU, "us": US}, 1
    stub.add_response("get_hosted_zone", _zone_response())
    page = {"ResourceRecordSets": [_alias_set("us", "SECONDARY", US)], "IsTruncated": True,
            "NextRecordName": f"app.{ZONE}.", "NextRecordType": "A", "MaxItems": "1"}
    for _ in range(3):
        stub.add_response("list_resource_record_sets", page)
    lists = count_calls(dns, "ListResourceRecordSets")
    with pytest.raises(HadeployError) as err:
        dns.read("app")
    assert err.value.code is ExitCode.FAILED
    assert "same page" in err.value.message
    assert len(lists) == 2  # page 2 handed back the token already followed: stop
