"""Projects and networks as Compute Engine tells them apart: a network is a project and a name, and a resource's
project is its own `project`, else its provider's (here the default provider's `gcp:project: svc-project`, and an
explicit provider for host-project).

Rendezvous VMs, each judged by `pilot-ports-open` on the rules of its own network:
- "rv-own": on svc-project's pilot-net, opened by a rule of svc-project's pilot-net: accepted;
- "rv-other-project": on svc-project's lone-net; the rule that opens the ports is on a network of the same name in
  other-project, which does not reach it: rejected;
- "rv-shared-vpc": on a Shared VPC subnetwork of host-project that this stack does not declare: the stack cannot
  say which rules reach it, so it is not judged (preview-unknowns says so), never rejected on a guess.
- "rv-host": on host-project's pilot-net through a subnetwork declared with the host provider, opened by a rule
  made with that provider (its project from the provider): accepted.
- "rv-subnet-project": on subnetwork "sub-y" of its `subnetworkProject`, host-project, whose network nothing
  opens; svc-project has an open subnetwork of the same name, which it is not on: rejected;
- "rv-partial-open": on "regions/us-central1/subnetworks/sub-y", a partial link read in its own project
  (svc-project's open sub-y): accepted; "rv-partial-closed": the same form to svc-project's sub-z on a network
  nothing opens: rejected.
Startup scripts: one item in svc-project and one in host-project (one per project: accepted); a second item in
svc-project ("startup-script-again"), and "rv-third", a rendezvous in third-project, which has no item: rejected by
`one-project-startup-script`."""

import pulumi
import pulumi_gcp as gcp

from fleet.components.startup_script import ProjectStartupScript, ProjectStartupScriptArgs

host = gcp.Provider("host", project="host-project")
ON_HOST = pulumi.ResourceOptions(provider=host)
RENDEZVOUS = {"pilot-role": "rendezvous", "pilot-registry-port": "9000", "pilot-beacon-port": "9001"}
OPEN = [{"protocol": "tcp", "ports": ["9000"]}, {"protocol": "udp", "ports": ["9001"]}]


def rendezvous(name: str, nic: dict, opts: pulumi.ResourceOptions | None = None, **extra: str) -> None:
    gcp.compute.Instance(name, machine_type="e2-standard-4", zone="us-central1-a", **extra,
                         boot_disk={"initialize_params": {"image": "debian-cloud/debian-12"}},
                         network_interfaces=[{**nic, "access_configs": [{}]}], metadata=RENDEZVOUS, opts=opts)


own = gcp.compute.Network("pilot-net", name="pilot-net", auto_create_subnetworks=False)
gcp.compute.Firewall("open-own", network=own.name, allows=OPEN, source_ranges=["0.0.0.0/0"])
rendezvous("rv-own", {"network": own.self_link})

lone = gcp.compute.Network("lone-net", name="lone-net", auto_create_subnetworks=False)
gcp.compute.Firewall("open-other-project", project="other-project", network="lone-net", allows=OPEN,
                     source_ranges=["0.0.0.0/0"])
rendezvous("rv-other-project", {"network": lone.name})

rendezvous("rv-shared-vpc", {"subnetwork": "projects/host-project/regions/us-central1/subnetworks/shared"})

host_net = gcp.compute.Network("host-net", name="pilot-net", auto_create_subnetworks=False, opts=ON_HOST)
host_sub = gcp.compute.Subnetwork("host-sub", name="host-sub", region="us-central1", ip_cidr_range="10.8.0.0/20",
                                  network=host_net.self_link, opts=ON_HOST)
gcp.compute.Firewall("open-host", network="pilot-net", allows=OPEN, source_ranges=["0.0.0.0/0"], opts=ON_HOST)
rendezvous("rv-host", {"subnetwork": host_sub.self_link})

# a fleet VM in a project with no startup-script item would boot without the fleet's boot path
rendezvous("rv-third", {"network": own.self_link}, project="third-project")

ProjectStartupScript("startup-script", ProjectStartupScriptArgs(project="svc-project"))
ProjectStartupScript("host-startup-script", ProjectStartupScriptArgs(project="host-project"))
ProjectStartupScript("startup-script-again", ProjectStartupScriptArgs(project="svc-project"))

open_net = gcp.compute.Network("open-net", name="open-net", auto_create_subnetworks=False)
gcp.compute.Firewall("open-open-net", network=open_net.name, allows=OPEN, source_ranges=["0.0.0.0/0"])
gcp.compute.Subnetwork("svc-sub-y", name="sub-y", region="us-central1", ip_cidr_range="10.9.0.0/20",
                       network=open_net.id)
closed_net = gcp.compute.Network("closed-net", name="closed-net", auto_create_subnetworks=False)
gcp.compute.Subnetwork("svc-sub-z", name="sub-z", region="us-central1", ip_cidr_range="10.10.0.0/20",
                       network=closed_net.id)
host_closed = gcp.compute.Network("host-closed-net", name="host-closed-net", auto_create_subnetworks=False,
                                  opts=ON_HOST)
gcp.compute.Subnetwork("host-sub-y", name="sub-y", region="us-central1", ip_cidr_range="10.11.0.0/20",
                       network=host_closed.id, opts=ON_HOST)
rendezvous("rv-subnet-project", {"subnetwork": "sub-y", "subnetwork_project": "host-project"})
rendezvous("rv-partial-open", {"subnetwork": "regions/us-central1/subnetworks/sub-y"})
rendezvous("rv-partial-closed", {"subnetwork": "regions/us-central1/subnetworks/sub-z"})
