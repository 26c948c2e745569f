"""What the advisory rules share: their level, and `vm_rule`, an advisory judged on every VM of the model."""

from __future__ import annotations

from collections.abc import Callable

from pulumi_policy import EnforcementLevel, ReportViolation, StackValidationArgs, StackValidationPolicy

from .preview import unknown_of
from .vms import EffectiveVm, effective_vms

ADVISORY = EnforcementLevel.ADVISORY


VmCheck = Callable[[EffectiveVm], str | None]


def vm_rule(name: str, description: str, needs: tuple[str, ...], check: VmCheck) -> StackValidationPolicy:
    """An advisory on every VM the model knows (vms.py): instances, templates, instances from a template (with what
    they inherit) and the VMs of groups whose configs change their metadata. `check(vm)` returns the problem or
    None; a VM where a value in NEEDS is not known at preview is said to be not judged, on its own."""

    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        for vm in effective_vms(args.resources):
            missing = unknown_of(vm.unknown, needs)
            if missing:
                report_violation(f"{vm.name}: not judged at preview: {', '.join(missing)} not known yet.", vm.urn)
                continue
            problem = check(vm)
            if problem:
                report_violation(f"{vm.name}: {problem}", vm.urn)

    return StackValidationPolicy(name=name, description=description, validate=validate, enforcement_level=ADVISORY)


