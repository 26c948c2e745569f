"""The supervisor's journal: one JSON object a line on stdout, which systemd keeps."""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

# The main loop, the metadata watcher and the health server all log: a line is written whole, under this lock
# (print writes the text and its newline separately, and two threads' lines ran together in CI).
_LOCK = threading.Lock()


def log(event: str, **fields: Any) -> None:
    line = json.dumps({"event": event, "time": round(time.time(), 3), **fields}, sort_keys=True) + "\n"
    with _LOCK:
        sys.stdout.write(line)
        sys.stdout.flush()
