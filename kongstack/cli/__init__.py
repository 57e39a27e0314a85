"""The top layer: the typer CLI (``app``), its views, ``serve``, the alert fast path.
Nothing below imports from here."""
