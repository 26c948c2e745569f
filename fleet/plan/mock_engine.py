"""Runs a real Pulumi Python program in-process under the SDK's mock engine and captures what it declares.

The program talks to `pulumi.runtime.set_mocks`' MockMonitor exactly as it would talk to the engine's resource
monitor; a thin subclass records every RegisterResource request (type, name, URN, the camelCase properties as
they go over the wire, parent, provider, dependencies, options) and the stack's RegisterResourceOutputs.
Values only the cloud knows (IDs, addresses, e-mails) are stand-ins from FleetMocks, marked as such.
"""

from __future__ import annotations

import hashlib
import json
import os
import runpy
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import json_format, struct_pb2

from fleet import pulumi_internals
from fleet.plan import tls_standin
from fleet.plan.stack_files import PulumiProject

STACK_TYPE = "pulumi:pulumi:Stack"
STACK_REFERENCE_TYPE = "pulumi:pulumi:StackReference"
# Stand-in addresses come from TEST-NET-3 (RFC 5737) so nobody mistakes them for real ones.
MOCK_EXTERNAL_NET = "203.0.113"
MOCK_INTERNAL_NET = "10.20.0"
# how the plan prints a secret value (pulumi preview's form)
SECRET_SHOWN = "[secret]"
# Stand-in hosts .11 to .250 of those /24s.
FIRST_HOST, ADDRESS_SLOTS = 11, 240


class ProgramError(Exception):
    """The program itself failed (bad config, an exception, a RunError); the message is the program's."""


@dataclass
class PlannedResource:
    urn: str
    type: str
    name: str
    custom: bool
    parent: str | None
    provider: str | None
    dependencies: list[str]
    options: dict[str, Any]
    properties: struct_pb2.Struct  # as sent on the wire: unknowns and secrets keep their markers
    inputs: dict[str, Any]  # plain JSON form of `properties`
    # the resources each input property took a value from (the engine's propertyDependencies): how the policy pack
    # pairs a group with its template by reference when the link itself is not known yet
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"urn": self.urn, "type": self.type, "name": self.name, "inputs": self.inputs,
                "parent": self.parent, "custom": self.custom, "provider": self.provider,
                "dependencies": self.dependencies, "propertyDependencies": self.property_dependencies,
                "options": self.options}


@dataclass
class Plan:
    project: str
    stack: str
    resources: list[PlannedResource] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    # package -> the inputs of its default provider, as the engine makes them: the stack's config in that package's
    # namespace (secret values left out: the offline plan has none to give)
    default_providers: dict[str, dict[str, str]] = field(default_factory=dict)

    def of_type(self, type_: str) -> list[PlannedResource]:
        return [r for r in self.resources if r.type == type_]

    # "preview": values only the cloud knows are unknown, as `pulumi preview` sends them; "up": every output is the
    # value the mock engine gives it, as `pulumi up` has them once the resources it depends on exist
    mode: str = "preview"

    def to_json(self) -> dict[str, Any]:
        return {"stack": self.stack, "project": self.project, "mode": self.mode,
                "resources": [r.to_json() for r in sorted(self.resources, key=lambda r: r.urn)],
                "outputs": self.outputs}


def _integral(value: Any, reveal_secrets: bool = False) -> Any:
    """Struct numbers are doubles on the wire; show 9500, not 9500.0. A secret shows as SECRET_SHOWN, as
    `pulumi preview` shows it, unless REVEAL_SECRETS."""
    if not reveal_secrets and pulumi_internals.is_secret(value):
        return SECRET_SHOWN
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v, reveal_secrets) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_integral(v, reveal_secrets) for v in value]
    return value


def struct_to_json(struct: struct_pb2.Struct, *, reveal_secrets: bool = False) -> dict[str, Any]:
    """Properties as plain JSON: what the plan prints and writes (secrets masked unless REVEAL_SECRETS)."""
    result: dict[str, Any] = _integral(json_format.MessageToDict(struct), reveal_secrets)
    return result


def secret_version_name(secret: str) -> str:
    """The stand-in name of a Secret Manager version of SECRET (projects/P/secrets/S)."""
    return f"{secret}/versions/1"


class FleetMocks:
    """Answers for the cloud: a stable fake ID and the computed attributes programs read back."""

    def __init__(self, gcp_project: str, stack_references: dict[str, dict[str, Any]] | None = None) -> None:
        self.project = gcp_project
        # name -> outputs: what a `pulumi.StackReference` to that stack reads (stand-ins of other stacks' state,
        # which the offline plan cannot reach; `fleet plan --stack-reference NAME=FILE`)
        self.stack_references = stack_references or {}
        self._taken: dict[str, set[int]] = {MOCK_EXTERNAL_NET: set(), MOCK_INTERNAL_NET: set()}

    def _address(self, net: str, owner: str) -> str:
        """A stand-in address derived from its owner's name, so the same stack plans the same addresses whatever
        order the engine registers resources in (only two owners whose names hash alike depend on that order)."""
        taken = self._taken[net]
        if len(taken) >= ADDRESS_SLOTS:
            raise ValueError(f"the offline plan has stand-in addresses for {ADDRESS_SLOTS} VMs at most in {net}.0/24; "
                             "plan fleets past that with swarmPools")
        slot = int(hashlib.sha256(owner.encode()).hexdigest(), 16) % ADDRESS_SLOTS
        while slot in taken:
            slot = (slot + 1) % ADDRESS_SLOTS
        taken.add(slot)
        return f"{net}.{FIRST_HOST + slot}"

    def new_resource(self, args: Any) -> tuple[str, dict[str, Any]]:
        state = dict(args.inputs)
        project = state.get("project") or self.project
        name = state.get("name") or args.name
        typ = args.typ
        resource_id = f"mock-{name}"
        if typ == STACK_REFERENCE_TYPE:
            if name not in self.stack_references:
                raise ValueError(f"the program reads stack {name!r} by reference: give its outputs with "
                                 f"--stack-reference {name}=FILE (a plan written by `plan --json`, or `pulumi stack "
                                 "output --json`)")
            return name, {"name": name, "outputs": self.stack_references[name], "secretOutputNames": []}
        if typ == "gcp:compute/network:Network":
            resource_id = f"projects/{project}/global/networks/{name}"
        elif typ == "gcp:compute/subnetwork:Subnetwork":
            resource_id = f"projects/{project}/regions/{state.get('region')}/subnetworks/{name}"
        elif typ == "gcp:compute/address:Address":
            internal = state.get("addressType") == "INTERNAL"
            state.setdefault("address", self._address(MOCK_INTERNAL_NET if internal else MOCK_EXTERNAL_NET, name))
        elif typ == "gcp:compute/disk:Disk":
            resource_id = f"projects/{project}/zones/{state.get('zone')}/disks/{name}"
        elif typ == "gcp:compute/regionDisk:RegionDisk":
            resource_id = f"projects/{project}/regions/{state.get('region')}/disks/{name}"
        elif typ == "gcp:compute/instanceTemplate:InstanceTemplate":
            name = f"{state.get('namePrefix') or args.name + '-'}00000000000000000000000001"
            resource_id = f"projects/{project}/global/instanceTemplates/{name}"
            state["name"] = name
        elif typ == "gcp:compute/healthCheck:HealthCheck":
            resource_id = f"projects/{project}/global/healthChecks/{name}"
        elif typ == "gcp:compute/instanceGroupManager:InstanceGroupManager":
            resource_id = f"projects/{project}/zones/{state.get('zone')}/instanceGroupManagers/{name}"
            state.setdefault("instanceGroup", f"https://www.googleapis.com/compute/v1/{resource_id}".replace(
                "instanceGroupManagers", "instanceGroups"))
        elif typ == "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager":
            resource_id = f"projects/{project}/regions/{state.get('region')}/instanceGroupManagers/{name}"
            state.setdefault("instanceGroup", f"https://www.googleapis.com/compute/v1/{resource_id}".replace(
                "instanceGroupManagers", "instanceGroups"))
        elif typ == "gcp:compute/firewallPolicy:FirewallPolicy":
            # a hierarchical policy's name is the number the API gives it, its id "locations/global/...": a stable
            # stand-in number from its short name
            number = int(hashlib.sha256(str(state.get("shortName") or args.name).encode()).hexdigest(), 16) % 10**12
            state["name"] = state["firewallPolicyId"] = str(number)
            resource_id = f"locations/global/firewallPolicies/{number}"
        elif typ == "gcp:tags/tagValue:TagValue":
            # a tag value is named by the number the API gives it
            number = int(hashlib.sha256(str(state.get("shortName") or args.name).encode()).hexdigest(), 16) % 10**12
            state["name"] = resource_id = f"tagValues/{number}"
        elif typ in tls_standin.TYPES:
            state = tls_standin.outputs(typ, f"{self.project}/{args.name}", state)
        elif typ == "gcp:secretmanager/secret:Secret":
            resource_id = f"projects/{project}/secrets/{state.get('secretId')}"
            state["name"] = resource_id
        elif typ == "gcp:secretmanager/secretVersion:SecretVersion":
            # the first version of its secret (the API numbers them; a rotation's is the next one)
            resource_id = state["name"] = secret_version_name(str(state.get("secret")))
        elif typ == "gcp:monitoring/alertPolicy:AlertPolicy":
            resource_id = state["name"] = f"projects/{project}/alertPolicies/mock-{args.name}"
        elif typ == "gcp:monitoring/dashboard:Dashboard":
            resource_id = f"projects/{project}/dashboards/mock-{args.name}"
        elif typ == "gcp:serviceaccount/account:Account":
            state["email"] = f"{state.get('accountId')}@{project}.iam.gserviceaccount.com"
        elif typ == "gcp:compute/instance:Instance":
            nics = []
            for i, nic in enumerate(state.get("networkInterfaces") or []):
                nic = dict(nic)
                nic["networkIp"] = nic.get("networkIp") or self._address(MOCK_INTERNAL_NET, f"{name}/nic{i}")
                nic["accessConfigs"] = [{**ac, "natIp": ac.get("natIp") or
                                         self._address(MOCK_EXTERNAL_NET, f"{name}/nic{i}/access{j}")}
                                        for j, ac in enumerate(nic.get("accessConfigs") or [])]
                nics.append(nic)
            state["networkInterfaces"] = nics
        state.setdefault("selfLink", f"https://www.googleapis.com/compute/v1/{resource_id}")
        return resource_id, state

    def call(self, args: Any) -> tuple[dict[str, Any], None]:
        return {}, None


def _make_monitor(mocks: FleetMocks, plan: Plan) -> Any:
    from pulumi.runtime import mocks as pulumi_mocks

    class Adapter(pulumi_mocks.Mocks):
        def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
            return mocks.new_resource(args)

        def call(self, args: pulumi_mocks.MockCallArgs) -> tuple[dict[str, Any], None]:
            return mocks.call(args)

    class CaptureMonitor(pulumi_mocks.MockMonitor):
        stack_urn = ""

        def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (the gRPC method's name)
            response = super().RegisterResource(request)
            if request.type == STACK_TYPE:
                self.stack_urn = response.urn
                return response
            properties = struct_pb2.Struct()
            properties.CopyFrom(request.object)
            options = {
                "protect": request.protect if request.HasField("protect") else False,
                "deleteBeforeReplace": request.deleteBeforeReplace,
                "ignoreChanges": list(request.ignoreChanges),
                "replaceOnChanges": list(request.replaceOnChanges),
                "retainOnDelete": request.retainOnDelete if request.HasField("retainOnDelete") else False,
                "additionalSecretOutputs": list(request.additionalSecretOutputs),
                # what the resource was before (a URN, or a spec such as {"noParent": true}): the engine maps
                # the old state onto the new URN instead of replacing the resource
                "aliases": [json_format.MessageToDict(alias) for alias in request.aliases],
            }
            plan.resources.append(PlannedResource(
                urn=response.urn, type=request.type, name=request.name, custom=request.custom,
                parent=(request.parent if request.parent and request.parent != self.stack_urn else None),
                provider=request.provider or None, dependencies=sorted(request.dependencies),
                options=options, properties=properties, inputs=struct_to_json(properties),
                property_dependencies={name: sorted(request.propertyDependencies[name].urns)  # a map: unordered
                                       for name in sorted(request.propertyDependencies)
                                       if request.propertyDependencies[name].urns}))
            return response

        def RegisterResourceOutputs(self, request: Any) -> Any:  # noqa: N802
            if request.urn == self.stack_urn:
                plan.outputs = struct_to_json(request.outputs)
            return super().RegisterResourceOutputs(request)

    return Adapter(), CaptureMonitor(Adapter())


@contextmanager
def _program_context(directory: Path) -> Iterator[None]:
    """cwd and sys.path as the Pulumi language host sets them: the program directory first."""
    old_cwd, old_path = Path.cwd(), list(sys.path)
    os.chdir(directory)
    sys.path.insert(0, str(directory))
    try:
        yield
    finally:
        os.chdir(old_cwd)
        sys.path[:] = old_path


def default_providers(project: PulumiProject) -> dict[str, dict[str, str]]:
    """package -> config key -> value (text) for each package namespace of the stack's config."""
    providers: dict[str, dict[str, str]] = {}
    for key, value in project.config.items():
        package, _, name = key.partition(":")
        if name and key not in project.secret_keys and package not in (project.name, "pulumi"):
            providers.setdefault(package, {})[name] = value if isinstance(value, str) else json.dumps(value)
    return providers


def plan_program(project: PulumiProject, stack: str, gcp_project: str, *, up: bool = False,
                 stack_references: dict[str, dict[str, Any]] | None = None) -> Plan:
    """Run the project's program once under mocks and return what it declared: with preview semantics (a value
    another resource gives is unknown until it exists), or with UP every output resolved to the value the mock
    engine gives it (what `pulumi up` sends the policy pack once those resources exist)."""
    import pulumi

    plan = Plan(project=project.name, stack=stack, default_providers=default_providers(project),
                mode="up" if up else "preview")
    adapter, monitor = _make_monitor(FleetMocks(gcp_project, stack_references), plan)
    pulumi_internals.set_stack_config(project.config, project.secret_keys)
    pulumi.runtime.set_mocks(adapter, project=project.name, stack=stack, preview=not up, monitor=monitor)
    # set_mocks registers and closes a root stack of its own; replace it with one that runs the program
    # and registers its exports at the end, as the language host does.
    pulumi_internals.reset_root_resource()

    def program() -> None:
        runpy.run_path(str(project.main), run_name="__main__")

    try:
        with _program_context(project.directory):
            pulumi_internals.run_program(program)
    except pulumi.RunError as exc:
        raise ProgramError(_cut(str(exc))) from None
    except Exception as exc:
        # the SDK wraps what failed inside a resource's mocks (e.g. the stand-in addresses running out) in an error
        # that repeats the whole value it was serialising: say the innermost cause, in a line of readable length
        cause: BaseException = exc
        while cause.__cause__ is not None or cause.__context__ is not None:
            cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
        raise ProgramError(_cut(f"{type(cause).__name__}: {cause}")) from exc
    return plan


def _cut(text: str, limit: int = 500) -> str:
    """One message per line, each at most LIMIT characters (a value can be megabytes of text)."""
    return "\n".join(line if len(line) <= limit else line[:limit] + " [...]" for line in text.splitlines())
