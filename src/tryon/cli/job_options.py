"""The job-parameter options of ``tryon run`` and ``tryon submit``: one per schema row, written once.

Each row of :data:`tryon.core.schema.PARAMS` with a CLI option becomes an option of every command
decorated with :func:`job_options` (``--steps``, ``--refiner/--no-refiner``, ...), its help text
and limits taken from the row. The command receives the options given as one ``overrides``
dict (job parameter -> value); options left out are not in it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any

import typer

from tryon.core import schema

#: Where the job options appear in ``--help``.
PANEL = "Job parameters (docs/workflow.md#parameters)"
_TYPES: dict[str, Any] = {"str": str, "int": int, "float": float, "bool": bool, "str_list": str}


def cli_rows() -> list[schema.Param]:
    """The job parameters that have a ``tryon run``/``submit`` option."""
    return [row for row in schema.PARAMS if row.cli_option]


def _parameter(row: schema.Param) -> inspect.Parameter:
    help_text = row.help_text()
    option = typer.Option(row.cli_option, help=help_text, rich_help_panel=PANEL, show_default=False)
    annotation = Annotated[_TYPES[row.type or "str"] | None, option]
    return inspect.Parameter(row.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)


def job_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give ``command`` an option per job parameter in place of its ``overrides`` parameter.

    ``command`` declares ``overrides: dict[str, Any]``; typer sees the options instead, and the
    command is called with the ones given (``{"steps": 4, "use_refiner": False}``).
    """
    signature = inspect.signature(command, eval_str=True)
    if "overrides" not in signature.parameters:
        raise TypeError(f"{command.__name__} needs an overrides parameter for the job options")
    rows = cli_rows()
    clash = {row.name for row in rows} & set(signature.parameters)
    if clash:
        raise TypeError(f"{command.__name__}: parameters {sorted(clash)} clash with job options")
    parameters: list[inspect.Parameter] = []
    for parameter in signature.parameters.values():
        if parameter.name == "overrides":
            parameters += [_parameter(row) for row in rows]
        else:
            parameters.append(parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY))

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        given = {row.name: kwargs.pop(row.name) for row in rows}
        return command(
            overrides={name: value for name, value in given.items() if value is not None}, **kwargs
        )

    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    return wrapper
