"""The pack's coverage of Compute Engine types, by construction: every type of the installed pulumi_gcp that can
create a VM, carry metadata, point at a template or machine image, bind a tag or filter traffic is classified in
policies/fleet_policies/coverage.py, and README's table says so (fleet/generators/policy_coverage.py)."""

from __future__ import annotations

from fleet.generators.policy_coverage import README, _tables, families, readme_with_table, unclassified


def test_every_type_in_the_covered_families_is_classified() -> None:
    found = families()
    # the families are read from the provider itself: the ones the pack has always modelled are among them
    assert {"gcp:compute/instance:Instance", "gcp:compute/instanceTemplate:InstanceTemplate",
            "gcp:compute/firewall:Firewall", "gcp:compute/projectMetadataItem:ProjectMetadataItem",
            "gcp:tags/tagBinding:TagBinding"} <= set(found)
    assert unclassified() == [], "a pulumi_gcp upgrade brought types the pack does not classify"


def test_the_tables_name_only_types_the_provider_has_and_each_once() -> None:
    modelled, no_effect, refused = _tables()
    classified = [*modelled, *no_effect, *refused]
    assert len(classified) == len(set(classified))
    assert set(classified) <= set(families()), set(classified) - set(families())


def test_the_readme_table_is_generated_from_the_provider_and_the_tables() -> None:
    text = README.read_text()
    stale = "README's coverage table is stale: run python -m fleet.generators.policy_coverage"
    assert readme_with_table(text) == text, stale
