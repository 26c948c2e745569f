"""The supervisor's journal: one JSON object a line on stdout, which systemd keeps."""

from __future__ import annotations

import json
import time
from typing import Any


def log(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, "time": round(time.time(), 3), **fields}, sort_keys=True), flush=True)
