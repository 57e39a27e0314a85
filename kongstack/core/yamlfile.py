"""The one door through which the product reads YAML.

Every YAML document kongstack reads (the stack file, the autoscale config, the monitoring
config, Kong's declarative config, Grafana provisioning, prefect.yaml) comes through
``load_yaml`` (a file) or ``parse_yaml`` (a document from elsewhere, e.g. Kong's
``GET /config``); both end in ``parse_yaml``, the only place that calls the YAML parser
(tests/core/test_yamlfile.py checks that no other module does). Limits on what a document
may contain belong here, once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kongstack.core.errors import ConfigError


def load_yaml(path: str | Path, *, what: str) -> dict[str, Any]:
    """The mapping in the YAML (or JSON) file at ``path``; an empty file is ``{}``.

    ``what`` says what the file is ("stack file", "autoscale config"...). Raises
    ``ConfigError`` naming the file and ``what`` when it is missing, unreadable, not YAML or
    not a mapping."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{file}: {what} not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: {what} is not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read {what} ({exc.strerror or exc})") from None
    return parse_yaml(text, what=what, origin=str(file))


def parse_yaml(text: str, *, what: str, origin: str) -> dict[str, Any]:
    """The mapping in the YAML document ``text``; ``origin`` names where it came from (a
    path or a URL) in errors."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: {what} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{origin}: {what} must be a mapping at the top level, not {type(data).__name__}")
    return data
