"""Stack configuration as validated models: parsed and checked before any resource is declared.

The model's input is `{"gcp": {...}, "<fleet key>": ...}` (fleet/config/pulumi_source.py builds it from Pulumi's
flat keys): structured values for the rendezvous, the network, the swarm hosts and pools
(`pulumi config set --path 'pilot-fleet:swarmHosts[0].targetAgents' 3000` edits one field).
Every problem is reported with the key that holds it, all at once, as a FleetConfigError.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from fleet.facts import pilot
from fleet.facts.machine_types import lookup, machine_types
from fleet.facts.memory_budget import MemoryBudget
from fleet.facts.pilot_releases import known_versions
from fleet.facts.rendezvous_build import build_table
from fleet.facts.zones import zones_by_region

GCE_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
ZONE = re.compile(r"^[a-z]+-[a-z]+\d+-[a-z]$")


class FleetConfigError(Exception):
    """Configuration that cannot be deployed; `problems` holds one line per offending key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as exc:
        raise ValueError(f"not a CIDR range: {value!r} ({exc})") from None


def _gce_name(value: str) -> str:
    if not GCE_NAME.match(value):
        raise ValueError(f"{value!r} is not a valid Compute Engine name (lowercase letters, digits, hyphens; 1-63)")
    return value


def _zone(value: str) -> str:
    if not ZONE.match(value):
        raise ValueError(f"{value!r} is not a zone name such as us-central1-a")
    return value


Cidr = Annotated[str, AfterValidator(_cidr)]
GceName = Annotated[str, AfterValidator(_gce_name)]
Zone = Annotated[str, AfterValidator(_zone)]
Port = Annotated[int, Field(ge=1, le=pilot.MAX_PORT)]


def _bounded(name: str) -> Any:
    """A field with the bounds (and default) the VMs accept: fleet/facts/pilot.py's AGENT_BOUNDS, the one table the
    startup script is rendered from."""
    bounds = pilot.AGENT_BOUNDS[name]
    low = {"gt" if bounds.low_open else "ge": bounds.low}
    if bounds.default is None:
        return Field(le=bounds.high, description=bounds.why, **low)
    return Field(default=bounds.default, le=bounds.high, description=bounds.why, **low)


class Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class GcpSettings(Model):
    project: str = Field(min_length=6, max_length=30)
    region: str = Field(min_length=1)
    zone: Zone


class NetworkConfig(Model):
    name: GceName = "pilot-fleet"
    # existing: true uses a network (and subnet) that already exist, by name, instead of creating them.
    existing: bool = False
    subnet_name: GceName | None = None
    subnet_cidr: Cidr = "10.20.0.0/20"


class RendezvousPorts(Model):
    registry: Port = pilot.REGISTRY_PORT
    beacon: Port = pilot.BEACON_PORT
    dashboard: Port = pilot.DASHBOARD_PORT


class RendezvousRelease(Model):
    url: str = Field(pattern=r"^https://\S+$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class RendezvousConfig(Model):
    name: GceName = "pilot-rendezvous"
    machine_type: str = "e2-standard-4"
    zone: Zone | None = None
    # The registry's store on a regional disk replicated into this second zone of the region: a failover runs the
    # rendezvous VM there on the same store (the public rendezvous has no working replication to a -standby).
    failover_zone: Zone | None = None
    # Where the VM runs: `zone` (default) or `failoverZone`. Setting it to the other one and `pulumi up` is the
    # failover (the VM is recreated there, on the same disk and address).
    active_zone: Zone | None = None
    disk_gb: int = Field(default=pilot.DEFAULT_BOOT_DISK_GB, ge=10)
    store_disk_gb: int = Field(default=10, ge=10)
    ports: RendezvousPorts = RendezvousPorts()
    # Where agents register from: a public rendezvous serves agents anywhere on the Pilot network.
    agent_source_ranges: list[Cidr] = Field(default_factory=lambda: ["0.0.0.0/0"], min_length=1)
    # Who may open the dashboard and JSON API (3000/tcp). Default: only through IAP TCP forwarding.
    operator_ranges: list[Cidr] = Field(default_factory=lambda: [pilot.IAP_RANGE])
    new_registrations_per_minute: int = _bounded("new_registrations_per_minute")
    # The rendezvous binary is not on PyPI. By default its host builds it at first boot from this pinned commit of
    # the public source (fleet/facts/data/rendezvous_build.yaml); a prebuilt release (url, sha256) wins when set.
    # `source: null` (or "") builds nothing: then `release` is required.
    source: str | None = Field(default_factory=lambda: build_table().default_source)
    release: RendezvousRelease | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_standby(cls, data: Any) -> Any:
        if isinstance(data, dict) and "standby" in data:
            raise ValueError("standby was replaced by failoverZone: a -standby rendezvous never receives the "
                             "registry (the public rendezvous cannot replicate), so a promoted standby started with "
                             "an empty one; now the store is a regional disk that the VM in the surviving zone takes "
                             "over (set failoverZone, then activeZone to fail over; SCALING.md)")
        return data


class AgentSettings(Model):
    """Per-host agent settings; `agentDefaults` sets them for all swarm hosts, a host may override each."""

    spawn_parallelism: int = _bounded("spawn_parallelism")
    round_delay_seconds: float = _bounded("round_delay_seconds")
    rollout_max_unavailable: float = _bounded("rollout_max_unavailable")
    base_udp_port: int = _bounded("base_udp_port")
    gogc: int = _bounded("gogc")
    agent_memory_mb: float = Field(default=pilot.DEFAULT_AGENT_MEMORY_MB, gt=0)
    # Where peers reach this host's agent tunnel ports from.
    peer_source_ranges: list[Cidr] = Field(default_factory=lambda: ["0.0.0.0/0"], min_length=1)


class SwarmHostConfig(AgentSettings):
    name: GceName
    machine_type: str
    zone: Zone | None = None
    target_agents: int = _bounded("target_agents")
    disk_gb: int = Field(default=pilot.DEFAULT_BOOT_DISK_GB, ge=10)
    state_disk_gb: int = Field(default=pilot.DEFAULT_STATE_DISK_GB, ge=10)

    @property
    def last_udp_port(self) -> int:
        return self.base_udp_port + self.target_agents - 1

    @property
    def total_agents(self) -> int:
        return self.target_agents


class SwarmPoolConfig(AgentSettings):
    """Identical swarm VMs in a managed instance group: an instance template, autohealing, rolling updates."""

    name: GceName
    machine_type: str
    zones: list[Zone] = Field(default_factory=list)  # empty: gcp:zone; more than one: a regional group
    size: int = Field(ge=0, le=1000)
    # agents per VM, as on swarmHosts (one name for a VM's agents everywhere; totalAgents is size x this)
    target_agents: int = _bounded("target_agents")
    disk_gb: int = Field(default=pilot.DEFAULT_BOOT_DISK_GB, ge=10)
    state_disk_gb: int = Field(default=pilot.DEFAULT_STATE_DISK_GB, ge=10)
    # A pool VM keeps its agents' state disk when it is recreated: Compute Engine recreates it under its own name
    # (replacement RECREATE), so a rolling update adds no VM (maxSurge 0) and takes down maxUnavailable at a time.
    max_surge: int = Field(default=0, ge=0, le=0)
    max_unavailable: int | None = Field(default=None, ge=1)  # default: one per zone

    def unavailable(self, zones: int) -> int:
        return zones if self.max_unavailable is None else self.max_unavailable

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "agentsPerVm" in data:
            raise ValueError("agentsPerVm was renamed targetAgents (agents per VM, the same name as on swarmHosts; "
                             "see 'Stack outputs' in README.md, schema version 2)")
        return data

    @property
    def last_udp_port(self) -> int:
        return self.base_udp_port + self.target_agents - 1

    @property
    def total_agents(self) -> int:
        return self.size * self.target_agents


class MemoryPolicy(Model):
    os_reserve_mb: int = Field(default=pilot.DEFAULT_OS_RESERVE_MB, ge=0)
    headroom_percent: float = Field(default=pilot.DEFAULT_HEADROOM_PERCENT, ge=0)


class FleetConfig(Model):
    gcp: GcpSettings
    pilot_version: str = Field(default=pilot.PILOT_VERSION, pattern=r"^\d+\.\d+\.\d+$")
    network: NetworkConfig = NetworkConfig()
    rendezvous: RendezvousConfig = RendezvousConfig()
    agent_defaults: AgentSettings = AgentSettings()
    memory: MemoryPolicy = MemoryPolicy()
    swarm_hosts: list[SwarmHostConfig] = Field(default_factory=list)
    swarm_pools: list[SwarmPoolConfig] = Field(default_factory=list)
    # at least one: a firewall rule with no source at all admits 0.0.0.0/0 on Compute Engine
    ssh_source_ranges: list[Cidr] = Field(default_factory=lambda: [pilot.IAP_RANGE], min_length=1)
    alert_threshold: float = _bounded("health_threshold")
    labels: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _apply_agent_defaults(cls, data: Any) -> Any:
        """Each swarm host starts from agentDefaults; its own keys win."""
        if not isinstance(data, dict):
            return data
        defaults = data.get("agentDefaults")
        if not isinstance(defaults, dict):
            return data
        data = dict(data)
        for key in ("swarmHosts", "swarmPools"):
            if isinstance(data.get(key), list):
                data[key] = [{**defaults, **h} if isinstance(h, dict) else h for h in data[key]]
        return data

    def zone_of(self, host_zone: str | None) -> str:
        return host_zone or self.gcp.zone

    @property
    def rendezvous_zone(self) -> str:
        """Where the rendezvous VM runs now (activeZone, else its zone)."""
        return self.rendezvous.active_zone or self.zone_of(self.rendezvous.zone)

    @property
    def store_zones(self) -> list[str]:
        """The zones holding the registry's store disk: one, or two for a regional disk."""
        home = self.zone_of(self.rendezvous.zone)
        return [home, self.rendezvous.failover_zone] if self.rendezvous.failover_zone else [home]

    @property
    def expected_agents(self) -> int:
        return sum(h.total_agents for h in self.swarm_hosts) + sum(p.total_agents for p in self.swarm_pools)

    def zones_of(self, pool: SwarmPoolConfig) -> list[str]:
        return list(pool.zones) or [self.gcp.zone]

    def budget(self, host: SwarmHostConfig | SwarmPoolConfig) -> MemoryBudget:
        machine = lookup(host.machine_type)
        if machine is None:
            raise KeyError(host.machine_type)
        return MemoryBudget(machine.memory_mb, self.memory.os_reserve_mb, host.agent_memory_mb,
                            self.memory.headroom_percent)


def key_name(loc: tuple[int | str, ...]) -> str:
    """('swarmHosts', 2, 'targetAgents') -> 'pilot-fleet:swarmHosts[2].targetAgents'."""
    if loc and loc[0] == "gcp":
        return "gcp:" + ".".join(str(p) for p in loc[1:])
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return f"{pilot.PROJECT_NAME}:{text}" if text else pilot.PROJECT_NAME


def _pydantic_problems(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see the configuration reference in README.md)"
        elif err["type"] == "missing":
            message = "required but not set"
        problems.append(f"{key_name(loc)}: {message}")
    return problems


def _semantic_problems(cfg: FleetConfig) -> list[str]:
    problems: list[str] = []

    def unknown_machine(key: str, name: str) -> str:
        close = difflib.get_close_matches(name, machine_types(), n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        return f"{key}: unknown machine type {name!r} ({hint}known types: fleet/facts/data/machine_types.yaml)"
    region = cfg.gcp.region

    known = zones_by_region()

    def check_zone(key: str, zone: str) -> None:
        if not zone.startswith(region + "-"):
            problems.append(f"{key}: zone {zone} is not in region {region} (gcp:region)")
        elif region not in known:
            problems.append(f"{key}: region {region} is not in fleet/facts/data/zones.yaml (add its zones there, from "
                            f"`gcloud compute zones list --filter=region:{region}`)")
        elif zone not in known[region]:
            close = difflib.get_close_matches(zone, known[region], n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            problems.append(f"{key}: {zone} is not a zone of {region} ({hint}its zones: {', '.join(known[region])}; "
                            "fleet/facts/data/zones.yaml)")

    check_zone("gcp:zone", cfg.gcp.zone)
    if cfg.pilot_version not in known_versions():
        problems.append(f"{key_name(('pilotVersion',))}: no pilot-daemon wheel known for {cfg.pilot_version} "
                        f"(known: {', '.join(known_versions())}; "
                        "add its wheels to fleet/facts/data/pilot_releases.yaml)")
    if cfg.rendezvous.zone:
        check_zone(key_name(("rendezvous", "zone")), cfg.rendezvous.zone)
    if lookup(cfg.rendezvous.machine_type) is None:
        problems.append(unknown_machine(key_name(("rendezvous", "machineType")), cfg.rendezvous.machine_type))
    problems += _install_source_problems(cfg.rendezvous)
    ports = cfg.rendezvous.ports
    if ports.registry == ports.dashboard:  # both TCP; the beacon is UDP and may share a number
        problems.append(f"{key_name(('rendezvous', 'ports'))}: registry and dashboard cannot share TCP port "
                        f"{ports.registry}")

    seen: dict[str, str] = {cfg.rendezvous.name: key_name(("rendezvous", "name"))}
    rv, home = cfg.rendezvous, cfg.zone_of(cfg.rendezvous.zone)
    if rv.failover_zone:
        check_zone(key_name(("rendezvous", "failoverZone")), rv.failover_zone)
        if rv.failover_zone == home:
            problems.append(f"{key_name(('rendezvous', 'failoverZone'))}: must be another zone than the "
                            f"rendezvous' own ({home}): the store disk is replicated across the two")
    if rv.active_zone and rv.active_zone not in {home, rv.failover_zone}:
        problems.append(f"{key_name(('rendezvous', 'activeZone'))}: {rv.active_zone} is neither the rendezvous' "
                        f"zone ({home}) nor its failoverZone ({rv.failover_zone or 'not set'}): the store disk "
                        "is only in those")
    reserved = {ports.registry: "rendezvous registry", ports.beacon: "rendezvous beacon",
                ports.dashboard: "rendezvous dashboard", pilot.SUPERVISOR_HEALTH_PORT: "supervisor health"}
    eph_lo, eph_hi = pilot.EPHEMERAL_PORT_RANGE

    def check_agents(where: str, spec: SwarmHostConfig | SwarmPoolConfig, per_vm: int, target_key: str) -> None:
        if spec.name in seen:
            problems.append(f"{where}.name: duplicate name {spec.name!r} (also {seen[spec.name]})")
        seen[spec.name] = f"{where}.name"
        machine = lookup(spec.machine_type)
        if machine is None:
            problems.append(unknown_machine(f"{where}.machineType", spec.machine_type))
        else:
            budget = cfg.budget(spec)
            if not budget.fits(per_vm):
                problems.append(f"{where}.{target_key} ({spec.name}): {budget.explain(per_vm, machine.name)}")
        first, last = spec.base_udp_port, spec.base_udp_port + per_vm - 1
        span = f"UDP ports {first}-{last} ({per_vm} agents from baseUdpPort {first})"
        if last > pilot.MAX_PORT:
            problems.append(f"{where}.baseUdpPort ({spec.name}): {span} run past {pilot.MAX_PORT}")
        for port, what in reserved.items():
            if first <= port <= last:
                problems.append(f"{where}.baseUdpPort ({spec.name}): {span} include the {what} port {port}")
        if first <= eph_hi and last >= eph_lo:
            problems.append(f"{where}.baseUdpPort ({spec.name}): {span} overlap the kernel's ephemeral port range "
                            f"{eph_lo}-{eph_hi}")

    if cfg.expected_agents == 0:
        problems.append(f"{key_name(('swarmHosts',))}: the fleet has no agents: declare swarmHosts or swarmPools "
                        "(a fleet of a rendezvous alone would plan green and verify nothing)")
    for i, host in enumerate(cfg.swarm_hosts):
        where = key_name(("swarmHosts", i))
        if host.zone:
            check_zone(f"{where}.zone", host.zone)
        check_agents(where, host, host.target_agents, "targetAgents")
    for i, pool in enumerate(cfg.swarm_pools):
        where = key_name(("swarmPools", i))
        zones = cfg.zones_of(pool)
        for zone in zones:
            check_zone(f"{where}.zones", zone)
        if len(set(zones)) != len(zones):
            problems.append(f"{where}.zones ({pool.name}): a zone is listed twice")
        check_agents(where, pool, pool.target_agents, "targetAgents")
        unavailable = pool.unavailable(len(zones))
        if len(zones) > 1 and unavailable < len(zones):
            problems.append(f"{where}.maxUnavailable ({pool.name}): a regional group across {len(zones)} zones "
                            f"needs at least {len(zones)} (Compute Engine's rule), not {unavailable}")
    return problems


def _install_source_problems(rv: RendezvousConfig) -> list[str]:
    """A rendezvous VM that has no binary to run would boot into nothing: refuse the stack instead."""
    table = build_table()
    known = ", ".join(sorted(table.sources))
    if rv.source and rv.source not in table.sources:
        return [f"{key_name(('rendezvous', 'source'))}: commit {rv.source!r} is not pinned in "
                f"fleet/facts/data/rendezvous_build.yaml (pinned: {known})"]
    if not rv.source and rv.release is None:
        return [f"{key_name(('rendezvous', 'source'))}: the rendezvous has no install source: set it to a pinned "
                f"commit ({known}) or set {key_name(('rendezvous', 'release'))} (url, sha256 of a prebuilt binary)"]
    return []


def parse_fleet_config(raw: Mapping[str, Any]) -> FleetConfig:
    """Validate a raw config mapping ({"gcp": {...}, "<fleet key>": ...}); raise FleetConfigError."""
    try:
        cfg = FleetConfig.model_validate(dict(raw))
    except ValidationError as exc:
        raise FleetConfigError(_pydantic_problems(exc)) from None
    problems = _semantic_problems(cfg)
    if problems:
        raise FleetConfigError(problems)
    return cfg
