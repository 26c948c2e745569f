"""Two ways to run the pack's rules on a list of resources, compared in the tests:
directly (rule functions, props wrapped in pulumi-policy's own unknown-checking proxy) and over gRPC
(the real pack process, driven by fleet.policy_runner.analyzer exactly as `python -m fleet plan` drives it)."""

from __future__ import annotations

import contextlib
import copy
import sys
from typing import Any

from google.protobuf import struct_pb2

from fleet.plan.mock_engine import Plan, PlannedResource
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "policies"))

from fleet_policies.pack import POLICIES
from pulumi_policy import (
    PolicyResource,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError, unknown_checking_proxy

from fleet.policy_runner.analyzer import analyze_with

PACK_DIR = REPO / "policies"
# Advisories every shipped stack carries by choice (the fleet's disks use Google-managed keys: CKV_GCP_38). The
# rule tests below compare what one change adds to a shipped stack, so they leave these out; the scanner-parity
# scenarios (tests/test_policy_pack.py) test the rule itself, and the plan of each stack shows them.
BASELINE_ADVISORIES = frozenset({"disk-customer-key"})
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # the engine's marker for a value not known at plan time


def resources_from_plan(plan_json: dict[str, Any]) -> list[dict[str, Any]]:
    return [copy.deepcopy(r) for r in plan_json["resources"] if r["custom"]]


def plan_of(resources: list[dict[str, Any]]) -> Plan:
    plan = Plan(project="pilot-fleet", stack="test")
    for r in resources:
        struct = struct_pb2.Struct()
        struct.update(r["inputs"])
        plan.resources.append(PlannedResource(
            urn=r["urn"], type=r["type"], name=r["name"], custom=True, parent=r.get("parent"),
            provider=None, dependencies=r.get("dependencies", []), options=r.get("options", {}),
            properties=struct, inputs=r["inputs"], property_dependencies=r.get("propertyDependencies", {})))
    return plan


def over_grpc(stub: Any, resources: list[dict[str, Any]],
              overrides: dict[str, Any] | None = None) -> set[tuple[str, str]]:
    report = analyze_with(stub, plan_of(resources), PACK_DIR, "test", overrides or {})
    return {(v.policy, v.urn.rsplit("::", 1)[-1] if v.urn else "stack") for v in report.violations
            if v.policy not in BASELINE_ADVISORIES}


def directly(resources: list[dict[str, Any]], config: dict[str, Any] | None = None) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    config = config or {}
    for policy in [p for p in POLICIES if p.name not in BASELINE_ADVISORIES]:
        if isinstance(policy, ResourceValidationPolicy):
            for r in resources:
                args = ResourceValidationArgs(r["type"], unknown_checking_proxy(copy.deepcopy(r["inputs"])),
                                              r["urn"], r["name"], None, None, config.get(policy.name))
                # an unknown value raises; the engine reports that as an advisory "can't run during preview"
                with contextlib.suppress(UnknownValueError):
                    policy.validate(args, lambda _m, _u=None, n=r["name"], p=policy.name: found.add((p, n)))
        elif isinstance(policy, StackValidationPolicy):
            policy_resources = [PolicyResource(r["type"], unknown_checking_proxy(copy.deepcopy(r["inputs"])),
                                               r["urn"], r["name"], None, None, None, [], {}) for r in resources]
            by_urn = {pr.urn: pr for pr in policy_resources}
            for pr, r in zip(policy_resources, resources, strict=True):  # as the engine links them
                pr.dependencies = [by_urn[u] for u in r.get("dependencies", []) if u in by_urn]
                pr.property_dependencies = {name: [by_urn[u] for u in urns if u in by_urn]
                                            for name, urns in r.get("propertyDependencies", {}).items()}

            def report(_m: str, urn: str | None = None, p: str = policy.name) -> None:
                found.add((p, urn.rsplit("::", 1)[-1] if urn else "stack"))

            policy.validate(StackValidationArgs(policy_resources, config.get(policy.name)), report)
    return found
