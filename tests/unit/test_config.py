"""The desired-state model: defaults, and one clear error (exit 2, no traceback) for every
kind of bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hadeploy import config

GOOD = yaml.safe_load(config.EXAMPLE)


def test_example_is_valid_and_complete():
    dep = config.parse(GOOD)
    assert dep.primary.name == "east"
    assert [r.name for r in dep.regions] == ["east", "west"]
    assert dep.dns.fqdn == "app.hadeploy.test."


def test_defaults_from_regions_first_is_primary():
    dep = config.from_regions(["a", "b", "c"])
    assert [r.role.value for r in dep.regions] == ["primary", "secondary", "secondary"]
    assert [r.lab_subnet for r in dep.regions] == ["10.91.1.0/24", "10.91.2.0/24",
                                                   "10.91.3.0/24"]


def test_adding_a_region_keeps_existing_subnets():
    dep = config.from_regions(["west", "north"], known_subnets={"west": "10.91.2.0/24"})
    subnets = {r.name: r.lab_subnet for r in dep.regions}
    assert subnets == {"west": "10.91.2.0/24", "north": "10.91.1.0/24"}


def test_aws_target_is_a_valid_value():
    aws = yaml.safe_load(config.EXAMPLE_AWS)["aws"]
    dep = config.parse({**GOOD, "target": "aws", "aws": aws, "data": {"enabled": False}})
    assert dep.target is config.Target.AWS
    # Aurora is billed per instance-hour: on aws the database tier is asked for explicitly.
    assert not config.parse({**{k: v for k, v in GOOD.items() if k != "data"},
                             "target": "aws", "aws": aws}).data.enabled
    assert config.parse(GOOD_AWS).data.enabled


def _with(path: str, value, base=None):
    """GOOD (or ``base``) with one value replaced; path like 'regions.1.name'."""
    import copy

    data = copy.deepcopy(GOOD if base is None else base)
    node = data
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if k.isdigit() else node[k]
    last = keys[-1]
    if value is _DELETE:
        del node[int(last) if last.isdigit() else last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return data


_DELETE = object()

BAD = {
    "unknown top key": (_with("nmae", "x"), "nmae", "did you mean 'name'"),
    "unknown region key": (_with("regions.0.hostz", 3), "regions[0].hostz", "did you mean"),
    "duplicate regions": (_with("regions.1.name", "east"), "regions", "unique"),
    "two primaries": (_with("regions.1.role", "primary"), "regions", "exactly one"),
    "no primary": (_with("regions.0.role", "secondary"), "regions", "exactly one"),
    "overlapping subnets": (_with("regions.1.lab_subnet", "10.91.1.0/24"),
                            "regions[1].lab_subnet", "non-overlapping"),
    "zero hosts": (_with("regions.0.hosts", 0), "regions[0].hosts", "greater than or equal"),
    "bad region name": (_with("regions.0.name", "East_1"), "regions[0].name", "lowercase"),
    "bad deployment name": (_with("name", "-x"), "name", "lowercase"),
    "bad role": (_with("regions.0.role", "boss"), "regions[0].role", "primary"),
    "bad standby": (_with("regions.1.standby", "tepid"), "regions[1].standby", "hot"),
    "cold primary": (_with("regions.0.standby", "cold"), "regions[0].standby", "must be 'hot'"),
    "bad subnet": (_with("regions.0.lab_subnet", "10.91.1.0/33"), "regions[0].lab_subnet",
                   "CIDR"),
    "public subnet": (_with("regions.0.lab_subnet", "8.8.8.0/24"), "regions[0].lab_subnet",
                      "private"),
    "missing lab subnet": (_with("regions.1.lab_subnet", _DELETE), "regions[1].lab_subnet",
                           "missing"),
    "bad zone": (_with("dns.zone", "not a zone"), "dns.zone", "DNS zone"),
    "bad ttl": (_with("dns.ttl", 0), "dns.ttl", "greater than or equal"),
    "bad target": (_with("target", "gcp"), "target", "lab"),
    "bad port": (_with("app.port", "http"), "app.port", "whole number"),
    "quorum too high": (_with("failover.quorum", 5), "failover.quorum", "at most 2"),
    "no regions": (_with("regions", []), "regions", "at least"),
    "bad aws region": (_with("regions.0.aws_region", "mars-1"), "regions[0].aws_region",
                       "AWS region"),
    "sync replication": (_with("data", {"replication": "sync"}), "data.replication",
                         "not supported yet"),
    "bad replication": (_with("data", {"replication": "semi"}), "data.replication",
                        "use 'async'"),
    "too many db hosts": (_with("data", {"hosts": 9}), "data.hosts", "less than or equal"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_names_field_and_fix(case):
    data, where, words = BAD[case]
    with pytest.raises(config.ConfigError) as info:
        config.parse(data, "hadeploy.yaml")
    text = f"{info.value.message}\n{info.value.hint}"
    assert f"hadeploy.yaml: {where}" in info.value.message, text
    assert words.lower() in text.lower(), text
    assert info.value.hint, "every config error carries a fix"
    assert int(info.value.code) == 2


def test_not_a_mapping():
    with pytest.raises(config.ConfigError, match="YAML mapping"):
        config.parse(["a", "b"])


def test_invalid_yaml_names_line(tmp_path: Path):
    bad = tmp_path / "h.yaml"
    bad.write_text("name: demo\nregions:\n  - name: east\n   role: primary\n")
    with pytest.raises(config.HadeployError, match=r"invalid YAML at line 4"):
        config.load(bad)


def test_missing_file(tmp_path: Path):
    with pytest.raises(config.HadeployError, match="does not exist") as info:
        config.load(tmp_path / "nope.yaml")
    assert "hadeploy init" in (info.value.hint or "")


# --- strict validation: every string that reaches a file, a command or a resource name ---

def test_defaults_recover_fast_on_the_lab_and_keep_route53s_ttl_on_aws():
    """Measured in docs/benchmarks.md: probes every 0.5 s, four failures, a 1 s TTL (p95
    client recovery 4.5 s, no false failover on a 1.2 s blink). aws keeps a 60 s TTL unless
    dns.ttl says otherwise."""
    lab = config.parse(GOOD)
    assert (lab.failover.probe_interval, lab.failover.probe_timeout,
            lab.failover.failure_threshold, lab.dns.ttl) == (0.5, 0.4, 4, 1)
    aws = yaml.safe_load(config.EXAMPLE_AWS)["aws"]
    bare = {k: v for k, v in GOOD.items() if k != "dns"}
    assert config.parse({**bare, "target": "aws", "aws": aws}).dns.ttl == 60
    assert config.parse({**bare, "target": "aws", "aws": aws,
                         "dns": {"zone": "example.com"}}).dns.ttl == 60
    assert config.parse({**bare, "target": "aws", "aws": aws, "dns": {"ttl": 10}}).dns.ttl == 10


GOOD_AWS = yaml.safe_load(config.EXAMPLE_AWS)
MAX_ERROR = 4096  # bytes of message + hint any config error may print
CERT = "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000"
VAULT = "arn:aws:backup:eu-west-1:123456789012:backup-vault:hd-demo-west"


def _aws(path: str, value):
    """GOOD_AWS with one value replaced (see _with)."""
    return _with(path, value, GOOD_AWS)


def _assert_bad_input(exc: BaseException, where: str, words: str = "") -> str:
    """A refusal as the CLI shows it: HadeployError, exit 2, names ``where``, has a fix,
    bounded. Returns the text."""
    assert isinstance(exc, config.HadeployError), type(exc)
    assert int(exc.code) == 2
    text = f"{exc.message}\n{exc.hint}"
    assert where in exc.message, text
    # (not in ``where``: a tmp_path holds the test's name, e.g. test_directory0)
    assert words.lower() in text.replace(where, "").lower(), text
    assert exc.hint, "every config error carries a fix"
    assert len(text.encode()) < MAX_ERROR, len(text)
    return text


# Each case: (data, the field the error must name, words of the message or fix).
# The values are the ones today's '$'-anchored or \d-based checks let through.
FULLMATCH = {
    "name + newline": (_with("name", "demo\n"), "hadeploy.yaml: name:", "lowercase"),
    "region name + newline": (_with("regions.1.name", "west\n"), "regions[1].name",
                              "lowercase"),
    "zone with newline inside": (_with("dns.zone", "evil\n.test"), "dns.zone", "DNS zone"),
    "zone + newline": (_with("dns.zone", "hadeploy.test\n"), "dns.zone", "DNS zone"),
    "zone, fullwidth letter": (_with("dns.zone", "\uff45xample.com"), "dns.zone", "DNS zone"),
    "zone, Kelvin sign lowercases to k": (_with("dns.zone", "\u212a.test"), "dns.zone",
                                          "DNS zone"),
    "zone with two trailing dots": (_with("dns.zone", "hadeploy.test.."), "dns.zone",
                                    "DNS zone"),
    "record + newline": (_with("dns.record", "app\n"), "dns.record", "DNS label"),
    "version injects an env line": (_with("app.version", "1.0\nHADEPLOY_BIND=0.0.0.0"),
                                    "app.version", "version"),
    "version with a space": (_with("app.version", "1.0 beta"), "app.version", "version"),
    "version too long": (_with("app.version", "1" * 65), "app.version", "64"),
    "health path + newline": (_with("app.health_path", "/healthz\n"), "app.health_path",
                              "URL path"),
    "health path, unicode": (_with("app.health_path", "/h\u00e9alth"), "app.health_path",
                             "URL path"),
    "aws region + newline": (_with("regions.0.aws_region", "us-east-1\n"),
                             "regions[0].aws_region", "AWS region"),
    "aws region, Arabic-Indic digit": (_with("regions.0.aws_region", "us-east-\u0661"),
                                       "regions[0].aws_region", "AWS region"),
    "lab subnet, Arabic-Indic digits": (_with("regions.0.lab_subnet", "\u0661\u0660.91.1.0/24"),
                                        "regions[0].lab_subnet", "CIDR"),
    "lab subnet + newline": (_with("regions.0.lab_subnet", "10.91.1.0/24\n"),
                             "regions[0].lab_subnet", "CIDR"),
    "account id, Arabic-Indic digits": (_aws("aws.account_id", "\u0661" * 12),
                                        "aws.account_id", "12"),
    "account id + newline": (_aws("aws.account_id", "123456789012\n"), "aws.account_id",
                             "12"),
    "account id as a YAML number": (_aws("aws.account_id", 123456789012), "aws.account_id",
                                    "quotes"),
    "certificate ARN + newline": (_aws("aws.certificate_arns.east", CERT + "\n"),
                                  "aws.certificate_arns.east", "ACM"),
    "certificate ARN, unicode account": (_aws("aws.certificate_arns.east",
                                              CERT.replace("1234", "\u0661234")),
                                         "aws.certificate_arns.east", "ACM"),
    "vault ARN + newline": (_aws("aws.backup.copy_vault_arns", {"east": VAULT + "\n"}),
                            "aws.backup.copy_vault_arns.east", "vault"),
    "zone id + newline": (_aws("aws.zone_id", "Z0123456789\n"), "aws.zone_id", "hosted zone"),
    "schedule + newline": (_aws("aws.backup.schedule", "cron(0 3 * * ? *)\n"),
                           "aws.backup.schedule", "cron"),
    "schedule, newline in the body": (_aws("aws.backup.schedule", "cron(0 3 *\n* ? *)"),
                                      "aws.backup.schedule", "cron"),
    "schedule, unbounded body": (_aws("aws.backup.schedule", f"rate({'9' * 500} days)"),
                                 "aws.backup.schedule", "cron"),
    "instance type + newline": (_aws("aws.instance_type", "t3.small\n"),
                                "aws.instance_type", "instance type"),
    "ami, shell text": (_aws("aws.ami", "ami-12345678; reboot"), "aws.ami", "ami-"),
    "ami + newline": (_aws("aws.ami", config.DEBIAN_AMI + "\n"), "aws.ami", "ami-"),
    "root device, path traversal": (_aws("aws.root_device", "/dev/../etc/passwd"),
                                    "aws.root_device", "/dev/xvda"),
    "bucket prefix, uppercase": (_aws("aws.bucket_prefix", "My_Bucket"), "aws.bucket_prefix",
                                 "lowercase"),
    "bucket prefix, reserved xn--": (_aws("aws.bucket_prefix", "xn--abc"), "aws.bucket_prefix",
                                     "reserves"),
    "bucket prefix + newline": (_aws("aws.bucket_prefix", "my-bucket\n"), "aws.bucket_prefix",
                                "S3"),
    "pulumi org with a space": (_aws("aws.pulumi_org", "my org"), "aws.pulumi_org", "Pulumi"),
    "backend url + newline": (_aws("aws.backend_url", "s3://state\n"), "aws.backend_url",
                              "s3://"),
    "backend url, unknown scheme": (_aws("aws.backend_url", "ftp://state"), "aws.backend_url",
                                    "s3://"),
    "secrets provider + newline": (_aws("aws.secrets_provider", "awskms://alias/x\n"),
                                   "aws.secrets_provider", "awskms://"),
    "dict key is no region name": (_aws("aws.certificate_arns", {"East\n": CERT}),
                                   "aws.certificate_arns.'East\\n'", "region names"),
    "peer value is no region name": (_aws("aws.peers", {"east": "W E"}), "aws.peers.east",
                                     "region name"),
    "vpc cidr, loopback": (_aws("aws.vpc_cidrs", {"east": "127.0.0.0/16"}),
                           "aws.vpc_cidrs.east", "RFC 1918"),
}


@pytest.mark.parametrize("case", sorted(FULLMATCH))
def test_every_string_is_matched_in_full(case):
    data, where, words = FULLMATCH[case]
    with pytest.raises(config.ConfigError) as info:
        config.parse(data, "hadeploy.yaml")
    _assert_bad_input(info.value, where, words)


@pytest.mark.parametrize("good", [
    ("app.version", "2.1.0-rc.1+build_7"), ("app.health_path", "/"), ("dns.zone", "Example.COM."),
    ("regions.0.lab_subnet", "172.16.0.0/16"), ("regions.1.lab_subnet", "192.168.7.0/26"),
])
def test_strict_rules_keep_good_values(good):
    dep = config.parse(_with(*good))
    if good[0] == "dns.zone":
        assert dep.dns.zone == "example.com"  # lowercased, without the root dot


@pytest.mark.parametrize("path,value", [
    ("aws.ami", "ami-0123456789abcdef0"), ("aws.ami", "resolve:ssm:/my/param:3"),
    ("aws.root_device", "/dev/sda1"), ("aws.backup.schedule", "rate(12 hours)"),
    ("aws.backend_url", "s3://my-state-bucket?region=eu-west-1"),
    ("aws.secrets_provider", "awskms://alias/hadeploy?region=us-east-1"),
    ("aws.secrets_provider", "passphrase"), ("aws.zone_id", "Z0123456789ABCDEFGHIJ"),
    ("aws.bucket_prefix", "acme-hadeploy"), ("aws.instance_type", "m6i.2xlarge"),
    ("aws.pulumi_org", "acme.corp"),
])
def test_strict_aws_rules_keep_good_values(path, value):
    config.parse(_aws(path, value))


REFUSED = {
    # a region named 'ctl' gets the control network's name hd-<deployment>-ctl
    "region named ctl": (_with("regions.1.name", "ctl"), "regions[1].name", "control network"),
    # not RFC 1918, although Python's is_private says yes (or the block is public)
    **{f"lab subnet {net}": (_with("regions.0.lab_subnet", net), "regions[0].lab_subnet",
                             "RFC 1918")
       for net in ("127.0.0.0/24", "169.254.0.0/24", "192.0.2.0/24", "198.51.100.0/24",
                   "203.0.113.0/24", "198.18.0.0/24", "240.0.0.0/24", "0.0.0.0/24",
                   "100.64.0.0/24", "8.8.8.0/24")},
    "control subnet link-local": (_with("lab.control_subnet", "169.254.1.0/24"),
                                  "lab.control_subnet", "RFC 1918"),
    "control subnet too small": (_with("lab.control_subnet", "10.91.0.0/27"),
                                 "lab.control_subnet", "/26"),
    "lab subnet too small": (_with("regions.0.lab_subnet", "10.91.1.0/27"),
                             "regions[0].lab_subnet", "/26"),
    # DNS names: 63 per label, 253 for <record>.<zone>
    "label over 63": (_with("dns.zone", "a" * 64 + ".test"), "dns.zone", "63"),
    "zone name over 253": (_with("dns.zone", ".".join(["a" * 63] * 4)), "dns.zone", "253"),
    "record name over 253": (_with("dns.zone", ".".join(["a" * 63] * 3 + ["b" * 59])),
                             "dns.zone", "253"),
    "record over 63": (_with("dns.record", "r" * 64), "dns.record", "63"),
    "duplicate checker regions": (_aws("aws.health_checker_regions", ["us-east-1"] * 3),
                                  "aws.health_checker_regions", "more than once"),
    "aws section on target lab": (_with("aws", GOOD_AWS["aws"]), "hadeploy.yaml: aws:",
                                  "set target: aws"),
    "target aws without aws section": (_with("target", "aws",
                                             {**GOOD, "data": {"enabled": False}}),
                                       "hadeploy.yaml: aws:", "aws:"),
    "bad Aurora instance class": (_with("aws.database.instance_class", "r6g.large",
                                        GOOD_AWS), "aws.database.instance_class",
                                  "db.r6g.large"),
    "dns.provider is no setting": (_with("dns.provider", "route53"), "dns.provider",
                                   "follows the target"),
    "dns.provider rfc2136": (_with("dns.provider", "rfc2136"), "dns.provider", "RFC 2136"),
    "bucket name over 63": (_aws("aws.bucket_prefix", "b" * 60), "aws.bucket_prefix", "63"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_names_field_and_fix(case):
    data, where, words = REFUSED[case]
    with pytest.raises(config.ConfigError) as info:
        config.parse(data, "hadeploy.yaml")
    _assert_bad_input(info.value, where, words)


def test_saved_state_with_provider_null_still_loads():
    """deployment.json written before dns.provider was removed holds 'provider: null'."""
    dep = config.parse(_with("dns.provider", None))
    assert "provider" not in dep.model_dump()["dns"]


@pytest.mark.parametrize("doc", [config.EXAMPLE, config.EXAMPLE_AWS])
def test_dump_parses_back(doc):
    """State files and --regions re-parse a dumped model: it must stay valid."""
    dep = config.parse(yaml.safe_load(doc))
    assert config.parse(dep.model_dump(mode="json")) == dep


def test_aws_example_is_valid_complete_and_marks_placeholders():
    from hadeploy.infra.settings import check_deployment

    data = yaml.safe_load(config.EXAMPLE_AWS)
    dep = config.parse(data, "EXAMPLE_AWS")
    assert dep.target is config.Target.AWS and dep.aws is not None
    check_deployment(dep, dep.aws)  # what 'up' checks on top of the model
    assert set(data["aws"]) == set(config.AwsSettings.model_fields), "show every aws: key"
    for placeholder in ("account_id", "certificate_arns", "zone:"):
        line = next(ln for ln in config.EXAMPLE_AWS.splitlines() if placeholder in ln)
        assert "PLACEHOLDER" in line, line


@pytest.mark.parametrize("value,what", [("demo\n", "deployment"), ("East", "deployment"),
                                        ("ctl", "region"), ("a" * 25, "region"),
                                        ("-x", "region"), ("x-", "deployment"),
                                        ("\u0430pp", "deployment")])
def test_validate_name_refuses(value, what):
    with pytest.raises(config.HadeployError) as info:
        config.validate_name(value, what)
    assert int(info.value.code) == 2 and info.value.hint
    assert len(info.value.message) < 200


@pytest.mark.parametrize("value", ["a", "demo", "east-1", "a" * 24, "ctl-2"])
def test_validate_name_accepts(value):
    assert config.validate_name(value, "region") == value
    assert config.validate_name("ctl", "deployment") == "ctl"


def test_huge_values_are_quoted_short():
    data = _with("regions.0.name", "x" * 1_000_000)
    data = {**data, "y" * 1_000_000: 1, "dns": {**data["dns"], "zone": "\n" * 100_000}}
    with pytest.raises(config.ConfigError) as info:
        config.parse(data, "hadeploy.yaml")
    text = _assert_bad_input(info.value, "regions[0].name")
    assert "unknown key 'yyy" in text and "…" in text
    assert len(text) < 1500, len(text)


def test_number_of_problems_listed_is_capped():
    data = {**GOOD, **{f"extra{i}": i for i in range(50)}}
    with pytest.raises(config.ConfigError) as info:
        config.parse(data, "hadeploy.yaml")
    lines = info.value.message.splitlines()
    assert len(lines) == config.MAX_PROBLEMS + 1
    assert lines[-1] == "hadeploy.yaml: and 30 more problem(s)"
    assert len(info.value.problems) == 50
    _assert_bad_input(info.value, "extra0")


def test_many_bad_checker_regions_are_not_all_quoted():
    data = _aws("aws.health_checker_regions", [f"zz-bad-{i}" for i in range(60)])
    with pytest.raises(config.ConfigError) as info:
        config.parse(data)
    text = _assert_bad_input(info.value, "aws.health_checker_regions", "Route 53")
    assert "zz-bad-59" not in text


# --- the file: load() and the safe YAML loader --------------------------------------------

# "billion laughs": 9 levels of 9 aliases each, 9**9 values once expanded, ~600 bytes.
BOMB = ("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
        + "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n"
                  for p, c in zip("abcdefgh", "bcdefghi", strict=True))
        + "name: *i\n")

FILES = {
    # case: (file content, words in the message, the line it must name or None)
    "duplicate top-level key": (config.EXAMPLE + "name: other\n", "duplicate key 'name'",
                                f"line {config.EXAMPLE.count(chr(10)) + 1}"),
    "duplicate nested key": (config.EXAMPLE.replace("  ttl: 1 ", "  ttl: 1\n  ttl: 6 "),
                             "duplicate key 'ttl' (first on line 10)", "line 11"),
    "duplicate key in a list item": (config.EXAMPLE.replace(
        "    hosts: 2               # app", "    hosts: 2\n    hosts: 3 # app"),
        "duplicate key 'hosts'", "line 16"),
    "duplicate key, spelled differently": ("a: 1\n'a': 2\n", "duplicate key 'a'", "line 2"),
    "alias bomb": (BOMB, "expands to more than", "line"),
    "too many aliases": ("a: &a x\nb: [" + ", ".join(["*a"] * 150) + "]\n",
                         "more than 100 YAML aliases", "line 2"),
    "too many values": ("".join(f"k{i}: {i}\n" for i in range(20_000)),
                        "more than 10000 values", "line 5000"),
    "recursive alias": ("a: &a [1, *a]\n", "recursive alias", "line 1"),
    "deep flow nesting": ("a: " + "[" * 5000 + "]" * 5000 + "\n", "deeper than 50",
                          "line 1"),
    "deep block nesting": ("".join("  " * i + f"k{i}:\n" for i in range(80)) + "  " * 80
                           + "v\n", "deeper than 50", "line 50"),
    "two documents": (config.EXAMPLE + "---\nname: x\n", "more than one YAML document",
                      f"line {config.EXAMPLE.count(chr(10)) + 1}"),
    "huge integer (base 60)": ("name: " + "1:" * 20_000 + "1\n", "number of more than",
                               "line 1"),
    "bad date": ("name: 2001-13-45\n", "invalid value", "line 1"),
    "bad !!binary": ("name: !!binary 'zz'\n", "base64", "line 1"),
    "control character": ("name: demo\x01\n", "not a YAML text file", "line 1"),
    "syntax error": ("name: demo\nregions: [\n", "invalid YAML at line", "line 3"),
    "undefined alias, long name": ("a: *" + "x" * 100_000 + "\n", "undefined alias", "line 1"),
    "empty file": ("", "is empty", None),
    "not a mapping": ("- a\n- b\n", "YAML mapping", None),
}


@pytest.mark.parametrize("case", sorted(FILES))
def test_bad_files_are_refused(tmp_path: Path, case):
    content, words, line = FILES[case]
    path = tmp_path / "hadeploy.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(config.HadeployError) as info:
        config.load(path)
    text = _assert_bad_input(info.value, str(path), words)
    if line:
        assert line in info.value.message, text


def test_non_utf8_file(tmp_path: Path):
    path = tmp_path / "hadeploy.yaml"
    path.write_bytes(config.EXAMPLE.encode().replace(b"desired state", b"d\xe9sired state"))
    with pytest.raises(config.HadeployError) as info:
        config.load(path)
    _assert_bad_input(info.value, "line 1", "not UTF-8")


def test_binary_file(tmp_path: Path):
    path = tmp_path / "hadeploy.yaml"
    path.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(config.HadeployError) as info:
        config.load(path)
    _assert_bad_input(info.value, str(path), "UTF-8")


def test_file_over_the_limit_is_refused_before_parsing(tmp_path: Path, monkeypatch):
    from hadeploy import yamlload

    path = tmp_path / "hadeploy.yaml"
    path.write_text(config.EXAMPLE + "#" + "x" * (2 * 1024 * 1024) + "\n")

    def parse_called(*_a, **_k):
        raise AssertionError("parsed a file over the limit")

    monkeypatch.setattr(yamlload, "load_text", parse_called)
    with pytest.raises(config.HadeployError) as info:
        config.load(path)
    _assert_bad_input(info.value, str(path), "larger than 1024 KiB")


def test_directory(tmp_path: Path):
    with pytest.raises(config.HadeployError) as info:
        config.load(tmp_path)
    _assert_bad_input(info.value, str(tmp_path), "directory")


def test_missing_file_in_a_path_through_a_file(tmp_path: Path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(config.HadeployError) as info:
        config.load(tmp_path / "f" / "hadeploy.yaml")
    _assert_bad_input(info.value, "hadeploy.yaml", "does not exist")


def test_unreadable_file(tmp_path: Path, monkeypatch):
    """As root chmod 000 does not stop reading: make open() fail the way it would."""
    import os

    path = tmp_path / "hadeploy.yaml"
    path.write_text(config.EXAMPLE)
    real_open = os.open

    def deny(p, *a, **k):
        if str(p) == str(path):
            raise PermissionError(13, "Permission denied", str(p))
        return real_open(p, *a, **k)

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(config.HadeployError) as info:
        config.load(path)
    _assert_bad_input(info.value, str(path), "permission denied")


def test_fifo_is_refused_without_blocking(tmp_path: Path):
    import os
    import threading

    fifo = tmp_path / "hadeploy.yaml"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            config.load(fifo)
        except BaseException as exc:  # examined below
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=10)
    if worker.is_alive():  # unblock the reader so the thread can end, then fail
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        pytest.fail("load() blocked on a FIFO")
    assert outcome, "load() accepted a FIFO"
    _assert_bad_input(outcome[0], str(fifo), "is a FIFO (named pipe), not a regular file")


def test_merge_keys_are_not_duplicates(tmp_path: Path):
    path = tmp_path / "hadeploy.yaml"
    path.write_text(config.EXAMPLE.replace(
        "  - name: west\n    role: secondary\n    hosts: 2\n",
        "  - <<: {name: west, hosts: 3}\n    role: secondary\n    hosts: 2\n"))
    dep = config.load(path)
    assert dep.regions[1].name == "west" and dep.regions[1].hosts == 2


def test_load_accepts_the_examples(tmp_path: Path):
    for text in (config.EXAMPLE, config.EXAMPLE_AWS):
        path = tmp_path / "hadeploy.yaml"
        path.write_text(text)
        assert config.load(path) == config.parse(yaml.safe_load(text))


def _three_aws_regions(record: str, mode: str):
    data = _aws("dns.record", record)
    data["regions"].append({"name": "north", "role": "secondary", "hosts": 2,
                            "standby": "cold", "aws_region": "ap-southeast-1"})
    data["aws"]["mode"] = mode
    return data


def test_route53_failover_names_must_fit_a_label():
    """3 regions, active-passive: Route 53 chains <record>-failover-1 (11 more characters)."""
    with pytest.raises(config.ConfigError) as info:
        config.parse(_three_aws_regions("r" * 60, "active-passive"))
    _assert_bad_input(info.value, "dns.record", "Route 53 failover name")
    config.parse(_three_aws_regions("r" * 52, "active-passive"))
    config.parse(_three_aws_regions("r" * 60, "active-weighted"))
