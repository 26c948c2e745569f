"""A swarm host: one VM that runs its agent target of pilot-daemons, its agent state disk, and the firewall for its
agents' tunnel ports."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from fleet.components.instance import external_ip, internal_ip
from fleet.components.swarm_vm import AgentVm, SwarmVmArgs, agent_ports_firewall, swarm_vm
from fleet.facts import names, pilot


@dataclass(frozen=True, kw_only=True)
class SwarmHostArgs:
    fleet: SwarmVmArgs
    vm: AgentVm
    zone: str


class SwarmHost(pulumi.ComponentResource):
    external_ip: pulumi.Output[str]
    internal_ip: pulumi.Output[str]

    def __init__(self, name: str, args: SwarmHostArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("pilot-fleet:fleet:SwarmHost", name, None, opts)
        fleet, vm, self.zone = args.fleet, args.vm, args.zone
        # The agents' state (identities, registration markers) on a disk of its own: a replaced VM (new zone,
        # new image) gets it back, and its agents come back as the identities the registry knows.
        state = gcp.compute.Disk(names.state_disk(name), name=names.state_disk(name), project=fleet.project,
                                 zone=self.zone, size=vm.state_disk_gb, type=pilot.STATE_DISK_TYPE,
                                 labels=dict(fleet.labels), opts=pulumi.ResourceOptions(parent=self),
                                 disk_encryption_key=gcp.compute.DiskDiskEncryptionKeyArgs(
                                     kms_key_self_link=fleet.disk_kms_key) if fleet.disk_kms_key else None)
        disk = gcp.compute.InstanceAttachedDiskArgs(source=state.self_link, device_name=pilot.STATE_DEVICE)
        instance = swarm_vm(fleet, vm, zone=self.zone, attached_disks=[disk]).declare(self)
        agent_ports_firewall(fleet, vm, self)
        self.external_ip = external_ip(instance)
        self.internal_ip = internal_ip(instance)
        self.register_outputs({"externalIp": self.external_ip, "internalIp": self.internal_ip})
