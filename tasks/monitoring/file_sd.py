"""Prometheus file-based service discovery for stock API instances.

The autoscaler calls ``write_stock_api_targets`` on every tick that changes the pool. The file is
replaced atomically (temp file in the same directory, fsync, rename), so Prometheus never reads a
half-written list; it notices the rename through inotify.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from kongstack.core.errors import ConfigError
from kongstack.core.files import write_if_changed
from tasks.monitoring.rules import STOCK_API_JOB

_ADDRESS = re.compile(r"^[A-Za-z0-9_.\-]+:\d{1,5}$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def stock_api_targets_document(
    addresses: Iterable[str], labels: Mapping[str, str] | None = None
) -> list[dict[str, object]]:
    """The file_sd JSON body: one group with every address, sorted, plus the job label."""
    targets = sorted(set(addresses))
    bad = [a for a in targets if not _ADDRESS.match(a)]
    if bad:
        raise ConfigError(f"file_sd targets must be host:port, got {bad}")
    all_labels = {"job": STOCK_API_JOB, **(labels or {})}
    bad_labels = [k for k in all_labels if not _LABEL_NAME.match(k) or k.startswith("__")]
    if bad_labels:
        raise ConfigError(f"invalid Prometheus label names {bad_labels}")
    if not targets:
        return []
    return [{"targets": targets, "labels": all_labels}]


def write_stock_api_targets(
    path: Path, addresses: Iterable[str], labels: Mapping[str, str] | None = None
) -> bool:
    """Atomically write the file_sd file; returns False (and writes nothing) when unchanged."""
    body = json.dumps(stock_api_targets_document(addresses, labels), indent=2) + "\n"
    return write_if_changed(path, body)


def read_stock_api_targets(path: Path) -> list[str]:
    """The addresses currently in the file (empty when it does not exist)."""
    try:
        groups = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return []
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid file_sd JSON: {exc}") from exc
    return sorted(t for group in groups for t in group.get("targets", []))
