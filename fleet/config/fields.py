"""The value types of the stack config (fleet/config/model.py): names, zones, ranges, labels, project ids, key
names, ports and sizes, each with its validator, whose message is the one line a bad value gets."""

from __future__ import annotations

import ipaddress
import math
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

from fleet.facts import pilot
from fleet.facts.tables import HTTPS_PATTERN

GCE_NAME = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")  # fullmatch: `$` would let a trailing newline pass
ZONE = re.compile(r"[a-z]+-[a-z]+\d+-[a-z]")
# Google Cloud project ids: 6-30 characters, lowercase letters, digits and hyphens, a letter first, no hyphen last.
PROJECT_ID = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")
# A Cloud KMS key's resource name (what a disk's kmsKeySelfLink takes)
KMS_KEY = re.compile(rf"projects/({PROJECT_ID.pattern})/locations/([a-z0-9-]+)/keyRings/([A-Za-z0-9_-]{{1,63}})"
                     r"/cryptoKeys/([A-Za-z0-9_-]{1,63})")
# A Cloud Monitoring notification channel's resource name (what an alert policy's notificationChannels take)
NOTIFICATION_CHANNEL = re.compile(rf"projects/{PROJECT_ID.pattern}/notificationChannels/[0-9]+")
# Compute Engine labels: keys and values of lowercase letters, digits, `_` and `-`, at most 63; a key starts with a
# letter; at most 64 labels on a resource. The fleet's own are set by the program.
# Compute Engine labels: lowercase letters (international ones too), digits, _ and -; at most 63 characters; a key
# starts with a lowercase letter and is not empty


def _label_char(c: str) -> bool:
    return c in "0123456789_-" or (c.isalpha() and c.islower())


def label_key_ok(key: str) -> bool:
    return 0 < len(key) <= 63 and key[0].isalpha() and key[0].islower() and all(map(_label_char, key))


def label_value_ok(value: str) -> bool:
    return len(value) <= 63 and all(map(_label_char, value))
FLEET_LABELS = ("app", "stack", "managed-by", "role", pilot.POOL_LABEL)
MAX_LABELS = 64
# Compute Engine's largest persistent disk (GB).
MAX_DISK_GB = 65536


def _no_bool(value: Any) -> Any:
    """A number field refuses booleans (`targetAgents: true` would otherwise be one agent), and says that NaN and
    the infinities are no numbers before any bound is checked against them."""
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is a boolean, not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value} is not a finite number")
    return value


def _subnet(value: str) -> str:
    """A subnet of the fleet's own VPC: private IPv4 (RFC 1918, or RFC 6598's shared range), /8 to /29."""
    net = ipaddress.ip_network(_cidr(value))
    if net.version != 4:
        raise ValueError(f"{value} is not an IPv4 range (the subnet's primary range is IPv4)")
    shared = ipaddress.ip_network("100.64.0.0/10")
    if net.is_loopback or net.is_link_local or not (net.is_private or net.subnet_of(shared)) or net.prefixlen < 8:
        raise ValueError(f"{value} is not a private range (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10)")
    if net.prefixlen > 29:
        raise ValueError(f"{value} is smaller than /29, Compute Engine's smallest subnet")
    return value


def _labels(value: dict[str, str]) -> dict[str, str]:
    bad = [f"{k}={v}" for k, v in value.items()
           if not label_key_ok(k) or not isinstance(v, str) or not label_value_ok(v)]
    if bad:
        raise ValueError(f"labels {', '.join(bad[:5])} are not Compute Engine labels (lowercase letters, digits, _ "
                         "and -, at most 63; a key starts with a letter)")
    own = sorted(set(value) & set(FLEET_LABELS))
    if own:
        raise ValueError(f"{', '.join(own)} are the fleet's own labels, which the program sets")
    if len(value) + len(FLEET_LABELS) > MAX_LABELS:
        raise ValueError(f"{len(value)} labels and the fleet's own {len(FLEET_LABELS)}: a resource takes at most "
                         f"{MAX_LABELS}")
    return value


def _matching(pattern: re.Pattern[str], what: str) -> Callable[[str], str]:
    """A validator: VALUE must match PATTERN whole, else "'VALUE' is not WHAT"."""
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}")
        return value
    return check


_project = _matching(PROJECT_ID, "a project id (6-30 lowercase letters, digits and hyphens, starting with a letter)")
_gce_name = _matching(GCE_NAME, "a valid Compute Engine name (lowercase letters, digits, hyphens; 1-63)")
_zone = _matching(ZONE, "a zone name such as us-central1-a")
_channel = _matching(NOTIFICATION_CHANNEL, "a notification channel's resource name "
                     "(projects/PROJECT/notificationChannels/ID, as `gcloud beta monitoring channels list` shows)")
_kms_key = _matching(KMS_KEY, "a Cloud KMS key name (projects/PROJECT/locations/LOCATION/keyRings/RING/cryptoKeys/KEY)")


def _release_url(value: str) -> str:
    """No credentials: the URL is written in clear into the VM's metadata and the plan. A query string is refused
    whole, not by a list of parameter names: signed storage URLs and API keys go by many names, and a binary pinned
    by its sha256 needs no query to be found."""
    parts = urllib.parse.urlsplit(value)
    if parts.username or parts.password:
        raise ValueError("carries credentials (user:password@), which would be written in clear into the VM's "
                         "metadata and the plan (secret config values are still clear there): serve the binary "
                         "where the VM fetches it without them")
    if parts.query or value.rstrip().endswith("?"):
        raise ValueError("has a query string, which is written in clear into the VM's metadata and the plan, secret "
                         "or not (a signed URL or an API key there is a credential): serve the binary at a URL "
                         "without one")
    if parts.fragment or "#" in value:
        raise ValueError("has a fragment (#...), which no server is sent and which is written in clear into the "
                         "VM's metadata and the plan: a binary pinned by its sha256 needs none")
    return value


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as exc:
        raise ValueError(f"not a CIDR range: {value!r} ({exc})") from None




@dataclass(frozen=True)
class Kind:
    """What a value type is, in the configuration reference's words (fleet/generators/config_reference.py);
    pydantic passes it by."""

    name: str


Cidr = Annotated[str, AfterValidator(_cidr), Kind("CIDR range")]
KmsKey = Annotated[str, AfterValidator(_kms_key), Kind("Cloud KMS key name")]
NotificationChannel = Annotated[str, AfterValidator(_channel), Kind("notification channel name")]
GceName = Annotated[str, AfterValidator(_gce_name), Kind("Compute Engine name")]
Zone = Annotated[str, AfterValidator(_zone), Kind("zone")]
Port = Annotated[int, Field(ge=1, le=pilot.MAX_PORT, strict=True), Kind("port")]
DiskGb = Annotated[int, Field(ge=10, le=MAX_DISK_GB, strict=True), Kind("GB")]
Subnet = Annotated[str, AfterValidator(_subnet), Kind("private IPv4 range")]
Labels = Annotated[dict[str, str], AfterValidator(_labels), Kind("labels")]
NoBool = BeforeValidator(_no_bool)
ProjectId = Annotated[str, AfterValidator(_project), Kind("project id")]
ReleaseUrl = Annotated[str, Field(pattern=HTTPS_PATTERN), AfterValidator(_release_url), Kind("https URL")]
