"""How many agents a machine can hold: idle memory per agent, plus headroom for bursts, within RAM minus the OS."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class MemoryBudget:
    machine_memory_mb: int
    os_reserve_mb: int
    agent_memory_mb: float
    headroom_percent: float

    @property
    def usable_mb(self) -> int:
        return max(self.machine_memory_mb - self.os_reserve_mb, 0)

    def required_mb(self, agents: int) -> float:
        return agents * self.agent_memory_mb * (1 + self.headroom_percent / 100)

    def max_agents(self) -> int:
        per_agent = self.agent_memory_mb * (1 + self.headroom_percent / 100)
        return math.floor(self.usable_mb / per_agent) if per_agent > 0 else 0

    def fits(self, agents: int) -> bool:
        return self.required_mb(agents) <= self.usable_mb

    def explain(self, agents: int, machine_type: str) -> str:
        return (
            f"{agents} agents x {self.agent_memory_mb:g} MB x {1 + self.headroom_percent / 100:.2f} "
            f"({self.headroom_percent:g}% headroom) = {self.required_mb(agents):,.0f} MB exceeds the memory budget of "
            f"{machine_type}: {self.machine_memory_mb:,} MB - {self.os_reserve_mb:,} MB OS reserve = "
            f"{self.usable_mb:,} MB (at most {self.max_agents():,} agents)"
        )
