"""preview-unknowns (advisory): the VMs a stack rule could not judge, each with the rule and what it needs that is
not known: a value not known at preview, a firewall rule holding one, or a network this stack does not declare
(a Shared VPC host's subnetwork). The rules judge every other VM as usual (preview.py)."""

from __future__ import annotations

from pulumi_policy import EnforcementLevel, ReportViolation, StackValidationArgs, StackValidationPolicy

from . import facts as pilot
from .firewall import Firewall
from .firewall_rules import target_of
from .gce import INSTANCE, INSTANCE_FROM_MACHINE_IMAGE, INSTANCE_FROM_TEMPLATE
from .network import Networks
from .preview import JUDGES, NEEDS
from .startup_scripts import boot_path_unknowns
from .vms import EffectiveVm, effective_vms

# what judges a value preview cannot: the offline plan with every output resolved, and `pulumi up` itself
UP_JUDGES = ("`python -m fleet plan --up` judges it with the values the mock engine gives, `pulumi up` with the real "
             "ones.")

# the stack rules that judge a VM's reachability through the firewall, and the roles they judge
FIREWALL_RULES = {"pilot-ports-open": (pilot.ROLE_RENDEZVOUS, pilot.ROLE_SWARM),
                  "pools-heal-safely": (pilot.ROLE_SWARM,)}


def _unknowns(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    for name, urn, what in boot_path_unknowns(args.resources):
        report_violation(f"{name}: {what}; {UP_JUDGES}", urn)
    firewall = Firewall(args.resources, Networks(args.resources))
    for vm in effective_vms(args.resources):
        if "project" in vm.unknown and (vm.role_unknown or vm.role in (pilot.ROLE_RENDEZVOUS, pilot.ROLE_SWARM)):
            report_violation(f"{vm.name}: one-project-startup-script did not judge this VM at preview: its project "
                             f"is not known, so whether that project has the fleet's startup-script cannot be "
                             f"told; {UP_JUDGES}", vm.urn)
        for rule in (r for r in NEEDS if _judged_by(vm, r)):
            missing = vm.unknown_for(rule)
            if "network" in missing and len(missing) == 1:
                report_violation(f"{vm.name}: {rule} did not judge this VM: the network of its subnetwork is not "
                                 "declared in this stack (a Shared VPC host's, or another stack's), so the rules "
                                 "that reach it cannot be told.", vm.urn)
            elif missing:
                report_violation(f"{vm.name}: {rule} did not judge this VM at preview: "
                                 f"{', '.join(m for m in missing if m != 'network')} not known until the resources "
                                 f"it comes from exist; {UP_JUDGES}", vm.urn)
            elif rule in FIREWALL_RULES and vm.role in FIREWALL_RULES[rule]:
                rules = firewall.unknown_for(target_of(vm))
                if rules:
                    report_violation(f"{vm.name}: {rule} judged this VM at preview with {'; '.join(rules)} not "
                                     "known until the resources they come from exist: each such rule taken as "
                                     "allowing and as denying everything, what both agree on is judged, the rest "
                                     f"is not; {UP_JUDGES}", vm.urn)


def _judged_by(vm: EffectiveVm, rule: str) -> bool:
    """Whether RULE would judge VM, as far as its known values tell (an unknown role: it might)."""
    roles, pools_only = JUDGES[rule]
    if pools_only and vm.kind in (INSTANCE, INSTANCE_FROM_TEMPLATE, INSTANCE_FROM_MACHINE_IMAGE):
        return False
    return not roles or vm.role_unknown or vm.role in roles


preview_unknowns = StackValidationPolicy(
    name="preview-unknowns",
    description="Each VM a stack rule could not judge, with what was not known (a value at preview, or a network "
                "outside this stack); every other VM and rule is judged as usual.",
    validate=_unknowns,
    enforcement_level=EnforcementLevel.ADVISORY,
)
