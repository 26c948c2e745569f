"""What a stack's configuration must satisfy beyond each field's type and bounds (the models in model.py): machine
types, zones and regions, pinned versions and sources, ports that collide, memory budgets, agent port ranges; every
problem reported at once, each with its key as `pulumi config set` writes it."""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from fleet.capacity.cold_start import Pacing, budget_needs, fleet_cold_start, vm_cold_start
from fleet.capacity.subnet import Claim, place
from fleet.config.fields import KMS_KEY
from fleet.config.model import (
    FleetConfig,
    FleetConfigError,
    RendezvousConfig,
    SwarmHostConfig,
    SwarmPoolConfig,
)
from fleet.facts import names, pilot
from fleet.facts.machine_types import lookup, machine_types
from fleet.facts.pilot_releases import known_versions
from fleet.facts.rendezvous_build import build_table
from fleet.facts.rendezvous_capacity import rendezvous_capacity
from fleet.facts.zones import zones_by_region
from fleet.vm_contract import MAX_REGISTRATION_ADDRESSES

SSH_PORT = 22


def key_name(loc: tuple[int | str, ...]) -> str:
    """('swarmHosts', 2, 'targetAgents') -> 'pilot-fleet:swarmHosts[2].targetAgents'."""
    if loc and loc[0] == "gcp":
        return "gcp:" + ".".join(str(p) for p in loc[1:])
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return f"{pilot.PROJECT_NAME}:{text}" if text else pilot.PROJECT_NAME


def _owner(raw: Mapping[str, Any], loc: tuple[int | str, ...]) -> str:
    """' (swarm-3)' when LOC is inside the third swarm host and it has a name: a host is known by its name."""
    if len(loc) >= 2 and loc[0] in ("swarmHosts", "swarmPools") and isinstance(loc[1], int):
        items = raw.get(str(loc[0]))
        item = items[loc[1]] if isinstance(items, list) and loc[1] < len(items) else None
        name = item.get("name") if isinstance(item, dict) else None
        if isinstance(name, str) and len(loc) > 2 and loc[2] != "name":
            return f" ({(name if name.isprintable() else repr(name))[:63]})"  # one line, whatever the name holds
    return ""


def _pydantic_problems(exc: ValidationError, raw: Mapping[str, Any]) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see the configuration reference, docs/configuration.md)"
        elif err["type"] == "missing":
            message = "required but not set"
        elif err["type"] == "finite_number":
            message = "must be a finite number"
        elif err["type"] in ("model_type", "model_attributes_type", "dict_type"):
            message = "should be a mapping of keys (see the configuration reference, docs/configuration.md)"
        problems.append(f"{key_name(loc)}{_owner(raw, loc)}: {message[:300]}")
    return problems


class _Checks:
    """The semantic checks of one config, each adding its problems."""

    def __init__(self, cfg: FleetConfig) -> None:
        self.cfg = cfg
        self.problems: list[str] = []
        self.region = cfg.gcp.region
        self.known_zones = zones_by_region()
        self.seen: dict[str, str] = {cfg.rendezvous.name: key_name(("rendezvous", "name"))}
        ports = cfg.rendezvous.ports
        self.reserved = {ports.registry: "rendezvous registry", ports.beacon: "rendezvous beacon",
                         ports.dashboard: "rendezvous dashboard", pilot.SUPERVISOR_HEALTH_PORT: "supervisor health"}

    def machine(self, key: str, name: str) -> None:
        if lookup(name) is None:
            close = difflib.get_close_matches(name, machine_types(), n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            self.problems.append(f"{key}: unknown machine type {name!r} ({hint}known types: "
                                 "fleet/facts/data/machine_types.yaml)")

    def zone(self, key: str, zone: str) -> None:
        region, known = self.region, self.known_zones
        if not zone.startswith(region + "-"):
            self.problems.append(f"{key}: zone {zone} is not in region {region} (gcp:region)")
        elif region not in known:
            self.problems.append(f"{key}: region {region} is not in fleet/facts/data/zones.yaml (add its zones there, "
                                 f"from `gcloud compute zones list --filter=region:{region}`)")
        elif zone not in known[region]:
            close = difflib.get_close_matches(zone, known[region], n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            self.problems.append(f"{key}: {zone} is not a zone of {region} ({hint}its zones: "
                                 f"{', '.join(known[region])}; fleet/facts/data/zones.yaml)")

    def fleet(self) -> None:
        cfg = self.cfg
        self.zone("gcp:zone", cfg.gcp.zone)
        if cfg.network.existing and "subnet_cidr" in cfg.network.model_fields_set:
            self.problems.append(f"{key_name(('network', 'subnetCidr'))}: set with existing: true, which uses the "
                                 "subnet as it is: the range would be ignored (drop it, or let the program create "
                                 "the network)")
        key = KMS_KEY.fullmatch(cfg.disk_kms_key or "")
        if key and key.group(2) not in ("global", cfg.gcp.region):
            self.problems.append(f"{key_name(('diskKmsKey',))}: the key is in {key.group(2)}; the fleet's disks are in "
                                 f"{cfg.gcp.region}, and Compute Engine takes a key in the disk's region or global")
        self.version(key_name(("pilotVersion",)), cfg.pilot_version)
        self.agent_memory(key_name(("agentDefaults", "agentMemoryMb")), cfg.agent_defaults.agent_memory_mb)

    def agent_memory(self, key: str, megabytes: float) -> None:
        """The budget per agent, headroom included, holds an idle daemon as measured (else the VM swaps under a
        target its budget admits: the seed's swap incident)."""
        headroom = self.cfg.memory.headroom_percent
        if megabytes * (1 + headroom / 100) < pilot.IDLE_AGENT_RSS_MB:
            self.problems.append(f"{key}: {megabytes:g} MB x {1 + headroom / 100:.2f} ({headroom:g}% headroom) is "
                                 f"under the {pilot.IDLE_AGENT_RSS_MB:g} MB an idle pilot-daemon was measured to use "
                                 "(docs/pilot-facts.md): the VM would swap at a target its budget admits")

    def version(self, key: str, version: str) -> None:
        if version not in known_versions():
            self.problems.append(f"{key}: no pilot-daemon wheel known for {version!r} (known: "
                                 f"{', '.join(known_versions())}; add its wheels to "
                                 "fleet/facts/data/pilot_releases.yaml)")

    def rendezvous(self) -> None:
        rv, home = self.cfg.rendezvous, self.cfg.zone_of(self.cfg.rendezvous.zone)
        if rv.zone:
            self.zone(key_name(("rendezvous", "zone")), rv.zone)
        self.machine(key_name(("rendezvous", "machineType")), rv.machine_type)
        self.problems += _install_source_problems(rv)
        if rv.ports.registry == rv.ports.dashboard:  # both TCP; the beacon is UDP and may share a number
            self.problems.append(f"{key_name(('rendezvous', 'ports'))}: registry and dashboard cannot share TCP "
                                 f"port {rv.ports.registry}")
        for what, port in (("registry", rv.ports.registry), ("dashboard", rv.ports.dashboard)):
            if port == SSH_PORT:  # sshd holds it: the rendezvous would exit at start, unable to bind
                self.problems.append(f"{key_name(('rendezvous', 'ports'))}: the {what} on TCP port {SSH_PORT}, "
                                     "which sshd holds on every fleet VM")
        if rv.failover_zone:
            self.zone(key_name(("rendezvous", "failoverZone")), rv.failover_zone)
            if rv.failover_zone == home:
                self.problems.append(f"{key_name(('rendezvous', 'failoverZone'))}: must be another zone than the "
                                     f"rendezvous' own ({home}): the store disk is replicated across the two")
        subnet = ipaddress.ip_network(self.cfg.network.subnet_cidr)
        if self.cfg.agent_reach == "vpc" and not self.cfg.network.existing and not any(
                subnet.subnet_of(ipaddress.ip_network(r)) for r in rv.agent_source_ranges
                if ipaddress.ip_network(r).version == subnet.version):
            self.problems.append(f"{key_name(('rendezvous', 'agentSourceRanges'))}: "
                                 f"{', '.join(rv.agent_source_ranges)} do not admit the subnet {subnet}, which every "
                                 "agent registers from with agentReach: vpc (its VM's internal and alias addresses)")
        if rv.start_fresh and rv.store_from_snapshot:
            self.problems.append(f"{key_name(('rendezvous', 'startFresh'))}: true with "
                                 f"{key_name(('rendezvous', 'storeFromSnapshot'))} {rv.store_from_snapshot}: a "
                                 "store restored from a snapshot would be set aside at once; choose one")
        if rv.active_zone and rv.active_zone not in {home, rv.failover_zone}:
            self.problems.append(f"{key_name(('rendezvous', 'activeZone'))}: {rv.active_zone} is neither the "
                                 f"rendezvous' zone ({home}) nor its failoverZone ({rv.failover_zone or 'not set'}): "
                                 "the store disk is only in those")

    def agents(self, where: str, spec: SwarmHostConfig | SwarmPoolConfig) -> None:
        """A swarm VM's name, machine, memory budget and agent port range."""
        if spec.name in self.seen:
            self.problems.append(f"{where}.name: duplicate name {spec.name!r} (also {self.seen[spec.name]})")
        self.seen[spec.name] = f"{where}.name"
        self.machine(f"{where}.machineType", spec.machine_type)
        if spec.pilot_version is not None:
            self.version(f"{where}.pilotVersion", spec.pilot_version)
        if spec.agent_memory_mb != self.cfg.agent_defaults.agent_memory_mb:  # the fleet's own is checked once
            self.agent_memory(f"{where}.agentMemoryMb ({spec.name})", spec.agent_memory_mb)
        machine, target = lookup(spec.machine_type), spec.target_agents
        if machine is not None and not self.cfg.budget(spec).fits(target):
            self.problems.append(f"{where}.targetAgents ({spec.name}): "
                                 f"{self.cfg.budget(spec).explain(target, machine.name)}")
            return  # the budget is the first bound it breaks: its ports would only repeat that
        first, last = spec.base_udp_port, spec.last_udp_port
        span = f"UDP ports {first}-{last} ({target} agents from baseUdpPort {first})"
        # named where the operator wrote it: agentDefaults, when the VM takes the fleet's value from there
        defaults = self.cfg.agent_defaults
        key = key_name(("agentDefaults", "baseUdpPort")) if "base_udp_port" in defaults.model_fields_set and \
            first == defaults.base_udp_port else f"{where}.baseUdpPort"
        if last > pilot.MAX_PORT:
            self.problems.append(f"{key} ({spec.name}): {span} run past {pilot.MAX_PORT}")
        taken = [f"the {what} port {port}" for port, what in self.reserved.items() if first <= port <= last]
        if taken:
            self.problems.append(f"{key} ({spec.name}): {span} include {', '.join(taken[:-1])}"
                                 f"{' and ' if len(taken) > 1 else ''}{taken[-1]}")
        eph_lo, eph_hi = pilot.EPHEMERAL_PORT_RANGE
        if first <= eph_hi and last >= eph_lo:
            self.problems.append(f"{key} ({spec.name}): {span} overlap the kernel's ephemeral port range "
                                 f"{eph_lo}-{eph_hi}")

    def swarm(self) -> None:
        if self.cfg.expected_agents == 0:
            self.problems.append(f"{key_name(('swarmHosts',))}: the fleet has no agents: declare swarmHosts or "
                                 "swarmPools (a fleet of a rendezvous alone would plan green and verify nothing)")
        for i, host in enumerate(self.cfg.swarm_hosts):
            where = key_name(("swarmHosts", i))
            if host.zone:
                self.zone(f"{where}.zone", host.zone)
            self.agents(where, host)
        for i, pool in enumerate(self.cfg.swarm_pools):
            where = key_name(("swarmPools", i))
            zones = self.cfg.zones_of(pool)
            for zone in zones:
                self.zone(f"{where}.zones", zone)
            twice = len(set(zones)) != len(zones)
            if twice:
                self.problems.append(f"{where}.zones ({pool.name}): a zone is listed twice")
            self.agents(where, pool)
            unavailable = pool.unavailable(len(zones))
            if pool.size and unavailable >= pool.size and not twice:  # a zone twice is that problem, not also this
                self.problems.append(f"{where}.maxUnavailable ({pool.name}): {unavailable} of its {pool.size} VMs "
                                     "(one per zone unless set): a rolling update could take every VM down at once; "
                                     "grow the pool or set fewer")
            if len(zones) > 1 and unavailable < len(zones):
                self.problems.append(f"{where}.maxUnavailable ({pool.name}): a regional group across {len(zones)} "
                                     f"zones needs at least {len(zones)} (Compute Engine's rule), not {unavailable}")


    def names(self) -> None:
        """Every name the program makes from a configured one is a valid Compute Engine name of at most 63
        characters, and no two disks share a name (a VM's boot disk takes the VM's name)."""
        cfg, rv, net = self.cfg, self.cfg.rendezvous, self.cfg.network
        made: list[tuple[str, str, list[str]]] = [
            (key_name(("network", "name")), net.name, [names.ssh_rule(net.name),
                                                       net.subnet_name or names.subnet(net.name, cfg.gcp.region)]),
            (key_name(("rendezvous", "name")), rv.name, [names.address(rv.name), names.store_disk(rv.name),
                                                         names.store_disk(rv.name, rv.store_from_snapshot),
                                                         names.store_snapshots(rv.name),
                                                         *(names.rendezvous_rule(rv.name, what)
                                                           for what in names.RENDEZVOUS_RULES)]),
        ]
        for kind, specs in (("swarmHosts", cfg.swarm_hosts), ("swarmPools", cfg.swarm_pools)):
            for i, spec in enumerate(specs):
                own = [names.agents_rule(spec.name), names.swarm_tag(spec.name)]
                if kind == "swarmHosts":
                    own.append(names.state_disk(spec.name))
                else:
                    own += [names.group_vm(spec.name), names.health_check(spec.name),
                            names.health_checks_rule(spec.name)]
                made.append((key_name((kind, i, "name")), spec.name, own))
        for key, name, generated in made:
            long = [g for g in generated if len(g) > 63]
            if long:
                self.problems.append(f"{key} ({name[:63]}): names made from it would be longer than Compute "
                                     f"Engine's 63 characters: {', '.join(long)}")
        # a VM's boot disk takes the VM's name: none may take the name of a state or store disk
        held = {names.store_disk(rv.name): "the rendezvous' store disk",
                names.store_disk(rv.name, rv.store_from_snapshot): "the rendezvous' store disk made from "
                                                                  f"{rv.store_from_snapshot}",
                **{names.state_disk(h.name): f"the state disk of {h.name}" for h in cfg.swarm_hosts}}
        vms = [(key_name(("rendezvous", "name")), rv.name)]
        vms += [(key_name(("swarmHosts", i, "name")), h.name) for i, h in enumerate(cfg.swarm_hosts)]
        for key, name in vms:
            if name in held:
                self.problems.append(f"{key} ({name}): its boot disk would be named like {held[name]}")


    def cold_start(self) -> None:
        """Registration addresses need agentReach vpc; a cold-start budget is met by every VM and by the rendezvous;
        the subnet holds every VM's alias range."""
        cfg = self.cfg
        budget = cfg.cold_start_minutes * 60 if cfg.cold_start_minutes is not None else None
        vms: list[tuple[Pacing, int]] = []
        claims = [Claim(who=f"rendezvous ({cfg.rendezvous.name})", count=1, alias_prefix=None)]
        for kind, specs in (("swarmHosts", cfg.swarm_hosts), ("swarmPools", cfg.swarm_pools)):
            for i, spec in enumerate(specs):
                where, count = key_name((kind, i)), getattr(spec, "size", 1)
                addresses = cfg.registration_addresses(spec)
                pacing = cfg.pacing(spec, addresses)
                vms.append((pacing, count))
                claims.append(Claim(who=f"{kind}[{i}] ({spec.name})", count=count, alias_prefix=cfg.alias_prefix(spec)))
                if addresses > 1 and cfg.agent_reach != "vpc":
                    self.problems.append(
                        f"{where}.registrationAddresses ({spec.name}): {addresses} addresses need "
                        f"{key_name(('agentReach',))}: vpc (alias IPs are reachable only inside the VPC; SCALING.md)")
                seconds = vm_cold_start(pacing)
                if budget is None or seconds <= budget:
                    continue
                takes = budget_needs(pacing, budget)
                needs = []
                if takes.spawn_parallelism is None:
                    needs.append(f"more than {pilot.MAX_SPAWN_PARALLELISM} starts a round (fewer agents per VM)")
                else:
                    if takes.spawn_parallelism > pacing.spawn_parallelism:
                        needs.append(f"spawnParallelism {takes.spawn_parallelism}")
                    if takes.addresses is None:
                        needs.append(f"more than {MAX_REGISTRATION_ADDRESSES} registration addresses (fewer agents "
                                     "per VM)")
                    elif takes.addresses > addresses:
                        needs.append(f"registrationAddresses {takes.addresses}" if cfg.agent_reach == "vpc" else
                                     f"{key_name(('agentReach',))}: vpc, for {takes.addresses} registration addresses")
                self.problems.append(
                    f"{where} ({spec.name}): a cold start of its {spec.target_agents:,} agents takes "
                    f"{seconds:,.0f} s, over {key_name(('coldStartMinutes',))} ({budget:,.0f} s): "
                    f"{', and '.join(needs) or 'a longer budget'} (`python -m fleet capacity --stack` sizes it)")
        if budget is not None and vms:
            fleet = fleet_cold_start(vms, rendezvous_capacity().transport(cfg.registry.tls))
            if fleet.rendezvous_seconds > budget:
                self.problems.append(f"{key_name(('coldStartMinutes',))}: one rendezvous registers the fleet in "
                                     f"{fleet.rendezvous_seconds:,.0f} s at its measured rate, over the budget")
        net = cfg.network
        if not net.existing and (short := place(net.subnet_cidr, claims)):
            # an existing network's subnet holds other VMs too: what is free there is not in the stack
            self.problems.append(f"{key_name(('network', 'subnetCidr'))}: {short.who} does not fit: {short.reason}")


def _semantic_problems(cfg: FleetConfig) -> list[str]:
    checks = _Checks(cfg)
    checks.fleet()
    checks.rendezvous()
    checks.swarm()
    checks.names()
    if not checks.problems:  # the cold start is judged on a fleet that is otherwise sound (a target over its
        checks.cold_start()  # memory budget is that problem, not also a slow start)
    return checks.problems


def _install_source_problems(rv: RendezvousConfig) -> list[str]:
    """A rendezvous VM that has no binary to run would boot into nothing: refuse the stack instead."""
    table = build_table()
    known = ", ".join(sorted(table.sources))
    if rv.source and rv.source not in table.sources:
        return [f"{key_name(('rendezvous', 'source'))}: commit {rv.source!r} is not pinned in "
                f"fleet/facts/data/rendezvous_build.yaml (pinned: {known})"]
    if rv.release is not None and "source" in rv.model_fields_set and rv.source:
        return [f"{key_name(('rendezvous', 'release'))}: set with {key_name(('rendezvous', 'source'))}: the "
                "release would win and the commit be ignored; choose one"]
    if not rv.source and rv.release is None:
        return [f"{key_name(('rendezvous', 'source'))}: the rendezvous has no install source: set it to a pinned "
                f"commit ({known}) or set {key_name(('rendezvous', 'release'))} (url, sha256 of a prebuilt binary)"]
    return []


def parse_fleet_config(raw: Mapping[str, Any]) -> FleetConfig:
    """Validate a raw config mapping ({"gcp": {...}, "<fleet key>": ...}); raise FleetConfigError."""
    try:
        cfg = FleetConfig.model_validate(dict(raw))
    except ValidationError as exc:
        raise FleetConfigError(_pydantic_problems(exc, raw)) from None
    except RecursionError:
        raise FleetConfigError([f"{pilot.PROJECT_NAME}: a value nested too deep to be configuration"]) from None
    problems = _semantic_problems(cfg)
    if problems:
        raise FleetConfigError(problems)
    return cfg
