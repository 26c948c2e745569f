"""The fleet's alerts, defined once. Each renders a Prometheus alerting rule (prometheus.py) and a Cloud Monitoring
alert policy with a PromQL condition (cloud.py), from the same expression and the same hold time, so the two cannot
disagree. The thresholds are the seed fleet's (docs/pilot-facts.md) and the stack outputs'."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Literal

from fleet.facts import pilot
from fleet.outputs import StackOutputs
from fleet.vm_contract import RENAMED_METRICS, MetricName

# The seed's figures: fleet RSS growing faster than this per hour while the agent count is flat is a leak.
RSS_GROWTH_BYTES_PER_HOUR = 100 * 1024 * 1024
MIN_AVAILABLE_MEMORY_SHARE = 0.20
# The Prometheus label that carries a host's configured target: the same name as its supervisor's metric.
TARGET_LABEL = MetricName.TARGET_AGENTS
RULE_GROUP = "pilot-fleet"
# The scrape job of each role's metrics, in Prometheus' scrape config and in the Ops Agent's receiver
SCRAPE_JOBS = {pilot.ROLE_SWARM: "pilot-agents", pilot.ROLE_RENDEZVOUS: "pilot-rendezvous"}


class MonitoringError(Exception):
    pass


# A Prometheus duration as `for:` and scrape intervals take it
DURATION = re.compile(r"^([0-9]+)(ms|s|m|h|d|w|y)$")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def seconds(duration: str) -> float:
    """A Prometheus duration in seconds (Cloud Monitoring takes durations as "<seconds>s")."""
    match = DURATION.match(duration)
    if not match:
        raise MonitoringError(f"{duration!r} is not a Prometheus duration (e.g. 5m)")
    return int(match[1]) * _SECONDS[match[2]]


@dataclass(frozen=True)
class Timings:
    """How often metrics are scraped (and rules evaluated) and how long each alert's condition must hold before it
    fires: the shipped values are the seed's; a test bed shortens them (`fleet monitoring --scrape-interval`,
    `--alert-for`)."""

    scrape_interval: str = "60s"
    alert_for: dict[str, str] = field(default_factory=lambda: {
        "PilotFleetAgentsBelowThreshold": "10m", "PilotHostBelowTarget": "15m", "PilotFleetRssGrowth": "5m",
        "PilotHostMemoryLow": "5m"})

    def changed(self, scrape_interval: str | None, alert_for: list[str]) -> Timings:
        """These timings with a new scrape interval and NAME=DURATION overrides; each bad one is one clear error."""
        if scrape_interval is not None and not DURATION.match(scrape_interval):
            raise MonitoringError(f"--scrape-interval {scrape_interval!r} is not a Prometheus duration (e.g. 15s)")
        durations = dict(self.alert_for)
        for item in alert_for:
            name, _, value = item.partition("=")
            if name not in durations:
                raise MonitoringError(f"--alert-for {item!r}: no alert {name!r} (the alerts: "
                                      f"{', '.join(sorted(durations))})")
            if not DURATION.match(value):
                raise MonitoringError(f"--alert-for {item!r}: {value!r} is not a Prometheus duration (e.g. 5m)")
            durations[name] = value
        return replace(self, scrape_interval=scrape_interval or self.scrape_interval, alert_for=durations)


@dataclass(frozen=True)
class Watched:
    """What the alerts are about: the fleet's label value and its expected agents, from the stack outputs or, in
    the fleet stack itself, from its config."""

    fleet: str
    expected_agents: int
    alert_threshold: float
    min_online: int

    @property
    def selector(self) -> str:
        return f'{{pilot_fleet="{self.fleet}"}}'


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str  # PromQL, the same in Prometheus and in Cloud Monitoring
    hold: str  # a Prometheus duration: how long `expr` must hold before the alert fires
    severity: Literal["critical", "warning"]
    title: str  # plain text: what is wrong
    summary: str  # Prometheus' annotation, which may use its templates ({{ $labels.x }}, {{ $value }})
    description: str = ""


def fleet_alerts(watched: Watched, timings: Timings | None = None) -> list[Alert]:
    m = MetricName
    after = (timings or Timings()).alert_for
    sel = watched.selector
    # a supervisor that has not rebooted into the renamed contract exports the old name (RENAMED_METRICS)
    target = f"({m.TARGET_AGENTS}{sel} or {RENAMED_METRICS[m.TARGET_AGENTS]}{sel})"
    return [
        Alert("PilotFleetAgentsBelowThreshold", f"sum({m.RUNNING_AGENTS}{sel}) < {watched.min_online}",
              after["PilotFleetAgentsBelowThreshold"], "critical",
              f"Fewer than {watched.min_online} of {watched.expected_agents} agents running",
              f"Fewer than {watched.min_online} of {watched.expected_agents} agents running "
              f"(threshold {watched.alert_threshold:g})",
              "{{ $value }} agents running across the fleet's supervisors. "
              "Run `python -m fleet verify` for the registry's online count and the host at fault."),
        Alert("PilotHostBelowTarget", f"{m.RUNNING_AGENTS}{sel} < {target}", after["PilotHostBelowTarget"],
              "warning", "A swarm VM runs fewer agents than its target",
              "{{ $labels.pilot_host }} runs {{ $value }} agents, below its target "
              "({{ $labels." + TARGET_LABEL + " }})",
              "Its supervisor's status (`/status`, `journalctl -u pilot-agents`) names what holds it back."),
        Alert("PilotFleetRssGrowth",
              (f"delta(sum({m.AGENTS_RSS}{sel})[1h:5m]) > {RSS_GROWTH_BYTES_PER_HOUR} "
               f"and abs(delta(sum({m.RUNNING_AGENTS}{sel})[1h:5m])) < 1"),
              after["PilotFleetRssGrowth"], "warning",
              "Fleet agent RSS grew more than 100 MiB in an hour with a flat agent count",
              "Fleet agent RSS grew more than 100 MiB in an hour with a flat agent count",
              "A leak, or connections piling up: check the busiest hosts' agents."),
        Alert("PilotHostMemoryLow",
              f"{m.HOST_MEMORY_AVAILABLE}{sel} / {m.HOST_MEMORY_TOTAL}{sel} < {MIN_AVAILABLE_MEMORY_SHARE}",
              after["PilotHostMemoryLow"], "critical", "A swarm VM has less than 20% memory available",
              "{{ $labels.pilot_host }} has less than 20% memory available (the seed fleet swapped at this point)"),
    ]


def watched_of(fleet: str | None, expected_agents: int, alert_threshold: float,
               alert_min_online: int | None) -> Watched:
    return Watched(fleet or pilot.PROJECT_NAME, expected_agents, alert_threshold,
                   alert_min_online or pilot.min_online(expected_agents, alert_threshold))


def watched_by(outputs: StackOutputs) -> Watched:
    """What a stack's alerts are about, from its outputs."""
    return watched_of(outputs.project, outputs.expected_agents, outputs.alert_threshold, outputs.alert_min_online)


def alert_names() -> list[str]:
    """The alerts, by name, in their order (each has a hold time in Timings)."""
    return list(Timings().alert_for)
