"""Benchmark: what one rendezvous carries, at 9,500 and 50,000 identities (issue #20, item 4).

Run: .venv/bin/python bench/rendezvous_capacity.py [--identities 9500 50000] [--steady-seconds 60]
     [--transports plaintext tls]

The rendezvous is `cmd/rendezvous` of the pinned public source, unmodified (testbed/real_rendezvous.py builds it
the way a VM does). The load speaks the registry's own protocol (testbed/registry_client.py's framing) over asyncio:
  * registration: each identity has a real Ed25519 key and registers from its own source address in 127.0.0.0/8,
    so the registry's per-IP limit (10 a minute) never binds; NOT a stand-in for the limit, which a fleet meets at
    10 a minute per registration address (the planner's model, fleet/capacity/cold_start.py);
  * it keeps that connection open, as pilot-daemon does, and heartbeats on it every 30 s (the daemon's
    DefaultKeepaliveInterval at the pinned commit), signed over `heartbeat:<node id>` with its key. Where the
    open-file limit (the hard RLIMIT_NOFILE, which only CAP_SYS_RESOURCE raises) holds fewer connections than
    identities, identity i heartbeats over connection i mod CONNECTIONS (the registry ties a heartbeat to its node
    id and signature, not to a connection): the messages are the fleet's, the open connections are fewer, so the
    memory of the connections past CONNECTIONS is not in the RSS figure (the report says how many were open);
  * one lookup of a random node per agent every 300 s (an assumption: the daemon's lookup rate depends on its
    traffic, which no idle fleet has).

Each size is measured per transport, in one run: plaintext, and TLS as the fleet runs it (`-tls -tls-cert -tls-key`
with an ECDSA P-256 certificate, made as the plan's stand-in of the tls provider makes it; every client checks the
certificate's SHA-256 as pilot-daemon's pinned dial does). With TLS every registration opens its own connection and
pays a full handshake, as a daemon's does; heartbeats and lookups go over the kept TLS connections.

Reported per size: the sustained registration rate (all identities registered as fast as CONCURRENCY connections in
flight allow), the rendezvous' CPU (cores) and resident memory during STEADY seconds of heartbeats and lookups,
heartbeat latency, /api/stats latency (sequential GETs from loopback during the steady load), and the store
(`-store` JSON) size with the time its write takes on this machine (the registry's own save replayed: write, fsync,
rename; its JSON encoding is not in that figure).

The load generator and the rendezvous share this machine's cores: the registration rate is what both together
reached, a lower bound for a rendezvous VM with cores of its own. Results go to stdout as Markdown (bench/RESULTS.md
keeps them) and as JSON with --json FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import random
import resource
import ssl
import struct
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.registry_store import replay_saves  # noqa: E402
from bench.supervisor_scale import cpu_seconds, rss_mb  # noqa: E402
from fleet.components.registry_tls import fingerprint  # noqa: E402
from fleet.plan import tls_standin  # noqa: E402
from testbed.real_rendezvous import rendezvous_on_loopback  # noqa: E402

HEARTBEAT_SECONDS = 30.0
LOOKUP_SECONDS = 300.0
CONCURRENCY = 256
FIRST_SOURCE = (127 << 24) | (16 << 16)  # 127.16.0.0: clear of 127.0.0.1, where the rendezvous listens


def source(n: int) -> str:
    value = FIRST_SOURCE + n
    return ".".join(str(value >> shift & 255) for shift in (24, 16, 8, 0))


@dataclass
class Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one request at a time on a shared connection


@dataclass
class Agent:
    key: Ed25519PrivateKey
    public: str
    node_id: int = 0
    connection: Connection | None = None


@dataclass
class Tally:
    heartbeats: int = 0
    lookups: int = 0
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)


async def request(connection: Connection, message: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps(message).encode()
    async with connection.lock:
        connection.writer.write(struct.pack(">I", len(body)) + body)
        size = struct.unpack(">I", await connection.reader.readexactly(4))[0]
        answer = json.loads(await connection.reader.readexactly(size))
    if not isinstance(answer, dict) or "error" in answer:
        raise RuntimeError(f"{message['type']}: {answer}")
    return answer


@dataclass(frozen=True)
class Transport:
    """How clients reach the registry: plaintext (context None), or TLS with the certificate's SHA-256 pinned."""

    context: ssl.SSLContext | None = None
    pin: str = ""

    @classmethod
    def pinned(cls, pin: str) -> Transport:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # the pin is the check, as the daemon's
        return cls(context, pin)

    async def open(self, host: str, port: int, local: str) -> Connection:
        reader, writer = await asyncio.open_connection(host, port, local_addr=(local, 0), ssl=self.context)
        if self.context is not None:
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            if hashlib.sha256(der).hexdigest() != self.pin:
                raise RuntimeError("the registry's certificate is not the pinned one")
        return Connection(reader, writer)


async def register(agent: Agent, n: int, host: str, port: int, keep: bool, transport: Transport) -> None:
    """Register from its own address; keep that connection open for heartbeats, or close it."""
    connection = await transport.open(host, port, source(n))
    answer = await request(connection, {"type": "register", "listen_addr": f":{10000 + n % 50000}",
                                        "public_key": agent.public})
    agent.node_id = int(answer["node_id"])
    if keep:
        agent.connection = connection
    else:
        connection.writer.close()


async def register_all(agents: list[Agent], registry: str, connections: int, transport: Transport) -> float:
    host, port = registry.rsplit(":", 1)
    queue = list(enumerate(agents))
    queue.reverse()

    async def worker() -> None:
        while queue:
            n, agent = queue.pop()
            await register(agent, n, host, int(port), keep=n < connections, transport=transport)

    started = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return time.monotonic() - started


async def keep_alive(agent: Agent, connection: Connection, ids: list[int], tally: Tally, until: float) -> None:
    await asyncio.sleep(random.uniform(0, HEARTBEAT_SECONDS))  # spread, as daemons started over time are
    next_lookup = time.monotonic() + random.uniform(0, LOOKUP_SECONDS)
    signature = base64.b64encode(agent.key.sign(f"heartbeat:{agent.node_id}".encode())).decode()
    while time.monotonic() < until:
        began = time.monotonic()
        try:
            await request(connection, {"type": "heartbeat", "node_id": agent.node_id, "signature": signature})
            tally.heartbeats += 1
            tally.latencies.append(time.monotonic() - began)
            if time.monotonic() >= next_lookup:
                await request(connection, {"type": "lookup", "node_id": random.choice(ids)})
                tally.lookups += 1
                next_lookup += LOOKUP_SECONDS
        except (OSError, RuntimeError, asyncio.IncompleteReadError) as exc:
            tally.errors.append(f"{type(exc).__name__}: {exc}"[:200])
            return
        await asyncio.sleep(max(0.0, began + HEARTBEAT_SECONDS - time.monotonic()))


def stats_latencies(url: str, count: int) -> list[float]:
    found = []
    for _ in range(count):
        began = time.monotonic()
        with urllib.request.urlopen(url, timeout=60) as answer:
            answer.read()
        found.append(time.monotonic() - began)
    return found


def replay_save(store: Path, writes: int = 20) -> float:
    """Median seconds of the registry's own save of this store (AtomicWrite), beside it on the same file system."""
    with tempfile.TemporaryDirectory(dir=store.parent) as tmp:
        return replay_saves(Path(tmp), store.read_bytes(), writes)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] if ordered else 0.0


def certificate(base: Path) -> tuple[Path, Path, str]:
    """The registry's key and certificate files, and the certificate's pin."""
    key, cert = tls_standin.key_and_certificate("bench")
    (base / "cert.pem").write_text(cert)
    (base / "key.pem").write_text(key)
    return base / "cert.pem", base / "key.pem", fingerprint(cert)


async def measure(identities: int, steady: float, base: Path, connections: int, tls: bool) -> dict[str, Any]:
    agents = []
    for _ in range(identities):
        key = Ed25519PrivateKey.generate()
        public = base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
        agents.append(Agent(key, public))
    files = certificate(base) if tls else None
    transport = Transport.pinned(files[2]) if files else Transport()
    with rendezvous_on_loopback(base, tls=files[:2] if files else None) as rv:
        assert rv.proc is not None
        pid = rv.proc.pid
        connections = min(connections, identities)
        seconds = await register_all(agents, rv.registry, connections, transport)
        ids = [a.node_id for a in agents]
        carriers = [a.connection for a in agents[:connections]]
        tally = Tally()
        until = time.monotonic() + HEARTBEAT_SECONDS + steady
        tasks = [asyncio.create_task(keep_alive(a, carriers[n % connections], ids, tally, until))  # type: ignore[arg-type]
                 for n, a in enumerate(agents)]
        await asyncio.sleep(HEARTBEAT_SECONDS)  # every agent has begun its heartbeats
        cpu0, wall0, beats0 = cpu_seconds(pid), time.monotonic(), tally.heartbeats
        stats = await asyncio.to_thread(stats_latencies, rv.stats_url, 10)
        await asyncio.sleep(max(0.0, wall0 + steady - time.monotonic()))
        cpu1, wall1, beats1 = cpu_seconds(pid), time.monotonic(), tally.heartbeats
        rss = rss_mb(pid)
        await asyncio.gather(*tasks)
        for carrier in carriers:
            if carrier is not None:
                carrier.writer.close()
        with urllib.request.urlopen(rv.stats_url, timeout=60) as answer:
            nodes = json.loads(answer.read())["total_nodes"]
        time.sleep(2)  # its save runs once a second
        store_mb = rv.store.stat().st_size / 1e6
        save = replay_save(rv.store)
    return {
        "transport": "TLS" if tls else "plaintext", "identities": identities, "registered": nodes,
        "connections": connections,
        "registration_seconds": round(seconds, 2),
        "registrations_per_second": round(identities / seconds),
        "steady_seconds": round(wall1 - wall0, 1), "heartbeats_per_second": round((beats1 - beats0) / (wall1 - wall0)),
        "cpu_cores": round((cpu1 - cpu0) / (wall1 - wall0), 3), "rss_mb": round(rss),
        "heartbeat_p50_ms": round(percentile(tally.latencies, 0.5) * 1000, 2),
        "heartbeat_p99_ms": round(percentile(tally.latencies, 0.99) * 1000, 2),
        "stats_p50_ms": round(percentile(stats, 0.5) * 1000, 1), "stats_max_ms": round(max(stats) * 1000, 1),
        "store_mb": round(store_mb, 2), "store_write_ms": round(save * 1000, 2),
        "lookups": tally.lookups, "errors": len(tally.errors), "first_error": tally.errors[0] if tally.errors else "",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--identities", type=int, nargs="+", default=[9500, 50000])
    parser.add_argument("--steady-seconds", type=float, default=60.0)
    parser.add_argument("--transports", nargs="+", choices=("plaintext", "tls"), default=["plaintext", "tls"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    # one open file per connection on each side; the rendezvous inherits the limit
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    hard = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    connections = hard - 2000
    rows = []
    for identities in args.identities:
        for transport in args.transports:
            with tempfile.TemporaryDirectory(prefix="rv-capacity-") as tmp:
                rows.append(asyncio.run(measure(identities, args.steady_seconds, Path(tmp), connections,
                                                transport == "tls")))
            print(json.dumps(rows[-1]), file=sys.stderr)
    print("| identities | transport | open connections | registrations/s | rendezvous CPU (cores) | RSS MB "
          "| heartbeats/s | heartbeat p50 / p99 ms | /api/stats p50 / max ms | store MB | store write ms | errors |")
    print("|---:|---|---:|---:|---:|---:|---:|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['identities']:,} | {r['transport']} | {r['connections']:,} | {r['registrations_per_second']:,} "
              f"| {r['cpu_cores']} "
              f"| {r['rss_mb']:,} | "
              f"{r['heartbeats_per_second']:,} | {r['heartbeat_p50_ms']} / {r['heartbeat_p99_ms']} | "
              f"{r['stats_p50_ms']} / {r['stats_max_ms']} | {r['store_mb']} | {r['store_write_ms']} | {r['errors']} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all(r["errors"] == 0 and r["registered"] == r["identities"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
