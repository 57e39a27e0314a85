"""Run Python as on an install without some extras: their modules cannot be imported.

``python -m tests.support.block_extras EXTRA[,EXTRA...] -c CODE`` executes CODE with every
meta-path finder wrapped so that it finds no module of the named extras
(kongstack.core.extras.EXTRAS), exactly as when their distributions are not installed.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any


class HideModules(importlib.abc.MetaPathFinder):
    """Wraps one finder of ``sys.meta_path`` and finds nothing of the hidden top-level names,
    so ``import`` raises ModuleNotFoundError and ``importlib.util.find_spec`` returns None, as
    on an install without those distributions."""

    def __init__(self, finder: Any, tops: set[str]) -> None:
        self.finder = finder
        self.tops = tops

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname.split(".")[0] in self.tops:
            return None
        spec: importlib.machinery.ModuleSpec | None = self.finder.find_spec(fullname, path, target)
        return spec

    def invalidate_caches(self) -> None:
        if hasattr(self.finder, "invalidate_caches"):
            self.finder.invalidate_caches()

    def __getattr__(self, name: str) -> Any:  # find_distributions: package metadata stays
        return getattr(self.finder, name)


def block(extras: Sequence[str]) -> None:
    from kongstack.core.extras import EXTRAS

    tops = {module for extra in extras for module in EXTRAS[extra]}
    loaded = [name for name in sys.modules if name.split(".")[0] in tops]
    assert not loaded, f"already imported, cannot be hidden: {loaded}"
    sys.meta_path[:] = [HideModules(finder, tops) for finder in sys.meta_path]


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[2] != "-c":
        raise SystemExit(__doc__)
    block([e for e in sys.argv[1].split(",") if e])
    exec(compile(sys.argv[3], "<blocked>", "exec"), {"__name__": "__main__"})
