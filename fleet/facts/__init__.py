"""The fleet's facts, in one place: the Pilot Protocol daemon and rendezvous (ports, rates, releases, the rendezvous
build), Compute Engine (machine types, zones, prices) and the memory budget. What crosses to the VMs (metadata keys,
attribute bounds, guest attributes, metrics) is fleet/vm_contract.py, built on these.

The stack, the renderer, config validation, the capacity planner and the policy pack all read them here (the pack
through a module generated from them: `python -m fleet.generators.policy_facts`). The tables are YAML in data/.
"""
