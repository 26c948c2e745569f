"""pilot-fleet agent supervisor: keeps exactly `target_agents` pilot-daemon processes running on a swarm host.

It runs as its own systemd unit (pilot-agents.service), so the agents live in that unit's cgroup with its limits,
never in the startup script's. Standard library only: it runs on the image's python3. The renderer
(fleet/components/startup_script.py) builds this package, with the VM contract as `contract.json`, into one zipapp
that travels inside the project's startup script; the boot path of both roles also uses it to check attributes.

Modules: `contract` (the rendered VM contract), `attributes` (checks a VM's attributes, at boot and live),
`install` (downloads, wheels, the daemon's contract), `config`, `agents` (how an agent is started and found),
`pacing` (the registry's bucket), `rollout` (the live rollover state machine) and `rolling` (acting on it),
`supervisor` (its state and what it does to agents), `tick` (one tick, put together), `live` (day two: the
metadata watch), `health` (status, guest attributes, /healthz, /metrics), `faults` (what it lives with instead of
exiting), `loop` (run, stop), `boot` (what the startup script asks of it), `__main__` (the command line).
"""
