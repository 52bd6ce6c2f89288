"""The ``tryon`` command line (typer). Each command group lives in its own module."""

from __future__ import annotations

import logging
import warnings

import typer

app = typer.Typer(
    name="tryon",
    help="Event-driven virtual try-on: run the workflow locally, serve models, fine-tune, deploy.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    verbose: bool = typer.Option(
        False,
        "--verbose",
        help="Show logs, library warnings and progress bars on stderr (anywhere on the line; "
        "TRYON_DEBUG=1 also prints tracebacks).",
    ),
) -> None:
    """Event-driven virtual try-on: run the workflow locally, serve models, fine-tune, deploy."""


#: Exit codes scripts can rely on (also documented in the README).
EXIT_OK = 0
EXIT_WORKFLOW_FAILED = 1  # the command ran, but the execution/job it followed failed
EXIT_BAD_INPUT = 2  # bad option, missing file, invalid parameter value (click uses 2 for usage errors)
EXIT_AWS = 3  # no credentials, unknown stack, an AWS API error
EXIT_INTERRUPTED = 130  # Ctrl-C


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print ``message`` to stderr and return the Exit to raise: ``raise fail("...")``."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    _last_error[0] = message
    return typer.Exit(code)


_last_error = [""]


def _os_error(exc: OSError) -> str:
    """``No such file or directory: 'x'`` rather than ``[Errno 2] ...`` or an exception name."""
    reason = exc.strerror or str(exc)
    return f"{reason}: {exc.filename}" if exc.filename else reason


def _run_app(argv: list[str] | None) -> int:
    """Run the app under the one error policy: a known error is one ``error:`` line and its exit code.

    Every command runs inside this guard, so no command (present or future) can end in a
    traceback: an unexpected exception is reported by its message with exit code 1, and
    ``TRYON_DEBUG=1`` prints the traceback for a bug report.
    """
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        NoCredentialsError,
        NoRegionError,
        ProfileNotFound,
    )

    from tryon.core.errors import RequestError

    try:
        # Without standalone mode click returns Exit codes instead of calling sys.exit.
        result = app(args=argv, standalone_mode=False, prog_name="tryon")
    except (typer.Exit, typer.Abort, typer.TyperException):
        raise  # click's own outcomes: run() shows them as click would
    except RequestError as exc:
        fail(str(exc), EXIT_BAD_INPUT)
        return EXIT_BAD_INPUT
    except NoRegionError:
        from tryon.cli.sessions import NO_REGION

        fail(NO_REGION, EXIT_AWS)
        return EXIT_AWS
    except NoCredentialsError as exc:
        fail(f"{exc} (configure credentials with `aws configure`, AWS_PROFILE or --profile)", EXIT_AWS)
        return EXIT_AWS
    except (ProfileNotFound, ClientError, BotoCoreError) as exc:
        fail(str(exc), EXIT_AWS)
        return EXIT_AWS
    except OSError as exc:  # a missing file, a folder where a file belongs, no permission, ...
        fail(_os_error(exc), EXIT_BAD_INPUT)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        fail("interrupted", EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    except Exception as exc:  # the last line of defence: a bug, reported without a traceback
        from tryon.cli.output import debug_enabled

        if debug_enabled():
            import traceback

            traceback.print_exc()
        fail(f"{exc or type(exc).__name__} (TRYON_DEBUG=1 prints the traceback)", EXIT_WORKFLOW_FAILED)
        return EXIT_WORKFLOW_FAILED
    return result if isinstance(result, int) else EXIT_OK


class _DropNotices(logging.Filter):
    """Drops log records whose message contains one of ``needles``."""

    def __init__(self, *needles: str) -> None:
        super().__init__()
        self.needles = needles

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(needle in message for needle in self.needles)


_TORCHVISION_NOTICES = _DropNotices("requires torchvision (not installed); falling back")


def quiet_library_notices() -> None:
    """Silence the libraries' harmless notices in every command, without importing the libraries.

    transformers logs one "requires torchvision (not installed); falling back to ...Pil" notice
    per image processor class it scans (torchvision is not installed on purpose; the PIL
    processors work). diffusers warns that ``torch_dtype`` is deprecated, but the serving
    image's diffusers (0.33) only understands ``torch_dtype``, so the handlers keep it.
    Other warnings from both libraries still show.
    """
    logging.getLogger("transformers.utils.import_utils").addFilter(_TORCHVISION_NOTICES)  # once per logger
    warnings.filterwarnings("ignore", message="`torch_dtype` is deprecated", category=FutureWarning)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: sys.argv) and return its exit code.

    ``--verbose`` is taken from anywhere on the line (it is the root option's); ``--json``
    commands print exactly one JSON object on stdout, a failure's too.
    """
    import os
    import sys

    from tryon.cli import output

    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv
    if verbose:
        argv = [arg for arg in argv if arg != "--verbose"]
    output.configure(verbose_output=verbose, json_output="--json" in argv)
    _last_error[0] = ""

    # Local mode runs Python threads (moto's interpreter, pollers, the ASGI server) beside
    # torch; OpenMP's default spin-waiting starves them (10x slower inpainting measured on
    # 2 cores, docs/bench-workflow.md). Torch is imported lazily, so this applies to it.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    quiet_library_notices()
    from tryon.cli import batch, deploy, evaluate, finetune, jobs, models, serve, studio_command  # noqa: F401  (registers commands)

    try:
        code = _run_app(argv)
    except typer.Abort:
        code = EXIT_INTERRUPTED
    except typer.TyperException as exc:  # usage errors: shown as in click's standalone mode
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            fail(str(exc))
        code = getattr(exc, "exit_code", EXIT_BAD_INPUT)
        _last_error[0] = _last_error[0] or str(getattr(exc, "message", "") or exc)
    if code:
        output.emit_json_error(_last_error[0] or f"exit code {code}", code)
    return code


def main() -> None:
    """Console-script entry point."""
    import sys

    sys.exit(run())
