"""Registry TLS: one certificate per fleet, pinned by every agent; its key in Secret Manager, read by the rendezvous
alone, never in metadata, outputs or the plan's text. The plan (every shipped stack), the rendezvous' reading of the
key (against the metadata and Secret Manager stand-in), and the real rendezvous with real pinned daemons."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from fleet.components.registry_tls import SECRET_ACCESSOR, certificate_attribute, fingerprint
from fleet.plan import tls_standin
from fleet.vm_contract import MetadataKey
from testbed.boot_sandbox import MetadataServer
from testbed.real_rendezvous import Rendezvous, rendezvous_on_loopback
from testbed.supervisor_harness import SUPERVISOR, free_udp_ports, sv
from tests.conftest import load_stack_config, run_fleet

INSTANCE = "gcp:compute/instance:Instance"
TEMPLATE = "gcp:compute/instanceTemplate:InstanceTemplate"
READER = "pilot-rendezvous-vm@test.iam.gserviceaccount.com"
VERSION = "projects/test/secrets/pilot-rendezvous-registry-key/versions/1"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"


def _pair(seed: str) -> tuple[str, str]:
    """A real key and self-signed certificate (PEM), made as the plan's stand-in of the tls provider makes them."""
    return tls_standin.key_and_certificate(seed)


# -- the plan ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "prod", "scale", "spot"])
def test_each_shipped_stack_pins_its_own_certificate_and_keeps_the_key_in_secret_manager(planned,
                                                                                         stack: str) -> None:
    plan = planned(stack)
    assert "PRIVATE KEY" not in json.dumps(plan), "a private key in the plan's text"
    vms = [r for r in plan["resources"] if r["type"] in (INSTANCE, TEMPLATE)]
    rendezvous = next(r for r in vms if r["inputs"]["metadata"][MetadataKey.ROLE] == "rendezvous")
    swarm = [r for r in vms if r["inputs"]["metadata"][MetadataKey.ROLE] == "swarm"]
    meta = rendezvous["inputs"]["metadata"]
    der = base64.b64decode(meta[MetadataKey.REGISTRY_TLS_CERT])
    pin = hashlib.sha256(der).hexdigest()
    assert swarm and {r["inputs"]["metadata"][MetadataKey.REGISTRY_FINGERPRINT] for r in swarm} == {pin}
    (version,) = [r for r in plan["resources"] if r["type"] == "gcp:secretmanager/secretVersion:SecretVersion"]
    assert version["inputs"]["secretData"] == "[secret]"
    assert meta[MetadataKey.REGISTRY_KEY_SECRET].startswith(f"projects/{plan['outputs']['project']}/secrets/")
    # the secret's one reader is the rendezvous' own account; only the rendezvous holds the scope Secret Manager needs
    (member,) = [r for r in plan["resources"] if r["type"] == "gcp:secretmanager/secretIamMember:SecretIamMember"]
    account = rendezvous["inputs"]["serviceAccount"]
    assert member["inputs"]["role"] == SECRET_ACCESSOR
    assert member["inputs"]["member"] == f"serviceAccount:{account['email']}"
    assert CLOUD_PLATFORM in account["scopes"]
    assert all(CLOUD_PLATFORM not in r["inputs"]["serviceAccount"]["scopes"] for r in swarm)


def test_the_same_stack_plans_the_same_certificate_and_a_rotation_a_new_one(program_with_stack,
                                                                            tmp_path: Path) -> None:
    """The plan's stand-in certificate is a function of the stack (plans diff cleanly); tlsRotation makes another."""
    config = copy.deepcopy(load_stack_config("dev"))
    program = program_with_stack(config)

    def pin(rotation: int) -> str:
        config["pilot-fleet:registry"] = {"tls": True, "tlsRotation": rotation}
        (program / "Pulumi.test.yaml").write_text(yaml.safe_dump({"config": config}))
        out = tmp_path / f"plan-{rotation}.json"
        result = run_fleet("plan", "--stack", "test", "--program", str(program), "--json", str(out))
        assert result.returncode == 0, result.stdout + result.stderr
        plan = json.loads(out.read_text())
        return str(next(r["inputs"]["metadata"][MetadataKey.REGISTRY_FINGERPRINT] for r in plan["resources"]
                        if r["type"] == INSTANCE and r["inputs"]["metadata"][MetadataKey.ROLE] == "swarm"))

    first = pin(1)
    assert pin(1) == first and pin(2) != first


def test_tls_off_plans_plaintext_with_no_secret(program_with_stack, tmp_path: Path) -> None:
    config = copy.deepcopy(load_stack_config("dev"))
    config["pilot-fleet:registry"] = {"tls": False}
    out = tmp_path / "plan.json"
    result = run_fleet("plan", "--stack", "test", "--program", str(program_with_stack(config)), "--json", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    plan = json.loads(out.read_text())
    assert not [r for r in plan["resources"] if r["type"].startswith(("gcp:secretmanager", "tls:"))]
    for vm in (r for r in plan["resources"] if r["type"] == INSTANCE):
        assert not {MetadataKey.REGISTRY_FINGERPRINT, MetadataKey.REGISTRY_TLS_CERT} & set(vm["inputs"]["metadata"])
        assert CLOUD_PLATFORM not in vm["inputs"]["serviceAccount"]["scopes"]


# -- the rendezvous reads its key -------------------------------------------------------------------------------


def test_crc32c_is_castagnolis() -> None:
    """Secret Manager's payload checksum: CRC-32C (RFC 3720's check value of "123456789")."""
    assert sv.registry_tls.crc32c(b"123456789") == 0xE3069283


def _rendezvous_attributes(cert_pem: str, version: str = VERSION) -> dict[str, str]:
    return {MetadataKey.ROLE: "rendezvous", MetadataKey.VERSION: "1.18.0", MetadataKey.REGISTRY_PORT: "9000",
            MetadataKey.BEACON_PORT: "9001", MetadataKey.DASHBOARD_PORT: "3000",
            MetadataKey.RENDEZVOUS_URL: "https://example.com/pilot-rendezvous",
            MetadataKey.RENDEZVOUS_SHA256: "0" * 64,
            MetadataKey.REGISTRY_TLS_CERT: certificate_attribute(cert_pem) if cert_pem else "",
            MetadataKey.REGISTRY_KEY_SECRET: version if cert_pem else ""}


def _secret(key_pem: str, readers: list[str]) -> dict[str, Any]:
    return {VERSION: {"data": base64.b64encode(key_pem.encode()).decode(), "readers": readers}}


def _prepare(server: MetadataServer, into: Path) -> str:
    return str(sv.registry_tls.prepare(server.url, f"{server.base_url}/secretmanager/v1", into, ""))


def test_the_rendezvous_reads_its_key_from_secret_manager_as_its_own_account(tmp_path: Path) -> None:
    key, cert = _pair("read")
    server = MetadataServer(_rendezvous_attributes(cert), service_account=READER, secrets=_secret(key, [READER]))
    with server.serving():
        said = _prepare(server, tmp_path / "tls")
        assert said == f"registry TLS: on, key from {VERSION}"
        assert (tmp_path / "tls/key.pem").read_text() == key and (tmp_path / "tls/key.pem").stat().st_mode & 0o777 \
            == 0o400
        assert fingerprint((tmp_path / "tls/cert.pem").read_text()) == fingerprint(cert)
        flags = (tmp_path / "tls/tls.env").read_text()
        assert flags == (f"PILOT_REGISTRY_TLS_FLAGS=-tls -tls-cert {tmp_path}/tls/cert.pem "
                         f"-tls-key {tmp_path}/tls/key.pem\n")
        assert server.secret_reads == [(f"/secretmanager/v1/{VERSION}:access", 200)]
        # TLS turned off: plaintext flags, the key gone from memory
        server.change({MetadataKey.REGISTRY_TLS_CERT: None, MetadataKey.REGISTRY_KEY_SECRET: None})
        assert _prepare(server, tmp_path / "tls") == "registry TLS: off (plaintext)"
        assert not (tmp_path / "tls/key.pem").exists()
        assert (tmp_path / "tls/tls.env").read_text() == "PILOT_REGISTRY_TLS_FLAGS=\n"


@pytest.mark.parametrize(("case", "said"), [
    ("not-a-reader", f"Secret Manager {VERSION}: HTTP 403"),
    ("another-key", "is not the key of pilot-registry-tls-cert"),
    ("not-a-key", "the payload is not a PEM private key"),
    ("cert-alone", "pilot-registry-tls-cert is set without pilot-registry-key-secret"),
])
def test_a_key_that_cannot_be_read_or_used_keeps_the_registry_down_with_one_line(case: str, said: str,
                                                                                 tmp_path: Path) -> None:
    key, cert = _pair("refuse")
    other, _ = _pair("another")
    attributes = _rendezvous_attributes(cert)
    payload = {"not-a-reader": key, "another-key": other, "not-a-key": "hello", "cert-alone": key}[case]
    if case == "cert-alone":
        attributes.pop(MetadataKey.REGISTRY_KEY_SECRET)
    readers = [] if case == "not-a-reader" else [READER]
    server = MetadataServer(attributes, service_account=READER, secrets=_secret(payload, readers))
    with server.serving():
        result = subprocess.run(["python3", str(SUPERVISOR), "registry-tls", "--metadata-url",
                                 server.url, "--secret-manager-url", f"{server.base_url}/secretmanager/v1",
                                 "--dir", str(tmp_path / "tls")], capture_output=True, text=True, timeout=60,
                                check=False)
    assert result.returncode == 1 and result.stdout == "", result
    (line,) = result.stderr.splitlines()
    assert line.startswith("registry TLS: ERROR: ") and said in line, line
    assert not (tmp_path / "tls/key.pem").exists() and not (tmp_path / "tls/tls.env").exists()


# -- the real rendezvous and real pinned daemons ----------------------------------------------------------------


def _tls_files(tmp_path: Path, seed: str) -> tuple[Path, Path, str]:
    key, cert = _pair(seed)
    (tmp_path / "cert.pem").write_text(cert)
    (tmp_path / "key.pem").write_text(key)
    return tmp_path / "cert.pem", tmp_path / "key.pem", fingerprint(cert)


def _stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return dict(json.loads(response.read()))


def test_pinned_daemons_register_over_tls_and_a_wrong_pin_never_does(real_daemon: Path, tmp_path: Path) -> None:
    cert, key, pin = _tls_files(tmp_path, "registry")
    with rendezvous_on_loopback(tmp_path, tls=(cert, key)) as rv:
        assert '"transport":"TLS"' in rv.log.read_text()
        port = free_udp_ports(2)
        right = _daemon(real_daemon, tmp_path / "right", rv, port, pin)
        wrong = _daemon(real_daemon, tmp_path / "wrong", rv, port + 1, "0" * 64)
        try:
            deadline = time.monotonic() + 30
            while _stats(rv.stats_url)["total_nodes"] < 1 and time.monotonic() < deadline:
                time.sleep(0.2)
            deadline = time.monotonic() + 30
            log = tmp_path / "wrong/daemon.log"
            while "certificate fingerprint mismatch" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert _stats(rv.stats_url)["total_nodes"] == 1, "the pinned daemon did not register over TLS"
            assert f"got {pin}, want {'0' * 64}" in log.read_text()
            assert not (tmp_path / "wrong/agent.sock").exists()  # it never registered: no IPC socket
        finally:
            for proc in (right, wrong):
                proc.terminate()
                proc.wait(timeout=30)
        # the supervisor's probe sees what the daemons see, before it starts one
        timeout = 5.0
        assert sv.pacing.registry_pinned(rv.registry, timeout, pin)
        with pytest.raises(sv.pacing.PinMismatchError, match=f"presents certificate {pin}, the agents pin 0+ "):
            sv.pacing.registry_pinned(rv.registry, timeout, "0" * 64)
    (tmp_path / "plain").mkdir()
    with rendezvous_on_loopback(tmp_path / "plain") as plain:
        with pytest.raises(sv.pacing.PinMismatchError, match="does not answer TLS"):
            sv.pacing.registry_pinned(plain.registry, 5.0, pin)
        assert sv.pacing.registry_pinned(plain.registry, 5.0, "")  # no pin: plaintext, as before


def _daemon(binary: Path, home: Path, rv: Rendezvous, port: int, pin: str) -> subprocess.Popen[bytes]:
    home.mkdir()
    config = sv.config.Config(
        target_agents=1, daemon=str(binary), registry=rv.registry, beacon=rv.beacon, base_udp_port=port,
        state_dir=str(home / "state"), run_dir=str(home / "run"), spawn_parallelism=1, round_delay_seconds=1.0,
        new_registrations_per_minute=10, health_threshold=0.95, rollout_max_unavailable=0.1, endpoint_ip="127.0.0.1",
        registry_fingerprint=pin, daemon_flags=("-telemetry-url", "-motd-feed-url", "-no-skillinject"))
    argv = sv.agents.daemon_argv(config, 0)
    argv[argv.index("-socket") + 1] = str(home / "agent.sock")
    sv.agents.agent_dir(config, 0).mkdir(parents=True)
    with open(home / "daemon.log", "wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=sv.agents.daemon_env(config, 0))
