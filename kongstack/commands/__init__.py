"""CLI command modules. Each module defines ``register(app: typer.Typer) -> None``.

``kongstack.cli`` discovers every module here, so commands are added without touching the root.
"""
