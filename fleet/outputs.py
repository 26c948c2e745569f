"""The stack outputs, one typed schema: the program builds them (fleet/components/stack.py), monitoring and
`fleet verify` read them (`pulumi stack output --json`, a plan written by `plan --json`, or the Automation API).
Fields are only added within a schema version; a rename or removal bumps `schemaVersion` (README: "Changelog")."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from fleet.facts import pilot

# The outputs' schema (README "Stack outputs").
SCHEMA_VERSION = 2


class OutputsError(Exception):
    """The outputs cannot be used; the message names the source and the field."""


class _Model(BaseModel):
    # fields may be added within a schema version: unknown ones are kept, not refused
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow", frozen=True)


class HostOutput(_Model):
    name: str
    role: str
    zone: str
    machine_type: str = ""
    internal_ip: str | None = None
    external_ip: str | None = None
    target_agents: int = Field(ge=0)
    udp_ports: str | None = None  # swarm hosts only


class PoolOutput(_Model):
    name: str
    machine_type: str = ""
    zones: list[str] = Field(default_factory=list)
    size: int = Field(ge=0)
    target_agents: int = Field(ge=0)  # per VM, as on hosts
    total_agents: int = Field(ge=0)  # size x targetAgents
    udp_ports: str | None = None
    # the group's instanceGroup URL (zones/Z/... for a zonal group, regions/R/... for a regional one)
    instance_group: str | None = None

    @property
    def manager_path(self) -> str | None:
        """projects/P/(zones/Z|regions/R)/instanceGroupManagers/NAME, from the instanceGroup URL."""
        if not self.instance_group or "/projects/" not in self.instance_group:
            return None
        path = "projects/" + self.instance_group.split("/projects/", 1)[1]
        return path.replace("/instanceGroups/", "/instanceGroupManagers/")


class PortsOutput(_Model):
    registry: int = Field(ge=1, le=65535)
    beacon: int = Field(ge=1, le=65535)
    dashboard: int = Field(ge=1, le=65535)
    health: int = Field(ge=1, le=65535)  # every swarm VM's supervisor: /healthz and /metrics


class StackOutputs(_Model):
    schema_version: int
    project: str | None = None
    rendezvous_ip: str | None = None
    # the zones the registry's store disk lives in: the VM runs in one of them (its `zone` in `hosts`)
    rendezvous_store_zones: list[str] = Field(default_factory=list)
    registry_endpoint: str | None = None
    beacon_endpoint: str | None = None
    dashboard_url: str | None = None
    stats_url: str = Field(min_length=1)
    expected_agents: int = Field(ge=0)
    expected_agents_by_host: dict[str, int] = Field(default_factory=dict)
    expected_agents_by_pool: dict[str, int] = Field(default_factory=dict)
    alert_threshold: float = Field(default=pilot.DEFAULT_ALERT_THRESHOLD, gt=0, le=1)
    alert_min_online: int | None = None
    # where monitoring scrapes: the supervisors' /metrics and the rendezvous' dashboard
    ports: PortsOutput
    hosts: list[HostOutput] = Field(default_factory=list)
    pools: list[PoolOutput] = Field(default_factory=list)

    @property
    def swarm_hosts(self) -> list[HostOutput]:
        return [h for h in self.hosts if h.role == pilot.ROLE_SWARM]

    @property
    def rendezvous_host(self) -> HostOutput | None:
        return next((h for h in self.hosts if h.role == pilot.ROLE_RENDEZVOUS), None)

    def exports(self) -> dict[str, Any]:
        """name -> value as the program exports them (values may still be Pulumi outputs: no validation here, the
        program built them from a validated config)."""
        return self.model_dump(by_alias=True, exclude_none=True, warnings=False)


def parse_outputs(text: str, source: str) -> StackOutputs:
    try:
        raw: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OutputsError(f"{source}: not JSON ({exc.msg} at line {exc.lineno})") from None
    except (ValueError, RecursionError) as exc:  # a number past Python's digit limit; nesting past its depth
        raise OutputsError(f"{source}: JSON that cannot be read ({str(exc)[:120] or type(exc).__name__})") from None
    return outputs_of(plan_outputs(raw), source)


def plan_outputs(raw: Any) -> Any:
    """The outputs of an offline plan written by `python -m fleet plan --json`; any other JSON value as it is."""
    if isinstance(raw, dict) and "outputs" in raw and "resources" in raw:
        return raw["outputs"]
    return raw


def outputs_of(raw: Any, source: str) -> StackOutputs:
    """The outputs from their JSON value (`pulumi stack output --json`, or a StackReference's `outputs`), checked
    against this schema and its version: one OutputsError naming SOURCE and the field, never a wrong reading."""
    if not isinstance(raw, dict):
        raise OutputsError(f"{source}: expected the JSON object `pulumi stack output --json` prints")
    version = raw.get("schemaVersion")
    if isinstance(version, float) and version.is_integer():  # a StackReference reads every number as a float
        version = int(version)
    if version == 1:
        raise OutputsError(f"{source}: schemaVersion is 1, written before pools' targetAgents meant agents per VM "
                           "and the outputs carried their ports; `pulumi up` with this version writes schema 2 "
                           "(see 'Stack outputs' in README.md)")
    if version != SCHEMA_VERSION:
        raise OutputsError(f"{source}: schemaVersion is {version!r}; this version of pilot-fleet reads version "
                           f"{SCHEMA_VERSION} (see 'Stack outputs' in README.md)")
    try:
        return StackOutputs.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise OutputsError(f"{source}: {where}: {err['msg']}") from None
