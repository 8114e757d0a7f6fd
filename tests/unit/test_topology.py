"""Lab addressing and the one inventory renderer."""

from __future__ import annotations

import ipaddress
import json

import yaml

from hadeploy import config, configure
from hadeploy.targets.lab.naming import lab_topology
from hadeploy.topology import render_inventory

GOOD = config.parse(yaml.safe_load(config.EXAMPLE))


def test_lab_addresses_are_inside_their_subnet_and_unique():
    dep = config.from_regions(["east", "west", "north"])
    topo = lab_topology(dep)
    seen = set()
    servers = {s.name: s.address for s in topo.dns.name_servers}
    for region in topo.regions:
        net = ipaddress.IPv4Network(region.subnet)
        for addr in [region.vip, servers[region.name], *(h.address for h in region.hosts)]:
            assert ipaddress.IPv4Address(addr) in net
            assert addr not in seen
            seen.add(addr)
        assert [h.kind for h in region.hosts].count("lb") == 2
    assert len({r.router_id for r in topo.regions}) == 3
    # three regions: a server in each, no witness (an odd count already)
    assert list(servers) == ["east", "west", "north"] and topo.dns.server == "10.91.1.6"


def test_an_even_number_of_regions_gets_a_witness_dns_server():
    for names, want in ((["east"], ["east"]), (["east", "west"], ["east", "west", "witness"]),
                        (["a", "b", "c", "d"], ["a", "b", "c", "d", "witness"])):
        topo = lab_topology(config.from_regions(names))
        assert [s.name for s in topo.dns.name_servers] == want
        assert len(want) % 2 == 1
    witness = lab_topology(config.from_regions(["east", "west"])).dns.name_servers[-1]
    assert witness.address == "10.91.0.53"  # on the control network, next to the CLI
    # a topology written to the state directory comes back with its servers
    from hadeploy.topology import Topology

    topo = lab_topology(config.from_regions(["east", "west"]))
    assert Topology.from_dict(json.loads(json.dumps(topo.to_dict()))) == topo


def test_the_largest_region_keeps_clear_of_its_dns_server():
    dep = config.from_regions(["east"])
    dep = dep.model_copy(update={"regions": [dep.regions[0].model_copy(update={"hosts": 50})]})
    topo = lab_topology(dep)
    addresses = [h.address for h in topo.regions[0].hosts] + [topo.regions[0].vip]
    assert topo.dns.name_servers[0].address not in addresses
    assert len(set(addresses)) == len(addresses)


def test_inventory_groups_and_role_variables():
    topo = lab_topology(GOOD)
    inv = render_inventory(topo, GOOD)["all"]
    children = inv["children"]
    assert set(children) == {"lb", "app", "db", "backup", "region_east", "region_west"}
    assert sorted(children["region_east"]["hosts"]) == [
        "hd-demo-east-app1", "hd-demo-east-app2", "hd-demo-east-backup", "hd-demo-east-db1",
        "hd-demo-east-db2", "hd-demo-east-db3", "hd-demo-east-lb1", "hd-demo-east-lb2"]
    # every database host archives to every region's repository, in region order; each
    # backup host knows its own repository number and every database host
    db = children["db"]["hosts"]["hd-demo-west-db2"]
    assert [r["name"] for r in db["pgbackrest_repos"]] == ["hd-demo-east-backup",
                                                           "hd-demo-west-backup"]
    assert db["postgresql_archive"] and db["pgbackrest_stanza"] == "hd-demo"
    west_backup = children["backup"]["hosts"]["hd-demo-west-backup"]
    assert west_backup["pgbackrest_repo_index"] == 2
    assert len(west_backup["pgbackrest_db_hosts"]) == 6
    lb1 = children["lb"]["hosts"]["hd-demo-east-lb1"]
    lb2 = children["lb"]["hosts"]["hd-demo-east-lb2"]
    assert lb1["keepalived_vip"] == "10.91.1.10" and lb1["keepalived_priority"] > lb2[
        "keepalived_priority"]
    # each region's load balancers balance only over that region's app hosts
    assert [b["address"] for b in lb1["haproxy_backends"]] == ["10.91.1.21", "10.91.1.22"]
    west_lb = children["lb"]["hosts"]["hd-demo-west-lb1"]
    assert [b["address"] for b in west_lb["haproxy_backends"]] == ["10.91.2.21", "10.91.2.22"]
    app = children["app"]["hosts"]["hd-demo-west-app2"]
    assert app["app_region"] == "west" and app["app_port"] == 8080
    assert app["shared_storage_type"] == "volume"


def test_every_inventory_variable_is_declared_by_a_role():
    """The renderer and the roles' argument specs must agree on the contract."""
    from hadeploy import paths

    declared = set()
    for spec in paths.roles_dir().glob("*/meta/argument_specs.yml"):
        data = yaml.safe_load(spec.read_text())
        for entry in data["argument_specs"].values():
            declared |= set(entry.get("options", {}))
    inv = render_inventory(lab_topology(GOOD), GOOD)["all"]
    used = set()
    for group in ("lb", "app", "db", "backup"):
        assert inv["children"][group]["hosts"], group
        for hostvars in inv["children"][group]["hosts"].values():
            used |= {k for k in hostvars if not k.startswith("hadeploy_")}
    assert used - declared == set()


def test_inventory_is_deterministic():
    topo = lab_topology(GOOD)
    from hadeploy.topology import inventory_text

    assert inventory_text(topo, GOOD) == inventory_text(topo, GOOD)
    json.loads(inventory_text(topo, GOOD))


def test_region_fingerprints_are_independent_without_a_data_tier():
    def stateless(names: list[str]) -> config.Deployment:
        dep = config.from_regions(names)
        return config.parse({**dep.model_dump(mode="json"), "data": {"enabled": False}})

    dep2, dep3 = stateless(["east", "west"]), stateless(["east", "west", "north"])
    fp2 = configure.region_fingerprints(lab_topology(dep2), dep2, "site.yml")
    # A new region brings its own DNS server, which every load balancer's lease agent must
    # ask (the majority changes): that, and nothing else, reaches the other regions.
    inv2 = render_inventory(lab_topology(dep2), dep2)["all"]["children"]
    inv3 = render_inventory(lab_topology(dep3), dep3)["all"]["children"]
    for group in ("lb", "app"):
        for host, before in inv2[group]["hosts"].items():
            after = inv3[group]["hosts"][host]
            changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
            assert changed == ({"haproxy_lease_servers"} if group == "lb" else set()), host
    assert len(inv3["lb"]["hosts"]["hd-demo-east-lb1"]["haproxy_lease_servers"]) == 3
    bigger = config.parse({**dep2.model_dump(mode="json"),
                           "regions": [{**dep2.regions[0].model_dump(mode="json"), "hosts": 3},
                                       dep2.regions[1].model_dump(mode="json")]})
    fpb = configure.region_fingerprints(lab_topology(bigger), bigger, "site.yml")
    assert fpb["east"] != fp2["east"] and fpb["west"] == fp2["west"]


def test_a_new_region_reconfigures_the_others_only_for_replication():
    """With a data tier, a new region needs a slot and replication access on the others'
    database clusters, and its backup repository is one more archive target: only their
    database hosts' variables change."""
    dep2 = config.from_regions(["east", "west"])
    dep3 = config.from_regions(["east", "west", "north"])
    inv2 = render_inventory(lab_topology(dep2), dep2)["all"]["children"]
    inv3 = render_inventory(lab_topology(dep3), dep3)["all"]["children"]
    for name, hostvars in inv2["lb"]["hosts"].items():  # the lease agents ask north's server
        changed = {k for k in hostvars if inv3["lb"]["hosts"][name][k] != hostvars[k]}
        assert changed == {"haproxy_lease_servers"}, name
    # the last region's files now go to the new region (the next one, wrapping)
    for name, hostvars in inv2["app"]["hosts"].items():
        changed = {k for k in hostvars if inv3["app"]["hosts"][name][k] != hostvars[k]}
        assert changed == ({"restic_repo_host"} if name == "hd-demo-west-app1" else set())
    assert inv3["app"]["hosts"]["hd-demo-west-app1"]["restic_repo_host"]["name"] == \
        "hd-demo-north-backup"
    east2, east3 = inv2["db"]["hosts"]["hd-demo-east-db1"], inv3["db"]["hosts"][
        "hd-demo-east-db1"]
    changed = {k for k in east3 if east3[k] != east2.get(k)}
    assert changed == {"postgresql_slots", "postgresql_replication_clients",
                       "postgresql_backup_clients", "pgbackrest_repos", "pgbackrest_clients"}
    assert east3["postgresql_slots"] == ["standby_west", "standby_north"]


def test_a_failover_changes_no_configuration_fingerprint():
    """Which region's database takes writes is bootstrap-only: 'up' after a failover does
    not re-run Ansible for it (the failover itself moved the role)."""
    dep = config.from_regions(["east", "west"])
    before = configure.region_fingerprints(lab_topology(dep), dep, "site.yml")
    after = configure.region_fingerprints(lab_topology(dep, data_primary="west"), dep,
                                          "site.yml")
    assert before == after


def test_topology_round_trips_through_json_with_flags():
    """topology.json (what 'up' saved) is what status/failover operate on for aws."""
    from hadeploy.topology import Topology

    dep = config.from_regions(["east", "west"])
    topo = lab_topology(dep, fenced=frozenset({"east"}))
    again = Topology.from_dict(json.loads(json.dumps(topo.to_dict())))
    assert again == topo
    flagged = again.with_flags(promoted=frozenset({"west"}))
    assert not flagged.region("east").fenced and flagged.region("west").promoted
    assert flagged.region("west").hosts == topo.region("west").hosts


def test_hosts_are_listed_in_roll_order_the_serving_region_last():
    """The rolling play takes hosts in inventory order: regions that do not serve first."""
    from dataclasses import replace

    from hadeploy.topology import inventory_text

    dep = config.from_regions(["east", "west", "north"])
    topo = lab_topology(dep).with_flags(data_primary="east")
    assert [r.name for r in topo.roll_order()] == ["west", "north", "east"]
    inv = json.loads(inventory_text(topo, dep))["all"]["children"]
    assert [h.split("-")[2] for h in inv["app"]["hosts"]] == ["west"] * 2 + ["north"] * 2 \
        + ["east"] * 2
    assert list(inv["app"]["hosts"]["hd-demo-west-app1"]) == sorted(
        inv["app"]["hosts"]["hd-demo-west-app1"]), "variables stay sorted"
    assert inv["app"]["hosts"]["hd-demo-west-app1"]["app_load_balancers"] == [
        "hd-demo-west-lb1", "hd-demo-west-lb2"]
    # after a failover the new primary region serves: it rolls last
    assert [r.name for r in topo.with_flags(data_primary="north").roll_order()] == [
        "east", "west", "north"]
    # a stateless deployment: the primary region, unless fenced; a promoted one serves
    stateless = replace(topo, regions=tuple(replace(r, data=None, data_primary=False)
                                            for r in topo.regions))
    assert [r.name for r in stateless.roll_order()][-1] == "east"
    moved = stateless.with_flags(fenced=frozenset({"east"}), promoted=frozenset({"west"}))
    assert [r.name for r in moved.roll_order()] == ["east", "north", "west"]


def test_load_balancer_settings_reach_haproxy_and_keepalived():
    dep = config.parse({**GOOD.model_dump(mode="json"),
                        "lb": {"check_interval": 1.5, "timeout_server": 30,
                               "vrrp_advert_interval": 1}})
    lb = render_inventory(lab_topology(dep), dep)["all"]["children"]["lb"]["hosts"][
        "hd-demo-east-lb1"]
    assert (lb["haproxy_check_inter"], lb["haproxy_timeout_server"],
            lb["keepalived_advert_int"]) == ("1500ms", "30000ms", 1.0)
    default = render_inventory(lab_topology(GOOD), GOOD)["all"]["children"]["lb"]["hosts"][
        "hd-demo-east-lb1"]
    assert (default["haproxy_check_inter"], default["keepalived_advert_int"]) == ("500ms", 0.2)
