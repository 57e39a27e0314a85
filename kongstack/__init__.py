"""kongstack: Prefect-orchestrated deployment and autoscaling for a Kong-fronted API stack."""

from __future__ import annotations

__version__ = "0.1.0"

OWNER_LABEL = "kongstack.owner"
"""Label/tag key put on everything kongstack creates; cleanup only touches what carries it."""
