"""The desired state: one validated ``Deployment`` model loaded from ``hadeploy.yaml``.

Everything downstream receives a ``Deployment``; nothing re-reads the file. Validation
errors are turned into one message per problem naming the field (``regions[1].name``),
what is wrong and how to fix it (:func:`load`, :class:`ConfigError`), quoting at most ~60
characters of any value and listing at most :data:`MAX_PROBLEMS` problems.

Every string that reaches a file, a command line or a resource name is checked with
``re.fullmatch`` and ASCII-only classes (a ``$`` anchor accepts a trailing newline, a
Unicode ``\\d`` Arabic-Indic digits). :func:`load` reads the file through
:mod:`hadeploy.yamlload` (duplicate keys, alias bombs, deep nesting, FIFOs and oversized
files are refused).
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from hadeploy.errors import ExitCode, HadeployError
from hadeploy.yamlload import clip

DEFAULT_CONFIG = "hadeploy.yaml"
# Every pattern below is matched with re.fullmatch(..., re.ASCII) (see _full); the \A..\Z
# anchors also keep a plain re.match() exact: '$' alone would accept a trailing newline.
NAME_RE = r"\A[a-z](?:[a-z0-9-]{0,22}[a-z0-9])?\Z"
DNS_LABEL_RE = r"\A(?!-)[a-z0-9-]{1,63}(?<!-)\Z"
AWS_REGION_RE = r"\A[a-z]{2}(?:-[a-z]{1,16}){1,3}-[0-9]{1,2}\Z"
VERSION_RE = r"\A[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}\Z"
HEALTH_PATH_RE = r"\A/[A-Za-z0-9._~/-]{0,254}\Z"
LAB_SUBNET_BASE = "10.91"
RESERVED_REGION_NAMES = frozenset({"ctl"})  # hd-<deployment>-ctl is the control network
MAX_PROBLEMS = 20  # a ConfigError lists at most this many problems ("and N more")

NAME_HINT = ("use 1-24 characters: lowercase letters, digits and '-', starting with a letter "
             "and not ending with '-' (it becomes part of container, network and stack names)")


def _full(pattern: str, value: object) -> bool:
    """``value`` is a string that matches ``pattern`` entirely (ASCII classes only)."""
    return isinstance(value, str) and re.fullmatch(pattern, value, re.ASCII) is not None


def _q(value: object) -> str:
    """A value as error messages quote it: ``repr``, at most about 60 characters."""
    return clip(value)


class _Invalid(ValueError):
    """A field value is wrong; carries the fix (shown as the hint)."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint


def _checked(pattern: str, what: str, hint: str) -> Callable[[str], str]:
    def check(v: str) -> str:
        if not _full(pattern, v):
            raise _Invalid(f"{_q(v)} is not {what}", hint)
        return v
    return check


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
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False,
                              allow_inf_nan=False)


def _name_problem(value: object, what: str) -> tuple[str, str] | None:
    if not _full(NAME_RE, value):
        return f"{_q(value)} is not a valid {what} name", NAME_HINT
    if what == "region" and value in RESERVED_REGION_NAMES:
        return (f"{_q(value)} is reserved: the lab's control network is "
                f"hd-<deployment>-{value}", "give the region another name")
    return None


def validate_name(value: str, what: str) -> str:
    """``value`` if it is a valid ``what`` name (``what``: "deployment" or "region"; a
    region also may not take a reserved name such as 'ctl'), else a HadeployError (exit 2)
    naming the rule. For names given on the command line (``-d NAME``)."""
    problem = _name_problem(value, "region" if what.startswith("region") else what)
    if problem:
        message, hint = problem
        raise HadeployError(message, hint=hint, code=ExitCode.BAD_INPUT)
    return value


def _deployment_name(v: str) -> str:
    problem = _name_problem(v, "deployment")
    if problem:
        raise _Invalid(*problem)
    return v


def _region_name(v: str) -> str:
    problem = _name_problem(v, "region")
    if problem:
        raise _Invalid(*problem)
    return v


def _region_key(v: str) -> str:
    problem = _name_problem(v, "region")
    if problem:
        raise _Invalid(problem[0], "keys here are hadeploy region names (regions[].name)")
    return v


Name = Annotated[str, AfterValidator(_deployment_name)]
RegionName = Annotated[str, AfterValidator(_region_name)]
RegionKey = Annotated[str, AfterValidator(_region_key)]

_RFC1918 = tuple(ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12",
                                                    "192.168.0.0/16"))
_CIDR_RE = r"\A[0-9]{1,3}(?:\.[0-9]{1,3}){3}/[0-9]{1,2}\Z"


def _ipv4_network(v: str, example: str) -> ipaddress.IPv4Network:
    try:
        if not _full(_CIDR_RE, v):
            raise ValueError("expected a.b.c.d/n")
        return ipaddress.IPv4Network(v, strict=True)
    except ValueError as exc:
        raise _Invalid(f"{_q(v)} is not an IPv4 network in CIDR form ({exc})",
                       f"write the network address and prefix length, such as "
                       f"'{example}'") from None


def _rfc1918(net: ipaddress.IPv4Network) -> bool:
    return any(net.subnet_of(private) for private in _RFC1918)


def _lab_subnet(v: str) -> str:
    net = _ipv4_network(v, f"{LAB_SUBNET_BASE}.1.0/24")
    if net.prefixlen > 26:
        raise _Invalid(f"{v!r} is too small: a region needs at least a /26",
                       "the lab places a gateway, a prober, a VIP, 2 load balancers and "
                       "the app hosts in it: use a /26 or larger")
    if not _rfc1918(net):
        raise _Invalid(f"{v!r} is not an RFC 1918 private network",
                       "use 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16 address space "
                       f"(e.g. {LAB_SUBNET_BASE}.1.0/24)")
    return str(net)


class DnsConfig(_Model):
    zone: str = "hadeploy.test"
    record: str = "app"
    # 1 s on the lab: a TTL-honouring client is back within a second of the DNS change
    # (docs/benchmarks.md); on aws a missing ttl is 60 (see Deployment._aws_defaults).
    ttl: Annotated[int, Field(ge=1, le=86400)] = 1

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        # Saved deployments (deployment.json) still hold the removed 'provider: null'.
        if isinstance(data, dict) and "provider" in data and data["provider"] is None:
            data = {k: v for k, v in data.items() if k != "provider"}
        return data

    @field_validator("zone")
    @classmethod
    def _zone(cls, v: str) -> str:
        zone = v[:-1] if v.endswith(".") else v
        labels = zone.split(".")
        if (not zone.isascii() or len(labels) < 2
                or not all(_full(DNS_LABEL_RE, label.lower()) for label in labels)):
            raise _Invalid(f"{_q(v)} is not a DNS zone name such as 'example.com' or "
                           "'hadeploy.test'",
                           "use at least two dot-separated labels of 1-63 letters, digits "
                           "and '-' (not starting or ending with '-')")
        if len(zone) > 251:
            raise _Invalid(f"the zone name is {len(zone)} characters long",
                           "a DNS name has at most 253 characters: use a shorter zone")
        return zone.lower()

    @field_validator("record")
    @classmethod
    def _record(cls, v: str) -> str:
        if not v.isascii() or not _full(DNS_LABEL_RE, v.lower()):
            raise _Invalid(f"{_q(v)} is not a single DNS label such as 'app' or 'www'",
                           "use 1-63 letters, digits and '-' (no dots; not starting or "
                           "ending with '-')")
        return v.lower()

    @model_validator(mode="after")
    def _length(self) -> DnsConfig:
        name = f"{self.record}.{self.zone}"
        if len(name) > 253:
            raise _FieldProblem("dns.zone", f"the record name {self.record}.<zone> is "
                                f"{len(name)} characters long",
                                "a DNS name has at most 253 characters (63 per label): "
                                "use a shorter zone or record")
        return self

    @property
    def fqdn(self) -> str:
        return f"{self.record}.{self.zone}."


class RegionConfig(_Model):
    name: RegionName
    role: Role = Role.SECONDARY
    hosts: Annotated[int, Field(ge=1, le=50)] = 2
    standby: Standby = Standby.HOT
    lab_subnet: str | None = None
    aws_region: str | None = None

    @field_validator("lab_subnet")
    @classmethod
    def _subnet(cls, v: str | None) -> str | None:
        return None if v is None else _lab_subnet(v)

    @field_validator("aws_region")
    @classmethod
    def _aws_region(cls, v: str | None) -> str | None:
        if v is not None and not _full(AWS_REGION_RE, v):
            raise _Invalid(f"{_q(v)} is not an AWS region name such as 'us-east-1'",
                           "use the code of an AWS region (aws ec2 describe-regions)")
        return v


class AppConfig(_Model):
    port: Annotated[int, Field(ge=1024, le=65535)] = 8080
    health_path: Annotated[str, AfterValidator(_checked(
        HEALTH_PATH_RE, "an absolute URL path such as '/healthz'",
        "use '/' followed by at most 254 letters, digits and . _ ~ / - (no query, no spaces)"
    ))] = "/healthz"
    version: Annotated[str, AfterValidator(_checked(
        VERSION_RE, "a version such as '1.0.0' or '2.1.0-rc.1'",
        "use up to 64 letters, digits and . + _ -, starting with a letter or digit "
        "(quote it if YAML reads it as a number: version: \"1.0\")"))] = "1.0.0"


class FailoverPolicy(_Model):
    # Probes every 0.5 s, four failures in a row: detection in about 3 s, and a 1.2 s blink
    # (three failed probes at most) never moves traffic (docs/benchmarks.md).
    probe_interval: Annotated[float, Field(gt=0, le=300)] = 0.5
    probe_timeout: Annotated[float, Field(gt=0, le=60)] = 0.4
    failure_threshold: Annotated[int, Field(ge=1, le=100)] = 4
    quorum: Annotated[int, Field(ge=1, le=20)] = 2
    hold_down: Annotated[float, Field(ge=0, le=86400)] = 30.0
    min_interval: Annotated[float, Field(ge=0, le=86400)] = 300.0
    auto_failback: bool = False
    # Self-fencing (lab): a region's load balancers refuse writes once they have not been
    # able to confirm, for this many seconds, that the DNS writer record names their region
    # — so a region cut off from everyone stops taking writes by itself, and a failover
    # that cannot reach it waits this long before another region takes writes. 0: off.
    lease: Annotated[float, Field(ge=0, le=300)] = 5.0

    @field_validator("lease")
    @classmethod
    def _lease(cls, v: float) -> float:
        if 0 < v < 1:
            raise _Invalid(f"{v:g} s is too short for a lease (the agents check every "
                           "0.25 s; a DNS server's hiccup would fence the serving region)",
                           "use 0 (off) or at least 1; the default is 5")
        return v


# A systemd calendar expression (OnCalendar=), checked for its characters here; systemd
# itself checks the syntax when the timer is installed (systemd-analyze calendar).
CALENDAR_RE = r"\A[A-Za-z0-9*,:./~ -]{1,64}\Z"
DURATION_RE = r"\A([0-9]{1,6})(s|m|h|d)\Z"
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(v: str) -> int:
    """'26h' → seconds (s, m, h, d)."""
    m = re.fullmatch(DURATION_RE, v, re.ASCII)
    if m is None or int(m.group(1)) == 0:
        raise _Invalid(f"{_q(v)} is not a duration", "write a number and a unit, e.g. 26h, "
                       "90m or 8d (s, m, h, d)")
    return int(m.group(1)) * _UNIT[m.group(2)]


Calendar = Annotated[str, AfterValidator(_checked(
    CALENDAR_RE, "a systemd calendar expression",
    "use e.g. 'daily', 'Sun *-*-* 01:00:00' or 'Mon..Sat *-*-* 01:00:00' (man systemd.time)"))]


def _duration(v: str) -> str:
    parse_duration(v)
    return v


Duration = Annotated[str, AfterValidator(_duration)]


class BackupConfig(_Model):
    """Backups: the database with pgBackRest (WAL archived continuously to a repository in
    every region, full and differential backups on a schedule) and the shared storage with
    restic (to another region's backup host), each with a scheduled restore test."""

    enabled: bool = True
    full: Calendar = "Sun *-*-* 01:00:00"  # full backups (systemd OnCalendar=)
    diff: Calendar = "Mon..Sat *-*-* 01:00:00"  # differential backups between fulls
    verify: Calendar = "*-*-* 04:30:00"  # restore the newest backup into a scratch server
    files: Calendar = "*-*-* 01:30:00"  # the shared storage (restic, to another region)
    retention_full: Annotated[int, Field(ge=1, le=52)] = 2  # full backups kept per repository
    max_age: Duration = "26h"  # status degrades when the newest backup is older
    verify_max_age: Duration = "8d"  # ... or the last successful restore test is older

    @property
    def max_age_seconds(self) -> int:
        return parse_duration(self.max_age)

    @property
    def verify_max_age_seconds(self) -> int:
        return parse_duration(self.verify_max_age)


class DataConfig(_Model):
    """The replicated PostgreSQL tier: a Patroni cluster in every region (the active
    region's is the primary cluster, the others standby clusters streaming from it)."""

    enabled: bool = True  # false: a stateless app, no database tier
    hosts: Annotated[int, Field(ge=1, le=5)] = 3  # database hosts per region; 3 survive one loss
    # Cross-region replication: async (a crash failover may lose what was in flight, within
    # rpo_budget). 'sync' is refused, see _replication.
    replication: str = "async"
    # Seconds of acknowledged writes a crash failover may lose without --allow-data-loss.
    rpo_budget: Annotated[float, Field(ge=0, le=86400)] = 5.0
    backup: BackupConfig = BackupConfig()

    @field_validator("replication")
    @classmethod
    def _replication(cls, v: str) -> str:
        if v == "sync":
            raise _Invalid(
                "'sync' (every commit waits for another region) is not supported yet: "
                "Patroni 3.0.2 owns synchronous_standby_names for the in-region synchronous "
                "replica that makes losing a database host lose nothing, and cannot also "
                "wait for a standby region",
                "use 'async' and bound what a crash failover may lose with data.rpo_budget")
        if v != "async":
            raise _Invalid(f"{_q(v)} is not a replication mode", "use 'async'")
        return v


class Objectives(_Model):
    """What a drill must show ('hadeploy drill' exits 1 when it does not): the client is
    served again within ``rto`` seconds of the fault, and the acknowledged writes lost
    span at most ``rpo`` seconds before it (0: none lost)."""

    rto: Annotated[float, Field(gt=0, le=86400)] = 30.0
    rpo: Annotated[float, Field(ge=0, le=86400)] = 0.0


class LoadBalancerConfig(_Model):
    """Each region's load balancers on the lab: haproxy behind a keepalived virtual IP. A
    change here reloads them one at a time; no request is dropped (haproxy hands its
    listening sockets over, keepalived keeps the VIP where it is)."""

    check_interval: Annotated[float, Field(ge=0.1, le=60)] = 0.5  # health check per app host (s)
    timeout_server: Annotated[float, Field(ge=1, le=3600)] = 5.0  # an app host's answer (s)
    vrrp_advert_interval: Annotated[float, Field(ge=0.05, le=255)] = 0.2  # keepalived (s)


class LabConfig(_Model):
    control_subnet: Annotated[str, AfterValidator(_lab_subnet)] = f"{LAB_SUBNET_BASE}.0.0/24"


# --- the aws: section (target aws only) -------------------------------------------------

# Debian 12 (the lab's distribution, so the same roles apply), published by Debian in SSM.
DEBIAN_AMI = "resolve:ssm:/aws/service/debian/release/bookworm/latest/amd64"
# Route 53 health checkers live in these regions only.
ROUTE53_CHECKER_REGIONS = frozenset({
    "us-east-1", "us-west-1", "us-west-2", "eu-west-1", "ap-southeast-1", "ap-southeast-2",
    "ap-northeast-1", "sa-east-1"})
_PARTITION = r"aws(?:-[a-z]{1,8}){0,2}"
_REGION = r"[a-z]{2}(?:-[a-z]{1,16}){1,3}-[0-9]{1,2}"
CERT_ARN_RE = (rf"\Aarn:{_PARTITION}:acm:({_REGION}):([0-9]{{12}}):"
               r"certificate/[A-Za-z0-9-]{1,128}\Z")
VAULT_ARN_RE = (rf"\Aarn:{_PARTITION}:backup:({_REGION}):([0-9]{{12}}):"
                r"backup-vault:[A-Za-z0-9_.-]{2,50}\Z")
ACCOUNT_ID_RE = r"\A[0-9]{12}\Z"
ZONE_ID_RE = r"\AZ[A-Z0-9]{1,31}\Z"
# cron(<6 fields>) or rate(<n> <unit>): single line, printable, bounded.
SCHEDULE_RE = (r"\A(?:cron\([0-9A-Za-z*?,/#-]{1,40}(?: [0-9A-Za-z*?,/#-]{1,40}){5}\)"
               r"|rate\([1-9][0-9]{0,5} (?:minute|hour|day)s?\))\Z")
INSTANCE_TYPE_RE = r"\A[a-z][a-z0-9-]{0,15}\.[a-z0-9]{1,16}\Z"
DB_INSTANCE_CLASS_RE = r"\Adb\.[a-z][a-z0-9-]{0,15}\.[a-z0-9]{1,16}\Z"
ENGINE_VERSION_RE = r"\A[0-9]{1,2}\.[0-9]{1,2}\Z"
AMI_RE = (r"\A(?:ami-[0-9a-f]{8}(?:[0-9a-f]{9})?"
          r"|resolve:ssm:/[A-Za-z0-9_.-]{1,200}(?:/[A-Za-z0-9_.-]{1,200}){0,14}"
          r"(?::[0-9]{1,10})?)\Z")
ROOT_DEVICE_RE = r"\A/dev/[a-z][a-z0-9]{1,15}\Z"
BUCKET_PREFIX_RE = r"\A[a-z0-9](?:[a-z0-9-]{1,59}[a-z0-9])\Z"
PULUMI_ORG_RE = r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\Z"
_URL_TAIL = r"[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]{1,1000}"
# Pulumi state backends (aws.backend_url, PULUMI_BACKEND_URL): one form per scheme.
_URL_QUERY = (r"(?:\?[A-Za-z0-9_.-]{1,64}=[A-Za-z0-9_.~%:/+-]{0,512}"
              r"(?:&[A-Za-z0-9_.-]{1,64}=[A-Za-z0-9_.~%:/+-]{0,512}){0,15})?")
_KEY_PREFIX = r"(?:/[A-Za-z0-9!_.*'()+=@,-]{1,255}){0,30}/?"
_FILE_PATH = r"(?:/[A-Za-z0-9._~+@%=,-]{1,255}){1,60}/?"
BACKEND_URL_FORMS = {
    "s3": (rf"\As3://[a-z0-9][a-z0-9.-]{{1,61}}[a-z0-9]{_KEY_PREFIX}{_URL_QUERY}\Z",
           "s3://<bucket>[/<prefix>][?region=<aws region>] (bucket: 3-63 lowercase letters, "
           "digits, '.' and '-')"),
    "file": (rf"\Afile://(?:~(?:{_FILE_PATH})?|{_FILE_PATH})\Z",
             "file:///<absolute dir> or file://~/<dir>"),
    "gs": (rf"\Ags://[a-z0-9][a-z0-9._-]{{1,220}}[a-z0-9]{_KEY_PREFIX}{_URL_QUERY}\Z",
           "gs://<bucket>[/<prefix>]"),
    "azblob": (rf"\Aazblob://[a-z0-9][a-z0-9-]{{1,61}}[a-z0-9]{_KEY_PREFIX}{_URL_QUERY}\Z",
               "azblob://<container>[/<prefix>]"),
    "https": (r"\Ahttps://[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(?::[0-9]{1,5})?"
              r"(?:/[A-Za-z0-9._~%-]{1,255}){0,10}/?\Z",
              "https://<host> of Pulumi Cloud (https://api.pulumi.com) or a self-hosted one"),
}
BACKEND_URL_HINT = ("use s3://<bucket>[/<prefix>][?region=<aws region>], file:///<absolute dir> "
                    "or file://~/<dir> (also gs://, azblob://, https://api.pulumi.com); null "
                    "keeps the state in the hadeploy state directory (docs/aws.md)")
SECRETS_PROVIDER_RE = (rf"\A(?:default|passphrase|(?:awskms|azurekeyvault|gcpkms|hashivault)"
                       rf"://{_URL_TAIL})\Z")
_KMS_KEY = (r"(?:alias/[A-Za-z0-9/_-]{1,250}|(?:mrk-)?[0-9a-f-]{32,36}"
            r"|/arn:aws[a-z-]{0,20}:kms:[a-z0-9-]{1,30}:[0-9]{12}:"
            r"(?:key/(?:mrk-)?[0-9a-f-]{32,36}|alias/[A-Za-z0-9/_-]{1,250}))")
AWSKMS_RE = rf"\Aawskms://{_KMS_KEY}{_URL_QUERY}\Z"
SECRETS_PROVIDER_HINT = (
    "use passphrase (the key comes from PULUMI_CONFIG_PASSPHRASE or _FILE) or an AWS KMS key: "
    "awskms://alias/<name>?region=<aws region>, awskms://<key id>?region=<aws region> or "
    "awskms:///arn:aws:kms:<aws region>:<account>:key/<key id>; null: passphrase on s3/file "
    "backends, the service's own on Pulumi Cloud")


def backend_url_problem(url: str) -> tuple[str, str] | None:
    """What is wrong with a Pulumi state backend URL, and the fix; None when it is usable.
    A relative ``file://`` path is refused: Pulumi resolves it from each project's working
    directory, so the regional and the global stacks would not share one backend."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme == "http":
        return ("is a plain-http URL (the state, with its encrypted secrets and the access "
                "token, would travel unencrypted)", "use https://")
    if scheme == "file" and not url.startswith(("file:///", "file://~")):
        return ("is a relative path (Pulumi would resolve it from each stack project's "
                "directory, so the regional and global stacks would not share it)",
                "use file:///<absolute dir> or file://~/<dir>")
    if scheme not in BACKEND_URL_FORMS:
        return "is not a Pulumi state backend URL", BACKEND_URL_HINT
    pattern, form = BACKEND_URL_FORMS[scheme]
    if not _full(pattern, url):
        return f"is not a valid {scheme}:// backend URL", f"use {form}"
    return None


def _backend_url(v: str) -> str:
    problem = backend_url_problem(v)
    if problem is not None:
        raise _Invalid(f"{_q(v)} {problem[0]}", problem[1])
    return v


def _secrets_provider(v: str) -> str:
    if v.startswith("awskms:"):
        if not _full(AWSKMS_RE, v):
            raise _Invalid(f"{_q(v)} is not an AWS KMS key URL", SECRETS_PROVIDER_HINT)
        return v
    if not _full(SECRETS_PROVIDER_RE, v):
        raise _Invalid(f"{_q(v)} is not a Pulumi secrets provider", SECRETS_PROVIDER_HINT)
    return v


def _bucket_prefix(v: str) -> str:
    hint = ("S3 bucket names: 3-61 characters here (the region name is appended), lowercase "
            "letters, digits and '-', starting and ending with a letter or digit")
    if not _full(BUCKET_PREFIX_RE, v):
        raise _Invalid(f"{_q(v)} is not a valid S3 bucket name prefix", hint)
    if v.startswith(("xn--", "sthree-", "amzn-s3-demo-")) or "--" in v:
        raise _Invalid(f"{_q(v)} uses a form S3 reserves ('xn--', 'sthree-', "
                       "'amzn-s3-demo-' or '--')", hint)
    return v


def _vpc_cidr(v: str) -> str:
    net = _ipv4_network(v, "10.100.0.0/16")
    if not 16 <= net.prefixlen <= 20 or not _rfc1918(net):
        raise _Invalid(f"{v!r} must be an RFC 1918 private /16../20",
                       "use a /16 to /20 in 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16")
    return str(net)


CertArn = Annotated[str, AfterValidator(_checked(
    CERT_ARN_RE, "an ACM certificate ARN",
    "use arn:aws:acm:<aws region>:<account id>:certificate/<id> "
    "(aws acm list-certificates --region <aws region>)"))]
VaultArn = Annotated[str, AfterValidator(_checked(
    VAULT_ARN_RE, "a backup vault ARN",
    "use arn:aws:backup:<aws region>:<account id>:backup-vault:<name>"))]


Schedule = Annotated[str, AfterValidator(_checked(
    SCHEDULE_RE, "an AWS Backup schedule expression",
    "use 'cron(<6 fields>)' such as 'cron(0 3 * * ? *)' or 'rate(<n> hours)'"))]


class AwsVaultLock(_Model):
    """AWS Backup Vault Lock on every region's hadeploy vault. Without
    ``changeable_for_days`` it is in governance mode (IAM principals allowed to may remove
    it); with it, it becomes immutable (compliance mode) that many days after it is set:
    from then on nobody can delete a recovery point before it expires, nor the vault while
    it holds one."""

    min_retention_days: Annotated[int, Field(ge=1, le=36500)]
    max_retention_days: Annotated[int | None, Field(ge=1, le=36500)] = None
    changeable_for_days: Annotated[int | None, Field(ge=3, le=36500)] = None  # AWS: >= 3

    @model_validator(mode="after")
    def _bounds(self) -> AwsVaultLock:
        if self.max_retention_days is not None and \
                self.max_retention_days < self.min_retention_days:
            raise _FieldProblem("aws.backup.vault_lock.max_retention_days",
                                f"{self.max_retention_days} is below min_retention_days "
                                f"({self.min_retention_days})",
                                "raise max_retention_days, lower min_retention_days, or set "
                                "max_retention_days: null (no maximum)")
        return self


class AwsRestoreTesting(_Model):
    """AWS Backup restore testing (the counterpart of the lab's ``backup verify``): on a
    schedule AWS Backup restores the newest recovery point of the region's EFS and Aurora
    cluster into new resources, reports the result, and deletes them."""

    enabled: bool = True
    schedule: Schedule = "cron(0 5 ? * SUN *)"  # weekly, UTC
    selection_window_days: Annotated[int, Field(ge=1, le=365)] = 7  # newest point this recent


class AwsBackup(_Model):
    schedule: Schedule = "cron(0 3 * * ? *)"  # AWS Backup cron, UTC
    retention_days: Annotated[int, Field(ge=1, le=36500)] = 35
    copy_retention_days: Annotated[int | None, Field(ge=1, le=36500)] = None
    # Per region: copy into this vault instead of the peer region's hadeploy vault.
    copy_vault_arns: dict[RegionKey, VaultArn] = Field(default_factory=dict)
    vault_lock: AwsVaultLock | None = None  # None: no Vault Lock
    restore_testing: AwsRestoreTesting = AwsRestoreTesting()

    @model_validator(mode="after")
    def _within_lock(self) -> AwsBackup:
        lock = self.vault_lock
        if lock is None:
            return self
        for key, days in (("retention_days", self.retention_days),
                          ("copy_retention_days", self.copy_retention_days)):
            if days is None:
                continue
            high = lock.max_retention_days
            if days < lock.min_retention_days or (high is not None and days > high):
                allowed = (f"{lock.min_retention_days}..{high} days" if high is not None
                           else f"at least {lock.min_retention_days} days")
                raise _FieldProblem(f"aws.backup.{key}", f"{days} days is outside the vault "
                                    f"lock's retention range ({allowed}); AWS Backup would "
                                    "fail every backup and copy job",
                                    f"set aws.backup.{key} to {allowed}, or change "
                                    "aws.backup.vault_lock")
        return self


class AwsDatabase(_Model):
    """The database tier on AWS: an Aurora PostgreSQL Global Database (a cluster per region,
    one writer region)."""

    instance_class: Annotated[str, AfterValidator(_checked(
        DB_INSTANCE_CLASS_RE, "an Aurora instance class such as 'db.r6g.large'",
        "use an Aurora PostgreSQL instance class such as 'db.r6g.large' or 'db.r7g.xlarge' "
        "(global databases need r-class or larger)"))] = "db.r6g.large"
    instances: Annotated[int, Field(ge=1, le=15)] = 2  # per region; 2 survive one AZ loss
    engine_version: Annotated[str, AfterValidator(_checked(
        ENGINE_VERSION_RE, "an Aurora PostgreSQL version such as '15.4'",
        "use a major.minor Aurora PostgreSQL version that supports global databases, "
        "such as '15.4'"))] = "15.4"
    backup_retention_days: Annotated[int, Field(ge=1, le=35)] = 7  # Aurora's own backups


class AwsSettings(_Model):
    """What only the AWS target needs. Region keys are hadeploy region names."""

    account_id: Annotated[str, AfterValidator(_checked(
        ACCOUNT_ID_RE, "a 12-digit AWS account id",
        "write the 12 ASCII digits in quotes: account_id: \"123456789012\""))]
    certificate_arns: dict[RegionKey, CertArn] = Field(default_factory=dict)
    instance_type: Annotated[str, AfterValidator(_checked(
        INSTANCE_TYPE_RE, "an EC2 instance type such as 't3.small'",
        "use an instance type such as 't3.small' or 'm6i.large'"))] = "t3.small"
    ami: Annotated[str, AfterValidator(_checked(
        AMI_RE, "an AMI id or an SSM parameter reference",
        f"use 'ami-<hex id>' or 'resolve:ssm:/<parameter>' (default: {DEBIAN_AMI})"
    ))] = DEBIAN_AMI
    root_device: Annotated[str, AfterValidator(_checked(
        ROOT_DEVICE_RE, "a device name such as '/dev/xvda'",
        "use the AMI's root device name, such as '/dev/xvda' or '/dev/sda1'"
    ))] = "/dev/xvda"
    az_count: Annotated[int, Field(ge=2, le=6)] = 3
    vpc_cidrs: dict[RegionKey, Annotated[str, AfterValidator(_vpc_cidr)]] = Field(
        default_factory=dict)
    mode: Literal["active-passive", "active-weighted"] = "active-passive"
    zone_id: Annotated[str, AfterValidator(_checked(
        ZONE_ID_RE, "a Route 53 hosted zone id such as 'Z0123456789ABCDEFGHIJ'",
        "use the id of an existing hosted zone (aws route53 list-hosted-zones), or null "
        "to create one"))] | None = None
    peers: dict[RegionKey, RegionKey] = Field(default_factory=dict)
    backup: AwsBackup = AwsBackup()
    database: AwsDatabase = AwsDatabase()
    health_checker_regions: Annotated[list[str], Field(min_length=3, max_length=64)] = Field(
        default_factory=lambda: ["us-east-1", "eu-west-1", "ap-southeast-1"])
    efs_replication: bool = True
    s3_replication: bool = True
    bucket_prefix: Annotated[str, AfterValidator(_bucket_prefix)] | None = None
    deletion_protection: bool = False
    pulumi_org: Annotated[str, AfterValidator(_checked(
        PULUMI_ORG_RE, "a Pulumi organization name",
        "use letters, digits and _ . - ('organization' for self-managed backends)"
    ))] = "organization"  # self-managed backends; your org on Pulumi Cloud
    # Where the stacks' state lives: s3://bucket[/prefix], file:///abs/dir, file://~/dir, …
    # null: file://<state dir> (PULUMI_BACKEND_URL, when set, instead). Never `pulumi login`'s.
    backend_url: Annotated[str, AfterValidator(_backend_url)] | None = None
    # What encrypts the stacks' secrets: passphrase (PULUMI_CONFIG_PASSPHRASE) or
    # awskms://…; null: passphrase on s3/file backends, the service's own on Pulumi Cloud.
    secrets_provider: Annotated[str, AfterValidator(_secrets_provider)] | None = None
    parallel: Annotated[int, Field(ge=1, le=20)] = 4  # regional stacks updated at once

    @field_validator("health_checker_regions")
    @classmethod
    def _checkers(cls, v: list[str]) -> list[str]:
        allowed = ", ".join(sorted(ROUTE53_CHECKER_REGIONS))
        bad = [r for r in v if r not in ROUTE53_CHECKER_REGIONS]
        if bad:
            shown = ", ".join(_q(r) for r in bad[:3]) + (" …" if len(bad) > 3 else "")
            raise _Invalid(f"{shown}: not Route 53 health checker regions",
                           f"use 3 or more of: {allowed}")
        dupes = sorted({r for r in v if v.count(r) > 1})
        if dupes:
            raise _Invalid(f"{', '.join(dupes)} listed more than once",
                           f"list every checker region once (3 or more of: {allowed})")
        return v


class Deployment(_Model):
    name: Name = "demo"
    target: Target = Target.LAB
    dns: DnsConfig = DnsConfig()
    regions: Annotated[list[RegionConfig], Field(min_length=1, max_length=20)]
    app: AppConfig = AppConfig()
    lb: LoadBalancerConfig | None = None  # lab only (defaults when absent)
    objectives: Objectives = Objectives()
    failover: FailoverPolicy = FailoverPolicy()
    data: DataConfig = DataConfig()
    lab: LabConfig = LabConfig()
    aws: AwsSettings | None = None  # target aws only (account, certificates, backups, ...)

    @model_validator(mode="before")
    @classmethod
    def _aws_defaults(cls, data: Any) -> Any:
        """On aws a DNS answer is cached for 60 s unless dns.ttl says otherwise: the lab's
        1 s would multiply Route 53 queries (billed per million) for little gain behind
        resolvers that often keep answers longer anyway."""
        if not isinstance(data, dict) or str(getattr(data.get("target"), "value",
                                                     data.get("target"))) != "aws":
            return data
        dns = data.get("dns")
        if dns is None:
            return {**data, "dns": {"ttl": 60}}
        if isinstance(dns, dict) and "ttl" not in dns:
            return {**data, "dns": {**dns, "ttl": 60}}
        return data

    @model_validator(mode="before")
    @classmethod
    def _aws_data_is_opt_in(cls, data: Any) -> Any:
        """On aws the database tier is an Aurora Global Database, billed per instance-hour
        in every region: a deployment without a data: section stays stateless there (as
        it was before the tier existed); 'data: {enabled: true}' asks for it."""
        if not isinstance(data, dict) or str(getattr(data.get("target"), "value",
                                                     data.get("target"))) != "aws":
            return data
        if data.get("data") is None:
            return {**data, "data": {"enabled": False}}
        return data

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
        self._check_target()
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

    @property
    def load_balancers(self) -> LoadBalancerConfig:
        return self.lb or LoadBalancerConfig()

    def _check_target(self) -> None:
        if self.target is Target.AWS and self.lb is not None:
            raise _FieldProblem("lb", "is set, but target is 'aws' (lb: tunes the lab's "
                                "haproxy and keepalived; the ALB's health check comes with "
                                "failover.probe_interval)", "remove the lb: section")
        if self.target is Target.LAB and self.aws is not None:
            raise _FieldProblem("aws", "is set, but target is 'lab' (the aws: section is "
                                "for target aws only)",
                                "remove the aws: section, or set target: aws")
        if self.target is Target.AWS and self.aws is None:
            raise _FieldProblem("aws", "is missing: target 'aws' needs an 'aws:' section",
                                "add at least 'aws: {account_id: \"123456789012\", "
                                "certificate_arns: {<region>: <ACM ARN>}}' (docs/aws.md; "
                                "'hadeploy init --target aws' writes a template)")
        if self.aws is None:
            return
        if self.aws.mode == "active-passive" and len(self.regions) > 2:
            # Route 53 chains the levels as <record>-failover-<n> (n up to regions - 2)
            longest = f"{self.dns.record}-failover-{len(self.regions) - 2}"
            if len(longest) > 63 or len(f"{longest}.{self.dns.zone}") > 253:
                raise _FieldProblem("dns.record", f"the Route 53 failover name {longest!r} "
                                    "would be longer than a DNS label or name allows",
                                    "use a shorter dns.record or dns.zone")
        prefix = self.aws.bucket_prefix
        for region in self.regions:
            bucket = f"{prefix or f'hd-{self.name}-{self.aws.account_id}'}-{region.name}"
            if len(bucket) > 63:
                raise _FieldProblem("aws.bucket_prefix", f"bucket name {bucket!r} is longer "
                                    "than 63 characters", "set a shorter aws.bucket_prefix "
                                    "(or use shorter region names)")

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
        raise HadeployError(f"unknown region {_q(name)}",
                            hint=f"known regions: {', '.join(r.name for r in self.regions)}",
                            code=ExitCode.BAD_INPUT)


class _FieldProblem(ValueError):
    """A cross-field problem that knows which field it is about and how to fix it."""

    def __init__(self, loc: str, message: str, hint: str) -> None:
        super().__init__(message)
        self.loc, self.message, self.hint = loc, message, hint


class ConfigError(HadeployError):
    """Invalid configuration: one line per problem (``<source>: <field>: <what>``), the
    fixes as the hint; at most MAX_PROBLEMS are listed. ``problems`` holds all of them."""

    def __init__(self, source: str, problems: list[tuple[str, str, str]]) -> None:
        shown = problems[:MAX_PROBLEMS]
        lines = [f"{source}: {loc}: {msg}" if loc else f"{source}: {msg}"
                 for loc, msg, _ in shown]
        if len(problems) > len(shown):
            lines.append(f"{source}: and {len(problems) - len(shown)} more problem(s)")
        hints = [h for _, _, h in shown if h]
        super().__init__("\n".join(lines), hint="\n".join(dict.fromkeys(hints)) or None,
                         code=ExitCode.BAD_INPUT)
        self.problems = problems


_FIX_BY_TYPE = {
    "missing": "add it",
    "int_parsing": "use a whole number",
    "int_type": "use a whole number",
    "int_from_float": "use a whole number",
    "float_parsing": "use a number",
    "float_type": "use a number",
    "finite_number": "use a finite number",
    "bool_parsing": "use true or false",
    "bool_type": "use true or false",
    "string_type": "use a string (quote it)",
    "list_type": "use a YAML list",
    "dict_type": "use a mapping of keys to values",
    "model_type": "use a mapping of keys to values",
    "model_attributes_type": "use a mapping of keys to values",
    "invalid_key": "use text keys",
    "too_short": "add at least one entry",
    "too_long": "remove entries",
    "literal_error": "use one of the values the message lists",
}
_PLAIN_KEY_RE = r"\A[A-Za-z0-9_.-]{1,64}\Z"
_PROVIDER_HINT = ("remove it: the DNS provider follows the target (RFC 2136 updates to "
                  "hadeploy's own DNS server on lab, Route 53 on aws)")


def _loc(parts: tuple[int | str, ...]) -> str:
    """``('regions', 1, 'name')`` → ``regions[1].name``; odd keys quoted and cut short."""
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
            continue
        if p.startswith(("function-", "tagged-union")) or p == "[key]":
            continue
        part = p if _full(_PLAIN_KEY_RE, p) else _q(p)
        out += f".{part}" if out else part
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
    for err in exc.errors(include_url=False):
        ctx_error = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_error, _FieldProblem):
            problems.append((ctx_error.loc, ctx_error.message, ctx_error.hint))
            continue
        loc = err["loc"]
        where = _loc(loc)
        kind = err["type"]
        if isinstance(ctx_error, _Invalid):
            problems.append((where, ctx_error.message, ctx_error.hint))
            continue
        if kind == "extra_forbidden":
            model = _model_at(loc)
            known = sorted(model.model_fields) if model else []
            key = str(loc[-1])
            if model is DnsConfig and key == "provider":
                problems.append((where, "unknown key 'provider'", _PROVIDER_HINT))
                continue
            close = difflib.get_close_matches(key[:64], known, n=1)
            hint = (f"did you mean '{close[0]}'? " if close else "") + (
                f"allowed keys here: {', '.join(known)}" if known else "remove it")
            problems.append((where, f"unknown key {_q(key)}", hint))
            continue
        msg = _cut(err["msg"].removeprefix("Value error, "))
        if kind == "enum":
            hint = f"use one of: {(err.get('ctx') or {}).get('expected', '')}"
            msg = f"{_q(err['input'])} is not allowed"
        elif kind.startswith(("greater_than", "less_than")):
            hint = "change the value to fit the bound"
            msg = f"{_q(err['input'])}: {msg.lower()}"
        elif kind == "string_type" and where.endswith("account_id"):
            hint = "write the 12 digits in quotes: account_id: \"123456789012\""
        elif kind == "string_type" and where.endswith("version"):
            hint = "quote it: version: \"1.0\""
        else:
            hint = _FIX_BY_TYPE.get(kind, "see 'hadeploy init' for a commented example")
        problems.append((where, msg, hint))
    return problems


def _cut(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def parse(data: Any, source: str = DEFAULT_CONFIG) -> Deployment:
    if data is None:
        raise ConfigError(source, [("", "is empty", "start from 'hadeploy init'")])
    if not isinstance(data, dict):
        raise ConfigError(source, [("", "the file must hold a YAML mapping (keys such as "
                                    "'name:' and 'regions:')",
                                    "start from 'hadeploy init'")])
    try:
        return Deployment.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, _problems(exc)) from None
    except RecursionError:  # a self-containing structure (not from load(): it refuses them)
        raise ConfigError(source, [("", "nests too deeply", "flatten the document")]) from None


def load(path: Path | str) -> Deployment:
    """The Deployment in the YAML file ``path``. Every problem — a missing, unreadable or
    oversized file, a FIFO or directory, invalid YAML, duplicate keys, alias bombs, an
    invalid value — is a HadeployError with exit code 2 (BAD_INPUT) that names the file
    and the line or field, and how to fix it (:mod:`hadeploy.yamlload`)."""
    from hadeploy.yamlload import load_file

    path = Path(path)
    return parse(load_file(path), str(path))


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
  ttl: 1                   # seconds; low so that a failover reaches clients fast

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

objectives:                # what 'hadeploy drill' must show, else it exits 1:
  rto: 30                  # seconds until a client is served again after a fault
  rpo: 0                   # seconds of acknowledged writes that may be lost (0: none)

# lb:                      # each region's haproxy pair behind a keepalived VIP (defaults
#   check_interval: 0.5    # shown; a change rolls one load balancer at a time). Seconds
#   timeout_server: 5      # between health checks of each app host; an app host's answer
#   vrrp_advert_interval: 0.2  # time; keepalived's advertisements (takeover ~3x this)

failover:
  probe_interval: 0.5      # seconds between probes of each region's endpoint
  probe_timeout: 0.4
  failure_threshold: 4     # consecutive failures before a vantage point calls it down
                           #   (a 1.2 s blink fails 3 probes at most: no failover)
  quorum: 2                # vantage points that must agree (CLI host + other regions)
  hold_down: 30            # seconds of success before a region counts as back
  min_interval: 300        # seconds between two automatic failovers (no flapping)
  auto_failback: false
  lease: 5                 # a region that cannot confirm it is the writer for this long
                           #   refuses writes by itself (a partition); 0: off

data:                      # a PostgreSQL cluster (Patroni) in every region
  enabled: true            # false for a stateless app
  hosts: 3                 # database hosts per region: 3 survive the loss of one
  replication: async       # to the standby regions (the only mode so far)
  rpo_budget: 5            # seconds a crash failover may lose without --allow-data-loss
  backup:                  # pgBackRest: a repository in every region, WAL archived to all
    full: Sun *-*-* 01:00:00         # systemd calendar expressions
    diff: Mon..Sat *-*-* 01:00:00
    verify: "*-*-* 04:30:00"         # a restore test into a scratch server (both kinds)
    files: "*-*-* 01:30:00"          # the shared storage, with restic, to another region
    retention_full: 2                # full backups kept in each repository
    max_age: 26h                     # status degrades when the newest backup is older,
    verify_max_age: 8d               # or the last good restore test

lab:
  control_subnet: 10.91.0.0/24   # the lab's DNS server lives here
"""

# `hadeploy init --target aws`. Valid as written (so that it can be validated), but every
# value marked PLACEHOLDER names an account, a certificate or a zone that is not yours.
EXAMPLE_AWS = """\
# hadeploy.yaml — the desired state of one highly available deployment on AWS.
# Validate it with `hadeploy plan`; build it with `hadeploy up` (Pulumi; docs/aws.md).
# Replace every value marked PLACEHOLDER before the first `hadeploy up`.

name: demo                 # 1-24 chars [a-z0-9-]; prefixes stacks, buckets, vaults
target: aws                # aws: one Pulumi stack per region + one for Route 53

dns:
  zone: example.com        # PLACEHOLDER: a domain you own; Route 53 serves it
  record: app              # clients use app.<zone>; it points at the active region
  ttl: 60                  # seconds

regions:                   # one independent stack per region; exactly one primary
  - name: east
    role: primary          # the primary must be hot
    hosts: 2               # app hosts (an auto scaling group over the AZs); hot needs >= 2
    standby: hot
    aws_region: us-east-1  # one hadeploy region per AWS region
  - name: west
    role: secondary
    hosts: 2
    standby: warm          # hot: full size | warm: reduced, scaled up on failover
                           # cold: nothing running, started on failover
    aws_region: eu-west-1

app:
  port: 8080
  health_path: /healthz    # the ALB and Route 53 health checks probe this path
  version: 1.0.0

failover:
  probe_interval: 10       # seconds; Route 53 checks every 10 s (<= 10) or 30 s
  probe_timeout: 5
  failure_threshold: 3     # consecutive failures before a checker calls a region down
  quorum: 2                # vantage points that must agree (CLI host + other regions)
  hold_down: 30            # seconds of success before a region counts as back
  min_interval: 300        # seconds between two automatic failovers (no flapping)
  auto_failback: false

data:                      # an Aurora PostgreSQL Global Database (aws.database below)
  enabled: true            # billed per instance-hour in every region; false: stateless
  rpo_budget: 5            # seconds a crash failover may lose without --allow-data-loss

aws:
  account_id: "123456789012"   # PLACEHOLDER: your 12-digit account id, quoted
  certificate_arns:            # PLACEHOLDER: an ACM certificate for app.<zone> in each
                               # region's AWS region (aws acm list-certificates)
    east: arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000
    west: arn:aws:acm:eu-west-1:123456789012:certificate/00000000-0000-0000-0000-000000000000
  zone_id: null                # an existing Route 53 hosted zone id (Z...); null creates one
  instance_type: t3.small
  ami: resolve:ssm:/aws/service/debian/release/bookworm/latest/amd64   # or ami-<id>
  root_device: /dev/xvda
  az_count: 3                  # 2..6 availability zones per region
  vpc_cidrs: {}                # region -> private /16../20 (default 10.(100+i).0.0/16)
  mode: active-passive         # | active-weighted
  peers: {}                    # region -> peer (default: primary <-> first secondary)
  database:
    instance_class: db.r6g.large  # global databases need r-class or larger
    instances: 2                  # per region, over the AZs: a reader takes over
    engine_version: "15.4"
    backup_retention_days: 7      # Aurora's own continuous backups (1-35)
  backup:
    schedule: cron(0 3 * * ? *)   # AWS Backup, UTC
    retention_days: 35
    copy_retention_days: null     # default: retention_days
    copy_vault_arns: {}           # region -> vault ARN to copy to instead of the peer's
    vault_lock: null              # e.g. {min_retention_days: 7, max_retention_days: 400,
                                  #   changeable_for_days: 3}: after those days the lock
                                  #   can never be removed (compliance mode)
    restore_testing:              # AWS Backup restores the newest EFS and Aurora recovery
      enabled: true               #   points into new resources, then deletes them
      schedule: cron(0 5 ? * SUN *)
      selection_window_days: 7
  health_checker_regions: [us-east-1, eu-west-1, ap-southeast-1]   # 3+ distinct
  efs_replication: true
  s3_replication: true
  bucket_prefix: null          # default hd-<name>-<account id>; bucket = <prefix>-<region>
  deletion_protection: false   # of the ALBs
  pulumi_org: organization     # your org on Pulumi Cloud; 'organization' when self-managed
  backend_url: null            # e.g. s3://my-state-bucket (null: in the state dir)
  secrets_provider: null       # e.g. awskms://alias/hadeploy (null: PULUMI_CONFIG_PASSPHRASE)
  parallel: 4                  # regional stacks updated at once
"""
