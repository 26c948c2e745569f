"""Runs a Pulumi policy pack the way the engine does, without the Pulumi CLI.

The pack is started as its own process (`python -u <pack>/__main__.py` in the pack directory), which prints the
port of its Analyzer gRPC server. Over that channel this module calls GetAnalyzerInfo, Configure (each policy's
enforcement level and its config, with the schema's defaults filled in), Analyze for every planned resource and
AnalyzeStack for the whole plan, using the `pulumi.runtime.proto` messages the engine uses.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import yaml
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from fleet.plan.mock_engine import Plan, PlannedResource, struct_to_json

ENFORCEMENT_NAMES = {analyzer_pb2.ADVISORY: "advisory", analyzer_pb2.MANDATORY: "mandatory",
                     analyzer_pb2.DISABLED: "disabled", analyzer_pb2.REMEDIATE: "remediate"}
ENFORCEMENT_LEVELS = {name: level for level, name in ENFORCEMENT_NAMES.items()}
STARTUP_TIMEOUT_SECONDS = 60
CALL_TIMEOUT_SECONDS = 60


class PolicyPackError(Exception):
    """The pack could not be started, configured or asked; the message says which and why."""


@dataclass(frozen=True)
class Violation:
    policy: str
    enforcement: str
    urn: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"policy": self.policy, "enforcement": self.enforcement, "urn": self.urn, "message": self.message}


@dataclass(frozen=True)
class Remediation:
    """One remediation the pack applied to a resource: which inputs it changed, and the inputs after it (what the
    provider receives); or, when it could not run (a value unknown at preview), the engine's diagnostic."""

    policy: str
    urn: str
    changes: tuple[str, ...]
    inputs: Mapping[str, Any]
    diagnostic: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"policy": self.policy, "urn": self.urn, "changes": list(self.changes), "inputs": dict(self.inputs),
                "diagnostic": self.diagnostic}


def changed_inputs(before: Mapping[str, Any], after: Mapping[str, Any], path: str = "") -> list[str]:
    """The input paths a remediation removed, added or changed (values are not shown: they may be scripts or
    secrets)."""
    changes = []
    for key in sorted(set(before) | set(after)):
        where = f"{path}{key}"
        if key not in after:
            changes.append(f"{where}: removed")
        elif key not in before:
            changes.append(f"{where}: added")
        elif isinstance(before[key], Mapping) and isinstance(after[key], Mapping):
            changes += changed_inputs(before[key], after[key], f"{where}.")
        elif before[key] != after[key]:
            changes.append(f"{where}: changed")
    return changes


@dataclass
class PolicyReport:
    pack: str
    version: str
    directory: Path
    policies: dict[str, str]  # name -> enforcement level
    violations: list[Violation] = field(default_factory=list)
    remediations: list[Remediation] = field(default_factory=list)

    @property
    def mandatory(self) -> list[Violation]:
        return [v for v in self.violations if v.enforcement == "mandatory"]

    def to_json(self) -> dict[str, Any]:
        return {"pack": self.pack, "version": self.version, "policies": self.policies,
                "violations": [v.to_json() for v in self.violations],
                "remediations": [r.to_json() for r in self.remediations]}


def pack_version(directory: Path) -> str:
    try:
        meta = yaml.safe_load((directory / "PulumiPolicy.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyPackError(f"{directory}: cannot read PulumiPolicy.yaml ({exc})") from None
    if meta.get("runtime") != "python":
        raise PolicyPackError(f"{directory}/PulumiPolicy.yaml: runtime must be python")
    return str(meta.get("version", "0.0.1"))


@contextmanager
def running_pack(directory: Path) -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    """Start the pack process, yield a stub connected to its analyzer, stop it afterwards."""
    main = directory / "__main__.py"
    if not main.is_file():
        raise PolicyPackError(f"{directory}: no __main__.py (not a Python policy pack)")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-u", str(main)], cwd=directory, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        port = _read_port(proc)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            try:
                grpc.channel_ready_future(channel).result(timeout=STARTUP_TIMEOUT_SECONDS)
            except grpc.FutureTimeoutError:
                raise PolicyPackError(f"{directory}: analyzer on port {port} did not answer") from None
            yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


def _read_port(proc: subprocess.Popen[bytes]) -> int:
    assert proc.stdout is not None and proc.stderr is not None
    ready, _, _ = select.select([proc.stdout], [], [], STARTUP_TIMEOUT_SECONDS)
    line = proc.stdout.readline().decode().strip() if ready else ""
    if line.isdigit():
        return int(line)
    proc.kill()
    stderr = proc.stderr.read().decode(errors="replace").strip().splitlines()
    detail = stderr[-1] if stderr else (f"printed {line!r}" if line else "printed no port")
    raise PolicyPackError(f"policy pack did not start: {detail}")


def _configure(stub: analyzer_pb2_grpc.AnalyzerStub, info: analyzer_pb2.AnalyzerInfo,
               overrides: Mapping[str, Any]) -> dict[str, str]:
    """Send each policy's level and config (schema defaults, then overrides), as the CLI does; return levels."""
    levels: dict[str, str] = {}
    request = analyzer_pb2.ConfigureAnalyzerRequest()
    for policy in info.policies:
        override = overrides.get(policy.name, {})
        if isinstance(override, str):
            override = {"enforcementLevel": override}
        level_name = override.get("enforcementLevel", ENFORCEMENT_NAMES[policy.enforcementLevel])
        if level_name not in ENFORCEMENT_LEVELS:
            raise PolicyPackError(f"policy config for {policy.name}: unknown enforcementLevel {level_name!r}")
        properties = {key: schema["default"] for key, schema in
                      _struct_dict(policy.configSchema.properties).items() if "default" in schema}
        unknown = set(override) - set(properties) - {"enforcementLevel"}
        if unknown:
            raise PolicyPackError(f"policy config for {policy.name}: unknown key(s) {', '.join(sorted(unknown))}")
        properties.update({k: v for k, v in override.items() if k != "enforcementLevel"})
        config = request.policyConfig[policy.name]
        config.enforcementLevel = ENFORCEMENT_LEVELS[level_name]
        config.properties.update(properties)
        levels[policy.name] = level_name
    unknown_policies = set(overrides) - set(levels) - {"all"}
    if unknown_policies:
        raise PolicyPackError(f"policy config names unknown policies: {', '.join(sorted(unknown_policies))}")
    stub.Configure(request, timeout=CALL_TIMEOUT_SECONDS)
    return levels


def _struct_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    result: dict[str, Any] = json_format.MessageToDict(struct)
    return result


def _options(res: PlannedResource) -> analyzer_pb2.AnalyzerResourceOptions:
    opts = res.options
    return analyzer_pb2.AnalyzerResourceOptions(
        protect=bool(opts.get("protect")), ignoreChanges=opts.get("ignoreChanges", []),
        deleteBeforeReplace=bool(opts.get("deleteBeforeReplace")),
        deleteBeforeReplaceDefined=bool(opts.get("deleteBeforeReplace")),
        additionalSecretOutputs=opts.get("additionalSecretOutputs", []), parent=res.parent or "")


def providers_of(plan: Plan) -> dict[str, analyzer_pb2.AnalyzerProviderResource]:
    """urn -> the provider the engine sends with it: its explicit provider resource (the `URN::ID` reference the
    resource was registered with), else its package's default provider, whose inputs are the stack's config in
    that package's namespace (`gcp:project`, ...)."""
    declared = {r.urn: r for r in plan.resources}
    found = {}
    for res in plan.resources:
        package = res.type.split(":", 1)[0]
        if res.provider:
            provider = declared.get(res.provider.rsplit("::", 1)[0])
            if provider is not None:
                found[res.urn] = analyzer_pb2.AnalyzerProviderResource(
                    type=provider.type, properties=provider.properties, urn=provider.urn, name=provider.name)
        elif package in plan.default_providers:
            properties = struct_pb2.Struct()
            properties.update(plan.default_providers[package])
            found[res.urn] = analyzer_pb2.AnalyzerProviderResource(
                type=f"pulumi:providers:{package}", properties=properties, name="default",
                urn=f"urn:pulumi:{plan.stack}::{plan.project}::pulumi:providers:{package}::default")
    return found


def analyze(plan: Plan, directory: Path, overrides: Mapping[str, Any] | None = None) -> PolicyReport:
    """Check every resource of `plan` against the pack in `directory` (started and stopped here)."""
    directory = directory.resolve()
    version = pack_version(directory)
    with running_pack(directory) as stub:
        return analyze_with(stub, plan, directory, version, overrides or {})


def analyze_with(stub: analyzer_pb2_grpc.AnalyzerStub, plan: Plan, directory: Path, version: str,
                 overrides: Mapping[str, Any]) -> PolicyReport:
    """The engine's conversation with a running analyzer: info, configure, each resource, the whole stack."""
    try:
        info = stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=CALL_TIMEOUT_SECONDS)
        levels = _configure(stub, info, overrides)
        report = PolicyReport(pack=info.name, version=version, directory=directory, policies=levels)
        resources = [r for r in plan.resources if r.custom]
        providers = providers_of(plan)
        properties = {}
        for res in resources:
            properties[res.urn] = _remediate(stub, res, report, providers.get(res.urn))
            response = stub.Analyze(_request(res, properties[res.urn], providers.get(res.urn)),
                                    timeout=CALL_TIMEOUT_SECONDS)
            report.violations += _violations(response, res.urn, levels)
        stack = stub.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=[
            analyzer_pb2.AnalyzerResource(
                type=r.type, properties=properties[r.urn], urn=r.urn, name=r.name, options=_options(r),
                parent=r.parent or "", dependencies=r.dependencies, provider=providers.get(r.urn),
                propertyDependencies={name: analyzer_pb2.AnalyzerPropertyDependencies(urns=urns)
                                      for name, urns in r.property_dependencies.items()})
            for r in resources]), timeout=CALL_TIMEOUT_SECONDS)
        report.violations += _violations(stack, "", levels)
        # the engine registers resources concurrently: the same plan reports in the same order every run
        report.violations.sort(key=lambda v: (v.policy, v.urn, v.message))
        report.remediations.sort(key=lambda r: r.urn)  # stable: a resource's own stay in the order applied
    except grpc.RpcError as exc:
        raise PolicyPackError(f"policy pack {directory} failed: {exc.details()}") from None  # type: ignore[attr-defined]
    return report


def _request(res: PlannedResource, properties: struct_pb2.Struct,
             provider: analyzer_pb2.AnalyzerProviderResource | None) -> analyzer_pb2.AnalyzeRequest:
    """What Remediate and Analyze are asked about one resource (the same message, as the engine sends it)."""
    return analyzer_pb2.AnalyzeRequest(type=res.type, properties=properties, urn=res.urn, name=res.name,
                                       options=_options(res), provider=provider)


def _remediate(stub: analyzer_pb2_grpc.AnalyzerStub, res: PlannedResource, report: PolicyReport,
               provider: analyzer_pb2.AnalyzerProviderResource | None) -> struct_pb2.Struct:
    """The engine's Remediate call for one resource: each remediation's properties replace the ones before it, in
    the order the pack returns them. Returns the inputs the resource is analyzed (and deployed) with."""
    properties = res.properties
    response = stub.Remediate(_request(res, properties, provider), timeout=CALL_TIMEOUT_SECONDS)
    for remediation in response.remediations:
        if remediation.diagnostic:
            report.remediations.append(Remediation(remediation.policyName, res.urn, (), struct_to_json(properties),
                                                   remediation.diagnostic))
        elif remediation.HasField("properties"):
            before, properties = properties, remediation.properties
            report.remediations.append(Remediation(
                remediation.policyName, res.urn,
                tuple(changed_inputs(struct_to_json(before, reveal_secrets=True),
                                    struct_to_json(properties, reveal_secrets=True))),
                struct_to_json(properties)))
    return properties


def _violations(response: analyzer_pb2.AnalyzeResponse, default_urn: str,
                levels: Mapping[str, str]) -> list[Violation]:
    found = []
    for d in response.diagnostics:
        enforcement = ENFORCEMENT_NAMES.get(d.enforcementLevel, "advisory")
        if d.policyName in levels and levels[d.policyName] == "remediate":
            enforcement = "mandatory"
        found.append(Violation(d.policyName, enforcement, d.urn or default_urn, d.message))
    return found


def load_overrides(path: Path | None) -> dict[str, Any]:
    """Policy config in the CLI's `--policy-pack-config` JSON shape: {"policy-name": {"key": value}}."""
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PolicyPackError(f"{path}: cannot read policy config ({exc})") from None
    if not isinstance(data, dict):
        raise PolicyPackError(f"{path}: policy config must be a JSON object keyed by policy name")
    return data
