"""Where an aws deployment keeps its Pulumi state and stack configuration (GitHub issue #11,
"State for pipelines"), without the Pulumi CLI: the backend each configuration resolves
to and the workspace options built from it; the rule for the stack configuration files;
two successive runs (separate processes, as far as hadeploy can tell) that find the same
stack configuration and the same application secret, stored only as a Pulumi secret and
never on a command line; a plan that creates no stack and writes no file; and the errors
for a backend or secrets setting that would lose state or leave secrets unprotected.

Pulumi is faked at the boundary the driver uses: ``pulumi.automation``'s entry points
(``create_or_select_stack``, ``select_stack``, ``LocalWorkspace``) and the one CLI command
hadeploy runs itself (``pulumi config set --secret`` with the value on stdin). The fake
keeps each stack's configuration where the CLI would: in the ``Pulumi.<stack>.yaml`` of
the project directory's ``stackConfigDir``.
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from hadeploy import config
from hadeploy.config import AwsSettings, Deployment
from hadeploy.errors import ExitCode, HadeployError
from hadeploy.infra.settings import load_stack_config
from hadeploy.state import StateDir
from hadeploy.targets.aws.driver import (
    DEFAULT_BACKEND,
    PLAN_SECRET,
    SECRET_KEY,
    PulumiState,
    PulumiWorkspace,
    Stacks,
    StackSpec,
    check_state_env,
    pulumi_state,
    stack_file_secret,
)
from tests.conftest import run_cli
from tests.infra_mock_program import deployment

PASSPHRASE = {"PULUMI_CONFIG_PASSPHRASE": "correct horse battery staple"}


def load(n: int = 2, **aws: Any) -> tuple[Deployment, AwsSettings]:
    return load_stack_config(deployment(n, "warm", **aws))


# --- a fake Pulumi, at the driver's boundary ----------------------------------------------

def _encrypt(value: str) -> str:
    return "v1:" + base64.b64encode(value[::-1].encode()).decode()


def _decrypt(secure: str) -> str:
    return base64.b64decode(secure.removeprefix("v1:")).decode()[::-1]


def _config_file(work_dir: str | Path, stack: str) -> Path:
    """Where the CLI keeps a stack's configuration: next to Pulumi.yaml, or in its
    stackConfigDir."""
    project = yaml.safe_load((Path(work_dir) / "Pulumi.yaml").read_text())
    return Path(work_dir) / project.get("stackConfigDir", ".") / f"Pulumi.{stack}.yaml"


def _load(path: Path) -> dict[str, Any]:
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


class FakeStack:
    def __init__(self, fake: FakePulumi, name: str, project: str, program: Any,
                 opts: Any) -> None:
        self.fake, self.name, self.project, self.program, self.opts = fake, name, project, \
            program, opts
        self.workspace = SimpleNamespace(work_dir=opts.work_dir, env_vars=opts.env_vars,
                                         pulumi_command=SimpleNamespace(command="pulumi"),
                                         remove_stack=self._remove)

    @property
    def _key(self) -> tuple[str, str, str]:
        return (self.opts.env_vars["PULUMI_BACKEND_URL"], self.project, self.name)

    def _file(self) -> Path:
        return _config_file(self.opts.work_dir, self.name)

    def outputs(self) -> dict[str, Any]:
        return {k: SimpleNamespace(value=v) for k, v in self.fake.stacks[self._key].items()}

    def get_config(self, key: str) -> Any:
        self.fake.config_reads.append((self.name, key))
        entry = _load(self._file())["config"][key]
        return SimpleNamespace(value=_decrypt(entry["secure"]), secret=True)

    def preview(self, **_kw: Any) -> Any:
        self.fake.previews.append(self.name)
        self.program()
        return SimpleNamespace(change_summary={"same": 9})

    def up(self, **_kw: Any) -> Any:
        self.fake.ups.append(self.name)
        self.program()
        region = self.name.removeprefix("demo-")
        outputs: dict[str, Any] = {"zone_id": "ZONE", "name_servers": ["ns-1.example."]}
        if self.project == "hadeploy-regional":
            outputs = {"alb_dns_name": f"alb-{region}.elb.amazonaws.com", "alb_zone_id": "Z",
                       "efs_id": f"fs-{region}", "efs_dns_name": f"fs-{region}.efs",
                       "aws_region": region, "vpc_cidr": "10.100.0.0/16"}
        self.fake.stacks[self._key] = outputs
        return SimpleNamespace(outputs={k: SimpleNamespace(value=v) for k, v in outputs.items()})

    def destroy(self, **_kw: Any) -> None:
        self.fake.stacks.pop(self._key)

    def _remove(self, name: str) -> None:
        self._file().unlink(missing_ok=True)


class FakePulumi:
    """``pulumi.automation`` and ``pulumi config set --secret`` as far as hadeploy uses them.
    Stacks live in ``stacks[(backend url, project, stack)]``; creating one writes its
    encryption settings into its configuration file, as ``pulumi stack init`` does."""

    def __init__(self) -> None:
        self.stacks: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.created: list[str] = []
        self.ups: list[str] = []
        self.previews: list[str] = []
        self.config_reads: list[tuple[str, str]] = []
        self.secret_sets: list[dict[str, Any]] = []
        self.work_dirs: list[str] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakePulumi:
        from pulumi import automation as auto

        real_run = subprocess.run

        def run(cmd: Any, *args: Any, **kw: Any) -> Any:
            if not (isinstance(cmd, list) and cmd and cmd[0] == "pulumi"):
                return real_run(cmd, *args, **kw)
            return self.config_set(cmd, **kw)

        monkeypatch.setattr(auto, "create_or_select_stack", self.create_or_select)
        monkeypatch.setattr(auto, "select_stack", self.select)
        monkeypatch.setattr(auto, "LocalWorkspace", lambda **_kw: SimpleNamespace(
            who_am_i=lambda: SimpleNamespace(user="tester")))
        monkeypatch.setattr(subprocess, "run", run)
        return self

    def _exists(self, opts: Any, project: str, stack: str) -> bool:
        return (opts.env_vars["PULUMI_BACKEND_URL"], project, stack) in self.stacks

    def select(self, *, stack_name: str, project_name: str, program: Any, opts: Any) -> Any:
        from pulumi import automation as auto
        from pulumi.automation._cmd import CommandResult

        self.work_dirs.append(opts.work_dir)
        if not self._exists(opts, project_name, stack_name):
            raise auto.StackNotFoundError(CommandResult(
                "", f"error: no stack named '{stack_name}' found", 255))
        return FakeStack(self, stack_name, project_name, program, opts)

    def create_or_select(self, *, stack_name: str, project_name: str, program: Any,
                         opts: Any) -> Any:
        self.work_dirs.append(opts.work_dir)
        if not self._exists(opts, project_name, stack_name):
            self.created.append(stack_name)
            self.stacks[(opts.env_vars["PULUMI_BACKEND_URL"], project_name, stack_name)] = {}
            path = _config_file(opts.work_dir, stack_name)
            doc = _load(path)
            if opts.secrets_provider == "passphrase":
                doc["encryptionsalt"] = "v1:ZmFrZSBzYWx0:v1:ZmFrZQ=="
            else:
                doc.update(secretsprovider=opts.secrets_provider, encryptedkey="ZmFrZQ==")
            path.write_text(yaml.safe_dump(doc))
        return FakeStack(self, stack_name, project_name, program, opts)

    def config_set(self, cmd: list[str], *, input: str, cwd: str, env: dict[str, str],
                   **_kw: Any) -> Any:
        assert cmd[1:6] == ["--non-interactive", "config", "set", "--secret", "--stack"]
        stack, key = cmd[6], cmd[7]
        self.secret_sets.append({"stack": stack, "key": key, "argv": list(cmd),
                                 "backend": env["PULUMI_BACKEND_URL"], "value": input})
        path = _config_file(cwd, stack)
        doc = _load(path)
        doc.setdefault("config", {})[key] = {"secure": _encrypt(input)}
        path.write_text(yaml.safe_dump(doc))
        return subprocess.CompletedProcess(cmd, 0, "", "")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakePulumi:
    import hadeploy.infra.global_dns as global_dns
    import hadeploy.infra.regional as regional

    pulumi = FakePulumi().install(monkeypatch)
    pulumi.programs = []  # type: ignore[attr-defined]
    monkeypatch.setattr(regional, "regional_program",
                        lambda _dep, region, _settings, inputs=None:
                        pulumi.programs.append((region, inputs.app_secret)))  # type: ignore[attr-defined]
    monkeypatch.setattr(global_dns, "global_program", lambda *_a, **_kw: None)
    return pulumi


def make_stacks(tmp_path: Path, settings: AwsSettings, dep: Deployment, *,
                env: dict[str, str] | None = None, legacy: str = "",
                log: list[str] | None = None) -> Stacks:
    """What one hadeploy process builds: a fresh driver and workspace over the same
    directories (repo/stacks, state) as any earlier run."""
    full = {"PATH": "/usr/bin", **PASSPHRASE, "HADEPLOY_STACKS_DIR": str(tmp_path / "repo" /
                                                                         "stacks"),
            **(env or {})}
    state = pulumi_state(settings, full, state_root=tmp_path / "state", cwd=tmp_path / "repo")
    workspace = PulumiWorkspace(settings, full, lambda _m: None, state=state)
    return Stacks(dep, settings=settings, workspace=workspace, env=full,
                  credentials=lambda: True, log=(log if log is not None else []).append,
                  app_secret=lambda: legacy, state_root=tmp_path / "state",
                  cwd=tmp_path / "repo")


def stack_files(tmp_path: Path) -> dict[str, str]:
    root = tmp_path / "repo" / "stacks"
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*.yaml"))}


# --- the backend and the workspace options ------------------------------------------------

@pytest.mark.parametrize(("backend_url", "secrets_provider", "provider", "source"), [
    ("s3://acme-state/hadeploy?region=eu-west-1", None, "passphrase", "aws.backend_url"),
    ("s3://acme-state", "awskms://alias/hadeploy?region=us-east-1",
     "awskms://alias/hadeploy?region=us-east-1", "aws.backend_url"),
    ("file:///var/lib/hadeploy/pulumi", "passphrase", "passphrase", "aws.backend_url"),
    ("file://~/hadeploy-state", None, "passphrase", "aws.backend_url"),
    ("gs://acme-state", None, "passphrase", "aws.backend_url"),
    ("https://api.pulumi.com", None, None, "aws.backend_url"),
    ("https://api.pulumi.com", "passphrase", "passphrase", "aws.backend_url"),
    (None, None, "passphrase", DEFAULT_BACKEND),
])
def test_workspace_options_for_each_backend(tmp_path, backend_url, secrets_provider, provider,
                                            source):
    _, settings = load(backend_url=backend_url, secrets_provider=secrets_provider)
    env = {"PULUMI_BACKEND_URL": "", "PATH": "/usr/bin"}
    state = pulumi_state(settings, env, state_root=tmp_path / "state", cwd=tmp_path)
    want = backend_url or f"file://{tmp_path / 'state'}"
    assert (state.backend_url, state.source, state.secrets_provider) == (want, source, provider)
    opts = PulumiWorkspace(settings, env, state=state)._options("/tmp/project")
    # The backend goes to every Pulumi command as PULUMI_BACKEND_URL, which outranks a
    # Pulumi.yaml backend and 'pulumi login'; the project file is the temporary one.
    assert opts.env_vars["PULUMI_BACKEND_URL"] == want and opts.env_vars["PATH"] == "/usr/bin"
    assert opts.secrets_provider == provider and opts.work_dir == "/tmp/project"
    assert opts.project_settings is None
    assert want in state.describe() and source in state.describe()
    if backend_url and backend_url.startswith("file://"):
        assert state.local_dir == Path(backend_url.removeprefix("file://")).expanduser()


def test_the_default_backend_is_the_state_root_and_never_pulumi_login(tmp_path):
    _, settings = load()
    state = pulumi_state(settings, {}, state_root=tmp_path / "state", cwd=tmp_path)
    assert state.backend_url == f"file://{tmp_path / 'state'}"
    assert state.local_dir == tmp_path / "state"  # Pulumi keeps .pulumi/ in it
    # PULUMI_BACKEND_URL (Pulumi's own variable) is used when aws.backend_url is null ...
    state = pulumi_state(settings, {"PULUMI_BACKEND_URL": "s3://ci-state"},
                         state_root=tmp_path, cwd=tmp_path)
    assert (state.backend_url, state.source) == ("s3://ci-state", "PULUMI_BACKEND_URL")
    # ... and must agree with it when both are set.
    _, explicit = load(backend_url="s3://acme-state")
    same = pulumi_state(explicit, {"PULUMI_BACKEND_URL": "s3://acme-state"},
                        state_root=tmp_path, cwd=tmp_path)
    assert same.backend_url == "s3://acme-state"
    with pytest.raises(HadeployError) as err:
        pulumi_state(explicit, {"PULUMI_BACKEND_URL": "s3://other"}, state_root=tmp_path,
                     cwd=tmp_path)
    assert err.value.code is ExitCode.BAD_INPUT
    assert "aws.backend_url" in err.value.message and "PULUMI_BACKEND_URL" in err.value.message


@pytest.mark.parametrize("url", ["ftp://state", "file://relative/dir", "http://pulumi.local",
                                 "s3://Bad_Bucket"])
def test_a_bad_pulumi_backend_url_in_the_environment(tmp_path, url):
    _, settings = load()
    with pytest.raises(HadeployError) as err:
        pulumi_state(settings, {"PULUMI_BACKEND_URL": url}, state_root=tmp_path, cwd=tmp_path)
    assert err.value.code is ExitCode.BAD_INPUT
    assert "PULUMI_BACKEND_URL" in err.value.message and err.value.hint


# --- the stack configuration files ------------------------------------------------------------

def test_the_config_file_rule(tmp_path):
    _, settings = load()
    state = pulumi_state(settings, {}, state_root=tmp_path, cwd=tmp_path / "checkout")
    assert state.stacks_dir == tmp_path / "checkout" / "stacks"  # ./stacks by default
    assert state.config_file("hadeploy-regional", "demo-us-east-1") == (
        tmp_path / "checkout/stacks/regional/Pulumi.demo-us-east-1.yaml")
    assert state.config_file("hadeploy-global", "demo-global") == (
        tmp_path / "checkout/stacks/global/Pulumi.demo-global.yaml")
    for given, expected in (("/srv/gitops/stacks", Path("/srv/gitops/stacks")),
                            ("infra/stacks", tmp_path / "checkout/infra/stacks")):
        state = pulumi_state(settings, {"HADEPLOY_STACKS_DIR": given}, state_root=tmp_path,
                             cwd=tmp_path / "checkout")
        assert state.config_dir("hadeploy-regional") == expected / "regional"


def test_the_temporary_project_points_pulumi_at_the_config_dir(tmp_path):
    _, settings = load()
    state = pulumi_state(settings, {"HADEPLOY_STACKS_DIR": str(tmp_path / "stacks")},
                         state_root=tmp_path, cwd=tmp_path)
    ws = PulumiWorkspace(settings, {}, state=state)
    config_dir = tmp_path / "stacks" / "regional"
    config_dir.mkdir(parents=True)
    with ws._project("hadeploy-regional", "demo-us-east-1", link=True) as work_dir:
        project = yaml.safe_load((Path(work_dir) / "Pulumi.yaml").read_text())
        assert project["name"] == "hadeploy-regional" and project["stackConfigDir"] == "config"
        assert _config_file(work_dir, "demo-us-east-1").resolve() == (
            config_dir / "Pulumi.demo-us-east-1.yaml").resolve()
    assert not Path(work_dir).exists() and config_dir.is_dir()  # removed, the link only
    # A read links the directory only when the stack's file is there: it writes nothing.
    with ws._project("hadeploy-regional", "demo-eu-west-1", link=False) as work_dir:
        assert "stackConfigDir" not in yaml.safe_load((Path(work_dir) / "Pulumi.yaml")
                                                      .read_text())
    (config_dir / "Pulumi.demo-eu-west-1.yaml").write_text("encryptionsalt: v1:x\n")
    with ws._project("hadeploy-regional", "demo-eu-west-1", link=False) as work_dir:
        assert yaml.safe_load((Path(work_dir) / "Pulumi.yaml").read_text())[
            "stackConfigDir"] == "config"


def test_two_runs_share_the_stack_config_and_the_secret(tmp_path, fake):
    dep, settings = load(2)
    logged: list[str] = []
    first = make_stacks(tmp_path, settings, dep, log=logged).up()
    assert first.failed == {}
    assert sorted(set(fake.created)) == ["demo-eu-west-1", "demo-global", "demo-us-east-1"]
    files = stack_files(tmp_path)
    assert set(files) == {"regional/Pulumi.demo-us-east-1.yaml",
                          "regional/Pulumi.demo-eu-west-1.yaml", "global/Pulumi.demo-global.yaml"}
    secret = _decrypt(yaml.safe_load(files["regional/Pulumi.demo-us-east-1.yaml"])
                      ["config"][SECRET_KEY]["secure"])
    assert len(secret) >= 32 and secret != PLAN_SECRET
    # Stored once per regional stack (not again by the replication pass), encrypted, from
    # stdin: never in a file in plain text, never on a command line.
    assert sorted(s["stack"] for s in fake.secret_sets) == ["demo-eu-west-1", "demo-us-east-1"]
    assert all(s["value"] == secret and secret not in " ".join(s["argv"])
               for s in fake.secret_sets)
    assert not any(secret in text for text in files.values())
    assert {s["backend"] for s in fake.secret_sets} == {f"file://{tmp_path / 'state'}"}
    assert "encryptionsalt" in yaml.safe_load(files["global/Pulumi.demo-global.yaml"])
    assert {s for _r, s in fake.programs} == {secret}
    assert any("generated the application secret" in line for line in logged)
    assert not any(secret in line for line in logged)
    # Stack projects are temporary directories, gone after each operation.
    assert fake.work_dirs and not any(Path(w).exists() for w in fake.work_dirs)

    # A second run (another process: a fresh driver and workspace) finds the stacks, reads
    # the secret from the primary's configuration and changes no file.
    for seen in (fake.created, fake.secret_sets, fake.programs, logged):
        seen.clear()
    second = make_stacks(tmp_path, settings, dep, log=logged).up()
    assert second.failed == {} and fake.created == [] and fake.secret_sets == []
    assert {s for _r, s in fake.programs} == {secret}
    assert ("demo-us-east-1", SECRET_KEY) in fake.config_reads
    assert stack_files(tmp_path) == files
    assert not any("generated" in line for line in logged)

    # HADEPLOY_APP_SECRET rotates it: stored in every regional stack, then kept.
    make_stacks(tmp_path, settings, dep, env={"HADEPLOY_APP_SECRET": "rotated-0123456789"}).up()
    assert sorted(s["stack"] for s in fake.secret_sets) == ["demo-eu-west-1", "demo-us-east-1"]
    fake.programs.clear()
    make_stacks(tmp_path, settings, dep).up()
    assert {s for _r, s in fake.programs} == {"rotated-0123456789"}


def test_lost_stack_configuration_is_refused_not_a_new_secret(tmp_path, fake):
    """The stacks exist but their configuration files were not kept (a pipeline that did
    not commit them): a new secret would silently replace the one the hosts use."""
    import shutil

    dep, settings = load(2)
    make_stacks(tmp_path, settings, dep).up()
    shutil.rmtree(tmp_path / "repo" / "stacks")
    fake.secret_sets.clear()
    fake.ups.clear()
    with pytest.raises(HadeployError) as err:
        make_stacks(tmp_path, settings, dep).up()
    assert err.value.code is ExitCode.BAD_INPUT and fake.ups == []
    assert "hadeploy:appSecret" in err.value.message and "HADEPLOY_APP_SECRET" in (
        err.value.hint or "")
    make_stacks(tmp_path, settings, dep, env={"HADEPLOY_APP_SECRET": "the-hosts-secret"}).up()
    assert {s["value"] for s in fake.secret_sets} == {"the-hosts-secret"}


def test_the_secret_of_earlier_versions_is_taken_over(tmp_path, fake):
    """<state>/secrets/app-secret (written by earlier versions) is used when no stack
    configuration holds a secret, and stored there; the configuration wins afterwards."""
    dep, settings = load(2)
    make_stacks(tmp_path, settings, dep, legacy="kept-from-before-0123").up()
    assert {s["value"] for s in fake.secret_sets} == {"kept-from-before-0123"}
    fake.programs.clear()
    make_stacks(tmp_path, settings, dep, legacy="some-other-value").up()
    assert {s for _r, s in fake.programs} == {"kept-from-before-0123"}


def test_plan_never_creates_a_stack_nor_writes_a_file(tmp_path, fake):
    from hadeploy import targets
    from hadeploy.targets.aws.target import AwsTarget

    dep, settings = load(2)
    state = StateDir(tmp_path / "state" / dep.name)

    def plan() -> Any:
        return targets.plan(AwsTarget(dep, state, stacks=make_stacks(tmp_path, settings, dep)))

    result = plan()  # nothing exists yet
    assert [c.action for c in result.changes] == ["create"] * 3
    assert fake.created == [] and fake.previews == [] and fake.secret_sets == []
    assert not (tmp_path / "repo").exists() and not (tmp_path / "state").exists()
    assert any(n.startswith("Pulumi state: file://") for n in result.notes)

    make_stacks(tmp_path, settings, dep).up()
    files = stack_files(tmp_path)
    fake.created.clear()
    fake.programs.clear()
    secret = {s["value"] for s in fake.secret_sets}
    result = plan()
    assert sorted(fake.previews) == ["demo-eu-west-1", "demo-global", "demo-us-east-1"]
    assert fake.created == [] and stack_files(tmp_path) == files
    assert result.changes == []  # previewed with the stacks' own secret: no false change
    assert {s for _r, s in fake.programs} == secret


def test_a_plan_before_any_up_previews_with_a_stand_in(tmp_path, fake):
    dep, settings = load(2)
    stacks = make_stacks(tmp_path, settings, dep)
    assert stacks.app_secret() == PLAN_SECRET
    assert stacks.regional_spec("us-east-1", None).secrets() != {}  # an update generates
    assert stacks.app_secret() != PLAN_SECRET


# --- what would lose state or leave secrets unprotected ------------------------------------

def _state(tmp_path: Path, **aws: Any) -> PulumiState:
    _, settings = load(**aws)
    return pulumi_state(settings, {}, state_root=tmp_path / ".hadeploy", cwd=tmp_path)


def test_a_pipeline_must_not_keep_state_in_its_checkout(tmp_path):
    with pytest.raises(HadeployError) as err:
        check_state_env(_state(tmp_path), {"CI": "true", **PASSPHRASE}, tmp_path)
    assert err.value.code is ExitCode.BAD_INPUT
    assert "aws.backend_url" in (err.value.hint or "") and "CI" in err.value.message
    # Explicit state is fine: a backend URL, or a state root the runner keeps.
    check_state_env(_state(tmp_path, backend_url="s3://acme-state"), {"CI": "1", **PASSPHRASE},
                    tmp_path)
    _, settings = load()
    kept = pulumi_state(settings, {}, state_root=Path("/var/lib/hadeploy"), cwd=tmp_path)
    check_state_env(kept, {"CI": "true", **PASSPHRASE}, tmp_path)
    check_state_env(_state(tmp_path), {"CI": "false", **PASSPHRASE}, tmp_path)  # not CI


@pytest.mark.parametrize("env", [{}, {"PULUMI_CONFIG_PASSPHRASE": ""},
                                 {"PULUMI_CONFIG_PASSPHRASE_FILE": "/nonexistent/passphrase"}])
def test_a_passphrase_provider_needs_a_passphrase(tmp_path, env):
    with pytest.raises(HadeployError) as err:
        check_state_env(_state(tmp_path, backend_url="s3://acme-state"), env, tmp_path)
    assert err.value.code is ExitCode.ENVIRONMENT
    assert "PULUMI_CONFIG_PASSPHRASE" in err.value.message
    assert "awskms://" in (err.value.hint or "")


def test_a_kms_key_or_pulumi_cloud_needs_no_passphrase(tmp_path):
    check_state_env(_state(tmp_path, backend_url="s3://acme-state",
                           secrets_provider="awskms://alias/hadeploy?region=us-east-1"), {},
                    tmp_path)
    check_state_env(_state(tmp_path, backend_url="https://api.pulumi.com"), {}, tmp_path)
    passphrase_file = tmp_path / "passphrase"
    passphrase_file.write_text("correct horse\n")
    check_state_env(_state(tmp_path, backend_url="s3://acme-state"),
                    {"PULUMI_CONFIG_PASSPHRASE_FILE": str(passphrase_file)}, tmp_path)


def test_a_plain_text_secret_in_a_stack_file_is_refused(tmp_path):
    path = tmp_path / "Pulumi.demo-us-east-1.yaml"
    path.write_text(f"config:\n  {SECRET_KEY}: hunter22\n")
    with pytest.raises(HadeployError) as err:
        stack_file_secret(path, SECRET_KEY)
    assert err.value.code is ExitCode.BAD_INPUT
    assert str(path) in err.value.message and "plain text" in err.value.message
    assert "hunter22" not in err.value.message + (err.value.hint or "")
    path.write_text(f"config:\n  {SECRET_KEY}:\n    secure: v1:abc\n")
    assert stack_file_secret(path, SECRET_KEY) == "v1:abc"
    assert stack_file_secret(tmp_path / "missing.yaml", SECRET_KEY) is None


def test_a_stack_keeps_the_secrets_provider_it_was_created_with(tmp_path, fake):
    dep, settings = load(2)
    make_stacks(tmp_path, settings, dep).up()  # passphrase
    _, kms = load(2, secrets_provider="awskms://alias/hadeploy?region=us-east-1")
    fake.ups.clear()
    with pytest.raises(HadeployError) as err:  # before any update: one message and a fix
        make_stacks(tmp_path, kms, dep).up()
    assert err.value.code is ExitCode.BAD_INPUT and fake.ups == []
    assert "change-secrets-provider" in (err.value.hint or "")
    assert "passphrase" in err.value.message and "awskms://" in err.value.message


# --- configuration: exit 2, the field named, no traceback -----------------------------------

@pytest.mark.parametrize(("field", "value", "words"), [
    ("backend_url", "ftp://state", "not a Pulumi state backend URL"),
    ("backend_url", "file://relative/dir", "relative path"),
    ("backend_url", "http://pulumi.internal", "plain-http"),
    ("backend_url", "s3://Bad_Bucket/x", "not a valid s3:// backend URL"),
    ("backend_url", "s3://", "not a valid s3:// backend URL"),
    ("secrets_provider", "awskms://", "not an AWS KMS key URL"),
    ("secrets_provider", "vault", "not a Pulumi secrets provider"),
])
def test_bad_state_settings_are_config_errors(tmp_path, field, value, words):
    raw = deployment(2)
    raw["aws"][field] = value
    path = tmp_path / "hadeploy.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(config.ConfigError) as err:
        config.load(path)
    assert f"aws.{field}" in err.value.message and words in err.value.message
    r = run_cli("plan", "--config", str(path), cwd=tmp_path,
                env={"HADEPLOY_STATE_DIR": str(tmp_path / "state"), "PATH": "/usr/bin:/bin"},
                timeout=120)
    assert r.rc == 2, r.err
    assert f"aws.{field}" in r.err and "fix:" in r.err and "Traceback" not in r.err


def test_a_bad_pulumi_backend_url_stops_the_cli_before_anything(tmp_path):
    path = tmp_path / "hadeploy.yaml"
    path.write_text(yaml.safe_dump(deployment(2)))
    r = run_cli("plan", "--config", str(path), cwd=tmp_path,
                env={"HADEPLOY_STATE_DIR": str(tmp_path / "state"), "PATH": "/usr/bin:/bin",
                     "PULUMI_BACKEND_URL": "file://relative"}, timeout=120)
    assert r.rc == 2 and "PULUMI_BACKEND_URL" in r.err and "Traceback" not in r.err, r.err


@pytest.mark.parametrize("value", [
    "s3://acme-state", "s3://acme.state-1/teams/hadeploy/?region=eu-west-1&awssdk=v2",
    "file:///var/lib/hadeploy/pulumi", "file://~", "file://~/hadeploy-state",
    "gs://acme-state/prefix", "azblob://state", "https://api.pulumi.com",
    "https://pulumi.internal:8443/"])
def test_good_backend_urls(value):
    raw = deployment(2)
    raw["aws"]["backend_url"] = value
    assert config.parse(raw).aws.backend_url == value  # type: ignore[union-attr]


@pytest.mark.parametrize("value", [
    "passphrase", "default", "awskms://alias/hadeploy",
    "awskms://alias/team/hadeploy?region=eu-west-1",
    "awskms://1234abcd-12ab-34cd-56ef-1234567890ab?region=us-east-1",
    "awskms:///arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"])
def test_good_secrets_providers(value):
    raw = deployment(2)
    raw["aws"]["secrets_provider"] = value
    assert config.parse(raw).aws.secrets_provider == value  # type: ignore[union-attr]


def test_a_stack_spec_without_secrets_stores_none(tmp_path, fake):
    """The global stack has no secret configuration; an update of it stores nothing."""
    _, settings = load(2)
    state = pulumi_state(settings, {"HADEPLOY_STACKS_DIR": str(tmp_path / "stacks")},
                         state_root=tmp_path / "state", cwd=tmp_path)
    ws = PulumiWorkspace(settings, dict(PASSPHRASE), state=state)
    ws.up(StackSpec("hadeploy-global", "demo-global", lambda: None, {}))
    assert fake.created == ["demo-global"] and fake.secret_sets == []
    assert (tmp_path / "stacks/global/Pulumi.demo-global.yaml").is_file()
    assert ws.config_secret(StackSpec("hadeploy-global", "demo-global", lambda: None, {}),
                            SECRET_KEY) is None
