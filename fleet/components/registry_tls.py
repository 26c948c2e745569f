"""The registry's TLS: one key and self-signed certificate per fleet (pulumi-tls; the key is a secret in the state),
the key in a Secret Manager secret that only the rendezvous' service account may read, and what the VMs are given:
the rendezvous the certificate and the secret version's name, every swarm VM the certificate's fingerprint.

The key never goes into metadata, outputs or the plan's text (the policy pack's no-private-keys holds that). A
rotation is `registry.tlsRotation` raised by one: a new key, certificate and secret version, the rendezvous restarts
on them (its watcher), and the swarm supervisors roll their agents to the new pin (README "Registry TLS")."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp
import pulumi_tls as tls

from fleet.facts import names, pilot

# The certificate outlives any sensible rotation: agents pin its fingerprint, never its dates (the daemon's pinned
# dial checks the SHA-256 alone), so expiry would only be one more way to break a fleet.
VALIDITY_HOURS = 10 * 365 * 24
SECRET_ACCESSOR = "roles/secretmanager.secretAccessor"
_PEM_BODY = re.compile(r"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.DOTALL)


def certificate_der(pem: str) -> bytes:
    """The DER bytes of the first certificate in PEM."""
    match = _PEM_BODY.search(pem or "")
    if not match:
        raise ValueError("no PEM certificate")
    return base64.b64decode("".join(match.group(1).split()))


def certificate_attribute(pem: str) -> str:
    """The certificate as the rendezvous' metadata carries it: its DER in base64, one line."""
    return base64.b64encode(certificate_der(pem)).decode()


def fingerprint(pem: str) -> str:
    """What pilot-daemon's -registry-fingerprint pins: the hex SHA-256 of the certificate's DER bytes."""
    return hashlib.sha256(certificate_der(pem)).hexdigest()


@dataclass(frozen=True, kw_only=True)
class RegistryTlsArgs:
    project: str
    rendezvous: str  # the rendezvous VM's name: the secret is named after it
    rotation: int  # the certificate's generation (registry.tlsRotation)
    reader: pulumi.Input[str]  # the rendezvous' service account e-mail: the one reader of the key
    labels: Mapping[str, str]


class RegistryTls(pulumi.ComponentResource):
    """The fleet's registry certificate and where its key lives."""

    certificate: pulumi.Output[str]  # DER in base64 (the rendezvous' pilot-registry-tls-cert)
    fingerprint: pulumi.Output[str]  # hex SHA-256 (every swarm VM's pilot-registry-fingerprint)
    key_version: pulumi.Output[str]  # projects/P/secrets/S/versions/N (the rendezvous' pilot-registry-key-secret)

    def __init__(self, name: str, args: RegistryTlsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pilot-fleet:fleet:RegistryTls", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        generation = f"{name}-{args.rotation}"  # a rotation is a new key, certificate and secret version
        key = tls.PrivateKey(f"{generation}-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        # secret here, whatever the engine: a plan (the offline one too) shows it as [secret]
        key_pem = pulumi.Output.secret(key.private_key_pem)
        cert = tls.SelfSignedCert(
            f"{generation}-cert", private_key_pem=key_pem,
            subject=tls.SelfSignedCertSubjectArgs(organization=pilot.PROJECT_NAME,
                                                  common_name=f"{args.rendezvous} registry"),
            validity_period_hours=VALIDITY_HOURS, allowed_uses=["digital_signature", "server_auth"], opts=child)
        secret_id = names.registry_key_secret(args.rendezvous)
        secret = gcp.secretmanager.Secret(
            secret_id, secret_id=secret_id, project=args.project, labels=dict(args.labels),
            replication=gcp.secretmanager.SecretReplicationArgs(auto=gcp.secretmanager.SecretReplicationAutoArgs()),
            opts=child)
        version = gcp.secretmanager.SecretVersion(f"{generation}-key-version", secret=secret.id,
                                                  secret_data=key_pem, opts=child)
        # the secret's own policy, not the project's: this account reads this secret and no other
        gcp.secretmanager.SecretIamMember(f"{secret_id}-reader", project=args.project, secret_id=secret.secret_id,
                                          role=SECRET_ACCESSOR,
                                          member=pulumi.Output.from_input(args.reader).apply(
                                              lambda email: f"serviceAccount:{email}"), opts=child)
        self.certificate = cert.cert_pem.apply(certificate_attribute)
        self.fingerprint = cert.cert_pem.apply(fingerprint)
        self.key_version = version.name
        self.register_outputs({"fingerprint": self.fingerprint})
