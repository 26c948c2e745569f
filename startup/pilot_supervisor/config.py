"""The supervisor's config file: what the boot path writes from the VM's attributes and the host's own values, and
what a live change rewrites, so a restarted supervisor goes on from where it was."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any


@dataclasses.dataclass(frozen=True)
class Config:
    target_agents: int
    daemon: str
    registry: str
    beacon: str
    base_udp_port: int
    state_dir: str
    run_dir: str
    # The fleet's pacing facts come from the config the boot path writes (the VM contract's defaults and bounds):
    # no default of their own here.
    spawn_parallelism: int
    round_delay_seconds: float
    new_registrations_per_minute: float
    health_threshold: float
    rollout_max_unavailable: float
    version: str = ""
    # the optional flags this version accepts (its row of fleet/facts/data/pilot_releases.yaml), and where it came from
    daemon_flags: tuple[str, ...] = ()
    wheel_url: str = ""
    wheel_sha256: str = ""
    # where versions are installed (<install_dir>/versions/<version>/pilot-daemon) and the attributes are watched;
    # empty: no live changes (the tests' plain supervisors)
    install_dir: str = ""
    metadata_url: str = ""
    watch_seconds: int = 300
    # how long a rollout batch's agents have to be back and registered, beyond their paced starts
    rollout_registration_seconds: float = 60.0
    hostname_prefix: str = ""
    endpoint_ip: str = ""
    gogc: int = 0
    # the registry certificate's hex SHA-256 agents pin (-registry-tls -registry-fingerprint); empty: plaintext
    registry_fingerprint: str = ""
    # The registry's bucket per source IP holds as many tokens as its rate a minute (NewRateLimiter caps tokens at
    # the rate); 0 models it so. Tests set a burst of their own to keep starts short.
    new_registration_burst: int = 0
    # The addresses agents register from, in order: agent i registers from address i mod len (its user's policy
    # routing picks it: sources.py). Empty: the VM's one address, as its routing table picks it.
    registration_addresses: tuple[str, ...] = ()
    # How much later than a start the registry may see that registration: a bucket refills from that much after a
    # take from full, as the registry's does (pacing.py). The boot path writes the VM contract's figure; the tests'
    # plain supervisors, whose fake daemons register at once, leave it at 0.
    registration_lag_seconds: float = 0.0
    tick_seconds: float = 1.0
    # A full /proc scan (finds agents this supervisor did not start, and adopted ones that died) this often; in
    # between, the agents it started are followed through waitpid alone (cheap at thousands of agents).
    scan_seconds: float = 10.0
    settle_seconds: float = 10.0
    backoff_initial_seconds: float = 5.0
    backoff_max_seconds: float = 300.0
    stop_batch: int = 100
    stop_batch_delay_seconds: float = 1.0
    stop_grace_seconds: float = 30.0
    # A Spot VM's preemption (Compute Engine's `preempted`, then the power-off 30 s after it): every agent is gone
    # within preempt_stop_seconds of the notice, its SIGTERMs spread over preempt_spread_seconds
    # (bench/preemption_stop.py measured why; SCALING.md "Spot swarms"), the rest killed at the deadline
    preempt_stop_seconds: float = 20.0
    preempt_spread_seconds: float = 10.0
    registry_probe_timeout_seconds: float = 2.0
    guest_attributes_url: str = ""
    guest_attribute_interval_seconds: float = 60.0
    health_address: str = ""
    health_port: int = 0
    # A managed instance group's autohealing must not recreate a VM that is still starting its agents at the
    # registry's pace: /healthz is also 200 while the start-up is on schedule (see Supervisor.rampup_seconds).
    healthy_during_rampup: bool = True
    # the agents' own system user (the VM contract's agent_user), which a root supervisor drops to when it starts
    # one; empty: agents run as the supervisor's user (the tests' plain supervisors)
    agent_user: str = ""

    @classmethod
    def load(cls, path: Path) -> Config:
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise SystemExit(f"pilot-supervisor: cannot read config {path}: {exc}") from None
        if not isinstance(raw, dict):
            raise SystemExit(f"pilot-supervisor: config {path} is not a JSON object")
        # renamed in VM contract 2; a supervisor of the previous release may still write it (read for one release)
        if "target" in raw and "target_agents" not in raw:
            raw["target_agents"] = raw.pop("target")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - set(fields))
        missing = sorted(n for n, f in fields.items()
                         if f.default is dataclasses.MISSING and n not in raw)
        if unknown or missing:
            raise SystemExit(f"pilot-supervisor: config {path}: unknown keys {unknown}, missing keys {missing}")
        config = cls(**raw)
        if config.target_agents < 0 or config.spawn_parallelism < 1 or config.stop_batch < 1:
            raise SystemExit(f"pilot-supervisor: config {path}: target_agents >= 0, spawn_parallelism >= 1 and "
                             "stop_batch >= 1 are required")
        return config

    def backoff_seconds(self, failures: int) -> float:
        """How long an agent waits before its next start after FAILURES failed ones in a row (0: none)."""
        if failures <= 0:
            return 0.0
        return min(self.backoff_max_seconds, self.backoff_initial_seconds * 2 ** (failures - 1))

    def stop_budget_seconds(self, agents: int) -> float:
        """Longest a paced stop of `agents` agents takes: what the unit's TimeoutStopSec must allow."""
        return math.ceil(agents / self.stop_batch) * self.stop_batch_delay_seconds + self.stop_grace_seconds

    def __post_init__(self) -> None:
        # a JSON config file holds the flags as a list; comparisons and fingerprints want one type
        object.__setattr__(self, "daemon_flags", tuple(self.daemon_flags))
        object.__setattr__(self, "registration_addresses", tuple(self.registration_addresses))

    @property
    def bucket_capacity(self) -> int:
        """Tokens the registry's bucket per source IP holds: its rate a minute, unless a test set a burst."""
        return self.new_registration_burst or max(1, int(self.new_registrations_per_minute))

    @property
    def address_count(self) -> int:
        return max(1, len(self.registration_addresses))

    def address_of(self, index: int) -> int:
        """Which registration address agent INDEX registers from (its position in registration_addresses)."""
        return index % self.address_count

    def with_settings(self, wanted: dict[str, Any], daemon: str) -> Config:
        return dataclasses.replace(self, **wanted, daemon=daemon)

    def write(self, path: Path) -> None:
        """Atomically, so a supervisor restarted at any moment reads a whole config."""
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n")
        tmp.replace(path)
