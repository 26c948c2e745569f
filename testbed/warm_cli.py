"""`python -m fleet` with its imports done once, for the tests that run the CLI many times.

A plan costs about 4.5 s of CPU, and more than half of it is importing: the Google provider's compute module alone
builds some 6,000 typed classes (2.4 s). This server imports every module of the `fleet` package (and with them the
Pulumi SDK and the provider modules the program declares resources from), then waits on a Unix socket and forks one
child per command. The child is the command: it runs `python -m fleet`'s own `__main__` with the caller's arguments,
working directory and environment, stdin, stdout and stderr from and into files the caller names, and its exit
status is the command's. Only the interpreter's start and those imports are shared: nothing a command does has run in
the server before the fork, and each command starts from the state right after the imports.

tests/conftest.py's run_fleet runs commands here; tests/test_warm_cli.py holds a warm plan to a cold one, byte for
byte. Commands a document shows, the policy pack's own process, and the whole-fleet bed still run cold.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import pkgutil
import re
import runpy
import signal
import socket
import subprocess
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
IDLE_CHECK_SECONDS = 1.0


def _import_everything() -> None:
    """Every module of the fleet package, and the Google provider's modules it declares resources from: the
    provider loads a module at its first use (`gcp.compute.Instance`), so importing the fleet package is not
    enough; they are the ones its source names as `gcp.<module>.`."""
    import fleet

    for module in pkgutil.walk_packages(fleet.__path__, "fleet."):
        if module.name != "fleet.__main__":
            importlib.import_module(module.name)
    used = {name for path in Path(fleet.__path__[0]).rglob("*.py")
            for name in re.findall(r"\bgcp\.([a-z_]+)\.", path.read_text())}
    for name in sorted(used):  # the SDK's lazy module loads at the first attribute read that is not its spec
        hasattr(importlib.import_module(f"pulumi_gcp.{name}"), "loaded")


def _read_all(conn: socket.socket) -> bytes:
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _command(request: dict[str, Any]) -> int:
    """In the forked child: be `python -m fleet ARGS` run in CWD with ENV. Returns its exit status."""
    os.setpgid(0, 0)  # a caller's timeout kills the command's whole group (the policy pack's process too)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for fd, path, flags in ((0, request["stdin"], os.O_RDONLY), (1, request["stdout"], os.O_WRONLY | os.O_TRUNC),
                            (2, request["stderr"], os.O_WRONLY | os.O_TRUNC)):
        opened = os.open(path, flags)
        os.dup2(opened, fd)
        os.close(opened)
    sys.argv = ["-m", *request["argv"]]  # runpy puts the module's path first, as `python -m` does
    try:
        runpy.run_module("fleet", run_name="__main__", alter_sys=True)
    except SystemExit as done:
        if done.code is None or isinstance(done.code, int):
            return done.code or 0
        print(done.code, file=sys.stderr)  # what the interpreter does with sys.exit("message")
        return 1
    except Exception:  # noqa: BLE001 - uncaught: the traceback and status 1, as the interpreter does
        traceback.print_exc()
        return 1
    return 0


def serve(path: str) -> None:
    """Answer commands on the Unix socket PATH until the process that started this one is gone."""
    parent = os.getppid()
    _import_everything()
    gc.freeze()  # no command's collection walks (and so copies) what the server holds
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)
    listener.settimeout(IDLE_CHECK_SECONDS)
    print("ready", flush=True)
    while os.getppid() == parent:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        with conn:
            conn.settimeout(None)
            request = json.loads(_read_all(conn))
            pid = os.fork()
            if pid == 0:  # the command; whatever escapes it ends this child too, never back in this loop
                listener.close()
                conn.close()
                code = _command(request)
                sys.stdout.flush()
                sys.stderr.flush()
                # the interpreter's own exit: atexit handlers and non-daemon threads, as a cold command ends
                raise SystemExit(code)
            conn.sendall(f"{pid}\n".encode())
            _, status = os.waitpid(pid, 0)
            conn.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())


@dataclass
class WarmCli:
    """A client of one server, started by the process that uses it (one per test worker)."""

    server: subprocess.Popen[str]
    socket_path: str

    @classmethod
    def start(cls) -> WarmCli:
        directory = tempfile.mkdtemp(prefix="pf-warm-")
        path = os.path.join(directory, "socket")
        server = subprocess.Popen([sys.executable, "-m", "testbed.warm_cli", path], cwd=REPO,
                                  stdout=subprocess.PIPE, text=True)
        assert server.stdout is not None
        ready = server.stdout.readline().strip()
        if ready != "ready":
            server.kill()
            raise RuntimeError(f"the warm fleet CLI did not start (exit {server.wait()})")
        return cls(server, path)

    def run(self, argv: list[str], cwd: Path, timeout: float, stdin: str = "",
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """`python -m fleet ARGV` in CWD with this process' environment and ENV over it, STDIN as its input, as
        subprocess.run(..., input=STDIN, capture_output=True, text=True) returns it."""
        with tempfile.TemporaryDirectory(prefix="pf-cmd-") as directory:
            given, out, err = Path(directory, "stdin"), Path(directory, "stdout"), Path(directory, "stderr")
            given.write_text(stdin)
            out.touch()
            err.touch()
            request = {"argv": argv, "cwd": str(cwd), "env": {**os.environ, **(env or {})}, "stdin": str(given),
                       "stdout": str(out), "stderr": str(err)}
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.connect(self.socket_path)
                conn.sendall(json.dumps(request).encode())
                conn.shutdown(socket.SHUT_WR)
                conn.settimeout(timeout)
                answer = conn.makefile()
                pid = int(answer.readline())
                try:
                    code = int(answer.readline())
                except TimeoutError:
                    os.killpg(pid, signal.SIGKILL)
                    raise subprocess.TimeoutExpired(["python", "-m", "fleet", *argv], timeout) from None
            return subprocess.CompletedProcess(["python", "-m", "fleet", *argv], code, out.read_text(),
                                               err.read_text())

    def close(self) -> None:
        self.server.terminate()
        self.server.wait(timeout=10)
        Path(self.socket_path).unlink(missing_ok=True)
        os.rmdir(os.path.dirname(self.socket_path))


if __name__ == "__main__":
    serve(sys.argv[1])
