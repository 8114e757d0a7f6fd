"""The desired state: one validated ``Deployment`` model loaded from ``hadeploy.yaml``.

Everything downstream receives a ``Deployment``; nothing re-reads the file. Validation
errors are turned into one message per problem naming the field (``regions[1].name``),
what is wrong and how to fix it (:func:`load`, :class:`ConfigError`).
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hadeploy.errors import ExitCode, HadeployError

DEFAULT_CONFIG = "hadeploy.yaml"
NAME_RE = r"^[a-z][a-z0-9-]{0,22}[a-z0-9]$|^[a-z]$"
DNS_LABEL_RE = r"^(?!-)[a-z0-9-]{1,63}(?<!-)$"
LAB_SUBNET_BASE = "10.91"


class Target(StrEnum):
    LAB = "lab"
    AWS = "aws"


class Role(StrEnum):
    PRIMARY = "primary"
    SECONDARY = "secondary"


class Standby(StrEnum):
    HOT = "hot"  # full size, serving health checks, takes traffic at once
    WARM = "warm"  # reduced size, running; scaled up before it takes traffic
    COLD = "cold"  # nothing running; started before it takes traffic


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


Name = Annotated[str, Field(pattern=NAME_RE)]


class DnsConfig(_Model):
    zone: str = "hadeploy.test"
    record: str = "app"
    ttl: Annotated[int, Field(ge=1, le=86400)] = 5
    provider: Literal["rfc2136", "route53"] | None = None  # default from the target

    @field_validator("zone")
    @classmethod
    def _zone(cls, v: str) -> str:
        v = v.rstrip(".").lower()
        labels = v.split(".")
        if len(labels) < 2 or not all(re.match(DNS_LABEL_RE, label) for label in labels):
            raise ValueError(f"'{v}' is not a DNS zone name such as 'example.com' or "
                             "'hadeploy.test'")
        return v

    @field_validator("record")
    @classmethod
    def _record(cls, v: str) -> str:
        v = v.lower()
        if not re.match(DNS_LABEL_RE, v):
            raise ValueError(f"'{v}' is not a single DNS label such as 'app' or 'www'")
        return v

    @property
    def fqdn(self) -> str:
        return f"{self.record}.{self.zone}."


class RegionConfig(_Model):
    name: Name
    role: Role = Role.SECONDARY
    hosts: Annotated[int, Field(ge=1, le=50)] = 2
    standby: Standby = Standby.HOT
    lab_subnet: str | None = None
    aws_region: str | None = None

    @field_validator("lab_subnet")
    @classmethod
    def _subnet(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            net = ipaddress.IPv4Network(v, strict=True)
        except ValueError as exc:
            raise ValueError(f"'{v}' is not an IPv4 network in CIDR form such as "
                             f"'{LAB_SUBNET_BASE}.1.0/24' ({exc})") from None
        if net.prefixlen > 26:
            raise ValueError(f"'{v}' is too small: a region needs at least a /26 "
                             "(gateway, VIP, 2 load balancers and the app hosts)")
        if not net.is_private:
            raise ValueError(f"'{v}' is not a private network; the lab uses private "
                             "address space only (e.g. 10.91.1.0/24)")
        return str(net)

    @field_validator("aws_region")
    @classmethod
    def _aws_region(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^[a-z]{2}(-[a-z]+)+-\d$", v):
            raise ValueError(f"'{v}' is not an AWS region name such as 'us-east-1'")
        return v


class AppConfig(_Model):
    port: Annotated[int, Field(ge=1024, le=65535)] = 8080
    health_path: str = "/healthz"
    version: str = "1.0.0"

    @field_validator("health_path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not re.match(r"^/[A-Za-z0-9._~/-]*$", v):
            raise ValueError(f"'{v}' is not an absolute URL path such as '/healthz'")
        return v


class FailoverPolicy(_Model):
    probe_interval: Annotated[float, Field(gt=0, le=300)] = 1.0
    probe_timeout: Annotated[float, Field(gt=0, le=60)] = 0.8
    failure_threshold: Annotated[int, Field(ge=1, le=100)] = 3
    quorum: Annotated[int, Field(ge=1, le=20)] = 2
    hold_down: Annotated[float, Field(ge=0, le=86400)] = 30.0
    min_interval: Annotated[float, Field(ge=0, le=86400)] = 300.0
    auto_failback: bool = False


class LabConfig(_Model):
    control_subnet: str = f"{LAB_SUBNET_BASE}.0.0/24"

    @field_validator("control_subnet")
    @classmethod
    def _subnet(cls, v: str) -> str:
        return RegionConfig._subnet(v) or v


# --- the aws: section (target aws only) -------------------------------------------------

# Debian 12 (the lab's distribution, so the same roles apply), published by Debian in SSM.
DEBIAN_AMI = "resolve:ssm:/aws/service/debian/release/bookworm/latest/amd64"
# Route 53 health checkers live in these regions only.
ROUTE53_CHECKER_REGIONS = frozenset({
    "us-east-1", "us-west-1", "us-west-2", "eu-west-1", "ap-southeast-1", "ap-southeast-2",
    "ap-northeast-1", "sa-east-1"})
CERT_ARN_RE = r"^arn:aws[a-z-]*:acm:([a-z0-9-]+):(\d{12}):certificate/[A-Za-z0-9-]+$"
VAULT_ARN_RE = r"^arn:aws[a-z-]*:backup:([a-z0-9-]+):(\d{12}):backup-vault:[A-Za-z0-9_.-]+$"


class AwsBackup(_Model):
    schedule: str = "cron(0 3 * * ? *)"  # AWS Backup cron, UTC
    retention_days: Annotated[int, Field(ge=1, le=36500)] = 35
    copy_retention_days: Annotated[int | None, Field(ge=1, le=36500)] = None
    # Per region: copy into this vault instead of the peer region's hadeploy vault.
    copy_vault_arns: dict[str, str] = Field(default_factory=dict)

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str) -> str:
        if not re.match(r"^(cron|rate)\(.+\)$", v):
            raise ValueError(f"'{v}' is not an AWS schedule expression such as "
                             "'cron(0 3 * * ? *)'")
        return v

    @field_validator("copy_vault_arns")
    @classmethod
    def _vaults(cls, v: dict[str, str]) -> dict[str, str]:
        for region, arn in v.items():
            if not re.match(VAULT_ARN_RE, arn):
                raise ValueError(f"copy_vault_arns.{region}: '{arn}' is not a backup vault "
                                 "ARN (arn:aws:backup:<region>:<account>:backup-vault:<name>)")
        return v


class AwsSettings(_Model):
    """What only the AWS target needs. Region keys are hadeploy region names."""

    account_id: Annotated[str, Field(pattern=r"^\d{12}$")]
    certificate_arns: dict[str, str] = Field(default_factory=dict)
    instance_type: str = "t3.small"
    ami: str = DEBIAN_AMI
    root_device: str = "/dev/xvda"
    az_count: Annotated[int, Field(ge=2, le=6)] = 3
    vpc_cidrs: dict[str, str] = Field(default_factory=dict)
    mode: Literal["active-passive", "active-weighted"] = "active-passive"
    zone_id: Annotated[str | None, Field(pattern=r"^Z[A-Z0-9]{1,31}$")] = None
    peers: dict[str, str] = Field(default_factory=dict)
    backup: AwsBackup = AwsBackup()
    health_checker_regions: Annotated[list[str], Field(min_length=3)] = Field(
        default_factory=lambda: ["us-east-1", "eu-west-1", "ap-southeast-1"])
    efs_replication: bool = True
    s3_replication: bool = True
    bucket_prefix: str | None = None
    deletion_protection: bool = False
    pulumi_org: str = "organization"  # self-managed backends; your org on Pulumi Cloud
    backend_url: str | None = None  # e.g. s3://my-state-bucket; default: `pulumi login`
    secrets_provider: str | None = None  # e.g. awskms://alias/hadeploy; default: backend's
    parallel: Annotated[int, Field(ge=1, le=20)] = 4  # regional stacks updated at once

    @field_validator("certificate_arns")
    @classmethod
    def _certs(cls, v: dict[str, str]) -> dict[str, str]:
        for region, arn in v.items():
            if not re.match(CERT_ARN_RE, arn):
                raise ValueError(f"certificate_arns.{region}: '{arn}' is not an ACM "
                                 "certificate ARN (arn:aws:acm:<region>:<account>:"
                                 "certificate/<id>)")
        return v

    @field_validator("vpc_cidrs")
    @classmethod
    def _cidrs(cls, v: dict[str, str]) -> dict[str, str]:
        for region, cidr in v.items():
            net = ipaddress.IPv4Network(cidr, strict=True)
            if not 16 <= net.prefixlen <= 20 or not net.is_private:
                raise ValueError(f"vpc_cidrs.{region}: '{cidr}' must be a private /16../20")
        return v

    @field_validator("health_checker_regions")
    @classmethod
    def _checkers(cls, v: list[str]) -> list[str]:
        bad = [r for r in v if r not in ROUTE53_CHECKER_REGIONS]
        if bad:
            raise ValueError(f"{', '.join(bad)}: not Route 53 health checker regions "
                             f"(use {', '.join(sorted(ROUTE53_CHECKER_REGIONS))})")
        return v


class Deployment(_Model):
    name: Name = "demo"
    target: Target = Target.LAB
    dns: DnsConfig = DnsConfig()
    regions: Annotated[list[RegionConfig], Field(min_length=1, max_length=20)]
    app: AppConfig = AppConfig()
    failover: FailoverPolicy = FailoverPolicy()
    lab: LabConfig = LabConfig()
    aws: AwsSettings | None = None  # target aws only (account, certificates, backups, ...)

    @model_validator(mode="after")
    def _check(self) -> Deployment:
        names = [r.name for r in self.regions]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise _FieldProblem("regions", f"region name(s) {', '.join(dupes)} appear more "
                                "than once", "give every region a unique name")
        primaries = [r.name for r in self.regions if r.role is Role.PRIMARY]
        if len(primaries) != 1:
            what = "no region has" if not primaries else f"{len(primaries)} regions have"
            raise _FieldProblem("regions", f"{what} role: primary ({', '.join(primaries)})",
                                "mark exactly one region 'role: primary', the others "
                                "'role: secondary'")
        primary = next(r for r in self.regions if r.role is Role.PRIMARY)
        if primary.standby is not Standby.HOT:
            idx = self.regions.index(primary)
            raise _FieldProblem(f"regions[{idx}].standby",
                                f"the primary region '{primary.name}' is '{primary.standby}'",
                                "the primary serves traffic, so it must be 'hot'; warm and "
                                "cold are for secondary regions")
        if self.target is Target.LAB:
            self._check_lab_subnets()
        if self.failover.quorum > len(self.regions):
            raise _FieldProblem("failover.quorum",
                                f"quorum {self.failover.quorum} exceeds the number of vantage "
                                f"points ({len(self.regions)}: the CLI's host and one prober "
                                "in every other region)",
                                f"set failover.quorum to at most {len(self.regions)}")
        if self.failover.probe_timeout >= self.failover.probe_interval * 2:
            raise _FieldProblem("failover.probe_timeout",
                                "probe_timeout must be shorter than two probe intervals",
                                "lower failover.probe_timeout or raise probe_interval")
        return self

    def _check_lab_subnets(self) -> None:
        control = ipaddress.IPv4Network(self.lab.control_subnet)
        seen: list[tuple[str, ipaddress.IPv4Network]] = [("lab.control_subnet", control)]
        for i, region in enumerate(self.regions):
            if region.lab_subnet is None:
                raise _FieldProblem(f"regions[{i}].lab_subnet", "is missing",
                                    f"give region '{region.name}' a lab subnet such as "
                                    f"'{LAB_SUBNET_BASE}.{i + 1}.0/24'")
            net = ipaddress.IPv4Network(region.lab_subnet)
            usable = net.num_addresses - 21 - 3
            if region.hosts > usable:
                raise _FieldProblem(f"regions[{i}].hosts",
                                    f"{region.hosts} app hosts do not fit in {net}",
                                    f"use a larger subnet or at most {usable} hosts")
            for where, other in seen:
                if net.overlaps(other):
                    raise _FieldProblem(f"regions[{i}].lab_subnet",
                                        f"{net} overlaps {other} of {where}",
                                        "give every region (and the control network) its "
                                        "own, non-overlapping subnet")
            seen.append((f"region '{region.name}'", net))

    @property
    def primary(self) -> RegionConfig:
        return next(r for r in self.regions if r.role is Role.PRIMARY)

    def region(self, name: str) -> RegionConfig:
        for r in self.regions:
            if r.name == name:
                return r
        raise HadeployError(f"unknown region '{name}'",
                            hint=f"known regions: {', '.join(r.name for r in self.regions)}",
                            code=ExitCode.BAD_INPUT)


class _FieldProblem(ValueError):
    """A cross-field problem that knows which field it is about and how to fix it."""

    def __init__(self, loc: str, message: str, hint: str) -> None:
        super().__init__(message)
        self.loc, self.message, self.hint = loc, message, hint


class ConfigError(HadeployError):
    def __init__(self, source: str, problems: list[tuple[str, str, str]]) -> None:
        lines = [f"{source}: {loc}: {msg}" if loc else f"{source}: {msg}"
                 for loc, msg, _ in problems]
        hints = [h for _, _, h in problems if h]
        super().__init__("\n".join(lines), hint="\n".join(dict.fromkeys(hints)) or None,
                         code=ExitCode.BAD_INPUT)
        self.problems = problems


_FIX_BY_TYPE = {
    "missing": "add it",
    "int_parsing": "use a whole number",
    "int_type": "use a whole number",
    "float_parsing": "use a number",
    "bool_parsing": "use true or false",
    "string_type": "use a string",
    "list_type": "use a YAML list",
    "model_type": "use a mapping of keys to values",
    "model_attributes_type": "use a mapping of keys to values",
    "too_short": "add at least one entry",
}


def _loc(parts: tuple[int | str, ...]) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif p.startswith(("function-", "tagged-union")):
            continue
        else:
            out += f".{p}" if out else p
    return out


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model class that holds the field at ``loc`` (for 'did you mean' hints)."""
    model: type[BaseModel] = Deployment
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        inner = next((a for a in (ann, *args) if isinstance(a, type)
                      and issubclass(a, BaseModel)), None)
        if inner is None:
            for a in args:
                for b in getattr(a, "__args__", ()):
                    if isinstance(b, type) and issubclass(b, BaseModel):
                        inner = b
        if inner is None:
            return None
        model = inner
    return model


def _problems(exc: ValidationError) -> list[tuple[str, str, str]]:
    problems: list[tuple[str, str, str]] = []
    for err in exc.errors():
        ctx_error = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_error, _FieldProblem):
            problems.append((ctx_error.loc, ctx_error.message, ctx_error.hint))
            continue
        loc = err["loc"]
        where = _loc(loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            model = _model_at(loc)
            known = sorted(model.model_fields) if model else []
            key = str(loc[-1])
            close = difflib.get_close_matches(key, known, n=1)
            hint = (f"did you mean '{close[0]}'? " if close else "") + (
                f"allowed keys here: {', '.join(known)}" if known else "remove it")
            problems.append((where, f"unknown key '{key}'", hint))
            continue
        msg = err["msg"].removeprefix("Value error, ")
        if kind == "string_pattern_mismatch" and where.endswith("name"):
            msg = f"{err['input']!r} is not a valid name"
            hint = ("use 1-24 characters: lowercase letters, digits and '-', starting with a "
                    "letter and not ending with '-' (it becomes part of container, network "
                    "and stack names)")
        elif kind == "enum":
            hint = f"use one of: {err.get('ctx', {}).get('expected', '')}"
            msg = f"{err['input']!r} is not allowed"
        elif kind.startswith(("greater_than", "less_than")):
            hint = "change the value to fit the bound"
            msg = f"{err['input']!r}: {msg.lower()}"
        else:
            hint = _FIX_BY_TYPE.get(kind, "see 'hadeploy init' for a commented example")
        problems.append((where, msg, hint))
    return problems


def parse(data: Any, source: str = DEFAULT_CONFIG) -> Deployment:
    if not isinstance(data, dict):
        raise ConfigError(source, [("", "the file must hold a YAML mapping (keys such as "
                                    "'name:' and 'regions:')",
                                    "start from 'hadeploy init'")])
    try:
        return Deployment.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, _problems(exc)) from None


def load(path: Path) -> Deployment:
    import yaml

    if not path.exists():
        raise HadeployError(f"config file {path} does not exist",
                            hint="create one with 'hadeploy init', or pass --config PATH",
                            code=ExitCode.BAD_INPUT)
    if path.is_dir():
        raise HadeployError(f"config path {path} is a directory, not a file",
                            hint="pass the YAML file itself, e.g. --config hadeploy.yaml",
                            code=ExitCode.BAD_INPUT)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HadeployError(f"cannot read {path}: {exc}", hint="check the file's permissions "
                            "and that it is UTF-8 text", code=ExitCode.BAD_INPUT) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        problem = getattr(exc, "problem", None) or str(exc)
        raise HadeployError(f"{path}: invalid YAML at {where}: {problem}",
                            hint="fix the YAML syntax (indentation, ':' after keys, quotes)",
                            code=ExitCode.BAD_INPUT) from None
    return parse(data, str(path))


def default_subnet(index: int) -> str:
    return f"{LAB_SUBNET_BASE}.{index}.0/24"


def from_regions(region_names: list[str], *, name: str = "demo",
                 known_subnets: dict[str, str] | None = None) -> Deployment:
    """Lab defaults for ``hadeploy up --regions a,b`` without a config file.

    The first region is the primary. ``known_subnets`` (from an existing deployment's
    state) keeps the subnet of every region that already exists, so adding a region never
    renumbers the others.
    """
    known = dict(known_subnets or {})
    used = {ipaddress.IPv4Network(s) for s in known.values()}
    regions: list[dict[str, Any]] = []
    next_index = 1
    for i, region in enumerate(region_names):
        subnet = known.get(region)
        if subnet is None:
            while ipaddress.IPv4Network(default_subnet(next_index)) in used:
                next_index += 1
            subnet = default_subnet(next_index)
            used.add(ipaddress.IPv4Network(subnet))
        regions.append({"name": region, "role": "primary" if i == 0 else "secondary",
                        "lab_subnet": subnet})
    quorum = min(2, len(regions))
    return parse({"name": name, "regions": regions, "failover": {"quorum": quorum}},
                 "--regions")


def parse_region_list(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise HadeployError("--regions is empty", hint="pass a comma-separated list such as "
                            "--regions east,west", code=ExitCode.BAD_INPUT)
    return names


EXAMPLE = """\
# hadeploy.yaml — the desired state of one highly available deployment.
# Validate it with `hadeploy plan`; build it with `hadeploy up`.

name: demo                 # 1-24 chars [a-z0-9-]; prefixes containers, networks, stacks
target: lab                # lab (podman on this machine) | aws (Pulumi; see README)

dns:
  zone: hadeploy.test      # the zone hadeploy's DNS server (lab) or Route 53 (aws) serves
  record: app              # clients use app.<zone>; it points at the active region
  ttl: 5                   # seconds; low so that a failover reaches clients fast

regions:                   # one independent stack per region; exactly one primary
  - name: east
    role: primary          # the primary must be hot
    hosts: 2               # app hosts (behind 2 load balancers sharing a virtual IP)
    standby: hot
    lab_subnet: 10.91.1.0/24
    # aws_region: us-east-1
  - name: west
    role: secondary
    hosts: 2
    standby: hot           # hot: full size | warm: reduced, scaled up on failover
                           # cold: nothing running, started on failover
    lab_subnet: 10.91.2.0/24
    # aws_region: eu-west-1

app:
  port: 8080
  health_path: /healthz    # 503 when the shared storage is not writable
  version: 1.0.0

failover:
  probe_interval: 1.0      # seconds between probes of each region's endpoint
  probe_timeout: 0.8
  failure_threshold: 3     # consecutive failures before a vantage point calls it down
  quorum: 2                # vantage points that must agree (CLI host + other regions)
  hold_down: 30            # seconds of success before a region counts as back
  min_interval: 300        # seconds between two automatic failovers (no flapping)
  auto_failback: false

lab:
  control_subnet: 10.91.0.0/24   # the lab's DNS server lives here
"""
