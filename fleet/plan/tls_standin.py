"""What the offline plan's mock engine answers for the `tls` provider, in place of the provider itself: a real key and
a real self-signed certificate, so the plan's fingerprint is one a real daemon can pin and the test bed's rendezvous
can serve. Both are derived from the resource's name (an ECDSA key from a digest, RFC 6979 signatures, fixed dates),
so the same stack plans the same bytes on every run and `fleet plan --compare` shows no change that is not one. A
stand-in: `pulumi up` runs the real provider, whose key is random and whose dates are the day it ran."""

from __future__ import annotations

import datetime
import hashlib
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
SELF_SIGNED_CERT = "tls:index/selfSignedCert:SelfSignedCert"
TYPES = (PRIVATE_KEY, SELF_SIGNED_CERT)
# the stand-in certificate's first day (the provider's is the time it ran)
NOT_BEFORE = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
_CURVE_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # P-256's n


def _key(seed: str) -> ec.EllipticCurvePrivateKey:
    scalar = int.from_bytes(hashlib.sha256(f"pilot-fleet plan stand-in key {seed}".encode()).digest()) \
        % (_CURVE_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


def private_key(seed: str, state: dict[str, Any]) -> dict[str, Any]:
    """A PrivateKey's outputs (ECDSA P-256 only: what the fleet asks for)."""
    if state.get("algorithm") != "ECDSA" or state.get("ecdsaCurve") != "P256":
        raise ValueError("the plan's tls stand-in makes ECDSA P256 keys only")
    key = _key(seed)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return {**state, "privateKeyPem": pem, "publicKeyPem": public}


def _unsecret(value: Any) -> Any:
    if isinstance(value, dict) and "value" in value and len(value) <= 2:
        return value["value"]
    return value


def self_signed_cert(seed: str, state: dict[str, Any]) -> dict[str, Any]:
    """A SelfSignedCert's outputs: the certificate of its subject, signed by the key it was given."""
    key = serialization.load_pem_private_key(str(_unsecret(state["privateKeyPem"])).encode(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("the plan's tls stand-in signs with ECDSA keys only")
    subject = state.get("subject") or {}
    name = x509.Name([x509.NameAttribute(oid, str(subject[field])) for field, oid in
                      (("organization", NameOID.ORGANIZATION_NAME), ("commonName", NameOID.COMMON_NAME))
                      if subject.get(field)])
    hours = int(state.get("validityPeriodHours") or 1)
    serial = int.from_bytes(hashlib.sha256(f"serial {seed}".encode()).digest()[:16]) >> 1
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(serial).not_valid_before(NOT_BEFORE)
               .not_valid_after(NOT_BEFORE + datetime.timedelta(hours=hours))
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    cert = builder.sign(key, hashes.SHA256(), ecdsa_deterministic=True)
    return {**state, "certPem": cert.public_bytes(serialization.Encoding.PEM).decode(), "keyAlgorithm": "ECDSA",
            "validityStartTime": NOT_BEFORE.isoformat(),
            "validityEndTime": (NOT_BEFORE + datetime.timedelta(hours=hours)).isoformat()}


def outputs(typ: str, seed: str, state: dict[str, Any]) -> dict[str, Any]:
    return private_key(seed, state) if typ == PRIVATE_KEY else self_signed_cert(seed, state)


def key_and_certificate(seed: str, common_name: str = "pilot-fleet registry") -> tuple[str, str]:
    """A key and its self-signed certificate (PEM), as the stand-in makes them for a plan: for tests and benches
    that need the registry's pair without a plan."""
    key = private_key(seed, {"algorithm": "ECDSA", "ecdsaCurve": "P256"})["privateKeyPem"]
    cert = self_signed_cert(seed, {"privateKeyPem": key, "validityPeriodHours": 24 * 365,
                                   "subject": {"organization": "pilot-fleet", "commonName": common_name}})
    return str(key), str(cert["certPem"])
