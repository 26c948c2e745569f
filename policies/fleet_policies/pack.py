"""Every rule of the pilot-fleet policy pack, in one list (imported by __main__ and by the tests)."""

from __future__ import annotations

from pulumi_policy import Policy

from .coverage import types_the_pack_judges
from .hardening import ADVISORY_POLICIES
from .key_material import no_private_keys, registry_not_plaintext_over_internet
from .memory_fit import agents_fit_memory
from .pools import pools_heal_safely, pools_keep_agent_state
from .preview_unknowns import preview_unknowns
from .reachability import pilot_ports_open
from .rendezvous_store import rendezvous_keeps_its_registry, rendezvous_store_snapshots
from .scanner_parity import SCANNER_POLICIES
from .spot import spot_has_on_demand_floor, spot_keeps_identities
from .startup_scripts import no_instance_startup_scripts, one_project_startup_script, startup_script_guarded

PACK_NAME = "pilot-fleet-policies"

MANDATORY_POLICIES: list[Policy] = [
    no_instance_startup_scripts,
    one_project_startup_script,
    startup_script_guarded,
    agents_fit_memory,
    pilot_ports_open,
    pools_heal_safely,
    pools_keep_agent_state,
    rendezvous_keeps_its_registry,
    rendezvous_store_snapshots,
    types_the_pack_judges,
    no_private_keys,
    spot_keeps_identities,
]
POLICIES: list[Policy] = [*MANDATORY_POLICIES, *ADVISORY_POLICIES, registry_not_plaintext_over_internet,
                          spot_has_on_demand_floor,
                          *SCANNER_POLICIES, preview_unknowns]
