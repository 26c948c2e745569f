"""preview-unknowns (advisory): the VMs a stack rule could not judge at preview, each with the rule and the values
it needs that are not known yet. The rules judge every other VM as usual (preview.py)."""

from __future__ import annotations

from pulumi_policy import EnforcementLevel, ReportViolation, StackValidationArgs, StackValidationPolicy

from .preview import NEEDS
from .vms import effective_vms


def _unknowns(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    for vm in effective_vms(args.resources):
        for rule in NEEDS:
            missing = vm.unknown_for(rule)
            if missing:
                report_violation(f"{vm.name}: {rule} did not judge this VM at preview: {', '.join(missing)} "
                                 "not known until the resources it comes from exist; `pulumi up` judges it with "
                                 "the values.", vm.urn)


preview_unknowns = StackValidationPolicy(
    name="preview-unknowns",
    description="Each VM a stack rule could not judge at preview, with the values not known yet; every other VM "
                "and rule is judged as usual.",
    validate=_unknowns,
    enforcement_level=EnforcementLevel.ADVISORY,
)
