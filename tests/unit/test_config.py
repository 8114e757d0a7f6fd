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
    dep = config.parse({**GOOD, "target": "aws"})
    assert dep.target is config.Target.AWS


def _with(path: str, value):
    """GOOD with one value replaced; path like 'regions.1.name'."""
    import copy

    data = copy.deepcopy(GOOD)
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
