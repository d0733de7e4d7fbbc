"""The built-in gate rules: those of every cell, then each transport's own.

A transport keeps the rules of its resume semantics beside its code
(``Transport.rules``, a TOML file in its subpackage); the gate never imports
a transport, so the app reads the files and hands the gate the lot. Two
entries of one package (``sse`` and ``sse-naive``) may share one file; it is
read once, in registry order.
"""

from __future__ import annotations

from importlib import resources

from progressbench.core.contract import Transport
from progressbench.reports.gate import Rule, general_rules, parse_rules
from progressbench.transports.registry import REGISTRY


def rules_source(transport: Transport) -> str:
    """Where a transport's rules file is, for messages: ``transports/sse/rules.toml``."""
    folder = transport.package.removeprefix("progressbench.").replace(".", "/")
    return f"{folder}/{transport.rules}"


def transport_rules(transport: Transport) -> list[Rule]:
    text = (resources.files(transport.package) / transport.rules).read_text()
    return parse_rules(text, rules_source(transport))


def builtin_rules() -> list[Rule]:
    rules = general_rules()
    read: set[tuple[str, str]] = set()
    for transport in REGISTRY.values():
        key = (transport.package, transport.rules)
        if key not in read:
            read.add(key)
            rules += transport_rules(transport)
    return rules
