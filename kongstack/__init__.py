"""kongstack: Prefect-orchestrated deployment and autoscaling for a Kong-fronted API stack.

``kongstack.core`` is the base every layer imports; ``kongstack.cli`` is the top (the CLI,
``serve``, the alert fast path). See ARCHITECTURE.md.
"""

from __future__ import annotations

__version__ = "0.1.0"
