"""Stack files read as the Pulumi CLI reads them (Go's yaml.v3, YAML 1.2's core schema), not as PyYAML's YAML 1.1:
`no`, `yes`, `on`, `off` are strings, so are dates; only `true` and `false` are booleans. A key given twice in one
mapping is refused (YAML forbids it; PyYAML would keep the last), and so are tags that are no config value
(`!!binary`, `!!set`, `!!timestamp`, `!!omap`, `!!pairs`, and any application tag). Merge keys (`<<: *anchor`)
merge, as they do for the CLI."""

from __future__ import annotations

import re
from typing import Any

import yaml

BOOL_12 = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")


class StackFileError(ValueError):
    """What is wrong, with the line and column where it is."""


class Yaml12Loader(yaml.SafeLoader):
    pass


# YAML 1.2's booleans only, and no timestamps: drop PyYAML's 1.1 resolvers for them, add the 1.2 boolean.
Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers
            if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:bool", BOOL_12, list("tTfF"))


def _where(node: yaml.Node) -> str:
    return f"line {node.start_mark.line + 1}, column {node.start_mark.column + 1}"


MERGE = "tag:yaml.org,2002:merge"


def _mapping(loader: Yaml12Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    """A mapping whose own keys are each given once; merge keys (`<<: *defaults`) read as yaml.v3 reads them: the
    merged mappings' keys, which the mapping's own keys override."""
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        if key_node.tag == MERGE:
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise StackFileError(f"a mapping key that is not a plain value at {_where(key_node)}") from None
        if key in seen:
            raise StackFileError(f"key {key!r} appears twice in one mapping (at {_where(seen[key])} and "
                                 f"{_where(key_node)}): which one is meant? (YAML forbids it)")
        seen[key] = key_node
    return dict(yaml.SafeLoader.construct_mapping(loader, node, deep=deep))


def _refused(loader: Yaml12Loader, node: yaml.Node) -> Any:
    tag = node.tag.replace("tag:yaml.org,2002:", "!!")
    raise StackFileError(f"the tag {tag} at {_where(node)} is not a config value (use a plain string, number, "
                         "boolean, list or mapping)")


Yaml12Loader.add_constructor("tag:yaml.org,2002:map", _mapping)
for _tag in ("binary", "set", "timestamp", "omap", "pairs"):
    Yaml12Loader.add_constructor(f"tag:yaml.org,2002:{_tag}", _refused)
Yaml12Loader.add_constructor(None, _refused)  # any other tag: !Ref, !!python/..., ...


def load(text: str) -> Any:
    """The document, as the Pulumi CLI reads it; StackFileError (or yaml.YAMLError) says what is wrong and where."""
    try:
        return yaml.load(text, Loader=Yaml12Loader)
    except RecursionError:
        raise StackFileError("nested too deep to be a stack file") from None
