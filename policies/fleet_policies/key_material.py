"""Private keys never travel in clear where anyone who reads the project can read them: instance, template, group
and project metadata (every VM and whoever can read the project sees it), startup scripts. A key belongs in Secret
Manager, read at boot by the one service account that needs it. And an advisory: a fleet whose agents register with
a public registry address over plaintext (heartbeats can be replayed, lookups read, on the path).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping
from typing import Any

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

from . import facts as pilot
from .advisory import vm_rule
from .gce import (
    INSTANCE_SETTINGS,
    NESTED_METADATA,
    PROJECT_METADATA,
    PROJECT_METADATA_ITEM,
    VM_TYPES,
    known,
    metadata_of,
    metadata_value,
)
from .vms import EffectiveVm

# A PEM private key of any kind (PKCS#1, PKCS#8, EC, DSA, OpenSSH, encrypted), whole or cut short
PEM_PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")
# A service-account key file (JSON): its private key, escaped as JSON escapes it
SERVICE_ACCOUNT_KEY = re.compile(r'"private_key"\s*:\s*"-----BEGIN')
# A metadata key that names a key or a secret, holding a value (a Secret Manager name is a reference, not the key)
SECRET_NAME = re.compile(r"(?:^|[-_.])(?:private[-_]?key|secret|password|passwd|tls[-_]key|key[-_]pem|api[-_]key|token)"
                         r"(?:$|[-_.])", re.IGNORECASE)
SECRET_REFERENCE = re.compile(r"^projects/[^/]+/secrets/[^/]+(?:/versions/[^/]+)?$")


def key_material(value: Any) -> str | None:
    """What kind of private key VALUE holds, or None."""
    text = value if isinstance(value, str) else ""
    if PEM_PRIVATE_KEY.search(text):
        return "a PEM private key"
    if SERVICE_ACCOUNT_KEY.search(text):
        return "a service-account key file"
    return None


def _texts(resource_type: str, props: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """(where, value) of every text a resource of this type hands a VM or the project: its metadata values (a
    secret's too: metadata is clear text whatever the program marks), its instance startup script, a project
    metadata item's value, zonal metadata."""
    if resource_type in VM_TYPES or resource_type in NESTED_METADATA:
        where = "metadata" if resource_type in VM_TYPES else ".".join(NESTED_METADATA[resource_type])
        metadata = known(lambda: metadata_of(resource_type, props), {})
        for key in list(metadata):
            yield f"{where}.{key}", known(lambda k=key: metadata.get(k))
        if resource_type in VM_TYPES:
            yield "metadataStartupScript", known(lambda: props.get("metadataStartupScript"))
    elif resource_type == PROJECT_METADATA_ITEM:
        key = known(lambda: props.get("key"), "(key not known)")
        yield f"project metadata {key}", known(lambda: props.get("value"))
    elif resource_type == PROJECT_METADATA:
        metadata = known(lambda: props.get("metadata"), {})
        for key in list(metadata) if isinstance(metadata, Mapping) else []:
            yield f"project metadata {key}", known(lambda k=key: metadata.get(k))
    elif resource_type == INSTANCE_SETTINGS:
        zonal = known(lambda: props.get("metadata"), {})
        items = known(lambda: zonal.get("items"), {}) if isinstance(zonal, Mapping) else {}
        for key in list(items) if isinstance(items, Mapping) else []:
            yield f"zone metadata {key}", known(lambda k=key: items.get(k))


def _named_secret(where: str, value: Any) -> bool:
    key = where.rsplit(".", 1)[-1].rsplit(" ", 1)[-1]
    text = value.strip() if isinstance(value, str) else ""
    return bool(SECRET_NAME.search(key)) and bool(text) and not SECRET_REFERENCE.match(text)


def _no_keys(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    for where, value in _texts(args.resource_type, args.props):
        kind = key_material(value)
        if kind is None and _named_secret(where, value):
            kind = "a value under a key's or a secret's name"
        if kind is not None:
            report_violation(f"{args.name} carries {kind} in {where}: metadata and startup scripts are clear text to "
                             "every VM of the project and whoever can read it. Keep the key in Secret Manager and "
                             "let the one service account that needs it read it at boot.", None)


no_private_keys = ResourceValidationPolicy(
    name="no-private-keys",
    description="No private key (a PEM block, a service-account key file, a value under a key's or secret's name) in "
                "any instance, template, group or project metadata or startup script: keys live in Secret Manager.",
    validate=_no_keys,
)


# The ranges a VPC's subnets take (RFC 1918 and the shared 100.64/10): a registry address in them is reached inside
# the VPC; any other is reached over the internet
VPC_RANGES = tuple(ipaddress.ip_network(r) for r in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"))


def _public(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return True  # a name: whatever it resolves to, nothing says it stays inside the VPC
    return not (address.is_loopback or address.is_link_local or any(address in r for r in VPC_RANGES))


def _plaintext_over_internet(vm: EffectiveVm) -> str | None:
    if vm.role != pilot.ROLE_SWARM:
        return None
    endpoint = metadata_value(vm.metadata, pilot.MetadataKey.REGISTRY)
    host = endpoint.rsplit(":", 1)[0].strip("[]")
    if not host or not _public(host) or metadata_value(vm.metadata, pilot.MetadataKey.REGISTRY_FINGERPRINT):
        return None
    return (f"its agents register with {endpoint}, a public address, over plaintext: anyone on the path reads "
            "every lookup and can replay a heartbeat (signed over constant text) to keep a dead agent online; "
            "set pilot-fleet:registry.tls: true (agents pin the registry's certificate), or agentReach: vpc")


registry_not_plaintext_over_internet = vm_rule(
    "registry-not-plaintext-over-internet",
    "A swarm VM whose agents register with a public registry address over plaintext (agentReach internet, "
    "registry.tls false).",
    (f"metadata.{pilot.MetadataKey.ROLE}", f"metadata.{pilot.MetadataKey.REGISTRY}",
     f"metadata.{pilot.MetadataKey.REGISTRY_FINGERPRINT}"),
    _plaintext_over_internet,
)
