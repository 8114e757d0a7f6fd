"""Amazon Route 53 (boto3): the AWS target's public hosted zone.

Two record layouts, both as created by :mod:`hadeploy.infra.dns`:

- ``plain``: one simple ``A`` record set, either addresses or an alias to an ALB;
- ``failover``: a PRIMARY and a SECONDARY failover alias (same name, one SetIdentifier
  each). A failover re-points PRIMARY at the new region and SECONDARY at the old one in
  one change batch; SetIdentifiers never change and nothing is deleted.

Every change is one ``ChangeResourceRecordSets`` batch (atomic on Route 53).
``wait_visible`` waits for the change to be INSYNC, re-reads the record set, and on AWS
also asks the zone's own name servers (a pluggable :class:`DnsCheck`).

boto3/botocore are imported inside functions only: ``hadeploy failover`` imports this
module and must start fast. Every AWS failure becomes one :class:`HadeployError`.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from hadeploy.errors import ExitCode, HadeployError

Mode = Literal["plain", "failover"]
ROUTE53_API_REGION = "us-east-1"
PAGE_SIZE = 300  # the API's maximum: one page holds every set of one name in practice
MAX_PAGES = 20
CREDENTIAL_HINT = ("set AWS_PROFILE (and run 'aws sso login' if it uses SSO), or "
                   "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run with an instance role")
EXPIRED = {"ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"}
REJECTED = {"InvalidClientTokenId", "SignatureDoesNotMatch", "UnrecognizedClientException",
            "InvalidAccessKeyId", "AuthFailure", "MissingAuthenticationToken"}
DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"}
BAD_REQUEST = {"InvalidChangeBatch", "InvalidInput", "NoSuchHealthCheck", "InvalidDomainName",
               "ValidationError"}
BUSY = {"Throttling", "ThrottlingException", "PriorRequestNotComplete"}
# (error codes, message, fix, exit code) for the API errors an operator can act on.
CLIENT_ERRORS: tuple[tuple[set[str], str, str, ExitCode], ...] = (
    (EXPIRED, "the AWS credentials have expired; could not {action} {where} ({detail})",
     "refresh them ('aws sso login', or new session credentials) and run again",
     ExitCode.ENVIRONMENT),
    (REJECTED, "AWS rejected the credentials; could not {action} {where} ({detail})",
     CREDENTIAL_HINT, ExitCode.ENVIRONMENT),
    (DENIED, "AWS denied the request to {action} {where} ({detail})",
     "the identity needs route53:ListHostedZonesByName, GetHostedZone, "
     "ListResourceRecordSets, ChangeResourceRecordSets and GetChange on this zone; check "
     "AWS_PROFILE / the role", ExitCode.ENVIRONMENT),
    (BAD_REQUEST, "Route 53 refused to {action} {where} ({detail})",
     "check the record name, the mode (plain/failover) and the endpoints' alias zones and "
     "health checks", ExitCode.BAD_INPUT),
    (BUSY, "Route 53 is busy; could not {action} {where} ({detail})",
     "run again in a few seconds", ExitCode.FAILED),
)


@dataclass(frozen=True)
class Endpoint:
    """One region's load balancer as an alias target."""

    dns_name: str  # the ALB's DNS name (what the topology calls the region's vip)
    hosted_zone_id: str  # the ALB's canonical hosted zone (alias HostedZoneId)
    health_check_id: str | None = None  # the region's Route 53 health check


class DnsCheck(Protocol):
    def __call__(self, name_servers: list[str], fqdn: str, expected: list[str],
                 timeout: float) -> str | None:
        """None when every name server serves ``expected``; otherwise what is served."""


def _norm(name: str) -> str:
    """Compare DNS names as Route 53 stores them: lower case, no trailing dot, and an ALB
    alias with or without the console's ``dualstack.`` prefix."""
    name = name.lower().rstrip(".")
    return name.removeprefix("dualstack.")


def _missing_boto3() -> HadeployError:
    return HadeployError("boto3 is not installed: the Route 53 DNS provider needs it",
                         hint="pip install boto3 (into hadeploy's environment)",
                         code=ExitCode.ENVIRONMENT)


def _is_ipv4(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


class Route53Provider:
    """Read/replace one ``A`` record set of a Route 53 hosted zone."""

    verify_timeout = 120.0  # a change is usually INSYNC within 60 s; a failover waits this

    def __init__(self, zone_name: str, *, zone_id: str | None = None,  # noqa: PLR0913 - keyword-only options
                 mode: Mode = "plain",
                 endpoints: dict[str, Endpoint] | None = None, session: Any = None,
                 client_factory: Callable[[], Any] | None = None,
                 endpoint_url: str | None = None, timeout: float = 10.0,
                 dns_check: DnsCheck | None = None, verify_name_servers: bool = True,
                 page_size: int = PAGE_SIZE) -> None:
        if mode not in ("plain", "failover"):
            raise HadeployError(f"unknown Route 53 record mode '{mode}'",
                                hint="use 'plain' or 'failover'", code=ExitCode.BAD_INPUT)
        self.zone = zone_name.rstrip(".").lower() + "."
        self.zone_id = zone_id.rsplit("/", 1)[-1] if zone_id else None
        self.mode: Mode = mode
        self.endpoints = dict(endpoints or {})
        self.endpoint_url = endpoint_url
        self.timeout = timeout
        self.page_size = page_size
        self._session = session
        self._client_factory = client_factory
        self._client: Any = None
        # A custom endpoint (moto, LocalStack) hands out made-up name servers (ns-1.awsdns-…)
        # that are real AWS hosts which do not serve this zone: asking them proves nothing,
        # so the DNS step runs only against real Route 53, or when a check is passed in.
        self.dns_check: DnsCheck | None = dns_check or (
            NameServerCheck() if verify_name_servers and endpoint_url is None else None)
        self._pending_change: str | None = None
        self._zone_checked = False
        self._name_servers: list[str] = []

    def check_writable(self) -> None:
        """boto3 must be there before a failover fences anything (the API itself is asked
        when the change is sent: a burning region must not block the check)."""
        import importlib.util

        if importlib.util.find_spec("boto3") is None:
            raise _missing_boto3()

    # -- names --

    def _fqdn(self, record: str) -> str:
        """``app`` → ``app.<zone>.``; ``app.<zone>`` and absolute names stay as given."""
        name = record.lower()
        if not name.endswith(".") and name != self.zone[:-1] \
                and not name.endswith("." + self.zone[:-1]):
            name = f"{name}.{self.zone}"
        name = name.rstrip(".") + "."
        if name != self.zone and not name.endswith("." + self.zone):
            raise HadeployError(f"record {name} is not inside the Route 53 zone {self.zone}",
                                hint=f"use a name under {self.zone} (relative such as 'app', "
                                f"or absolute such as 'app.{self.zone}')",
                                code=ExitCode.BAD_INPUT)
        return name

    def _endpoint_for(self, value: str) -> tuple[str, Endpoint] | None:
        return next(((key, ep) for key, ep in self.endpoints.items()
                     if _norm(ep.dns_name) == _norm(value)), None)

    def _value_of(self, rrset: dict[str, Any]) -> list[str]:
        alias = rrset.get("AliasTarget")
        if alias:
            known = self._endpoint_for(str(alias["DNSName"]))
            return [known[1].dns_name if known else _norm(str(alias["DNSName"]))]
        return sorted(str(rr["Value"]) for rr in rrset.get("ResourceRecords", []))

    # -- AWS plumbing --

    def client(self) -> Any:
        """The route53 client (created on first use)."""
        if self._client is None:
            with self._aws("connect to", None):
                if self._client_factory is not None:
                    self._client = self._client_factory()
                else:
                    self._client = self._default_client()
        return self._client

    def _default_client(self) -> Any:
        try:
            import boto3  # type: ignore[import-not-found,import-untyped]
            from botocore.config import Config  # type: ignore[import-not-found,import-untyped]
        except ImportError:
            raise _missing_boto3() from None
        session = self._session or boto3.session.Session()
        config = Config(retries={"max_attempts": 2}, connect_timeout=self.timeout,
                        read_timeout=self.timeout)
        return session.client("route53", region_name=ROUTE53_API_REGION,
                              endpoint_url=self.endpoint_url, config=config)

    @contextmanager
    def _aws(self, action: str, record: str | None) -> Iterator[None]:
        """Turn every botocore failure inside the block into one HadeployError."""
        try:
            import botocore.exceptions as bx  # type: ignore[import-not-found,import-untyped]
        except ImportError:
            raise _missing_boto3() from None

        where = f"{record} in zone {self.zone}" if record else f"zone {self.zone}"
        api = self.endpoint_url or "the Route 53 API"
        try:
            yield
        except bx.ClientError as exc:
            raise self._client_error(exc, action, where) from None
        except (bx.NoCredentialsError, bx.PartialCredentialsError, bx.ProfileNotFound,
                bx.CredentialRetrievalError, bx.TokenRetrievalError, bx.SSOError) as exc:
            raise HadeployError(f"no usable AWS credentials to {action} {where} "
                                f"({type(exc).__name__}: {exc})", hint=CREDENTIAL_HINT,
                                code=ExitCode.ENVIRONMENT) from None
        except (bx.ConnectionError, bx.HTTPClientError) as exc:
            raise HadeployError(f"{api} is unreachable; could not {action} {where} "
                                f"({type(exc).__name__})",
                                hint="check the network, proxy settings (HTTPS_PROXY) and "
                                "firewall" + ("; is the server at the endpoint URL running?"
                                              if self.endpoint_url else ""),
                                code=ExitCode.ENVIRONMENT) from None
        except bx.ParamValidationError as exc:
            raise HadeployError(f"invalid Route 53 request to {action} {where}: {exc}",
                                hint="check the zone, record and endpoint values in the "
                                "configuration", code=ExitCode.BAD_INPUT) from None
        except bx.BotoCoreError as exc:
            raise HadeployError(f"could not {action} {where}: {type(exc).__name__}: {exc}",
                                hint="check the AWS configuration (AWS_PROFILE, "
                                "~/.aws/config)", code=ExitCode.ENVIRONMENT) from None

    def _client_error(self, exc: Any, action: str, where: str) -> HadeployError:
        err = exc.response.get("Error", {})
        code, message = str(err.get("Code", "")), str(err.get("Message", "")).strip()
        detail = f"{code}: {message}" if message else code
        if code == "NoSuchHostedZone":
            return HadeployError(f"the Route 53 hosted zone {self.zone_id or ''} for "
                                 f"{self.zone} does not exist ({detail})",
                                 hint="check dns.zone and the zone id in the configuration, "
                                 "and that the credentials belong to the zone's account; "
                                 "'hadeploy up' creates the zone", code=ExitCode.BAD_INPUT)
        for codes, what, hint, exit_code in CLIENT_ERRORS:
            if code in codes:
                return HadeployError(what.format(action=action, where=where, detail=detail),
                                     hint=hint, code=exit_code)
        return HadeployError(f"Route 53 failed to {action} {where} ({detail or exc})",
                             code=ExitCode.FAILED)

    def resolve_zone_id(self) -> str:
        """The hosted zone's id: the configured one (checked) or the public zone by name."""
        if self.zone_id is not None and self._zone_checked:
            return self.zone_id
        client = self.client()
        if self.zone_id is None:
            with self._aws("look up", None):
                resp = client.list_hosted_zones_by_name(DNSName=self.zone, MaxItems="100")
            zones = [z for z in resp.get("HostedZones", []) if str(z["Name"]).lower() == self.zone]
            public = [z for z in zones if not z.get("Config", {}).get("PrivateZone")]
            if not public:
                raise HadeployError(f"no public Route 53 hosted zone named {self.zone} in this "
                                    "AWS account", hint="check dns.zone and the AWS account "
                                    "(AWS_PROFILE); 'hadeploy up' creates the zone",
                                    code=ExitCode.BAD_INPUT)
            if len(public) > 1:
                ids = ", ".join(str(z["Id"]).rsplit("/", 1)[-1] for z in public)
                raise HadeployError(f"{len(public)} public hosted zones are named {self.zone} "
                                    f"({ids})", hint="set the zone id in the configuration",
                                    code=ExitCode.BAD_INPUT)
            self.zone_id = str(public[0]["Id"]).rsplit("/", 1)[-1]
        with self._aws("read", None):
            zone = client.get_hosted_zone(Id=self.zone_id)
        actual = str(zone["HostedZone"]["Name"]).lower()
        if actual != self.zone:
            raise HadeployError(f"hosted zone {self.zone_id} is {actual}, not {self.zone}",
                                hint="fix dns.zone or the zone id in the configuration",
                                code=ExitCode.BAD_INPUT)
        self._name_servers = [str(ns) for ns in
                              (zone.get("DelegationSet") or {}).get("NameServers", [])]
        self._zone_checked = True
        return self.zone_id

    def _record_sets(self, fqdn: str) -> list[dict[str, Any]]:
        """Every ``A`` record set named ``fqdn`` (all SetIdentifiers), paging as the API
        says. A page token seen twice (moto ignores StartRecordIdentifier) or too many
        pages is an error, never an endless loop or a silently partial answer."""
        zone_id = self.resolve_zone_id()
        params: dict[str, str] = {"HostedZoneId": zone_id, "StartRecordName": fqdn,
                                  "StartRecordType": "A", "MaxItems": str(self.page_size)}
        found: dict[str | None, dict[str, Any]] = {}
        seen: set[tuple[str, str, str]] = set()
        for _ in range(MAX_PAGES):
            with self._aws("read", fqdn):
                page = self.client().list_resource_record_sets(**params)
            for rrset in page.get("ResourceRecordSets", []):
                if _norm(str(rrset["Name"])) != _norm(fqdn) or rrset["Type"] != "A":
                    return list(found.values())
                found.setdefault(rrset.get("SetIdentifier"), rrset)
            if not page.get("IsTruncated"):
                return list(found.values())
            token = (str(page.get("NextRecordName", "")), str(page.get("NextRecordType", "")),
                     str(page.get("NextRecordIdentifier", "")))
            if _norm(token[0]) != _norm(fqdn) or token[1] != "A":
                return list(found.values())
            if token in seen:
                raise HadeployError(f"Route 53 returned the same page twice while listing "
                                    f"{fqdn} in zone {self.zone}", hint="the API endpoint "
                                    "does not honour StartRecordIdentifier; raise the page "
                                    "size", code=ExitCode.FAILED)
            seen.add(token)
            params.update(StartRecordName=token[0], StartRecordType=token[1])
            if token[2]:
                params["StartRecordIdentifier"] = token[2]
            else:
                params.pop("StartRecordIdentifier", None)
        raise HadeployError(f"more than {MAX_PAGES} pages of record sets named {fqdn} in "
                            f"zone {self.zone}", hint="this is not a layout hadeploy manages; "
                            "check the zone", code=ExitCode.FAILED)

    def _check_layout(self, fqdn: str, sets: list[dict[str, Any]]) -> None:
        simple = [s for s in sets if s.get("SetIdentifier") is None]
        routed = [s for s in sets if s.get("SetIdentifier") is not None]
        if self.mode == "plain" and routed and not simple:
            raise HadeployError(f"{fqdn} in zone {self.zone} has routing-policy records "
                                f"({', '.join(str(s['SetIdentifier']) for s in routed)}), "
                                "not one simple record", hint="configure the failover "
                                "record mode for this deployment", code=ExitCode.BAD_INPUT)
        if self.mode == "failover" and simple:
            raise HadeployError(f"{fqdn} in zone {self.zone} is a simple record, not "
                                "PRIMARY/SECONDARY failover records",
                                hint="configure the plain record mode for this deployment",
                                code=ExitCode.BAD_INPUT)

    # -- the DnsProvider interface --

    def read(self, record: str) -> list[str]:
        """Plain: the record's addresses or alias target. Failover: the PRIMARY's target.
        Empty when there is no such record."""
        fqdn = self._fqdn(record)
        sets = self._record_sets(fqdn)
        self._check_layout(fqdn, sets)
        if self.mode == "plain":
            return next((self._value_of(s) for s in sets if s.get("SetIdentifier") is None), [])
        return next((self._value_of(s) for s in sets if s.get("Failover") == "PRIMARY"), [])

    def replace(self, record: str, ttl: int, addresses: list[str]) -> None:
        """Point the record at ``addresses`` in one change batch (UPSERTs only)."""
        if not addresses:
            raise HadeployError("refusing to leave the app record with no address",
                                code=ExitCode.REFUSED)
        fqdn = self._fqdn(record)
        sets = self._record_sets(fqdn)
        self._check_layout(fqdn, sets)
        if self.mode == "plain":
            changes = [self._plain_change(fqdn, ttl, addresses)]
        else:
            changes = self._failover_changes(fqdn, sets, addresses)
        with self._aws("change", fqdn):
            resp = self.client().change_resource_record_sets(
                HostedZoneId=self.resolve_zone_id(),
                ChangeBatch={"Comment": f"hadeploy: {fqdn} -> {', '.join(addresses)}",
                             "Changes": changes})
        self._pending_change = str(resp["ChangeInfo"]["Id"])

    def _plain_change(self, fqdn: str, ttl: int, addresses: list[str]) -> dict[str, Any]:
        rrset: dict[str, Any] = {"Name": fqdn, "Type": "A"}
        if all(_is_ipv4(a) for a in addresses):
            rrset.update(TTL=ttl, ResourceRecords=[{"Value": a} for a in sorted(set(addresses))])
            return {"Action": "UPSERT", "ResourceRecordSet": rrset}
        known = self._endpoint_for(addresses[0])
        if len(addresses) != 1 or known is None:
            raise HadeployError(f"cannot point {fqdn} at {', '.join(addresses)}: expected IPv4 "
                                "addresses or the DNS name of one known load balancer "
                                f"({self._known()})", code=ExitCode.BAD_INPUT)
        rrset["AliasTarget"] = self._alias(known[1])
        return {"Action": "UPSERT", "ResourceRecordSet": rrset}

    def _known(self) -> str:
        return ", ".join(ep.dns_name for ep in self.endpoints.values()) or "none configured"

    @staticmethod
    def _alias(endpoint: Endpoint) -> dict[str, Any]:
        return {"HostedZoneId": endpoint.hosted_zone_id, "DNSName": endpoint.dns_name,
                "EvaluateTargetHealth": True}

    def _failover_rrset(self, fqdn: str, kind: str, ident: str,
                        endpoint: Endpoint) -> dict[str, Any]:
        rrset: dict[str, Any] = {"Name": fqdn, "Type": "A", "SetIdentifier": ident,
                                 "Failover": kind, "AliasTarget": self._alias(endpoint)}
        if endpoint.health_check_id:
            rrset["HealthCheckId"] = endpoint.health_check_id
        return {"Action": "UPSERT", "ResourceRecordSet": rrset}

    def _failover_changes(self, fqdn: str, sets: list[dict[str, Any]],
                          addresses: list[str]) -> list[dict[str, Any]]:
        target = self._endpoint_for(addresses[0])
        if len(addresses) != 1 or target is None:
            raise HadeployError(f"cannot fail {fqdn} over to {', '.join(addresses)}: expected "
                                f"the DNS name of one known load balancer ({self._known()})",
                                code=ExitCode.BAD_INPUT)
        primary = next((s for s in sets if s.get("Failover") == "PRIMARY"), None)
        secondary = next((s for s in sets if s.get("Failover") == "SECONDARY"), None)
        if primary is None:
            raise HadeployError(f"{fqdn} in zone {self.zone} has no PRIMARY failover record",
                                hint="run 'hadeploy up' to create the DNS records",
                                code=ExitCode.BAD_INPUT)
        changes = [self._failover_rrset(fqdn, "PRIMARY", str(primary["SetIdentifier"]),
                                        target[1])]
        alias = primary.get("AliasTarget")
        previous = self._endpoint_for(str(alias["DNSName"])) if alias else None
        # Already primary (a resumed run): re-assert it, leave SECONDARY alone. Unknown old
        # target: move traffic anyway, SECONDARY stays as it is.
        if previous is not None and previous[0] != target[0]:
            ident = str(secondary["SetIdentifier"]) if secondary else previous[0]
            changes.append(self._failover_rrset(fqdn, "SECONDARY", ident, previous[1]))
        return changes

    def wait_visible(self, record: str, addresses: list[str], timeout: float = 10.0) -> float:
        """Wait for the last change to be INSYNC, for the record set to hold ``addresses``
        and (on AWS) for the zone's name servers to serve them; seconds waited."""
        start = time.monotonic()
        deadline = start + timeout
        fqdn = self._fqdn(record)

        def expired(what: str) -> HadeployError:
            return HadeployError(f"{fqdn} {what} after {timeout:.0f} s",
                                 hint="Route 53 usually syncs within 60 s; check "
                                 "'hadeploy status' and run again", code=ExitCode.VERIFY_FAILED)

        delay = 0.05
        while self._pending_change is not None:
            with self._aws("check the change of", fqdn):
                status = self.client().get_change(Id=self._pending_change)["ChangeInfo"]
            if status["Status"] == "INSYNC":
                self._pending_change = None
                break
            if time.monotonic() > deadline:
                raise expired(f"change {self._pending_change} is still {status['Status']}")
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        want = sorted(_norm(a) for a in addresses)
        delay = 0.05
        while (got := sorted(_norm(v) for v in self.read(fqdn))) != want:
            if time.monotonic() > deadline:
                raise expired(f"still reads {got or 'nothing'} instead of {want}")
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        if self.dns_check is not None:
            self.resolve_zone_id()
            servers = list(self._name_servers)
            while (served := self.dns_check(servers, fqdn, addresses,
                                            max(0.5, deadline - time.monotonic()))) is not None:
                if time.monotonic() > deadline:
                    raise expired(f"is not yet served by the zone's name servers: {served}")
                time.sleep(0.5)
        return time.monotonic() - start


class NameServerCheck:
    """Ask each of the zone's name servers directly (dnspython, recursion off).

    Addresses must match exactly. An alias answers with the load balancer's current
    addresses, so there every server's answer must overlap what the load balancer's own
    name resolves to. With failover records and EvaluateTargetHealth, Route 53 keeps
    serving the old region while the new one fails its health check: the check then
    fails, which is the truth about where traffic goes.
    """

    def __init__(self, per_query_timeout: float = 2.0) -> None:
        self.per_query_timeout = per_query_timeout
        self._server_ips: dict[str, list[str]] = {}

    def _a(self, name: str, timeout: float) -> set[str]:
        import dns.resolver

        answer = dns.resolver.resolve(name, "A", lifetime=timeout)
        return {str(r) for r in answer}

    def __call__(self, name_servers: list[str], fqdn: str, expected: list[str],
                 timeout: float) -> str | None:
        import dns.exception
        import dns.message
        import dns.query
        import dns.rdatatype

        per = min(self.per_query_timeout, timeout)
        if not name_servers:
            return "the zone has no name servers in its delegation set"
        try:
            if all(_is_ipv4(e) for e in expected):
                want, exact = set(expected), True
            else:
                want, exact = {ip for e in expected for ip in self._a(e, per)}, False
            for ns in name_servers:
                if ns not in self._server_ips:
                    self._server_ips[ns] = sorted(self._a(ns, per))
                query = dns.message.make_query(fqdn, dns.rdatatype.A)
                query.flags &= ~0x0100  # RD off: ask the authority itself
                resp = dns.query.udp(query, self._server_ips[ns][0], timeout=per)
                got = {item.address for rrset in resp.answer
                       if rrset.rdtype == dns.rdatatype.A for item in rrset}
                if (got != want) if exact else not (got & want):
                    return f"{ns} answers {sorted(got) or 'nothing'}"
        except (dns.exception.DNSException, OSError, IndexError) as exc:
            return f"no answer ({type(exc).__name__})"
        return None
