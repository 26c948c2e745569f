"""The Pulumi program: one ComponentResource per part of the fleet (network, rendezvous, swarm hosts and pools,
their VMs and service account), the project-level startup script, and `stack.declare` that puts them together."""
