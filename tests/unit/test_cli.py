"""The CLI as users and scripts see it: help, exit codes, clear errors without tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

COMMANDS = ["init", "plan", "up", "status", "down", "failover", "failback", "watch", "drill",
            "reconcile"]


def test_root_help(cli):
    r = cli("--help")
    assert r.rc == 0
    for cmd in COMMANDS:
        assert cmd in r.out


@pytest.mark.parametrize("cmd", COMMANDS)
def test_command_help(cli, cmd):
    r = cli(cmd, "--help")
    assert r.rc == 0, r.err
    assert "Example" in r.out
    assert "Traceback" not in r.out + r.err


def _no_traceback(r):
    assert "Traceback" not in r.out + r.err, r.err


@pytest.mark.parametrize("content,needle", [
    ("name: demo\nregions: [\n", "invalid YAML"),
    ("name: demo\nregions:\n  - name: east\n    role: primary\n    lab_subnet: 10.91.1.0/24\n"
     "    flavour: big\n", "unknown key 'flavour'"),
    ("regions:\n  - name: east\n    role: secondary\n    lab_subnet: 10.91.1.0/24\n",
     "role: primary"),
    ("- just\n- a list\n", "YAML mapping"),
])
def test_bad_config_file_exit_2(cli, tmp_path: Path, content, needle):
    cfg = tmp_path / "hadeploy.yaml"
    cfg.write_text(content)
    for cmd in ("plan", "up", "status"):
        r = cli(cmd, "--config", str(cfg))
        assert r.rc == 2, (cmd, r.rc, r.err)
        assert needle in r.err
        assert "fix:" in r.err
        _no_traceback(r)


def test_missing_config_file(cli, tmp_path: Path):
    r = cli("up", "--config", str(tmp_path / "missing.yaml"))
    assert r.rc == 2
    assert "does not exist" in r.err and "hadeploy init" in r.err
    _no_traceback(r)


def test_bad_region_names_on_command_line(cli):
    r = cli("plan", "--regions", "east,East")
    assert r.rc == 2 and "regions[1].name" in r.err
    r = cli("plan", "--regions", "east,east")
    assert r.rc == 2 and "more than once" in r.err
    r = cli("plan", "--regions", ",")
    assert r.rc == 2 and "empty" in r.err


def test_up_without_anything_to_deploy(cli):
    r = cli("up")
    assert r.rc == 2 and "--regions" in r.err
    _no_traceback(r)


def test_status_of_unknown_deployment(cli):
    r = cli("status")
    assert r.rc == 2 and "no deployment found" in r.err
    _no_traceback(r)


def test_regions_subset_must_keep_primary(cli, tmp_path: Path):
    cli("init")
    r = cli("plan", "--regions", "west")
    assert r.rc == 2 and "primary region 'east'" in r.err
    r = cli("plan", "--regions", "east,south")
    assert r.rc == 2 and "south" in r.err


AWS_SECTION = """
aws:
  account_id: "123456789012"
  certificate_arns:
    east: arn:aws:acm:us-east-1:123456789012:certificate/abc-1
    west: arn:aws:acm:eu-west-1:123456789012:certificate/abc-2
"""


def _aws_config(cli, tmp_path: Path, with_section: bool) -> Path:
    cfg = tmp_path / "hadeploy.yaml"
    cli("init", str(cfg), "--force")
    text = cfg.read_text().replace("target: lab", "target: aws")
    text = text.replace("# aws_region: us-east-1", "aws_region: us-east-1")
    text = text.replace("# aws_region: eu-west-1", "aws_region: eu-west-1")
    text = text.replace("  enabled: true", "  enabled: false")  # no aws database tier yet
    cfg.write_text(text + (AWS_SECTION if with_section else ""))
    return cfg


def test_aws_target_takes_a_database_tier_or_none(cli, tmp_path: Path):
    """Either way the config is valid: plan gets as far as the missing pulumi CLI (exit 6)."""
    cfg = _aws_config(cli, tmp_path, with_section=True)
    for enabled in ("true", "false"):
        cfg.write_text(cfg.read_text().replace("  enabled: false", f"  enabled: {enabled}")
                       .replace("  enabled: true", f"  enabled: {enabled}"))
        r = cli("plan", "--config", str(cfg), env={"PATH": "/usr/bin:/bin"})
        assert r.rc == 6 and "pulumi" in r.err.lower(), r.err
        _no_traceback(r)


def test_aws_target_needs_its_aws_section(cli, tmp_path: Path):
    cfg = _aws_config(cli, tmp_path, with_section=False)
    r = cli("up", "--config", str(cfg), "--yes")
    assert r.rc == 2, r.err
    assert "aws" in r.err and "fix:" in r.err
    _no_traceback(r)


def test_aws_target_without_pulumi_cli_is_a_clear_environment_error(cli, tmp_path: Path):
    cfg = _aws_config(cli, tmp_path, with_section=True)
    for cmd in (["up", "--yes"], ["plan"], ["down", "--yes"]):
        r = cli(*cmd, "--config", str(cfg), env={"PATH": "/usr/bin:/bin"})
        assert r.rc == 6, (cmd, r.rc, r.err)
        assert "pulumi" in r.err.lower() and "fix:" in r.err
        _no_traceback(r)


def test_status_and_failover_on_aws_need_a_built_deployment(cli, tmp_path: Path):
    """status/failover/failback/watch operate an aws deployment from what 'up' saved
    (topology.json, aws.json): never built → exit 2 naming the fix, not a traceback."""
    cfg = _aws_config(cli, tmp_path, with_section=True)
    for cmd in (["status"], ["failover", "--to", "west", "--yes"], ["failback", "--yes"],
                ["watch", "--max-seconds", "1"]):
        r = cli(*cmd, "--config", str(cfg))
        assert r.rc == 2, (cmd, r.rc, r.err)
        assert "has not been built" in r.err and "hadeploy up" in r.err
        _no_traceback(r)
    # deployment.json alone (an 'up' that failed before the stacks were built): still 2,
    # and the message names the missing file.
    from hadeploy import config

    state = tmp_path / "state" / "demo"
    state.mkdir(parents=True)
    (state / "deployment.json").write_text(config.load(cfg).model_dump_json())
    for cmd in (["status"], ["failover", "--to", "west", "--yes"]):
        r = cli(*cmd, "--config", str(cfg))
        assert r.rc == 2, (cmd, r.rc, r.err)
        assert "has not been built on aws" in r.err and "json" in r.err
        _no_traceback(r)


def test_init_writes_valid_example_and_refuses_overwrite(cli, tmp_path: Path):
    r = cli("init")
    assert r.rc == 0 and (tmp_path / "hadeploy.yaml").exists()
    r = cli("init")
    assert r.rc == 2 and "--force" in r.err
    assert cli("init", "--force").rc == 0


def test_down_refuses_without_yes_when_not_a_terminal(cli, tmp_path: Path):
    # A deployment must exist for down to have something to confirm.
    state = tmp_path / "state" / "demo"
    state.mkdir(parents=True)
    from hadeploy import config

    (state / "deployment.json").write_text(config.from_regions(["east"]).model_dump_json())
    r = cli("down", input_="")
    assert r.rc == 3 and "--yes" in r.err
    _no_traceback(r)


def test_unknown_option_is_usage_error(cli):
    r = cli("up", "--regoins", "east")
    assert r.rc == 2
    _no_traceback(r)


def test_help_does_not_import_heavy_modules():
    code = ("import sys; from hadeploy.cli import app; "
            "heavy = [m for m in ('ansible_runner', 'ansible', 'pulumi', 'pulumi_aws', 'boto3',"
            " 'pydantic', 'dns', 'yaml') if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == ""


def test_failover_path_imports_no_provisioning_engine():
    code = ("import sys, pathlib; import hadeploy.failover, hadeploy.watch, hadeploy.quorum, "
            "hadeploy.commands.failover, hadeploy.commands.watch, hadeploy.targets.lab.ops, "
            "hadeploy.dns.rfc2136, hadeploy.status, hadeploy.dns.route53, "
            "hadeploy.targets.aws.ops, hadeploy.targets.aws.target; "
            "from hadeploy import config, targets; from hadeploy.state import StateDir; "
            "targets.for_deployment(config.from_regions(['a', 'b']), "
            "StateDir(pathlib.Path('/nonexistent/demo'))).runtime(); "
            "bad = [m for m in ('ansible_runner', 'ansible', 'pulumi', 'pulumi_aws', 'boto3') "
            "if m in sys.modules]; print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == ""


def test_failover_of_unbuilt_deployment(cli, tmp_path: Path):
    cli("init")
    r = cli("failover", "--to", "west", "--yes")
    assert r.rc == 2 and "has not been built" in r.err
    _no_traceback(r)


@pytest.mark.parametrize("cmd", ["up", "failover", "watch", "plan", "status", "down"])
def test_help_paragraphs_are_not_broken_mid_sentence(cli, cmd):
    """Docstrings are hard-wrapped in the source; the help renderer wraps again to the
    terminal, so each paragraph must reach it as one line. At 1000 columns every sentence of
    the docstring's second paragraph therefore sits on one line of the help."""
    import inspect

    from hadeploy.cli import COMMANDS

    doc = inspect.cleandoc(COMMANDS[cmd].__doc__ or "")
    second = " ".join(doc.split("\n\n")[1].split())
    r = cli(cmd, "--help", env={"COLUMNS": "1000", "TERM": "dumb"})
    lines = [" ".join(line.strip(" │").split()) for line in r.out.splitlines()]
    assert any(second in line for line in lines), (second, r.out)


def test_backup_and_restore_on_aws_say_where_its_backups_are(cli, tmp_path: Path):
    """pgBackRest commands run on the lab's hosts; on aws (built or not) they say what
    AWS offers instead."""
    cfg = _aws_config(cli, tmp_path, with_section=True)
    for cmd, words in ((["backup", "list"], "AWS Backup"),
                       (["restore", "--time", "2026-11-28T10:00:00Z", "--yes"], "Aurora")):
        r = cli(*cmd, "--config", str(cfg))
        assert r.rc == 7, (cmd, r.rc, r.err)
        assert words in r.err and "docs/aws.md" in r.err, r.err
        _no_traceback(r)


def test_drills_on_aws_are_not_available_yet(cli, tmp_path: Path):
    cfg = _aws_config(cli, tmp_path, with_section=True)
    r = cli("drill", "app-host", "--yes", "--config", str(cfg))
    assert r.rc == 7 and "Fault Injection" in r.err, r.err
    _no_traceback(r)
