"""Stack configuration as validated models: parsed and checked before any resource is declared.

The model's input is `{"gcp": {...}, "<fleet key>": ...}` (fleet/config/pulumi_source.py builds it from Pulumi's
flat keys): structured values for the rendezvous, the network, the swarm hosts and pools
(`pulumi config set --path 'pilot-fleet:swarmHosts[0].targetAgents' 3000` edits one field).
Every problem is reported with the key that holds it, all at once, as a FleetConfigError.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from fleet.capacity.cold_start import Pacing, addresses_for
from fleet.config.fields import (
    Cidr,
    DiskGb,
    GceName,
    KmsKey,
    Labels,
    NoBool,
    Port,
    ProjectId,
    ReleaseUrl,
    Subnet,
    Zone,
)
from fleet.facts import pilot
from fleet.facts.machine_types import lookup
from fleet.facts.memory_budget import MemoryBudget
from fleet.facts.rendezvous_build import build_table
from fleet.facts.tables import SHA256_PATTERN
from fleet.vm_contract import MAX_REGISTRATION_ADDRESSES, agent_bounds


class FleetConfigError(Exception):
    """Configuration that cannot be deployed; `problems` holds one line per offending key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))




def _bounded(name: str) -> Any:
    """A field with the bounds (and default) the VMs accept: fleet/vm_contract.py's SWARM_ATTRIBUTES, the one table the
    startup script is rendered from."""
    bounds = agent_bounds()[name]
    limits: dict[str, Any] = {"gt" if bounds.low_open else "ge": bounds.low, "description": bounds.why}
    if name != "target_agents":  # a target's first bound is its machine's memory budget (config/checks.py)
        limits["le"] = bounds.high
    limits.update({"strict": True} if bounds.whole else {"allow_inf_nan": False})
    if bounds.default is None:
        return Field(**limits)
    return Field(default=bounds.default, **limits)


class Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class GcpSettings(Model):
    project: ProjectId
    region: str = Field(min_length=1)
    zone: Zone


class NetworkConfig(Model):
    name: GceName = "pilot-fleet"
    # existing: true uses a network (and subnet) that already exist, by name, instead of creating them.
    existing: bool = False
    subnet_name: GceName | None = None
    subnet_cidr: Subnet = "10.20.0.0/20"


class RendezvousPorts(Model):
    registry: Port = pilot.REGISTRY_PORT
    beacon: Port = pilot.BEACON_PORT
    dashboard: Port = pilot.DASHBOARD_PORT


class RendezvousRelease(Model):
    url: ReleaseUrl
    sha256: str = Field(pattern=SHA256_PATTERN)


class StoreSnapshots(Model):
    """The registry store disk's snapshot schedule: what losing the disk costs (README: "The registry's store")."""

    # one snapshot this often (Compute Engine's hourly schedule: 1 to 23 hours; 24 is a daily one)
    every_hours: int = Field(default=1, ge=1, le=24, strict=True)
    # snapshots older than this are deleted (they are kept when the disk is deleted)
    retention_days: int = Field(default=7, ge=1, le=65536, strict=True)


# a snapshot's name, or its path in a project
_SNAPSHOT_NAME = r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?"
SNAPSHOT = rf"^({_SNAPSHOT_NAME}|projects/[a-z][-a-z0-9]{{4,28}}[a-z0-9]/global/snapshots/{_SNAPSHOT_NAME})$"


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
    disk_gb: DiskGb = pilot.DEFAULT_BOOT_DISK_GB
    store_disk_gb: DiskGb = 10
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
    # Start with an empty registry over a damaged store, on purpose (every agent registers as new, at the registry's
    # rate limit). Never needed otherwise: before each start the store is checked and, damaged or missing, restored
    # from its last good generation; with none, the rendezvous does not start (README: "The registry's store").
    start_fresh: bool = False
    store_snapshots: StoreSnapshots = StoreSnapshots()
    # Losing the store disk: the name (or projects/P/global/snapshots/NAME) of a snapshot to recreate it from. Setting
    # it replaces the store disk on `pulumi up` (its recovery point is that snapshot's time).
    store_from_snapshot: str | None = Field(default=None, pattern=SNAPSHOT)

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
    round_delay_seconds: Annotated[float, NoBool] = _bounded("round_delay_seconds")
    rollout_max_unavailable: Annotated[float, NoBool] = _bounded("rollout_max_unavailable")
    base_udp_port: int = _bounded("base_udp_port")
    gogc: int = _bounded("gogc")
    agent_memory_mb: Annotated[float, NoBool] = Field(default=pilot.DEFAULT_AGENT_MEMORY_MB, gt=0, allow_inf_nan=False)
    # Where peers reach this host's agent tunnel ports from.
    peer_source_ranges: list[Cidr] = Field(default_factory=lambda: ["0.0.0.0/0"], min_length=1)
    # How many source addresses the VM's agents register from: its internal address, then an alias IP range's
    # (agentReach vpc). Unset: what coldStartMinutes needs, else 1.
    registration_addresses: int | None = Field(default=None, ge=1,
                                               le=MAX_REGISTRATION_ADDRESSES, strict=True)


class SwarmVmConfig(AgentSettings):
    """What a swarm VM is, a host's or each of a pool's: its machine, its agents' target and its disks."""

    name: GceName
    machine_type: str
    # agents per VM (one name for a VM's agents everywhere; a pool's totalAgents is size x this)
    target_agents: int = _bounded("target_agents")
    disk_gb: DiskGb = pilot.DEFAULT_BOOT_DISK_GB
    state_disk_gb: DiskGb = pilot.DEFAULT_STATE_DISK_GB

    @property
    def last_udp_port(self) -> int:
        return self.base_udp_port + self.target_agents - 1


class SwarmHostConfig(SwarmVmConfig):
    zone: Zone | None = None

    @property
    def total_agents(self) -> int:
        return self.target_agents


class SwarmPoolConfig(SwarmVmConfig):
    """Identical swarm VMs in a managed instance group: an instance template, autohealing, rolling updates."""

    zones: list[Zone] = Field(default_factory=list)  # empty: gcp:zone; more than one: a regional group
    size: int = Field(ge=0, le=1000, strict=True)
    # A pool VM keeps its agents' state disk when it is recreated: Compute Engine recreates it under its own name
    # (replacement RECREATE), so a rolling update adds no VM (maxSurge 0) and takes down maxUnavailable at a time.
    max_surge: int = Field(default=0, ge=0, le=0)
    max_unavailable: int | None = Field(default=None, ge=1, strict=True)  # default: one per zone

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
    def total_agents(self) -> int:
        return self.size * self.target_agents


class MemoryPolicy(Model):
    os_reserve_mb: int = Field(default=pilot.DEFAULT_OS_RESERVE_MB, ge=0, strict=True)
    headroom_percent: Annotated[float, NoBool] = Field(default=pilot.DEFAULT_HEADROOM_PERCENT, ge=0,
                                                       allow_inf_nan=False)


class FleetConfig(Model):
    gcp: GcpSettings
    pilot_version: str = pilot.PILOT_VERSION  # a version of fleet/facts/data/pilot_releases.yaml (config/checks.py)
    network: NetworkConfig = NetworkConfig()
    rendezvous: RendezvousConfig = RendezvousConfig()
    agent_defaults: AgentSettings = AgentSettings()
    memory: MemoryPolicy = MemoryPolicy()
    swarm_hosts: list[SwarmHostConfig] = Field(default_factory=list)
    swarm_pools: list[SwarmPoolConfig] = Field(default_factory=list)
    # at least one: a firewall rule with no source at all admits 0.0.0.0/0 on Compute Engine
    ssh_source_ranges: list[Cidr] = Field(default_factory=lambda: [pilot.IAP_RANGE], min_length=1)
    alert_threshold: Annotated[float, NoBool] = _bounded("health_threshold")
    labels: Labels = Field(default_factory=dict)
    # Who reaches the agents. internet: each VM's agents register from its external IP (one address: the registry
    # admits 10 new identities a minute from it). vpc: they register with the rendezvous' internal address from
    # the VM's internal address and alias IP range, so a VM gets as many registration addresses as its cold start
    # needs, but only the VPC (and networks peered or connected to it) reaches them (SCALING.md).
    agent_reach: Literal["internet", "vpc"] = "internet"
    # The budget for a cold start (every identity new to the registry: first deploy, a lost store): the plan sizes
    # each VM's registration addresses for it and refuses pacing that cannot meet it. Unset: no budget.
    cold_start_minutes: Annotated[float, NoBool] | None = Field(default=None, gt=0, le=1440, allow_inf_nan=False)
    # A Cloud KMS key (CMEK) for every disk the fleet makes: boot disks, swarm state disks, the registry's store.
    # Unset: Google-managed keys. Set it when a stack is created: a disk's key cannot change, so setting or changing
    # it on a running stack replaces every disk (the registry's store among them). Compute Engine's service agent
    # needs roles/cloudkms.cryptoKeyEncrypterDecrypter on the key (README "Disk encryption").
    disk_kms_key: KmsKey | None = None

    @model_validator(mode="before")
    @classmethod
    def _apply_agent_defaults(cls, data: Any) -> Any:
        """Each swarm host starts from agentDefaults; its own keys win."""
        if not isinstance(data, dict):
            return data
        defaults = data.get("agentDefaults")
        if not isinstance(defaults, dict):
            return data
        try:  # bad defaults are reported once, at agentDefaults, not again at every host that takes them
            AgentSettings.model_validate(defaults)
        except ValidationError:
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

    def pacing(self, vm: SwarmVmConfig, addresses: int | None = None) -> Pacing:
        """What the VM does at a cold start (fleet/capacity/cold_start.py)."""
        return Pacing(vm.target_agents, addresses or self.registration_addresses(vm),
                      self.rendezvous.new_registrations_per_minute, vm.spawn_parallelism, vm.round_delay_seconds)

    def registration_addresses(self, vm: SwarmVmConfig) -> int:
        """The VM's own setting, or the fewest addresses that meet the cold-start budget (agentReach vpc), or 1."""
        if vm.registration_addresses is not None:
            return vm.registration_addresses
        if self.cold_start_minutes is None or self.agent_reach != "vpc":
            return 1
        return addresses_for(self.pacing(vm, 1), self.cold_start_minutes * 60, MAX_REGISTRATION_ADDRESSES) \
            or MAX_REGISTRATION_ADDRESSES

    def alias_prefix(self, vm: SwarmVmConfig) -> int | None:
        """The netmask of the VM's alias IP range (its registration addresses past its own internal one)."""
        extra = self.registration_addresses(vm) - 1
        return 32 - math.ceil(math.log2(extra)) if extra > 0 else None

    def budget(self, host: SwarmHostConfig | SwarmPoolConfig) -> MemoryBudget:
        machine = lookup(host.machine_type)
        if machine is None:
            raise KeyError(host.machine_type)
        return MemoryBudget(machine.memory_mb, self.memory.os_reserve_mb, host.agent_memory_mb,
                            self.memory.headroom_percent)
