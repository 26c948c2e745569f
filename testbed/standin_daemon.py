#!/usr/bin/env python3
"""A stand-in for pilot-daemon in supervisor tests: same flags, binds its UDP port and IPC socket, creates its
identity on first start, and can be told to fail.

Control files live in `<state_dir>/standin/` (found from `-identity <state_dir>/agents/<i>/identity.json`):
  fail-<i>   holds a number N: the next N starts of agent i exit 1 as a refused registration does.
  deaf-<i>   exists: agent i ignores SIGTERM (only SIGKILL ends it), as a wedged daemon would.
Events (one line each, appended) go to `<state_dir>/standin/events.log`:
  <unix time> start <i> fresh|known <pid> <version>  |  <unix time> stop <i> <pid>
(<version>: $PILOT_STANDIN_VERSION, which the fake release wheels of the live-upgrade tests set, else "-").
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(prog="pilot-daemon")
    for flag in ("registry", "beacon", "listen", "socket", "identity", "log-format", "log-level", "log-max-size",
                 "log-max-backups", "telemetry-url", "motd-feed-url", "endpoint", "hostname", "registry-fingerprint"):
        parser.add_argument(f"-{flag}")
    parser.add_argument("-no-skillinject", action="store_true")
    parser.add_argument("-registry-tls", action="store_true")
    args = parser.parse_args()
    identity = Path(args.identity)
    index = identity.parent.name
    control = identity.parents[2] / "standin"
    control.mkdir(exist_ok=True)

    def event(*words: object) -> None:
        with open(control / "events.log", "a") as out:
            out.write(" ".join(str(w) for w in (f"{time.time():.3f}", *words)) + "\n")

    fresh = not identity.exists()
    fail = control / f"fail-{index}"
    if fail.exists():
        left = int(fail.read_text() or "0")
        if left > 0:
            fail.write_text(str(left - 1))
            event("refused", index, os.getpid())
            print('{"level":"error","msg":"daemon start: register: rate limited"}', flush=True)
            return 1
    if fresh:
        identity.write_text(os.urandom(16).hex())
    # a deaf agent is deaf from its first moment (a wedged daemon would be): before its socket says it is up, or a
    # SIGTERM sent as soon as it looks registered could end it before it ignores SIGTERM
    deaf = (control / f"deaf-{index}").exists()
    if deaf:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", int(args.listen.rsplit(":", 1)[1])))
    ipc = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ipc.bind(args.socket)
    ipc.listen()
    event("start", index, "fresh" if fresh else "known", os.getpid(), os.environ.get("PILOT_STANDIN_VERSION", "-"))

    def stop(*_: object) -> None:
        event("stop", index, os.getpid())
        os.unlink(args.socket)
        sys.exit(0)

    signal.signal(signal.SIGTERM, signal.SIG_IGN if deaf else stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
