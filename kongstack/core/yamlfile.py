"""The one door through which the product reads YAML.

Every YAML document kongstack reads (the stack file, the autoscale config, the monitoring
config, Kong's declarative config, Grafana provisioning, prefect.yaml) comes through
``load_yaml`` (a file) or ``parse_yaml`` (a document from elsewhere, e.g. Kong's
``GET /config``); both end in ``parse_yaml``, the only place that calls the YAML parser
(tests/core/test_yamlfile.py checks that no other module does). Limits on what a document
may contain belong here, once:

* size: ``MAX_FILE_BYTES`` for a file (checked before it is read), ``max_bytes`` otherwise;
* UTF-8 text only (UTF-16, Latin-1... are refused, naming the file);
* aliases: the document as expanded may hold at most ``MAX_EXPANDED_NODES`` nodes, so an
  alias bomb ("billion laughs": a few hundred bytes that expand to 10⁹ nodes) is refused
  after composing, before anything is built or validated; recursive aliases are refused;
* no duplicate keys in a mapping (YAML says they are an error; PyYAML keeps the last one);
* numbers are finite (``.inf`` and ``.nan`` are refused, naming where they are);
* an empty document (nothing, or only comments) is refused unless ``allow_empty``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from kongstack.core.errors import ConfigError

MAX_FILE_BYTES = 1024 * 1024
"""A configuration file is a few KiB; 1 MiB leaves room and refuses anything absurd."""
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
"""A document from elsewhere (Kong's whole declarative config with its consumers)."""
MAX_EXPANDED_NODES = 100_000
"""Nodes in the document with every alias expanded (the largest shipped file has ~2,000)."""


class _SafeLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (merge keys ``<<`` still override)."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: SafeConstructor reports it below
                continue
            if duplicate:
                raise _Refused(f"duplicate key {key!r} (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class _Refused(Exception):
    """A limit of this module; becomes a ConfigError naming the origin."""


def load_yaml(path: str | Path, *, what: str, allow_empty: bool = False) -> dict[str, Any]:
    """The mapping in the YAML (or JSON) file at ``path``.

    ``what`` says what the file is ("stack file", "autoscale config"...). Raises
    ``ConfigError`` naming the file and ``what`` when it is missing, unreadable (a
    directory...), larger than ``MAX_FILE_BYTES``, not UTF-8, not YAML, empty, not a mapping,
    or beyond one of the limits in the module docstring."""
    file = Path(path)
    try:
        with file.open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{file}: {what} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{file}: {what} is a directory, not a file") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read {what} ({exc.strerror or exc})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"{file}: {what} is larger than {MAX_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: {what} is not UTF-8 text ({exc.reason} at byte "
                          f"{exc.start})") from None
    return parse_yaml(text, what=what, origin=str(file), allow_empty=allow_empty,
                      max_bytes=MAX_FILE_BYTES)


def parse_yaml(text: str, *, what: str, origin: str, allow_empty: bool = False,
               max_bytes: int = MAX_DOCUMENT_BYTES) -> dict[str, Any]:
    """The mapping in the YAML document ``text``; ``origin`` names where it came from (a
    path or a URL) in errors. ``allow_empty``: an empty document is ``{}``."""
    if len(text.encode("utf-8", errors="surrogatepass")) > max_bytes:
        raise ConfigError(f"{origin}: {what} is larger than {max_bytes} bytes")
    try:
        data = _load(text)
    except _Refused as exc:
        raise ConfigError(f"{origin}: {what} refused: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: {what} is not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{origin}: {what} refused: nested too deeply") from None
    if data is None:
        if allow_empty:
            return {}
        raise ConfigError(f"{origin}: {what} is empty (an empty file is refused rather than "
                          "silently meaning the defaults: write '{}' for all defaults)")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{origin}: {what} must be a mapping at the top level, not {type(data).__name__}")
    bad = _non_finite(data, "")
    if bad is not None:
        raise ConfigError(f"{origin}: {what}: {bad or '(top level)'}: numbers must be finite "
                          "(.inf and .nan are refused)")
    return data


def _load(text: str) -> Any:
    loader = _SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_expansion(root: Node) -> None:
    """Count the nodes of the document with aliases expanded (memoised per node, so a bomb
    costs as much as its text); refuse past ``MAX_EXPANDED_NODES`` or on a cycle."""
    sizes: dict[int, int] = {}
    visiting: set[int] = set()
    aliases = 0

    def size(node: Node) -> int:
        nonlocal aliases
        key = id(node)
        if key in sizes:
            aliases += 1
            return sizes[key]
        if key in visiting:
            raise _Refused("a recursive alias")
        visiting.add(key)
        total = 1
        if isinstance(node, SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        elif not isinstance(node, ScalarNode):  # pragma: no cover - PyYAML has three kinds
            raise _Refused(f"unknown node kind {type(node).__name__}")
        visiting.discard(key)
        sizes[key] = total
        if total > MAX_EXPANDED_NODES:
            raise _Refused(f"expands to more than {MAX_EXPANDED_NODES} nodes through "
                           f"aliases ({aliases} alias uses so far): an alias bomb?")
        return total

    size(root)


def _non_finite(value: Any, where: str) -> str | None:
    """The dotted path of the first infinite or NaN number in ``value``, else None."""
    if isinstance(value, float) and not math.isfinite(value):
        return where
    if isinstance(value, dict):
        for key, item in value.items():
            found = _non_finite(item, f"{where}.{key}" if where else str(key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _non_finite(item, f"{where}[{index}]")
            if found is not None:
                return found
    return None
