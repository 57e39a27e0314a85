"""``kongstack deploy``: validate the stack file and run deploy-stack (local or Azure)."""

from __future__ import annotations

import json
import logging
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markdown import Markdown

from kongstack.cli.exits import FAILED, exit_code_for, fail
from kongstack.core.errors import StackError

HELP = (
    "Deploy the stack described by --config (default deployments/stack.yaml): provision → "
    "install → register → verify, then print the summary.\n\n"
    "The configuration is validated before anything is created. A second run with nothing "
    "changed makes no changes and says so; a run that failed part-way resumes at the failed "
    "step (use --no-resume to start from the top). --prefect runs it as the Prefect flow "
    "'deploy-stack' (logs and the summary artifact in the Prefect UI); without it the same "
    "steps run in this process. Exit code 0 = deployed, 1 = a step failed, 2 = bad config, "
    "3 = a dependency did not answer (engine, Azure, the Prefect server)."
)



class Step(StrEnum):
    """deploy-stack's steps (tasks/providers/protocol.py STEPS; a test keeps them equal)."""

    provision = "provision"
    install = "install"
    register = "register"
    verify = "verify"


def register(app: typer.Typer) -> None:
    @app.command("deploy", help=HELP, short_help="Deploy the stack described by --config "
                 "(default deployments/stack.yaml).")
    def deploy_command(
        config: Annotated[Path | None, typer.Option("--config", "-c", help="stack file")] = None,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="validate and show the plan")
        ] = False,
        resume: Annotated[bool, typer.Option("--resume/--no-resume")] = True,
        until: Annotated[Step | None, typer.Option(help="stop after this step")] = None,
        prefect: Annotated[bool, typer.Option("--prefect", help="run as the Prefect flow")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    ) -> None:
        console = Console(stderr=True)
        # The project's progress lines, not every library's INFO (httpx logs each request).
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
        for name in ("kongstack", "tasks", "flows"):
            logging.getLogger(name).setLevel(logging.INFO)
        try:
            if prefect:
                from flows.deploy_stack import deploy_stack

                result = deploy_stack(config_path=str(config) if config else None,
                                      dry_run=dry_run, resume=resume,
                                      until=until.value if until else None)
                typer.echo(json.dumps(result, indent=1, default=str) if as_json
                           else result["headline"])
                return
            from flows.deploy_stack import deploy

            summary = deploy(config, dry_run=dry_run, resume=resume,
                             until=until.value if until else None,
                             log=lambda line: console.print(line, style="dim", markup=False,
                                                            highlight=False))
        except StackError as exc:
            raise fail(f"{type(exc).__name__}: {exc}", exit_code_for(exc),
                       as_json=as_json) from None
        if as_json:
            typer.echo(json.dumps(summary.to_dict(), indent=1, default=str))
        else:
            Console().print(Markdown(summary.markdown()))
        if not summary.ok and not summary.dry_run:
            raise typer.Exit(FAILED)
