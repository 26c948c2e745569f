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
    NotificationChannel,
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




def _bounded(name: str, meaning: str = "") -> Any:
    """A field with the bounds (and default) the VMs accept: fleet/vm_contract.py's SWARM_ATTRIBUTES, the one table the
    startup script is rendered from. Its description is MEANING, then the reason for the bounds."""
    bounds = agent_bounds()[name]
    limits: dict[str, Any] = {"gt" if bounds.low_open else "ge": bounds.low,
                              "description": f"{meaning}; {bounds.why}" if meaning else bounds.why}
    if name != "target_agents":  # a target's first bound is its machine's memory budget (config/checks.py)
        limits["le"] = bounds.high
    limits.update({"strict": True} if bounds.whole else {"allow_inf_nan": False})
    if bounds.default is None:
        return Field(**limits)
    return Field(default=bounds.default, **limits)


class Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class GcpSettings(Model):
    project: ProjectId = Field(description="the project every resource is created in")
    region: str = Field(min_length=1, description="region of the subnet and the static IPs; every zone must be in "
                        "it", json_schema_extra={"default_text": "the region of `gcp:zone`"})
    zone: Zone = Field(description="default zone of every VM")


class NetworkConfig(Model):
    name: GceName = Field("pilot-fleet", description="the VPC network")
    existing: bool = Field(False, strict=True, description="use a network and subnet that already exist, by name, "
                           "instead of creating them")
    subnet_name: GceName | None = Field(None, description="the subnet (default: the network's name)")
    subnet_cidr: Subnet = Field("10.20.0.0/20", description="the subnet's primary range, which the program creates")


class RendezvousPorts(Model):
    registry: Port = Field(pilot.REGISTRY_PORT, description="the registry (TCP)")
    beacon: Port = Field(pilot.BEACON_PORT, description="the beacon (UDP)")
    dashboard: Port = Field(pilot.DASHBOARD_PORT, description="the dashboard and JSON API (TCP)")


class RendezvousRelease(Model):
    url: ReleaseUrl = Field(description="where the VM downloads the binary; no credentials (metadata is clear text)")
    sha256: str = Field(pattern=SHA256_PATTERN, description="the binary's sha256, checked before it runs")


class StoreSnapshots(Model):
    """The registry store disk's snapshot schedule: what losing the disk costs (README: "The registry's store")."""

    every_hours: int = Field(default=1, ge=1, le=24, strict=True, description="one snapshot this often (Compute "
                             "Engine's hourly schedule: 1 to 23 hours; 24 is a daily one)")
    retention_days: int = Field(default=7, ge=1, le=65536, strict=True, description="snapshots older than this are "
                                "deleted (they are kept when the disk is deleted)")


# a snapshot's name, or its path in a project
_SNAPSHOT_NAME = r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?"
SNAPSHOT = rf"^({_SNAPSHOT_NAME}|projects/[a-z][-a-z0-9]{{4,28}}[a-z0-9]/global/snapshots/{_SNAPSHOT_NAME})$"


class RendezvousConfig(Model):
    name: GceName = Field("pilot-rendezvous", description="the rendezvous VM")
    machine_type: str = Field("e2-standard-4", description="a machine type of fleet/facts/data/machine_types.yaml")
    zone: Zone | None = Field(None, description="its zone (default: `gcp:zone`)")
    failover_zone: Zone | None = Field(None, description="a second zone of the region: the registry's store becomes a "
                                       "regional disk replicated into it, so a failover runs the rendezvous there on "
                                       "the same store (the public rendezvous cannot replicate to a -standby)")
    active_zone: Zone | None = Field(None, description="where the VM runs: `zone` or `failoverZone`; setting it to "
                                     "the other one and `pulumi up` is the failover (same disk, same address)")
    disk_gb: DiskGb = Field(pilot.DEFAULT_BOOT_DISK_GB, description="boot disk")
    store_disk_gb: DiskGb = Field(10, description="the registry's store disk")
    ports: RendezvousPorts = Field(RendezvousPorts(), description="its ports")
    agent_source_ranges: list[Cidr] = Field(default_factory=lambda: ["0.0.0.0/0"], min_length=1,
                                            description="where agents register from (default: a public rendezvous)")
    operator_ranges: list[Cidr] = Field(default_factory=lambda: [pilot.IAP_RANGE], description="who may open the "
                                        "dashboard and JSON API (default: only through IAP TCP forwarding)")
    new_registrations_per_minute: int = _bounded("new_registrations_per_minute")
    source: str | None = Field(default_factory=lambda: build_table().default_source, description="the pinned commit "
                               "of the public source the VM builds at first boot (fleet/facts/data/"
                               "rendezvous_build.yaml); `null` builds nothing, and then `release` is required")
    release: RendezvousRelease | None = Field(None, description="a prebuilt binary (`url`, `sha256`), instead "
                                              "of the default `source`; setting both is an error")
    start_fresh: bool = Field(False, strict=True, description="start an empty registry over a damaged store, on "
                              "purpose: every agent registers again as new, at the registry's rate limit. Never "
                              "needed otherwise: a damaged or missing store is restored from its last good "
                              "generation")
    store_snapshots: StoreSnapshots = Field(StoreSnapshots(), description="the store disk's snapshot schedule")
    store_from_snapshot: str | None = Field(default=None, pattern=SNAPSHOT, description="a snapshot's name (or "
                                            "projects/P/global/snapshots/NAME): `pulumi up` recreates the store disk "
                                            "from it, after the disk is lost")

    @model_validator(mode="before")
    @classmethod
    def _no_standby(cls, data: Any) -> Any:
        if isinstance(data, dict) and "standby" in data:
            raise ValueError("standby was replaced by failoverZone: a -standby rendezvous never receives the "
                             "registry (the public rendezvous cannot replicate), so a promoted standby started with "
                             "an empty one; now the store is a regional disk that the VM in the surviving zone takes "
                             "over (set failoverZone, then activeZone to fail over; SCALING.md)")
        return data


class RegistryConfig(Model):
    """How agents talk to the registry (README "Registry TLS")."""

    tls: bool = Field(True, strict=True, description="agents register and heartbeat over TLS, pinned to the fleet's "
                      "own certificate (made by the stack; its key reaches only the rendezvous, through Secret "
                      "Manager); `false`: plaintext")
    tls_rotation: int = Field(1, ge=1, le=1_000_000, strict=True, description="the certificate's generation: raise "
                              "it by one and `pulumi up` to rotate the key and certificate (agents move to the new pin "
                              "in paced rounds once the rendezvous serves it)")


class MonitoringConfig(Model):
    """What the fleet stack declares in Cloud Monitoring (README "Monitoring")."""

    cloud: bool = Field(False, strict=True, description="declare an alert policy per alert of `fleet monitoring` (the "
                        "same PromQL and hold time) and the fleet's dashboard in Cloud Monitoring; they read the "
                        "metrics as Managed Service for Prometheus series")
    notification_channels: list[NotificationChannel] = Field(
        default_factory=list, description="notification channels every alert policy notifies, by resource name "
        "(`projects/P/notificationChannels/ID`); none: incidents open in the console only")
    ops_agent_version: str | None = Field(None, pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$", description="install "
                                          "Google's Ops Agent of this release on every fleet VM at its next boot "
                                          "(e.g. 2.70.0), with a receiver that scrapes the VM's own metrics into "
                                          "Managed Service for Prometheus, where the alert policies read them; unset: "
                                          "the boot path leaves the Ops Agent alone")


class AgentSettings(Model):
    """Per-host agent settings; `agentDefaults` sets them for all swarm hosts, a host may override each."""

    spawn_parallelism: int = _bounded("spawn_parallelism")
    round_delay_seconds: Annotated[float, NoBool] = _bounded("round_delay_seconds")
    rollout_max_unavailable: Annotated[float, NoBool] = _bounded("rollout_max_unavailable")
    base_udp_port: int = _bounded("base_udp_port")
    gogc: int = _bounded("gogc")
    agent_memory_mb: Annotated[float, NoBool] = Field(default=pilot.DEFAULT_AGENT_MEMORY_MB, gt=0, allow_inf_nan=False,
                                                      description="memory per idle agent in the budget (pilot-daemon "
                                                      "1.18.0 measured 13.1-13.4 MB RSS)")
    peer_source_ranges: list[Cidr] = Field(default_factory=lambda: ["0.0.0.0/0"], min_length=1,
                                           description="where peers reach the agents' UDP tunnel ports from")
    provisioning: Literal["standard", "spot"] = Field("standard", description="`spot`: Spot VMs, a fraction of the "
                                                      "on-demand price, which Compute Engine may preempt at any time "
                                                      "(30 s notice; a pool's group recreates them on their state "
                                                      "disks, SCALING.md \"Spot swarms\"); `standard`: on-demand")
    registration_addresses: int | None = Field(default=None, ge=1, le=MAX_REGISTRATION_ADDRESSES, strict=True,
                                               description="source addresses the VM's agents register from: its "
                                               "internal address, then an alias IP range's (needs `agentReach: "
                                               "vpc`); unset: what `coldStartMinutes` needs, else 1")


class SwarmVmConfig(AgentSettings):
    """What a swarm VM is, a host's or each of a pool's: its machine, its agents' target and its disks."""

    name: GceName = Field(description="the VM (a pool's: the prefix of its VMs' names)")
    machine_type: str = Field(description="a machine type of fleet/facts/data/machine_types.yaml")
    target_agents: int = _bounded("target_agents", "agents per VM (a pool's total is size x this); held to the "
                                  "machine's memory budget")
    pilot_version: str | None = Field(None, description="the Pilot Protocol release of this host's or pool's VMs, "
                                      "for a canary or a rollback (default: the fleet's `pilotVersion`)")
    disk_gb: DiskGb = Field(pilot.DEFAULT_BOOT_DISK_GB, description="boot disk")
    state_disk_gb: DiskGb = Field(pilot.DEFAULT_STATE_DISK_GB, description="the agents' state disk (their "
                                  "identities), which outlives the VM")

    @property
    def last_udp_port(self) -> int:
        return self.base_udp_port + self.target_agents - 1


class SwarmHostConfig(SwarmVmConfig):
    zone: Zone | None = Field(None, description="its zone (default: `gcp:zone`)")
    spot_stays_stopped: bool = Field(False, strict=True, description="accept a stand-alone spot host that a "
                                     "preemption leaves stopped: nothing starts it again (a pool's group would "
                                     "recreate it) until someone does")

    @model_validator(mode="after")
    def _spot_comes_back(self) -> SwarmHostConfig:
        if self.provisioning == "spot" and not self.spot_stays_stopped:
            raise ValueError("provisioning spot on a stand-alone host: a preemption stops the VM and nothing starts "
                             "it again, so its agents stay offline; put it in swarmPools (the group recreates it on "
                             "its state disk), or set spotStaysStopped: true on purpose")
        return self

    @property
    def total_agents(self) -> int:
        return self.target_agents


class SwarmPoolConfig(SwarmVmConfig):
    """Identical swarm VMs in a managed instance group: an instance template, autohealing, rolling updates."""

    zones: list[Zone] = Field(default_factory=list, description="its zones (default: `[gcp:zone]`); more than one "
                              "makes a regional group")
    size: int = Field(ge=0, le=1000, strict=True, description="VMs in the group")
    # A pool VM keeps its agents' state disk when it is recreated: Compute Engine recreates it under its own name
    # (replacement RECREATE), so a rolling update adds no VM (maxSurge 0) and takes down maxUnavailable at a time.
    max_surge: int = Field(default=0, ge=0, le=0, description="0, the only value: VMs are recreated under their "
                           "names to keep their state disks")
    max_unavailable: int | None = Field(default=None, ge=1, strict=True, description="VMs a rolling update takes "
                                        "down at once (default: one per zone; a regional group needs one per zone)")

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
    os_reserve_mb: int = Field(default=pilot.DEFAULT_OS_RESERVE_MB, ge=0, strict=True,
                               description="memory kept for the OS on every swarm VM")
    headroom_percent: Annotated[float, NoBool] = Field(default=pilot.DEFAULT_HEADROOM_PERCENT, ge=0,
                                                       allow_inf_nan=False, description="headroom over the agents' "
                                                       "idle memory for connection bursts (the seed's swap incident)")


class FleetConfig(Model):
    gcp: GcpSettings
    pilot_version: str = Field(pilot.PILOT_VERSION, description="the Pilot Protocol release every swarm VM runs, "
                               "unless a pool or host sets its own: a version of fleet/facts/data/pilot_releases.yaml")
    network: NetworkConfig = Field(NetworkConfig(), description="the VPC network and subnet")
    rendezvous: RendezvousConfig = Field(RendezvousConfig(), description="the rendezvous server")
    registry: RegistryConfig = Field(RegistryConfig(), description="how agents talk to the registry")
    monitoring: MonitoringConfig = Field(MonitoringConfig(), description="what the stack declares in Cloud "
                                         "Monitoring")
    agent_defaults: AgentSettings = Field(AgentSettings(), description="agent settings every swarm host and pool "
                                          "starts from; each may set its own")
    memory: MemoryPolicy = Field(MemoryPolicy(), description="the memory budget every swarm VM's target is held to")
    swarm_hosts: list[SwarmHostConfig] = Field(default_factory=list, description="stand-alone swarm VMs")
    swarm_pools: list[SwarmPoolConfig] = Field(default_factory=list, description="managed instance groups of "
                                               "identical swarm VMs with stateful disks")
    # at least one: a firewall rule with no source at all admits 0.0.0.0/0 on Compute Engine
    ssh_source_ranges: list[Cidr] = Field(default_factory=lambda: [pilot.IAP_RANGE], min_length=1,
                                          description="who may SSH to fleet VMs (default: IAP TCP forwarding only)")
    alert_threshold: Annotated[float, NoBool] = _bounded("health_threshold")
    labels: Labels = Field(default_factory=dict, description="extra labels on every resource that takes labels")
    agent_reach: Literal["internet", "vpc"] = Field("internet", description="who reaches the agents. `internet`: "
                                                    "each VM registers from its external address, one address, so 10 "
                                                    "new identities a minute per VM. `vpc`: agents register with the "
                                                    "rendezvous' internal address from their VM's internal address "
                                                    "and alias IP range, as many addresses as the cold-start budget "
                                                    "needs, and only the VPC (and networks connected to it) reaches "
                                                    "them (SCALING.md)")
    cold_start_minutes: Annotated[float | None, NoBool] = Field(default=None, ge=1, le=1440, allow_inf_nan=False,
                                                                description="the budget for a cold start (every "
                                                                "identity new to the registry): each VM's "
                                                                "registration addresses are sized for it, and pacing "
                                                                "that cannot meet it is an error (at least a minute: "
                                                                "the registry admits new identities by the minute)")
    disk_kms_key: KmsKey | None = Field(None, description="a Cloud KMS key (CMEK) for every disk the fleet makes. Set "
                                        "it when the stack is created: a disk's key cannot change, so setting it "
                                        "later replaces every disk, the registry's store among them. Compute "
                                        "Engine's service agent needs roles/cloudkms.cryptoKeyEncrypterDecrypter on "
                                        "it. Unset: Google-managed keys")

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
