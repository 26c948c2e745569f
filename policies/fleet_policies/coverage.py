"""Which Compute Engine resource types the pack judges: every type of the installed provider that can create a VM,
carry instance or project metadata, point at a template or a machine image, bind a tag, or filter traffic is in
exactly one of these tables. Modelled: the rules read it (how, in a few words). No effect: it changes neither what a
VM runs nor what reaches it (why). Refused: the pack cannot judge it, so the mandatory rule `types-the-pack-judges`
rejects it by name rather than pass what it cannot see.

`python -m fleet.generators.policy_coverage` finds the types in those families in the installed pulumi_gcp and
writes the table in README's policy section; tests/test_policy_coverage.py fails when a provider upgrade brings a
type these tables do not classify, or when the README's table is stale.
"""

from __future__ import annotations

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

MODELLED: dict[str, str] = {
    "gcp:compute/instance:Instance": "a VM: its machine type, metadata, network, tags and disks",
    "gcp:compute/instanceTemplate:InstanceTemplate": "the VMs of the groups that run it",
    "gcp:compute/regionInstanceTemplate:RegionInstanceTemplate": "the VMs of the groups that run it",
    "gcp:compute/instanceFromTemplate:InstanceFromTemplate": "a VM: its template's, overlaid by its own values",
    "gcp:compute/instanceFromMachineImage:InstanceFromMachineImage":
        "a VM: its machine image's source VM, overlaid by its own values",
    "gcp:compute/machineImage:MachineImage": "the source VM of the instances made from it",
    "gcp:compute/instanceGroupManager:InstanceGroupManager":
        "its templates' VMs, their metadata overlaid by its all-instances config",
    "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager":
        "its templates' VMs, their metadata overlaid by its all-instances config",
    "gcp:compute/perInstanceConfig:PerInstanceConfig": "one VM of its group, its metadata overlaid",
    "gcp:compute/regionPerInstanceConfig:RegionPerInstanceConfig": "one VM of its group, its metadata overlaid",
    "gcp:compute/projectMetadata:ProjectMetadata": "rejected: it owns the whole project metadata",
    "gcp:compute/projectMetadataItem:ProjectMetadataItem": "the project's startup script and other script keys",
    "gcp:compute/instanceSettings:InstanceSettings": "zone-level metadata, which overrides the project's",
    "gcp:compute/firewall:Firewall": "a VPC firewall rule of its network",
    "gcp:compute/firewallPolicy:FirewallPolicy": "a hierarchical policy, its rules evaluated first",
    "gcp:compute/firewallPolicyRule:FirewallPolicyRule": "a rule of its hierarchical policy",
    "gcp:compute/firewallPolicyAssociation:FirewallPolicyAssociation": "where a hierarchical policy applies",
    "gcp:compute/firewallPolicyWithRules:FirewallPolicyWithRules": "a hierarchical policy and its rules",
    "gcp:compute/networkFirewallPolicy:NetworkFirewallPolicy": "a global network policy",
    "gcp:compute/networkFirewallPolicyRule:NetworkFirewallPolicyRule": "a rule of its global network policy",
    "gcp:compute/networkFirewallPolicyAssociation:NetworkFirewallPolicyAssociation":
        "which network a global policy applies to",
    "gcp:compute/networkFirewallPolicyWithRules:NetworkFirewallPolicyWithRules":
        "a global network policy and its rules",
    "gcp:compute/regionNetworkFirewallPolicy:RegionNetworkFirewallPolicy": "a regional network policy",
    "gcp:compute/regionNetworkFirewallPolicyRule:RegionNetworkFirewallPolicyRule": "a rule of its regional policy",
    "gcp:compute/regionNetworkFirewallPolicyAssociation:RegionNetworkFirewallPolicyAssociation":
        "which network a regional policy applies to",
    "gcp:compute/regionNetworkFirewallPolicyWithRules:RegionNetworkFirewallPolicyWithRules":
        "a regional network policy and its rules",
    "gcp:tags/tagBinding:TagBinding": "a secure tag on the VM it binds, which policy rules target",
    "gcp:tags/locationTagBinding:LocationTagBinding": "a secure tag on the VM it binds, which policy rules target",
}

NO_EFFECT: dict[str, str] = {
    **{f"gcp:compute/{kind[0].lower()}{kind[1:]}Iam{how}:{kind}Iam{how}":
       "who may change the policy, not what it admits"
       for kind in ("FirewallPolicy", "NetworkFirewallPolicy", "RegionNetworkFirewallPolicy")
       for how in ("Binding", "Member", "Policy")},
    "gcp:compute/networkFirewallPolicyPacketMirroringRule:NetworkFirewallPolicyPacketMirroringRule":
        "it copies traffic to a collector; it admits and denies none",
}

REFUSED: dict[str, str] = {
    "gcp:tags/tagBindingCollection:TagBindingCollection":
        "it binds several tags to a parent at once, which the pack does not read; use one TagBinding per tag",
}


def _refused(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    why = REFUSED.get(args.resource_type)
    if why is not None:
        report_violation(f"{args.name} is a {args.resource_type.rsplit(':', 1)[-1]}: the pack cannot judge it ({why}), "
                         "so it cannot tell whether the fleet's rules still hold.", None)


types_the_pack_judges = ResourceValidationPolicy(
    name="types-the-pack-judges",
    description="No resource of a Compute Engine type the pack cannot judge (a VM, metadata, a tag binding or a "
                "traffic filter it does not model): rejected by name rather than passed unseen.",
    validate=_refused,
)
