"""Careless and hostile stack files (#23): every case is one clear problem naming the key as the user wrote it (a
host by its name) and the reason, and exit 2 from `fleet plan`; what the Pulumi CLI reads as valid (YAML 1.2:
`name: no` is the string "no") plans. The stack file is read by the offline reader (fleet/plan/stack_files.py,
fleet/plan/yaml12.py) and checked by the program's own config code, in process; a few rows also go through the CLI."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fleet.config.model import FleetConfigError
from fleet.config.pulumi_source import parse_flat_config
from fleet.facts import names
from fleet.plan.stack_files import ProjectError, load_project
from tests.conftest import REPO, run_fleet

PROD = (REPO / "Pulumi.prod.yaml").read_text()
PLANS = "plans"


def text(old: str, new: str) -> Callable[[str], str]:
    def edit(source: str) -> str:
        assert old in source, old
        return source.replace(old, new, 1)
    return edit


def both(*edits: Callable[[str], str]) -> Callable[[str], str]:
    def edit(source: str) -> str:
        for one in edits:
            source = one(source)
        return source
    return edit


def host(index: int, line: str) -> Callable[[str], str]:
    """Add LINE (indented as a field) to the INDEX-th swarm host."""
    names = ["swarm-1", "swarm-2", "swarm-3"]
    return text(f"    - name: {names[index]}\n", f"    - name: {names[index]}\n      {line}\n")


def top(line: str) -> Callable[[str], str]:
    return text("  pilot-fleet:alertThreshold: 0.95\n", f"  pilot-fleet:alertThreshold: 0.95\n  {line}\n")


# case -> (edit of the prod stack file, PLANS or (what the message names, why))
CASES: dict[str, tuple[Callable[[str], str], Any]] = {
    # YAML as the Pulumi CLI reads it
    "a date as the version": (text("pilotVersion: 1.18.0", "pilotVersion: 2024-01-01"),
                              ("pilot-fleet:pilotVersion", "no pilot-daemon wheel known for '2024-01-01'")),
    "a host named like a date": (text("name: swarm-3", "name: 2024-01-01"),
                                 ("swarmHosts[2].name", "'2024-01-01' is not a valid Compute Engine name")),
    "a !!binary value": (text("name: swarm-3", "name: !!binary c3dhcm0tMw=="), ("Pulumi.case.yaml", "!!binary")),
    "a !!set value": (text("name: swarm-3", "name: !!set {a, b}"), ("Pulumi.case.yaml", "!!set")),
    "labels nested 3,000 deep": (top("pilot-fleet:labels: " + "{a: " * 3000 + "x" + "}" * 3000),
                                 ("Pulumi.case.yaml", "nested too deep")),
    "swarmHosts twice": (top("pilot-fleet:swarmHosts: []"), ("Pulumi.case.yaml", "appears twice")),
    "targetAgents twice in a host": (host(0, "targetAgents: 1"), ("Pulumi.case.yaml", "appears twice")),
    "name: no is the string no": (text("name: swarm-3", "name: no"), PLANS),
    "a version that is a YAML number": (text("pilotVersion: 1.18.0", "pilotVersion: 1.18"),
                                        ("pilot-fleet:pilotVersion", "no pilot-daemon wheel known for '1.18'")),
    # types
    "targetAgents: true": (text("targetAgents: 1500", "targetAgents: true"),
                           ("swarmHosts[2].targetAgents (swarm-3)", "valid integer")),
    "headroomPercent: .inf": (text("headroomPercent: 60", "headroomPercent: .inf"),
                              ("pilot-fleet:memory.headroomPercent", "finite")),
    "roundDelaySeconds: .nan": (text("roundDelaySeconds: 3", "roundDelaySeconds: .nan"),
                                ("agentDefaults.roundDelaySeconds", "finite")),
    # names, and the names the program makes of them
    "a host name with a trailing newline": (text("name: swarm-3", 'name: "swarm-3\\n"'),
                                            ("swarmHosts[2].name", "not a valid Compute Engine name")),
    "a host name too long for its firewall rule": (text("name: swarm-3", "name: s" + "x" * 55),
                                                   ("swarmHosts[2].name", "-allow-agents")),
    "a host named like another's state disk": (text("name: swarm-3", "name: swarm-1-state"),
                                              ("swarmHosts[2].name (swarm-1-state)", "state disk of swarm-1")),
    "a rendezvous name too long for its firewall rules": (text("name: pilot-rendezvous", "name: r" + "x" * 50),
                                                          ("rendezvous.name", "-allow-dashboard")),
    "a network name too long for its SSH rule": (top("pilot-fleet:network: {name: n" + "x" * 55 + "}"),
                                                ("network.name", "-allow-ssh")),
    # project and labels
    "a project id that is no project id": (text("gcp:project: pilot-fleet-prod", "gcp:project: Pilot_Fleet\"}"),
                                          ("gcp:project", "not a project id")),
    "a label with upper case": (top("pilot-fleet:labels: {Team: core}"), ("pilot-fleet:labels", "Team")),
    "a label value with a space": (top("pilot-fleet:labels: {team: a b}"), ("pilot-fleet:labels", "a b")),
    "a label over the fleet's own": (top("pilot-fleet:labels: {managed-by: me}"),
                                     ("pilot-fleet:labels", "managed-by")),
    "65 labels": (top("pilot-fleet:labels: {" + ", ".join(f"l{i}: v" for i in range(65)) + "}"),
                  ("pilot-fleet:labels", "at most 64")),
    # network
    "the whole internet as the subnet": (top("pilot-fleet:network: {subnetCidr: 0.0.0.0/0}"),
                                         ("network.subnetCidr", "private")),
    "an IPv6 subnet": (top("pilot-fleet:network: {subnetCidr: 'fd00::/64'}"), ("network.subnetCidr", "IPv4")),
    "a /30 subnet": (top("pilot-fleet:network: {subnetCidr: 10.0.0.0/30}"), ("network.subnetCidr", "/29")),
    "a loopback subnet": (top("pilot-fleet:network: {subnetCidr: 127.0.0.0/8}"), ("network.subnetCidr", "private")),
    # sizes and ports
    "a disk over 65,536 GB": (host(0, "diskGb: 70000"), ("swarmHosts[0].diskGb (swarm-1)", "65536")),
    "the registry on the SSH port": (text("operatorRanges:", "ports: {registry: 22}\n    operatorRanges:"),
                                     ("rendezvous.ports", "22")),
    "the dashboard on the SSH port": (text("operatorRanges:", "ports: {dashboard: 22}\n    operatorRanges:"),
                                      ("rendezvous.ports", "22")),
    "the beacon on the registry's port": (text("operatorRanges:", "ports: {beacon: 9000}\n    operatorRanges:"),
                                          PLANS),  # TCP and UDP: one number may serve both
    # keys
    "gcp:regoin": (text("gcp:region: us-central1", "gcp:regoin: us-central1"), ("gcp:regoin", "did you mean")),
    "credentials in the release URL": (text("operatorRanges:", "release: {url: 'https://user:pw@example.com/rv', "
                                            f"sha256: '{'0' * 64}'}}\n    operatorRanges:"),
                                       ("rendezvous.release.url", "secret")),
    # messages that named the wrong thing
    "a target over the port bound on swarm-3": (text("targetAgents: 1500", "targetAgents: 70000"),
                                                ("swarmHosts[2].targetAgents (swarm-3)", "memory budget")),
    # round two (#31): keys and values added since the first round
    "a config key that is a YAML number": (top("5: x"), ("Pulumi.case.yaml", "config key 5 is not text")),
    "a config key that is null": (top("null: x"), ("Pulumi.case.yaml", "config key None is not text")),
    "diskKmsKey under gcp:": (top("gcp:diskKmsKey: projects/p-123456/locations/us-central1/keyRings/r/cryptoKeys/k"),
                              ("gcp:diskKmsKey", "did you mean pilot-fleet:diskKmsKey?")),
    "coldStartMinutes under pulumi:": (top("pulumi:coldStartMinutes: 4"),
                                       ("pulumi:coldStartMinutes", "did you mean pilot-fleet:coldStartMinutes?")),
    "startFresh: 1": (text("    zone: us-central1-a\n", "    zone: us-central1-a\n    startFresh: 1\n"),
                      ("pilot-fleet:rendezvous.startFresh", "valid boolean")),
    "startFresh: on": (text("    zone: us-central1-a\n", "    zone: us-central1-a\n    startFresh: \"on\"\n"),
                       ("pilot-fleet:rendezvous.startFresh", "valid boolean")),
    "a signed URL as the release": (text("operatorRanges:", "release: {url: 'https://storage.example.com/rv?"
                                         f"X-Amz-Signature=abc&api_key=k', sha256: '{'0' * 64}'}}\n"
                                         "    operatorRanges:"),
                                    ("rendezvous.release.url", "has a query string")),
    "coldStartMinutes: .nan": (text("coldStartMinutes: 4", "coldStartMinutes: .nan"),
                               ("pilot-fleet:coldStartMinutes", "must be a finite number")),
    "startFresh with a snapshot restore": (text("    zone: us-central1-a\n", "    zone: us-central1-a\n    startFresh: "
                                                "true\n    storeFromSnapshot: pilot-store-1\n"),
                                           ("pilot-fleet:rendezvous.startFresh", "choose one")),
    "an existing network with a subnetCidr": (top("pilot-fleet:network: {name: shared, existing: true, subnetCidr: "
                                                  "10.9.0.0/16}"), ("pilot-fleet:network.subnetCidr",
                                                                     "would be ignored")),
    "a host named like the store disk made from a snapshot": (
        both(text("    zone: us-central1-a\n", "    zone: us-central1-a\n    storeFromSnapshot: pilot-store-1\n"),
             text("name: swarm-3", f"name: {names.store_disk('pilot-rendezvous', 'pilot-store-1')}")),
        ("swarmHosts[2].name", "its boot disk would be named like the rendezvous' store disk made from")),
    "a merge key, as the CLI reads it": (both(text("  pilot-fleet:agentDefaults:\n", "  pilot-fleet:agentDefaults: "
                                                   "&defaults\n"),
                                              text("    - name: swarm-3\n", "    - <<: *defaults\n      name: "
                                                   "swarm-3\n")), PLANS),
    "a merge key of a scalar": (text("    - name: swarm-3\n", "    - <<: 5\n      name: swarm-3\n"),
                                ("Pulumi.case.yaml", "expected a mapping or list of mappings for merging")),
    "agentSourceRanges that leave out the subnet": (text("operatorRanges:", "agentSourceRanges: [192.168.0.0/16]\n"
                                                          "    operatorRanges:"),
                                                     ("pilot-fleet:rendezvous.agentSourceRanges",
                                                      "do not admit the subnet 10.20.0.0/20")),
    "a pool a rolling update could take down whole": (top("pilot-fleet:swarmPools: [{name: pool-a, machineType: "
                                                          "e2-standard-8, size: 2, targetAgents: 100, maxUnavailable: "
                                                          "2}]"), ("swarmPools[0].maxUnavailable (pool-a)",
                                                                   "could take every VM down at once")),
    "a budget under a minute": (text("coldStartMinutes: 4", "coldStartMinutes: 0.001"),
                                ("pilot-fleet:coldStartMinutes", "greater than or equal to 1")),
    "roundDelaySeconds: 0 plans": (text("roundDelaySeconds: 3", "roundDelaySeconds: 0"), PLANS),
    # alias ranges placed as Compute Engine places them: on a multiple of their size, clear of the 4 kept addresses
    "a /25 alias range in a /24 subnet": (both(text("  pilot-fleet:coldStartMinutes: 4\n", ""),
                                               host(0, "registrationAddresses: 129"),
                                               top("pilot-fleet:network: {subnetCidr: 10.20.0.0/24}")),
                                          ("swarmHosts[0] (swarm-1) does not fit",
                                           "no free /25 on its own boundary")),
    "prod's alias ranges in a /23 plan": (top("pilot-fleet:network: {subnetCidr: 10.20.0.0/23}"), PLANS),
    "prod's alias ranges in a /24": (top("pilot-fleet:network: {subnetCidr: 10.20.0.0/24}"),
                                     ("pilot-fleet:network.subnetCidr: swarmHosts[", "no free /25 on its own")),
    # more contradictions and dangers, refused before anything is planned
    "a release beside a source pin": (text("operatorRanges:", "release: {url: 'https://example.com/rv', sha256: "
                                           f"'{'0' * 64}'}}\n    operatorRanges:"),
                                      ("pilot-fleet:rendezvous.release", "choose one")),
    "a release instead of the source pin plans": (
        both(text("    source: 4c54cc0c7b1412bc06260d408ca9ee83e6f1063b\n", ""),
             text("operatorRanges:", f"release: {{url: 'https://example.com/rv', sha256: '{'0' * 64}'}}\n"
                  "    operatorRanges:")), PLANS),
    "a fragment in the release URL": (both(text("    source: 4c54cc0c7b1412bc06260d408ca9ee83e6f1063b\n", ""),
                                           text("operatorRanges:", "release: {url: 'https://example.com/rv#token=x', "
                                                f"sha256: '{'0' * 64}'}}\n    operatorRanges:")),
                                      ("rendezvous.release.url", "has a fragment")),
    "an agent budget under an idle daemon's memory": (text("agentMemoryMb: 10", "agentMemoryMb: 1"),
                                                      ("pilot-fleet:agentDefaults.agentMemoryMb", "would swap")),
    "one host's agent budget under it": (host(0, "agentMemoryMb: 8"),
                                         ("swarmHosts[0].agentMemoryMb (swarm-1)", "13.4 MB")),
    "a zone twice is that problem alone": (top("pilot-fleet:swarmPools: [{name: pool-a, machineType: e2-standard-8, "
                                               "size: 2, targetAgents: 100, zones: [us-central1-a, us-central1-a]}]"),
                                           ("swarmPools[0].zones (pool-a)", "listed twice")),
    "a section that is null": (top("pilot-fleet:network: null"), ("pilot-fleet:network", "should be a mapping")),
    # a fleet-wide value is named where it was written, once per VM it reaches
    "agentDefaults.baseUdpPort over the registry": (
        both(text("    baseUdpPort: 10000\n", "    baseUdpPort: 8500\n"),
             text("    - name: swarm-1\n      machineType: e2-standard-16\n      targetAgents: 3000\n",
                  "    - name: swarm-1\n      machineType: e2-standard-16\n      targetAgents: 3000\n"
                  "      baseUdpPort: 20000\n"),
             text("    - name: swarm-2\n", "    - name: swarm-2\n      baseUdpPort: 20000\n")),
        ("pilot-fleet:agentDefaults.baseUdpPort (swarm-3)", "include the rendezvous registry port 9000 and the "
         "rendezvous beacon port 9001")),
    # labels as Compute Engine takes them: international lowercase letters too
    "an international label plans": (top("pilot-fleet:labels: {équipe: flotte-été}"), PLANS),
    "an upper-case international label": (top("pilot-fleet:labels: {équipe: Été}"),
                                          ("pilot-fleet:labels", "are not Compute Engine labels")),
    # keys no reader reads: the provider reads its own keys (those of the pinned pulumi-gcp), the engine its own
    "a provider key misspelt": (top("gcp:impersonateServiceAcount: sa@p-123456.iam.gserviceaccount.com"),
                                ("gcp:impersonateServiceAcount", "did you mean gcp:impersonateServiceAccount?")),
    "a gcp: key nobody reads": (top("gcp:machineType: e2-standard-8"),
                                ("gcp:machineType", "not a key the gcp provider or this program reads")),
    "a provider key of its own plans": (top("gcp:impersonateServiceAccount: sa@p-123456.iam.gserviceaccount.com"),
                                        PLANS),
    "an engine key plans": (top("pulumi:tags: {team: fleet}"), PLANS),
    # Cloud Monitoring's notification channels by resource name, as its alert policies take them
    "Cloud Monitoring with a channel plans": (top("pilot-fleet:monitoring: {cloud: true, notificationChannels: "
                                                  "[projects/pilot-fleet-prod/notificationChannels/1234]}"), PLANS),
    "a channel by its e-mail address": (top("pilot-fleet:monitoring: {cloud: true, notificationChannels: "
                                            "[ops@example.com]}"),
                                        ("pilot-fleet:monitoring.notificationChannels[0]",
                                         "is not a notification channel's resource name")),
    "monitoring.cloud: yes as text": (top("pilot-fleet:monitoring: {cloud: 'yes'}"),
                                      ("pilot-fleet:monitoring.cloud", "boolean")),
    "an engine key misspelt": (top("pulumi:disable-default-provider: '[]'"),
                               ("pulumi:disable-default-provider", "did you mean pulumi:disable-default-providers?")),
    "a pulumi: key nobody reads": (top("pulumi:stackName: prod"),
                                   ("pulumi:stackName", "not a key the Pulumi engine or this program reads")),
}


def _problems(tmp_path: Path, source: str) -> list[str] | str:
    for name in ("Pulumi.yaml",):
        (tmp_path / name).write_text((REPO / name).read_text())
    (tmp_path / "Pulumi.case.yaml").write_text(source)
    (tmp_path / "__main__.py").write_text("")
    try:
        parse_flat_config(load_project(tmp_path, "case").config)
    except ProjectError as exc:
        return [str(exc)]
    except FleetConfigError as exc:
        return exc.problems
    return PLANS


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_stack_file_is_one_clear_problem(tmp_path: Path, case: str) -> None:
    edit, expected = CASES[case]
    got = _problems(tmp_path, edit(PROD))
    if expected == PLANS:
        assert got == PLANS, got
        return
    named, why = expected
    assert isinstance(got, list) and len(got) == 1, got
    assert named in got[0] and why in got[0], got[0]
    assert len(got[0]) < 600, len(got[0])


@pytest.mark.plan
@pytest.mark.parametrize("case", ["a date as the version", "a !!binary value", "labels nested 3,000 deep",
                                  "targetAgents twice in a host", "targetAgents: true"])
def test_the_plan_command_exits_2_with_one_line(tmp_path: Path, case: str) -> None:
    edit, (_, why) = CASES[case]
    for name in ("Pulumi.yaml", "__main__.py", "fleet", "startup"):
        (tmp_path / name).symlink_to(REPO / name)
    (tmp_path / "Pulumi.case.yaml").write_text(edit(PROD))
    result = run_fleet("plan", "--program", str(tmp_path), "--stack", "case", "--no-policy")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert why in result.stderr and "Traceback" not in result.stderr, result.stderr


@pytest.mark.plan
def test_250_hosts_are_one_short_line(tmp_path: Path) -> None:
    """The offline plan has stand-in addresses for 240 VMs: past that it says so in one line (it was the whole
    outputs value, 67,899 characters)."""
    hosts = "".join(f"    - {{name: h{i}, machineType: e2-standard-2, targetAgents: 10}}\n" for i in range(250))
    for name in ("Pulumi.yaml", "__main__.py", "fleet", "startup"):
        (tmp_path / name).symlink_to(REPO / name)
    (tmp_path / "Pulumi.case.yaml").write_text(PROD.split("  pilot-fleet:swarmHosts:\n")[0]
                                               + "  pilot-fleet:swarmHosts:\n" + hosts)
    result = run_fleet("plan", "--program", str(tmp_path), "--stack", "case", "--no-policy")
    assert result.returncode == 2 and "stand-in addresses for 240 VMs at most" in result.stderr, result.stderr[:500]
    assert len(result.stderr) < 600 and "Traceback" not in result.stderr
