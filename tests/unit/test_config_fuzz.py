"""Fuzz the configuration loader: mutated hadeploy.yaml files either load into a Deployment
whose every string obeys its rule, or are refused with exit code 2 and a short message that
names a field or a line. No other outcome (another exception, a hang, a megabyte of
error) is allowed.

Hypothesis runs derandomized (the same examples on every run) without an example
database, so CI is reproducible and nothing is written to the checkout.
"""

from __future__ import annotations

import copy
import ipaddress
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hadeploy import config
from hadeploy.errors import ExitCode, HadeployError
from tests.conftest import run_cli

_END = config.EXAMPLE.count("\n") + 1  # the first line after the example

MAX_ERROR = 4096
BASES = {"lab": yaml.safe_load(config.EXAMPLE), "aws": yaml.safe_load(config.EXAMPLE_AWS)}
FUZZ = settings(max_examples=300, derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

# --- the invariants of an accepted Deployment (written independently of config.py) -------

NAME = r"[a-z](?:[a-z0-9-]{0,22}[a-z0-9])?"
LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
RFC1918 = [ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]
AWS_RULES = {
    "account_id": r"[0-9]{12}",
    "instance_type": r"[a-z][a-z0-9-]*\.[a-z0-9]+",
    "ami": r"ami-[0-9a-f]{8,17}|resolve:ssm:/[A-Za-z0-9_./-]+(?::[0-9]+)?",
    "root_device": r"/dev/[a-z][a-z0-9]+",
    "zone_id": r"Z[A-Z0-9]{1,31}",
    "bucket_prefix": r"[a-z0-9][a-z0-9-]{1,59}[a-z0-9]",
    "pulumi_org": r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}",
    "backend_url": r"(?:s3|gs|azblob|file|https?)://[!-~]+",
    "secrets_provider": r"default|passphrase|(?:awskms|azurekeyvault|gcpkms|hashivault)://[!-~]+",
}
CERT = r"arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[A-Za-z0-9-]+"
VAULT = r"arn:aws[a-z-]*:backup:[a-z0-9-]+:[0-9]{12}:backup-vault:[A-Za-z0-9_.-]+"


def _full(pattern: str, value: object) -> bool:
    return isinstance(value, str) and re.fullmatch(pattern, value, re.ASCII) is not None


def _strings(node: Any):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(node, list | tuple):
        for v in node:
            yield from _strings(v)


def _private_subnet(value: str | None, required: bool) -> bool:
    if value is None:
        return not required
    net = ipaddress.IPv4Network(value)
    return net.prefixlen <= 26 and any(net.subnet_of(p) for p in RFC1918)


def check_invariants(dep: config.Deployment) -> None:
    dump = dep.model_dump(mode="json")
    for s in _strings(dump):
        assert s.isascii() and s.isprintable(), repr(s)  # no newline, no control character
    assert _full(NAME, dep.name)
    names = [r.name for r in dep.regions]
    assert len(set(names)) == len(names) and "ctl" not in names
    for r in dep.regions:
        assert _full(NAME, r.name)
        assert _private_subnet(r.lab_subnet, dep.target is config.Target.LAB)
        assert r.aws_region is None or _full(r"[a-z]{2}(?:-[a-z]+)+-[0-9]+", r.aws_region)
    assert _private_subnet(dep.lab.control_subnet, True)
    labels = dep.dns.zone.split(".")
    assert len(labels) >= 2 and all(_full(LABEL, label) for label in labels)
    assert _full(LABEL, dep.dns.record) and len(dep.dns.fqdn) <= 254
    assert _full(r"[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}", dep.app.version)
    assert _full(r"/[A-Za-z0-9._~/-]*", dep.app.health_path)
    assert (dep.aws is None) == (dep.target is config.Target.LAB)
    if dep.aws is not None:
        aws = dep.aws
        for field, rule in AWS_RULES.items():
            value = getattr(aws, field)
            assert value is None or _full(rule, value), (field, value)
        assert all(_full(CERT, v) for v in aws.certificate_arns.values())
        assert all(_full(VAULT, v) for v in aws.backup.copy_vault_arns.values())
        assert _full(r"(?:cron|rate)\([ -'*-~]+\)", aws.backup.schedule)
        for mapping in (aws.certificate_arns, aws.vpc_cidrs, aws.peers,
                        aws.backup.copy_vault_arns):
            assert all(_full(NAME, k) for k in mapping)
        assert all(_full(NAME, v) for v in aws.peers.values())
        checkers = aws.health_checker_regions
        assert len(set(checkers)) == len(checkers) >= 3


FILE_LEVEL = ("is empty", "the file must hold a YAML mapping", "is larger than")


def check_refusal(exc: HadeployError, source: str) -> None:
    assert exc.code is ExitCode.BAD_INPUT, (exc.code, exc.message)
    text = f"{exc.message}\n{exc.hint or ''}"
    assert len(text.encode()) < MAX_ERROR, len(text)
    assert exc.hint, exc.message
    first = exc.message.splitlines()[0]
    assert first.startswith(f"{source}: "), first
    rest = first.removeprefix(f"{source}: ")
    names_line = re.search(r"\bline [0-9]+", rest) is not None
    names_field = re.match(r"[A-Za-z_'][^:]*: ", rest) is not None
    assert names_line or names_field or rest.startswith(FILE_LEVEL), first


# --- mutations -----------------------------------------------------------------------------

def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _get(doc: Any, path: tuple) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _set(doc: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    _get(doc, path[:-1])[path[-1]] = value
    return doc


texts = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=80),
    st.sampled_from(["east", "west", "ctl", "demo", "hadeploy.test", "10.91.1.0/24",
                     "127.0.0.0/24", "192.0.2.0/24", "1.0.0", "/healthz", "us-east-1",
                     "123456789012", "\u0661" * 12, "evil\n.test", "x\ny", "a\u0000b",
                     "t3.small", "cron(0 3 * * ? *)", "rate(1 day)", "s3://bucket",
                     "awskms://alias/x", "ami-12345678", "Z123", "/dev/xvda",
                     "\u212a.test", "\ufeffdemo", "demo\u200b", "route53", "rfc2136"]),
    st.builds(lambda base, extra: base + extra,
              st.sampled_from(["east", "hadeploy.test", "1.0.0", "/healthz", "us-east-1",
                               "123456789012", "10.91.1.0/24"]),
              st.sampled_from(["\n", "\r", "\t", " ", "\x85", "\u2028", "\n.test",
                               ";reboot", "\u0661", "."])),
    st.builds(lambda ch, n: ch * n, st.characters(codec="utf-8"),
              st.integers(min_value=100, max_value=100_000)),
)
scalars = st.one_of(texts, st.integers(), st.floats(), st.booleans(), st.none(),
                    st.integers(min_value=-(10**30), max_value=10**30))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)), max_leaves=8)


# Near misses of a valid string: what '$' anchors, \d and str.lower() let through.
NASTY_EDITS = ["\n", "\r\n", "\n.test", "\nHADEPLOY_BIND=0.0.0.0", " ", "\t", "\x00", "\x85",
               "\u2028", "\u00a0", "\u0661", "\u212a", "\uff45", "\u200b", ";reboot", "$(id)",
               ".", "-", "/", "..", "A"]
NEAR_MISSES = ["ctl", "127.0.0.0/24", "169.254.0.0/24", "192.0.2.0/24", "198.18.0.0/24",
               "0.0.0.0/24", "240.0.0.0/24", "10.91.9.0/27", "\u0661" * 12,
               "\u0661\u0660.91.9.0/24", "us-east-\u0661", "\u212a.test", "x." * 130 + "test",
               "a" * 64 + ".test", "xn--bucket", "cron(0 3 * * ? *)\nx", "route53"]


def _string_leaves(doc: Any) -> list[tuple]:
    return [p for p in _paths(doc) if p and isinstance(_get(doc, p), str)]


def _shared_bomb(levels: int) -> list[Any]:
    """Shared references: yaml.safe_dump writes them as anchors and aliases."""
    node: list[Any] = ["lol"] * 9
    for _ in range(levels):
        node = [node] * 9
    return node


def _nested(depth: int) -> Any:
    node: Any = "x"
    for i in range(depth):
        node = [node] if i % 2 else {"k": node}
    return node


@st.composite
def mutated_docs(draw: st.DrawFn) -> tuple[Any, list[str]]:
    doc = copy.deepcopy(BASES[draw(st.sampled_from(sorted(BASES)))])
    applied = []
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        kind = draw(st.sampled_from(["tweak", "tweak", "tweak", "replace", "replace",
                                     "delete", "unknown", "wrong_type", "alias", "bomb",
                                     "deep"]))
        if kind == "tweak":  # a string value, slightly wrong
            leaves = _string_leaves(doc)
            if leaves:
                path = draw(st.sampled_from(leaves))
                old = _get(doc, path)
                how = draw(st.sampled_from(["append", "insert", "near_miss"]))
                if how == "near_miss":
                    new = draw(st.sampled_from(NEAR_MISSES))
                else:  # appended: where a '$'-anchored pattern stops looking
                    pos = len(old) if how == "append" else draw(
                        st.integers(min_value=0, max_value=len(old)))
                    new = old[:pos] + draw(st.sampled_from(NASTY_EDITS)) + old[pos:]
                doc = _set(doc, path, new)
        applied.append(f"{kind} {path!r}"[:200])
        parent = _get(doc, path[:-1]) if path else None
        if kind == "tweak":
            pass  # done above
        elif kind == "replace":
            doc = _set(doc, path, draw(values))
        elif kind == "delete" and path and isinstance(parent, dict | list):
            del parent[path[-1]]
        elif kind == "unknown":
            target = _get(doc, path)
            if isinstance(target, dict):
                target[draw(texts)] = draw(values)
        elif kind == "wrong_type":
            doc = _set(doc, path, draw(st.sampled_from([[], {}, [1, 2], {"a": 1}, 0, True,
                                                        None, "text", 1.5])))
        # The last three share or nest objects: the walk over paths stops after them.
        elif kind == "alias":
            source = draw(st.sampled_from(paths))
            if path and path[:len(source)] != source:  # (else it may contain itself)
                doc = _set(doc, path, _get(doc, source))  # written as anchor + alias
            break
        elif kind == "bomb":
            doc = _set(doc, path, _shared_bomb(draw(st.integers(min_value=1, max_value=6))))
            break
        elif kind == "deep":
            doc = _set(doc, path, _nested(draw(st.integers(min_value=10, max_value=120))))
            break
    return doc, applied


def _dump(doc: Any) -> str:
    try:
        return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, width=4096)
    except RecursionError:  # our own nesting was too deep for the dumper
        return "name: " + "[" * 500 + "]" * 500 + "\n"


def _outcome(path: Path) -> None:
    try:
        dep = config.load(path)
    except HadeployError as exc:
        check_refusal(exc, str(path))
    else:
        check_invariants(dep)


# --- the fuzz tests ---------------------------------------------------------------------

@FUZZ
@given(case=mutated_docs())
def test_mutated_documents(tmp_path: Path, case):
    doc, _applied = case
    path = tmp_path / "hadeploy.yaml"
    path.write_text(_dump(doc), encoding="utf-8")
    _outcome(path)


@st.composite
def mutated_texts(draw: st.DrawFn) -> str:
    """Text-level edits the dumper cannot produce: duplicate lines (duplicate keys),
    inserted characters and lines, truncation, documents, anchors."""
    lines = draw(st.sampled_from([config.EXAMPLE, config.EXAMPLE_AWS])).splitlines(True)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        if not lines:
            break
        i = draw(st.integers(min_value=0, max_value=len(lines) - 1))
        kind = draw(st.sampled_from(["dup_line", "insert_chars", "insert_line", "cut",
                                     "anchor", "document", "indent"]))
        if kind == "dup_line":
            lines.insert(i, lines[i])
        elif kind == "insert_chars":
            pos = draw(st.integers(min_value=0, max_value=len(lines[i])))
            lines[i] = lines[i][:pos] + draw(texts) + lines[i][pos:]
        elif kind == "insert_line":
            lines.insert(i, draw(st.sampled_from([
                "name: other\n", "dns: {zone: x.test}\n", "x: &a [1, *a]\n",
                "--- \n", "%YAML 1.1\n", "x: !!python/object:os.system ls\n",
                "x: !!binary 'zz'\n", "hosts: 1:2:3:4\n", "x: 2001-13-45\n",
                "<<: {name: merged}\n", "? [a, b]\n: c\n", "x: *undefined\n"])))
        elif kind == "cut":
            lines = lines[:i]
        elif kind == "anchor":
            lines[i] = lines[i].replace(": ", ": &anc ", 1)
            lines.append("extra: *anc\n")
        elif kind == "document":
            lines.append("---\n")
            lines.extend(lines[: i + 1])
        elif kind == "indent":
            lines[i] = " " * draw(st.integers(min_value=1, max_value=7)) + lines[i]
    return "".join(lines)


@FUZZ
@given(text=mutated_texts())
def test_mutated_texts(tmp_path: Path, text):
    path = tmp_path / "hadeploy.yaml"
    path.write_text(text, encoding="utf-8")
    _outcome(path)


@settings(max_examples=60, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2048))
def test_random_bytes(tmp_path: Path, data):
    path = tmp_path / "hadeploy.yaml"
    path.write_bytes(data)
    _outcome(path)


def test_the_checks_see_a_bad_model():
    """check_invariants() is not vacuous: a model built around validation fails it."""
    dep = config.parse(BASES["lab"])
    bad = dep.model_copy(update={"dns": dep.dns.model_copy(update={"zone": "evil\n.test"})})
    with pytest.raises(AssertionError):
        check_invariants(bad)


# --- the real CLI on a fixed corpus of nasty files -----------------------------------------

def _bomb() -> str:
    text = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    for prev, cur in zip("abcdefgh", "bcdefghi", strict=True):
        text += f"{cur}: &{cur} [{', '.join([f'*{prev}'] * 9)}]\n"
    return text + config.EXAMPLE.replace("name: demo ", "name: *i ")


# case: (file content, or "DIR"/"FIFO"; what the first line of the error must say)
CORPUS: dict[str, tuple[Any, str]] = {
    "alias bomb": (_bomb(), "line 5: the document expands to more than 10000 values"),
    "deep nesting": (config.EXAMPLE + "x: " + "[" * 20_000 + "]" * 20_000 + "\n",
                     f"line {_END}: nesting deeper than 50 levels"),
    "duplicate keys": (config.EXAMPLE.replace("  ttl: 1 ", "  ttl: 1\n  ttl: 6 "),
                       "line 11: duplicate key 'ttl' (first on line 10)"),
    "duplicate top-level key": (config.EXAMPLE + "target: aws\n",
                                f"line {_END}: duplicate key 'target' (first on line 5)"),
    "binary": (bytes(range(256)) * 16, "is not UTF-8 text"),
    "2 MB": (config.EXAMPLE + "#" + "x" * (2 * 1024 * 1024) + "\n", "is larger than 1024 KiB"),
    "newline in the zone": (config.EXAMPLE.replace("zone: hadeploy.test", 'zone: "evil\\n.test"'),
                            "dns.zone: 'evil\\n.test' is not a DNS zone name"),
    "newline in the version": (config.EXAMPLE.replace("version: 1.0.0",
                                                      'version: "1.0\\nHADEPLOY_BIND=0"'),
                               "app.version: '1.0\\nHADEPLOY_BIND=0' is not a version"),
    "Arabic-Indic account id": (config.EXAMPLE_AWS.replace('"123456789012"',
                                                           '"' + "\u0661" * 12 + '"'),
                                "aws.account_id:"),
    "region named ctl": (config.EXAMPLE.replace("name: west", "name: ctl"),
                         "regions[1].name: 'ctl' is reserved"),
    "loopback subnet": (config.EXAMPLE.replace("10.91.2.0/24", "127.0.2.0/24"),
                        "regions[1].lab_subnet: '127.0.2.0/24' is not an RFC 1918"),
    "dns provider": (config.EXAMPLE.replace("  ttl: 1 ", "  provider: route53\n  ttl: 1 "),
                     "dns.provider: unknown key 'provider'"),
    "huge key": (config.EXAMPLE + "? " + "k" * 500_000 + "\n: 1\n", "unknown key 'kkkk"),
    "directory": ("DIR", "is a directory, not a file"),
    "fifo": ("FIFO", "is a FIFO (named pipe), not a regular file"),
}


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_cli_refuses_nasty_configs(tmp_path: Path, case):
    content, expected = CORPUS[case]
    cfg = tmp_path / "hadeploy.yaml"
    if content == "DIR":
        cfg.mkdir()
    elif content == "FIFO":
        os.mkfifo(cfg)
    elif isinstance(content, bytes):
        cfg.write_bytes(content)
    else:
        cfg.write_text(content, encoding="utf-8")
    state = tmp_path / "state"
    r = run_cli("plan", "--config", str(cfg), cwd=tmp_path,
                env={"HADEPLOY_STATE_DIR": str(state)}, timeout=60)
    assert r.rc == 2, (r.rc, r.err[:2000])
    assert r.err.startswith("error: "), r.err[:2000]
    assert "Traceback" not in r.out + r.err, r.err[:2000]
    assert len(r.err.encode()) < MAX_ERROR, len(r.err)
    assert "fix:" in r.err
    first = r.err.splitlines()[0]
    assert first.startswith(f"error: {cfg}: ") and expected in first, first[:300]
    assert not state.exists(), "a refused config must not create state"
    assert not (tmp_path / ".hadeploy").exists()
