"""The optional dependency groups (pyproject extras) and the error when one is missing.

A base install (``pip install kongstack``) runs the CLI and the flows. The code that needs an
extra imports its packages inside ``requires_extra``, so that without the extra the user reads
which extra to install instead of a bare ``ModuleNotFoundError``::

    with requires_extra("analysis", "the maintenance analysis"):
        import pandas as pd
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager

from kongstack.core.errors import ConfigError

EXTRAS: dict[str, tuple[str, ...]] = {
    "azure": ("azure", "paramiko"),
    "analysis": ("numpy", "pandas", "matplotlib"),
    "api": ("flask", "werkzeug", "gunicorn", "pymongo", "bson", "montydb"),
}
"""Extra name -> the top-level modules it provides (what its packages install)."""


class MissingExtra(ConfigError):
    """Code that needs an optional extra ran on an install without it."""

    def __init__(self, extra: str, module: str, what: str) -> None:
        self.extra = extra
        self.module = module
        super().__init__(
            f"{what} needs the optional '{extra}' dependencies ({module} is not installed): "
            f"pip install 'kongstack[{extra}]'"
        )


@contextmanager
def requires_extra(extra: str, what: str) -> Iterator[None]:
    """Turn the import failure of one of ``extra``'s modules into ``MissingExtra``."""
    modules = EXTRAS[extra]
    try:
        yield
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        if top not in modules:
            raise
        raise MissingExtra(extra, exc.name or top, what) from exc


def ensure_extra(extra: str, what: str) -> None:
    """Raise ``MissingExtra`` unless every module of ``extra`` can be imported (without
    importing it: for code that runs the extra in another process)."""
    for module in EXTRAS[extra]:
        if importlib.util.find_spec(module) is None:
            raise MissingExtra(extra, module, what)
