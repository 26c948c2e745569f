"""A startup script read as bash reads it, with tree-sitter-bash (a maintained bash grammar), not with patterns: its
top-level statements in order, its functions, and what runs unconditionally on its boot path.

What runs unconditionally, from the top level: each statement of a body in order until an unconditional `exit`
(which ends the script) or `return` (which ends its function); of a `a && b` or `a || b` list its first part only;
every part of a pipeline; an `if`'s condition (not its branches); the commands inside the command substitutions of
a statement's words and assignments (they run before it does); and the body of each function such a command calls,
once. A call dispatched on a value (`"setup_${role}"`) reaches every function of that prefix, one of which runs.
Loops' and `case`'s bodies, `if` branches and what follows `&&`/`||` may not run, so none of that counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import tree_sitter_bash
from tree_sitter import Language, Node, Parser

_PARSER = Parser(Language(tree_sitter_bash.language()))
# statement kinds whose parts run in order, each unconditionally
_SEQUENCES = ("compound_statement", "subshell", "program")


def parse(script: str) -> Node:
    return _PARSER.parse(script.encode()).root_node


def statements(node: Node) -> list[Node]:
    """The statements of a body (a program, a `{ }` or `( )` body, a function's), comments left out."""
    return [c for c in node.named_children if c.type != "comment"]


def text(node: Node | None) -> str:
    return node.text.decode(errors="replace") if node is not None and node.text is not None else ""


def command_name(node: Node) -> Node | None:
    """The name word of a command (None for an assignment-only command)."""
    name = node.child_by_field_name("name") if node.type == "command" else None
    return name.named_children[0] if name is not None and name.named_children else name


def literal(node: Node | None) -> str | None:
    """A word's value when it holds no expansion or substitution (quotes removed), else None."""
    if node is None:
        return None
    if node.type in ("word", "number"):
        return text(node)
    if node.type == "raw_string":
        return text(node)[1:-1]
    if node.type == "string" and all(c.type == "string_content" for c in node.named_children):
        return "".join(text(c) for c in node.named_children)
    return None


def arguments(command: Node) -> list[Node]:
    """A command's argument words, in order (its name and any redirect left out)."""
    return command.children_by_field_name("argument")


def substitutions(node: Node) -> Iterator[Node]:
    """The command and process substitutions inside NODE's words (not inside nested substitutions)."""
    for child in node.named_children:
        if child.type in ("command_substitution", "process_substitution"):
            yield child
        elif child.type not in ("heredoc_body", "function_definition"):
            yield from substitutions(child)


@dataclass
class BootPath:
    """A script's top level, its functions, and what runs unconditionally from the top level (see the module's
    docstring): `commands` in the order met, `statements` (every statement that ran, for the text it writes)."""

    root: Node
    functions: dict[str, Node] = field(default_factory=dict)
    commands: list[Node] = field(default_factory=list)
    statements: list[Node] = field(default_factory=list)
    _entered: set[str] = field(default_factory=set)

    @staticmethod
    def of(script: str) -> BootPath:
        root = parse(script)
        path = BootPath(root)
        for node in _walk(root):
            if node.type == "function_definition":
                name = node.child_by_field_name("name")
                body = node.child_by_field_name("body")
                if name is not None and body is not None:
                    path.functions[text(name)] = body
        path.run(statements(root))
        return path

    @property
    def top(self) -> list[Node]:
        return [s for s in statements(self.root) if s.type != "function_definition"]

    def run(self, body: list[Node]) -> str:
        """Run a body's statements in order; "exit" when one ends the script, "return" when one ends its function,
        "" when it runs to its end."""
        for statement in body:
            ended = self._statement(statement)
            if ended:
                return ended
        return ""

    def _statement(self, node: Node) -> str:
        kind = node.type
        if kind == "function_definition":
            return ""
        if kind == "redirected_statement":
            self.statements.append(node)
            for redirect in node.children_by_field_name("redirect"):
                self._substitute(redirect)
            body = node.child_by_field_name("body")
            return self._statement(body) if body is not None else ""
        if kind in ("list", "negated_command"):  # of `a && b`, `a || b`: `a` alone surely runs
            first = next((c for c in node.named_children if c.type != "comment"), None)
            return self._statement(first) if first is not None else ""
        if kind == "pipeline":
            for part in node.named_children:
                self._statement(part)
            return ""
        if kind in _SEQUENCES:
            ended = self.run(statements(node))
            return "" if kind == "subshell" else ended  # an exit in ( ) leaves only the subshell
        if kind == "if_statement":
            return self.run(_condition(node))
        if kind in ("while_statement", "for_statement", "c_style_for_statement", "case_statement"):
            return ""
        self.statements.append(node)  # a command, an assignment, a declaration, a test
        self._substitute(node)
        return self._command(node) if kind == "command" else ""

    def _substitute(self, node: Node) -> None:
        """Run the substitutions in NODE's words: they run before it, in a subshell (an exit there ends only it)."""
        for substitution in substitutions(node):
            self.run(statements(substitution))

    def _command(self, node: Node) -> str:
        self.commands.append(node)
        name = command_name(node)
        word = literal(name)
        if word in ("exit", "return"):
            return word
        if word == "exec" and arguments(node):
            return "exit"  # the script becomes another program
        for called in self._called(name, word):
            if called not in self._entered:
                self._entered.add(called)
                if self.run(statements(self.functions[called])) == "exit":
                    return "exit"
        return ""

    def _called(self, name: Node | None, word: str | None) -> list[str]:
        if word is not None:
            return [word] if word in self.functions else []
        prefix = _prefix(name)
        return sorted(f for f in self.functions if prefix and f.startswith(prefix))

    def ran(self, name: str) -> list[Node]:
        """The commands named NAME that run unconditionally."""
        return [c for c in self.commands if literal(command_name(c)) == name]

    def written_text(self) -> str:
        """The text of every statement that runs unconditionally, with the heredoc bodies it writes."""
        parts = []
        for statement in self.statements:
            parts.append(text(statement))
            parts += [text(h) for h in _walk(statement) if h.type == "heredoc_body"]
        return "\n".join(parts)


def _walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.named_children:
        yield from _walk(child)


def _condition(node: Node) -> list[Node]:
    """An `if` statement's condition: its statements between `if` and `then`."""
    found, inside = [], False
    for child in node.children:
        if child.type == "if":
            inside = True
        elif child.type == "then":
            break
        elif inside and child.is_named and child.type != "comment":
            found.append(child)
    return found


def branch(node: Node) -> list[Node]:
    """An `if` statement's first branch: its statements between `then` and `elif`/`else`/`fi`."""
    found, inside = [], False
    for child in node.children:
        if child.type == "then":
            inside = True
        elif child.type in ("elif_clause", "else_clause", "fi"):
            break
        elif inside and child.is_named and child.type != "comment":
            found.append(child)
    return found


def _prefix(name: Node | Any) -> str:
    """The literal start of a command name built from a value ("setup_${role}" -> "setup_")."""
    if name is None or name.type not in ("string", "concatenation"):
        return ""
    prefix = ""
    for child in name.named_children:
        if child.type in ("string_content", "word"):
            prefix += text(child)
        else:
            break
    return prefix
