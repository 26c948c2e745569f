"""Capacity and cost planning: how many VMs of which machine type carry N agents, what they cost a month, and a
stack file for that fleet (`python -m fleet capacity`)."""
