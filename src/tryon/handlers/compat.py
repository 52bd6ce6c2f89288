"""Library-version shims: the one place where the handlers adapt to the libraries they run on.

The handlers run on two stacks: the project's own (transformers 5, diffusers 0.42, peft
0.21) and the serving image's (transformers 4.51.3, diffusers 0.33.1, peft 0.14, see
``serving/image-requirements.txt``). Where the two disagree, a helper here picks the
spelling the installed version understands, so no handler tests versions itself.
"""

from __future__ import annotations

from functools import cache
from importlib import metadata
from typing import Any, Literal

Library = Literal["transformers", "diffusers"]

#: First release whose ``from_pretrained`` takes ``dtype=`` (older ones only know ``torch_dtype=``,
#: newer ones warn that ``torch_dtype`` is deprecated).
DTYPE_KEYWORD_SINCE: dict[str, tuple[int, int]] = {"transformers": (4, 56), "diffusers": (0, 40)}


@cache
def _version(library: str) -> tuple[int, int]:
    """(major, minor) of an installed distribution."""
    major, minor, *_ = [*metadata.version(library).split("."), "0"]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


def dtype_kwargs(library: Library, dtype: Any) -> dict[str, Any]:
    """``{"dtype": dtype}`` or ``{"torch_dtype": dtype}``: what ``library``'s ``from_pretrained`` expects."""
    keyword = "dtype" if _version(library) >= DTYPE_KEYWORD_SINCE[library] else "torch_dtype"
    return {keyword: dtype}
