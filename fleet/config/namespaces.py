"""Which config keys exist outside this program's own namespace, and who reads them.

A stack's config holds keys of three readers: this program (`pilot-fleet:*`, and `gcp:project`, `gcp:region`,
`gcp:zone`), the gcp provider (every key its SDK's config module reads: `gcp:credentials`, `gcp:project`, ...), and
the Pulumi engine (`pulumi:*`). A key none of them reads does nothing, silently: a typo, or a
setting put where nobody looks for it. The config check refuses it, naming the key.
"""

from __future__ import annotations

import ast
import functools
import importlib.util

# The provider this program uses, and the keys of it this program reads itself
PROVIDER = "gcp"
PROGRAM_PROVIDER_KEYS = ("project", "region", "zone")
# The module of the provider's SDK that reads the provider's config: one `__config__.get*("key")` per key
PROVIDER_CONFIG_MODULE = "pulumi_gcp.config.vars"
# Keys the Pulumi engine and CLI read under `pulumi:` (pulumi/pulumi: the default-provider switch of the deployment
# engine, the autonaming settings, the stack tags, and the template a stack was made from)
ENGINE_KEYS = ("autonaming", "disable-default-providers", "tags", "template")


@functools.cache
def provider_keys() -> frozenset[str]:
    """Every key the installed gcp provider SDK reads, as it reads it: the string argument of each
    `__config__.get*(...)` call in its config module (read as source, not run: importing it would read the stack's
    config). The SDK is pinned in requirements.txt, so the keys are those of the provider the program runs with."""
    spec = importlib.util.find_spec(PROVIDER_CONFIG_MODULE)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"{PROVIDER_CONFIG_MODULE} is not installed (requirements.txt pins pulumi-gcp)")
    with open(spec.origin, encoding="utf-8") as source:
        tree = ast.parse(source.read(), spec.origin)
    keys = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "__config__"
                and node.func.attr.startswith("get") and node.args
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            keys.add(node.args[0].value)
    if not set(PROGRAM_PROVIDER_KEYS) <= keys:
        raise RuntimeError(f"{spec.origin} reads none of {', '.join(PROGRAM_PROVIDER_KEYS)}: not the provider's "
                           "config module this program knows")
    return frozenset(keys)
