"""The fleet's facts, in one place: the Pilot Protocol daemon and rendezvous (ports, metadata keys, agent bounds,
releases, the rendezvous build), Compute Engine (machine types, zones, prices) and the memory budget.

The stack, the startup script renderer, the supervisor's config, the planner and the policy pack all read them here
(the pack through a module generated from them: `python -m fleet.facts.policy_pack`). The tables are YAML in data/.
"""
