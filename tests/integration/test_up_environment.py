"""When ``up`` hits an environment error on the lab, it names the failing doctor check and
its fix (not a generic "check podman info"), and says what it had already created.

The container init is hidden with a containers.conf override (``init_path`` that does not
exist), which is what a fresh machine without catatonit looks like to podman. The
deployment ("hdenv", subnets 10.96.x) is removed at the end, also when the test fails.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hadeploy.targets.lab.podman import containers_conf
from tests.conftest import run_cli

pytestmark = [pytest.mark.lab]

NAME = "hdenv"
CONFIG = f"""\
name: {NAME}
regions:
  - {{name: east, role: primary, hosts: 1, lab_subnet: 10.96.1.0/24}}
lab: {{control_subnet: 10.96.0.0/24}}
failover: {{quorum: 1}}
"""


@pytest.fixture
def work(tmp_path: Path):
    from hadeploy.targets.lab.target import deployments_present, destroy

    destroy(NAME)
    (tmp_path / "hadeploy.yaml").write_text(CONFIG)
    yield tmp_path
    destroy(NAME)
    assert NAME not in deployments_present()


def test_up_names_the_failing_doctor_check_and_what_it_already_did(work: Path):
    conf = work / "containers.conf"
    conf.write_text(containers_conf().read_text().replace(
        "[containers]", '[containers]\ninit_path = "/nonexistent/catatonit"', 1))
    env = {"HADEPLOY_STATE_DIR": str(work / "state"), "HADEPLOY_CONTAINERS_CONF": str(conf)}
    r = run_cli("up", cwd=work, env=env, timeout=300)
    assert r.rc == 6, r.err
    assert "Traceback" not in r.err
    assert "doctor check 'container-init' fails" in r.err, r.err
    assert "catatonit" in r.err and "fix:" in r.err
    assert "check 'podman info'" not in r.err  # the generic hint is replaced
    assert f"network hd-{NAME}-ctl" in r.err and "'hadeploy down' removes" in r.err
    failed = [line for line in (work / "state" / NAME / "audit.jsonl").read_text().splitlines()
              if '"result": "failed"' in line]
    assert failed, "a failed up is audited"
    down = run_cli("down", "--yes", cwd=work, env={"HADEPLOY_STATE_DIR": str(work / "state")})
    assert down.rc == 0, down.err
