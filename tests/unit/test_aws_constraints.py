"""The AWS API constraint check (tests/aws_constraints.py) itself: its mapping names members
that exist in botocore's models, its documented rules quote the models' own wording, its
translation of the models' Java patterns, and what it reports on small hand-made graphs.
The check over the real graphs is in test_infra_graph.py."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.aws_constraints import (
    AUTONAMED,
    EC2_GROUP_DESCRIPTION,
    MAPPING,
    Api,
    Skip,
    _entries,
    _matches,
    check_graphs,
    python_regex,
    resolve,
    value_problems,
)

APIS = sorted({api for entries in MAPPING.values() for entry in entries.values()
               for api in _entries(entry)}, key=str)


def test_every_mapped_member_exists_in_the_model():
    kinds = {str(api): resolve(api).kind for api in APIS}  # KeyError names a missing member
    assert len(kinds) > 150
    assert set(kinds.values()) <= {"string", "integer", "long", "boolean"}


def test_every_autonamed_type_maps_its_name():
    for typ, prop in AUTONAMED.items():
        assert _entries(MAPPING[typ][prop]), typ


@pytest.mark.parametrize("api", [a for a in APIS if a.doc and not (
    a.doc.source or "").startswith("http")], ids=str)
def test_documented_rules_quote_the_model(api: Api):
    """A rule AWS states in prose quotes the model's documentation of the member (or of the
    member it names as source): when AWS rewords it, this test says which rule to revisit."""
    assert api.doc is not None
    source = api
    if api.doc.source:
        service, rest = api.doc.source.split(" ", 1)
        operation, member = rest.split(".", 1)
        source = Api(service, operation, member)
    assert api.doc.cites in resolve(source).documentation


def test_the_security_group_description_rule_is_the_one_aws_states():
    c = resolve(Api("ec2", "CreateSecurityGroup", "Description", EC2_GROUP_DESCRIPTION))
    assert not c.pattern and not c.max  # the model itself carries nothing ...
    assert "._-:/()#,@[]+=&;{}!$*" in c.documentation  # ... but its documentation does
    assert value_problems(c, "hadeploy ALB: HTTP/HTTPS from anywhere") == []
    assert value_problems(c, "NFS to the region's EFS mount targets") != []
    assert value_problems(c, "x" * 256) != []
    assert value_problems(c, "ünïcode") != []


def test_java_patterns_become_python_ones():
    tag = r"^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$"
    for ok in ("hadeploy:backup", "Name", "ünï cödé 42", "a/b=c+d-e@f", ""):
        assert _matches(tag, ok, java=True), ok
    for bad in ("it's", "a#b", "tab\there", "a,b"):
        assert not _matches(tag, bad, java=True), bad
    xml = r"[\u0020-\uD7FF\uE000-\uFFFD\uD800\uDC00-\uDBFF\uDFFF\r\n\t]*"
    assert re.fullmatch(python_regex(xml), "emoji \U0001F600 ok\n")
    assert not re.fullmatch(python_regex(xml), "nul \x00")
    iam = r"[\w+=,.@-]+"  # not anchored: the whole value must match
    assert _matches(iam, "app-host-role-9f3a1c7", java=True)
    assert not _matches(iam, "app host role", java=True)
    efs_sg = "^sg-[0-9a-f]{8,40}"  # anchored at the start only, as the model writes it
    assert _matches(efs_sg, "sg-0123456789abcdef0", java=True)


def test_numbers_and_enums_follow_the_model():
    interval = resolve(Api("route53", "CreateHealthCheck", "HealthCheckConfig.RequestInterval"))
    assert value_problems(interval, 10.0) == [] and value_problems(interval, 30) == []
    assert value_problems(interval, 5) != [] and value_problems(interval, 10.5) != []
    tokens = resolve(Api("ec2", "CreateLaunchTemplate",
                         "LaunchTemplateData.MetadataOptions.HttpTokens"))
    assert value_problems(tokens, "required") == [] and value_problems(tokens, "Required") != []
    warmup = resolve(Api("autoscaling", "StartInstanceRefresh", "Preferences.InstanceWarmup"))
    assert value_problems(warmup, "300") == [] and value_problems(warmup, "-1") != []


def resource(typ: str, name: str, inputs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"urn": f"urn:pulumi:s::p::{typ}::{name}", "type": typ, "name": name,
            "custom": True, "parent": None, "provider": extra.get("provider"),
            "dependencies": [], "property_dependencies": {}, "inputs": inputs, "outputs": {}}


PROVIDER = resource("pulumi:providers:aws", "aws-eu-west-1", {
    "region": "eu-west-1", "allowedAccountIds": '["123456789012"]',
    "defaultTags": json.dumps({"tags": {"hadeploy:deployment": "demo", "long": "x" * 257}})})


def test_a_small_graph_shows_problems_and_coverage():
    graph = {"resources": [
        PROVIDER,
        resource("aws:lb/targetGroup:TargetGroup", "a-target-group-with-a-long-name", {
            "port": 8080.0, "protocol": "HTTP", "vpcId": "vpc-id",
            "healthCheck": {"matcher": "200", "interval": 10.0, "timeout": 1.0}},
            provider=PROVIDER["urn"]),
        resource("aws:route53/healthCheck:HealthCheck", "hc", {
            "type": "HTTPS", "regions": ["us-east-1", "eu-west-1"],
            "tags": {"Name": "hc"}}),
        resource("aws:sqs/queue:Queue", "q", {"name": "jobs"}),
        {**resource("hadeploy:x:Component", "c", {"anything": "'"}), "custom": False},
    ]}
    report = check_graphs({"small": graph})
    text = "\n".join(report.problems)
    # Pulumi's generated name: 31 + 8 characters, over the 32 AWS allows.
    assert "name (Pulumi's generated name) = 'a-target-group-with-a-long-name-9f3a1c7'" in text
    assert "healthCheck.timeout = 1.0" in text  # the model: 2..120
    assert "regions[] has 2 items, below 3" in text
    assert "tags{} (provider default tag) = 'xxx" in text  # ELB: values up to 256
    assert len(report.problems) == 4, text
    # Coverage: the queue's type maps nothing; it is listed, not passed.
    assert report.unmapped == {("aws:sqs/queue:Queue", "name"): "'jobs'"}
    assert report.unmapped_types == {"aws:sqs/queue:Queue"}
    assert ("hadeploy:x:Component", "anything") not in report.unmapped  # sends nothing
    assert isinstance(MAPPING["aws:lb/targetGroup:TargetGroup"]["vpcId"], Skip)
    assert ("aws:lb/targetGroup:TargetGroup", "vpcId") in report.skipped
    assert ("aws:lb/targetGroup:TargetGroup", "port") in report.constrained
    assert "unmapped" in report.summary()
