"""The ``tryon`` command line (typer). Each command group lives in its own module."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="tryon",
    help="Event-driven virtual try-on: run the workflow locally, serve models, fine-tune, deploy.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """Event-driven virtual try-on: run the workflow locally, serve models, fine-tune, deploy."""


#: Exit codes scripts can rely on (also documented in the README).
EXIT_OK = 0
EXIT_WORKFLOW_FAILED = 1  # the command ran, but the execution/job it followed failed
EXIT_BAD_INPUT = 2  # bad option, missing file, invalid parameter value (click uses 2 for usage errors)
EXIT_AWS = 3  # no credentials, unknown stack, an AWS API error


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print ``message`` to stderr and return the Exit to raise: ``raise fail("...")``."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def _run_app(argv: list[str] | None) -> int:
    """Run the app, turning known errors into one clear line and an exit code (no traceback)."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    from tryon.errors import RequestError

    try:
        # Without standalone mode click returns Exit codes instead of calling sys.exit.
        result = app(args=argv, standalone_mode=False, prog_name="tryon")
    except RequestError as exc:
        fail(str(exc), EXIT_BAD_INPUT)
        return EXIT_BAD_INPUT
    except (NoCredentialsError, NoRegionError) as exc:
        fail(f"{exc} (configure credentials with `aws configure` or AWS_PROFILE)", EXIT_AWS)
        return EXIT_AWS
    except (ClientError, BotoCoreError) as exc:
        fail(str(exc), EXIT_AWS)
        return EXIT_AWS
    except FileNotFoundError as exc:
        fail(str(exc), EXIT_BAD_INPUT)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        fail("interrupted", 130)
        return 130
    return result if isinstance(result, int) else EXIT_OK


def run(argv: list[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: sys.argv) and return its exit code."""
    import os

    # Local mode runs Python threads (moto's interpreter, pollers, the ASGI server) beside
    # torch; OpenMP's default spin-waiting starves them (10x slower inpainting measured on
    # 2 cores, docs/bench-workflow.md). Torch is imported lazily, so this applies to it.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from tryon.cli import deploy, models, serve, train, workflow  # noqa: F401  (registers commands)

    try:
        code = _run_app(argv)
    except typer.Abort:
        code = 130
    except typer.TyperException as exc:  # usage errors: shown as in click's standalone mode
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            fail(str(exc))
        code = getattr(exc, "exit_code", EXIT_BAD_INPUT)
    return code


def main() -> None:
    """Console-script entry point."""
    import sys

    sys.exit(run())
