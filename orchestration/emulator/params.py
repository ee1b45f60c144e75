"""Stripe's form encoding (a[b]=1&a[0]=x) decoded into nested dicts and lists."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


class ParamError(ValueError):
    """A parameter that cannot be decoded."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def decode(raw: str) -> dict[str, Any]:
    """Decodes a query string or form body the way Stripe reads it."""
    out: dict[str, Any] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        match = _KEY.match(key)
        if match is None:
            raise ParamError(f"Invalid parameter name: {key}", key)
        parts = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        _assign(out, parts, value, key)
    return {k: _listify(v) for k, v in out.items()}


def _assign(node: dict[str, Any], parts: list[str], value: str, key: str) -> None:
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ParamError(f"Invalid parameter: {key}", parts[0])
        nxt = parts[i + 1]
        if nxt == "":
            # a[]=x: append with a synthetic index.
            parts[i + 1] = str(len(child))
        node = child
    node[parts[-1]] = value


def _listify(value: Any) -> Any:
    """{"0": a, "1": b} → [a, b] (the SDK encodes lists with indexes)."""
    if not isinstance(value, dict):
        return value
    value = {k: _listify(v) for k, v in value.items()}
    if value and all(k.isdigit() for k in value):
        return [value[k] for k in sorted(value, key=int)]
    return value
