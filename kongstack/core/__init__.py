"""The base every layer imports: errors, settings, the stack topology, local daemons, small
shared helpers. Imports nothing from the rest of the project."""

from __future__ import annotations

OWNER_LABEL = "kongstack.owner"
"""Label/tag key put on everything kongstack creates; cleanup only touches what carries it."""
