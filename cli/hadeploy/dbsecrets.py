"""The database tier's secrets: SCRAM passwords and a certificate authority per deployment.

In ``<state>/db/`` (mode 0700), every file 0600:
  passwords.json     superuser, replication, rewind, app, restapi and backup passwords
  ca.crt, ca.key     the deployment's CA (EC P-256): every client verifies the servers
  certs/<host>.crt   a server certificate per database host, its key next to it; the
  certs/<host>.key   names in it are the host's name and address and the region's VIP
                     (clients reach a server through haproxy on the VIP)

Generated once, when missing, and never printed; Ansible reads them on the controller
(``lookup('file', …)`` in tasks marked ``no_log``), so no copy lands in an inventory, an
artifact or a log.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import ipaddress
import json
import secrets
from pathlib import Path
from typing import Any

from hadeploy.state import atomic_write, read_text

ROLES = ("superuser", "replication", "rewind", "app", "restapi", "backup")
# Roles added after a deployment's file was written: created on the next 'up' (the roles
# that existed keep their passwords).
ADDED_ROLES = ("backup",)
VALIDITY = _dt.timedelta(days=3650)


def db_dir(state: Path) -> Path:
    return state / "db"


def passwords_path(state: Path) -> Path:
    return db_dir(state) / "passwords.json"


def ca_path(state: Path) -> Path:
    return db_dir(state) / "ca.crt"


def cert_path(state: Path, host: str) -> Path:
    return db_dir(state) / "certs" / f"{host}.crt"


def key_path(state: Path, host: str) -> Path:
    return db_dir(state) / "certs" / f"{host}.key"


def names_digest(dns: list[str], ips: list[str]) -> str:
    """What a server certificate must name, as a short digest (its desired spec)."""
    blob = json.dumps([sorted(dns), sorted(ips)]).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# --- passwords -------------------------------------------------------------------------

def missing_roles(state: Path) -> list[str]:
    """Roles added since the passwords file was written (``up`` adds them)."""
    try:
        doc = json.loads(read_text(passwords_path(state)) or "")
    except ValueError:
        return []  # unusable: load_passwords says why
    return [r for r in ADDED_ROLES if isinstance(doc, dict) and r not in doc]


def ensure_passwords(state: Path) -> bool:
    """Create the passwords file if it is missing, add the passwords of roles added since
    it was written; whether anything was created."""
    if passwords_path(state).exists():
        missing = missing_roles(state)
        if missing:
            doc = json.loads(read_text(passwords_path(state)) or "")
            doc.update({role: secrets.token_urlsafe(24) for role in missing})
            atomic_write(passwords_path(state), json.dumps(doc, indent=2))
        load_passwords(state)  # a file that cannot be used is refused, never overwritten
        return bool(missing)
    atomic_write(passwords_path(state),
                 json.dumps({role: secrets.token_urlsafe(24) for role in ROLES}, indent=2))
    return True


def load_passwords(state: Path) -> dict[str, str]:
    from hadeploy.state import StateError

    path = passwords_path(state)
    text = read_text(path)
    if text is None:
        raise StateError(path, "is missing (the database tier's passwords)",
                         "restore it from backup; 'hadeploy up' creates it only for a new "
                         "database tier")
    try:
        doc = json.loads(text or "")
        if not isinstance(doc, dict) or any(not isinstance(doc.get(r), str) or
                                            len(doc[r]) < 16 for r in ROLES):
            raise ValueError("a role's password is missing or short")
    except ValueError as exc:
        raise StateError(path, f"cannot be used ({str(exc)[:80]})",
                         "restore it from backup; a new one would lock every client out of "
                         "the existing databases") from None
    return {r: str(doc[r]) for r in ROLES}


# --- certificates ----------------------------------------------------------------------

def _new_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))


def _load_ca(state: Path) -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(ca_path(state).read_bytes())
    key = serialization.load_pem_private_key(
        (db_dir(state) / "ca.key").read_bytes(), password=None)
    return cert, key


def ensure_ca(state: Path, deployment: str) -> bool:
    """The deployment's CA; whether it was created."""
    if ca_path(state).exists() and (db_dir(state) / "ca.key").exists():
        return False
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"hadeploy {deployment} CA")])
    now = _dt.datetime.now(_dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    from cryptography.hazmat.primitives import serialization

    atomic_write(db_dir(state) / "ca.key", _pem_key(key))
    atomic_write(ca_path(state), cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return True


def cert_names(path: Path) -> tuple[list[str], list[str]] | None:
    """(DNS names, IP addresses) a certificate file names; None when missing/unreadable."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return None
    return ([str(n) for n in san.get_values_for_type(x509.DNSName)],
            [str(a) for a in san.get_values_for_type(x509.IPAddress)])


def ensure_server_cert(state: Path, host: str, dns: list[str], ips: list[str]) -> bool:
    """A server certificate of ``host`` naming ``dns`` and ``ips``, signed by the CA;
    (re)issued when missing or naming something else. Whether it was issued."""
    have = cert_names(cert_path(state, host))
    if have is not None and names_digest(*have) == names_digest(dns, ips) \
            and key_path(state, host).exists():
        return False
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert, ca_key = _load_ca(state)
    key = _new_key()
    now = _dt.datetime.now(_dt.UTC)
    alt = [x509.DNSName(n) for n in dns] + [x509.IPAddress(ipaddress.ip_address(a))
                                            for a in ips]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    atomic_write(key_path(state, host), _pem_key(key))
    atomic_write(cert_path(state, host), cert.public_bytes(serialization.Encoding.PEM),
                 mode=0o644)
    return True
