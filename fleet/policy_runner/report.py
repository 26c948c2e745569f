"""Policy results printed the way `pulumi preview --policy-pack` groups them: by enforcement level."""

from __future__ import annotations

from fleet.plan.report import short_type
from fleet.policy_runner.analyzer import PolicyReport

ORDER = ("mandatory", "advisory")


def _where(urn: str) -> str:
    if not urn:
        return "stack"
    parts = urn.split("::")
    return f"{short_type(parts[2].split('$')[-1])}: {parts[3]}" if len(parts) >= 4 else urn


def render_policy(report: PolicyReport) -> str:
    mandatory = len(report.mandatory)
    mark = "FAILED" if mandatory else "passed"
    lines = ["Policies:",
             f"    {report.pack}@v{report.version} (local: {report.directory.name}) {mark}: "
             f"{mandatory} mandatory, {len(report.violations) - mandatory} advisory violation(s); "
             + (f"{len(report.remediations)} remediation(s); " if report.remediations else "")
             + f"{len(report.policies)} policies checked"]
    for r in report.remediations:  # in the order the engine applied them
        lines.append(f"        - [remediate]  {r.policy}  ({_where(r.urn)})")
        lines += [f"          {change}" for change in r.changes]
        if r.diagnostic:
            lines.append(f"          not remediated: {r.diagnostic}")
    for level in ORDER:
        for v in sorted((v for v in report.violations if v.enforcement == level), key=lambda v: (v.policy, v.urn)):
            lines.append(f"        - [{level}]  {v.policy}  ({_where(v.urn)})")
            lines += [f"          {line}" for line in v.message.splitlines()]
    return "\n".join(lines)
