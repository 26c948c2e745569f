"""Reading the stack's configuration from Pulumi: flat `namespace:key` values into the model's input.

Keys live in two namespaces, as `pulumi config set` writes them: `gcp:project`, `gcp:region`, `gcp:zone` for
the provider, and `pilot-fleet:<key>` for everything else. A key under any other namespace is an error with a
"did you mean" (a typo such as `pilot-fleets:swarmHosts` would otherwise plan a fleet without it), and so is a
`gcp:` key the provider does not read or a `pulumi:` key the engine does not (fleet/config/namespaces.py).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from typing import Any

from fleet.config import namespaces
from fleet.config.checks import parse_fleet_config
from fleet.config.model import FleetConfig, FleetConfigError
from fleet.facts import pilot

GCP_KEYS = namespaces.PROGRAM_PROVIDER_KEYS
# What the offline plan hands the program for a secret (it has no secrets provider to decrypt with).
SECRET_PLACEHOLDER = "[secret]"
# Config namespaces this program reads: its own, the one provider it uses, and the engine's own.
KNOWN_NAMESPACES = (pilot.PROJECT_NAME, "gcp", "pulumi")


def parse_flat_config(flat: Mapping[str, Any]) -> FleetConfig:
    """Validate flat Pulumi config (as a stack file or the engine holds it); raise FleetConfigError."""
    return parse_fleet_config(_raw_from_flat(flat))


def _raw_from_flat(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Turn flat Pulumi config ({"gcp:zone": "...", "pilot-fleet:swarmHosts": "[...]"}) into parse input.

    Values arrive as strings (structured values JSON-encoded), as the Pulumi engine hands them to programs.
    A key under any other namespace is an error (a typo such as `pilot-fleets:swarmHosts` would otherwise plan a
    fleet without it); `gcp:region` defaults to the region of `gcp:zone`.
    """
    unknown = [key for key in flat if key.partition(":")[0] not in KNOWN_NAMESPACES]
    if unknown:
        raise FleetConfigError([_unknown_namespace(key) for key in sorted(unknown)])
    raw: dict[str, Any] = {"gcp": {}}
    prefix = pilot.PROJECT_NAME + ":"
    problems = []
    fleet_keys = {field.alias or name for name, field in FleetConfig.model_fields.items()} - {"gcp"}
    for key, value in flat.items():
        namespace, _, name = key.partition(":")
        if namespace != pilot.PROJECT_NAME and name in fleet_keys:
            # the provider and the engine would keep it without a word, and the fleet would run without it
            problems.append(f"{key}: a {pilot.PROJECT_NAME} key under {namespace}:, which this program does not read "
                            f"there (did you mean {prefix}{name}?)")
        elif key.startswith("gcp:") and key[4:] in GCP_KEYS:
            raw["gcp"][key[4:]] = value
        elif key.startswith("gcp:") and (close := difflib.get_close_matches(name, GCP_KEYS, n=1, cutoff=0.7)):
            # the provider has many keys of its own; one this close to ours is a typo of ours, silently ignored
            problems.append(f"{key}: not a key this program reads (did you mean gcp:{close[0]}?)")
        elif namespace in (namespaces.PROVIDER, "pulumi") and (problem := _unread(namespace, name)):
            problems.append(f"{key}: {problem}")
        elif key.startswith(prefix) and value == SECRET_PLACEHOLDER:
            problems.append(f"{key}: a secret, which the offline plan cannot decrypt (it has no secrets provider): "
                            "plan it with `pulumi preview`, or keep this setting in clear")
        elif key.startswith(prefix):
            raw[key[len(prefix):]] = _decode(value)
    if problems:
        raise FleetConfigError(problems)
    zone = raw["gcp"].get("zone")
    if "region" not in raw["gcp"] and isinstance(zone, str) and "-" in zone:
        raw["gcp"]["region"] = zone.rsplit("-", 1)[0]
    return raw


def _unread(namespace: str, name: str) -> str | None:
    """Why NAME under the provider's or the engine's namespace is read by nobody, or None if its reader reads it."""
    if namespace == "pulumi":
        known, reader = namespaces.ENGINE_KEYS, "the Pulumi engine"
    else:
        known, reader = tuple(sorted(namespaces.provider_keys())), f"the {namespace} provider"
    if name in known:
        return None
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.7)
    hint = f" (did you mean {namespace}:{close[0]}?)" if close else ""
    return f"not a key {reader} or this program reads, so it would do nothing{hint}"


def _unknown_namespace(key: str) -> str:
    namespace, _, rest = key.partition(":")
    close = difflib.get_close_matches(namespace, KNOWN_NAMESPACES, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]}:{rest}? " if close and rest else ""
    return (f"{key}: unknown namespace {namespace!r} ({hint}this program reads "
            f"{', '.join(n + ':*' for n in KNOWN_NAMESPACES)})")


def _decode(value: Any) -> Any:
    """Structured values arrive as JSON; a scalar stays the string it is, as the Pulumi CLI hands it over (a version
    `1.18` is the text "1.18", not a number)."""
    if not isinstance(value, str) or value.lstrip()[:1] not in ("[", "{"):
        return value
    try:
        return json.loads(value)
    except (ValueError, RecursionError):
        return value


def load_from_pulumi() -> FleetConfig:
    """Read the running stack's configuration (inside `pulumi up`, `preview` or the offline plan): every value
    through `pulumi.Config`; only the list of keys comes from the SDK's internals (fleet/pulumi_internals.py: no
    public API enumerates them, and a key under a misspelt namespace must be refused, not ignored)."""
    import pulumi

    from fleet import pulumi_internals

    flat: dict[str, Any] = {}
    for key in pulumi_internals.config_keys():
        namespace, _, name = key.partition(":")
        value = pulumi.Config(namespace).get(name) if name else None
        flat[key] = value if value is not None else ""
    return parse_flat_config(flat)
