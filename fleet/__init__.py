"""pilot-fleet: Pulumi infrastructure for fleets of Pilot Protocol agent daemons on Compute Engine.

Importing this package stays cheap and free of cloud SDKs, so the policy pack and the CLI can read its
facts (machine types, ports, metadata keys, memory budget) without loading Pulumi providers.
"""
