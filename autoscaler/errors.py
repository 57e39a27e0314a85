"""The decision core's one error: a policy value that cannot be used.

The core knows nothing of files or of the project's exception tree; the edge that builds a
policy from a file, the environment or parameters turns this into its own ``ConfigError``.
"""

from __future__ import annotations


class PolicyError(ValueError):
    """An invalid policy. The message names every bad field; ``fields`` lists them
    (empty for a rule that spans fields and names them in its message)."""

    def __init__(self, message: str, *, fields: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.fields = fields
