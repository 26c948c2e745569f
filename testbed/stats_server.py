"""A real HTTP server on loopback that answers scripted responses: the rendezvous' /api/stats and a stand-in of
Compute Engine's getGuestAttributes, instances.get (metadata only) and listManagedInstances. Never a mocked
`requests`."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    delay: float = 0.0
    drip: float = 0.0  # seconds between the body's bytes (a server that drips its answer)
    headers: dict[str, str] = field(default_factory=dict)  # e.g. Location, Content-Encoding

    @classmethod
    def stats(cls, **fields: Any) -> Answer:
        return cls(200, json.dumps(fields).encode())


@dataclass
class StatsServer:
    answers: list[Answer]
    guest_attributes: dict[str, dict[str, str]] = field(default_factory=dict)  # instance -> key -> value
    managed_instances: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # group -> (name, zone)
    # a managed VM's (currentAction, instanceStatus) in the group's listing; default ("NONE", "RUNNING")
    instance_states: dict[str, tuple[str, str]] = field(default_factory=dict)
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)  # instance -> its metadata items
    # VMs of the project labelled app=pilot-fleet (instances.aggregatedList): (name, zone) -> metadata items
    labelled: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    zone_metadata: dict[str, dict[str, str]] = field(default_factory=dict)  # zone -> its instanceSettings metadata
    requests: list[tuple[str, str]] = field(default_factory=list)  # (path, authorization)
    # a Compute Engine call whose path holds the key answers this instead (a hostile or broken API)
    compute_overrides: dict[str, Answer] = field(default_factory=dict)
    url: str = ""
    base: str = ""

    def set(self, *answers: Answer) -> None:
        self.answers[:] = list(answers)

    @contextmanager
    def serving(self) -> Iterator[StatsServer]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def overridden(self) -> bool:
                for fragment, answer in server.compute_overrides.items():
                    if fragment in self.path:
                        time.sleep(answer.delay)
                        self.reply(answer)
                        return True
                return False

            def do_GET(self) -> None:
                server.requests.append((self.path, self.headers.get("Authorization", "")))
                if self.path.startswith("/compute/") and self.overridden():
                    return None
                if "/getGuestAttributes" in self.path:
                    name = self.path.split("/instances/")[1].split("/")[0]
                    if name not in server.guest_attributes:
                        return self.reply(Answer(404, b'{"error": {"code": 404}}'))
                    items = [{"namespace": "pilot", "key": k, "value": v}
                             for k, v in server.guest_attributes[name].items()]
                    return self.reply(Answer(200, json.dumps({"queryPath": "pilot/",
                                                              "queryValue": {"items": items}}).encode()))
                if "/aggregated/instances" in self.path:  # instances.aggregatedList
                    scopes: dict[str, Any] = {}
                    for (name, zone), items in server.labelled.items():
                        scopes.setdefault(f"zones/{zone}", {"instances": []})["instances"].append(
                            {"name": name, "zone": f"https://www.googleapis.com/compute/v1/projects/p/zones/{zone}",
                             "metadata": {"items": [{"key": k, "value": v} for k, v in items.items()]}})
                    return self.reply(Answer(200, json.dumps({"items": scopes}).encode()))
                if self.path.endswith("/instanceSettings"):
                    zone = self.path.split("/zones/")[1].split("/")[0]
                    if zone not in server.zone_metadata:
                        return self.reply(Answer(404, b'{"error": {"code": 404}}'))
                    return self.reply(Answer(200, json.dumps({"metadata": {"items": server.zone_metadata[zone]}})
                                             .encode()))
                if "/instances/" in self.path:  # instances.get
                    name = self.path.split("/instances/")[1].split("?")[0]
                    if name not in server.metadata:
                        return self.reply(Answer(404, b'{"error": {"code": 404}}'))
                    items = [{"key": k, "value": v} for k, v in server.metadata[name].items()]
                    return self.reply(Answer(200, json.dumps({"name": name, "metadata": {"items": items}}).encode()))
                answer = server.answers.pop(0) if len(server.answers) > 1 else server.answers[0]
                time.sleep(answer.delay)
                self.reply(answer)

            def do_POST(self) -> None:  # instanceGroupManagers.listManagedInstances
                server.requests.append((self.path, self.headers.get("Authorization", "")))
                if self.overridden():
                    return None
                if "/listManagedInstances" not in self.path:
                    return self.reply(Answer(404, b'{"error": {"code": 404}}'))
                manager = self.path.split("/instanceGroupManagers/")[1].split("/")[0]
                listed = [{"instance": f"https://www.googleapis.com/compute/v1/projects/p/zones/{zone}/instances/{name}",
                           "currentAction": server.instance_states.get(name, ("NONE", "RUNNING"))[0],
                           "instanceStatus": server.instance_states.get(name, ("NONE", "RUNNING"))[1]}
                          for name, zone in server.managed_instances.get(manager, [])]
                return self.reply(Answer(200, json.dumps({"managedInstances": listed}).encode()))

            def reply(self, answer: Answer) -> None:
                try:
                    self.send_response(answer.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer.body)))
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    if not answer.drip:
                        self.wfile.write(answer.body)
                    for byte in answer.body if answer.drip else b"":
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(answer.drip)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{httpd.server_address[1]}"
        self.url = f"{self.base}/api/stats"
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        try:
            yield self
        finally:
            httpd.shutdown()
            httpd.server_close()
