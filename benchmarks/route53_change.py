"""Route 53 failover swap against moto's HTTP server: one change batch + verification.

    python benchmarks/route53_change.py [--runs 7]

Measures hadeploy's own overhead (API calls, paging, checks) on localhost. It says nothing
about real Route 53 propagation: moto's GetChange is always INSYNC, and the name-server
step is skipped with an endpoint URL.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time

import boto3
from moto.server import ThreadedMotoServer

from hadeploy.dns.route53 import Endpoint, Route53Provider

ZONE = "bench.test"
ALBS = {"eu": ("hadeploy-eu-1.eu-west-1.elb.amazonaws.com", "Z32O12XQLNTSW2"),
        "us": ("hadeploy-us-1.us-east-1.elb.amazonaws.com", "Z35SXDOTRQ7X7K")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_EC2_METADATA_DISABLED="true")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    try:
        r53 = boto3.client("route53", endpoint_url=url, region_name="us-east-1")
        zone_id = r53.create_hosted_zone(Name=ZONE, CallerReference="bench")["HostedZone"]["Id"]
        endpoints = {}
        for region, (dns_name, alb_zone) in ALBS.items():
            hc = r53.create_health_check(CallerReference=region, HealthCheckConfig={
                "Type": "HTTPS", "FullyQualifiedDomainName": dns_name, "Port": 443,
                "ResourcePath": "/healthz"})["HealthCheck"]["Id"]
            endpoints[region] = Endpoint(dns_name, alb_zone, hc)
        r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [
            {"Action": "CREATE", "ResourceRecordSet": {
                "Name": f"app.{ZONE}.", "Type": "A", "SetIdentifier": region, "Failover": kind,
                "HealthCheckId": endpoints[region].health_check_id,
                "AliasTarget": {"HostedZoneId": endpoints[region].hosted_zone_id,
                                "DNSName": endpoints[region].dns_name,
                                "EvaluateTargetHealth": True}}}
            for region, kind in (("eu", "PRIMARY"), ("us", "SECONDARY"))]})

        change, verify, total = [], [], []
        for run in range(args.runs):
            # A fresh provider each run, as each `hadeploy failover` process has.
            dns = Route53Provider(ZONE, mode="failover", endpoints=endpoints,
                                  endpoint_url=url, timeout=5)
            target = endpoints["us" if run % 2 == 0 else "eu"].dns_name
            t0 = time.perf_counter()
            dns.replace("app", 60, [target])
            t1 = time.perf_counter()
            dns.wait_visible("app", [target], timeout=10)
            t2 = time.perf_counter()
            change.append(t1 - t0)
            verify.append(t2 - t1)
            total.append(t2 - t0)
        for name, values in (("replace", change), ("wait_visible", verify), ("total", total)):
            print(f"{name:>12}: median {statistics.median(values) * 1000:7.1f} ms  "
                  f"min {min(values) * 1000:7.1f}  max {max(values) * 1000:7.1f}  "
                  f"(n={len(values)})")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
