"""Fail fast when a model must come from the Hugging Face Hub and the Hub cannot be reached.

Without network, ``from_pretrained("owner/name")`` retries for minutes before it gives up.
The commands that load models (``run``, ``demo``, ``serve``, ``train local``) check each
model source first: a local folder must hold weights; a hub id must be in the local cache
or the Hub must answer one short probe. When the Hub is unreachable but everything needed is
cached, offline mode is switched on so the loaders do not retry either.
"""

from __future__ import annotations

import os
from pathlib import Path

from tryon.core.errors import RequestError

#: Seconds the one probe of the Hub may take.
PROBE_TIMEOUT_S = 5.0
_MARKERS = ("config.json", "model_index.json")


def _endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def offline() -> bool:
    """Whether Hub access is switched off (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``)."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in {"1", "on", "yes", "true"}


def go_offline() -> None:
    """Switch the Hub libraries to offline mode for this process (cached files only, no retries)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    import huggingface_hub.constants

    huggingface_hub.constants.HF_HUB_OFFLINE = True  # read at import; loaded modules see this


def is_cached(repo_id: str) -> bool:
    """Whether the local Hugging Face cache holds a snapshot of ``repo_id`` (its config)."""
    from huggingface_hub import try_to_load_from_cache

    return any(isinstance(try_to_load_from_cache(repo_id, name), str) for name in _MARKERS)


def probe(repo_id: str) -> str | None:
    """None when the Hub answers for ``repo_id``; else why not (one request, a short timeout)."""
    import httpx

    url = f"{_endpoint()}/api/models/{repo_id}"
    headers = {"Authorization": f"Bearer {os.environ['HF_TOKEN']}"} if os.environ.get("HF_TOKEN") else {}
    try:
        response = httpx.get(url, timeout=PROBE_TIMEOUT_S, headers=headers, follow_redirects=True)
    except httpx.HTTPError as exc:
        return f"cannot reach the Hugging Face Hub at {_endpoint()} ({exc or 'timed out'})"
    if response.status_code in (401, 403, 404):
        code = response.status_code
        return f"the Hub has no model {repo_id!r} you can read (HTTP {code}; if it is private, set HF_TOKEN)"
    if response.status_code >= 400:
        return f"the Hugging Face Hub answered HTTP {response.status_code} for {repo_id}"
    return None


def check_hub_model(repo_id: str, field: str) -> None:
    """Refuse in seconds a hub id that cannot be loaded: not cached and the Hub unreachable."""
    cached = is_cached(repo_id)
    if offline():
        if cached:
            return
        raise RequestError(
            field,
            f"{repo_id} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
            f"{_download_hint(repo_id)}",
        )
    problem = probe(repo_id)
    if problem is None:
        return
    if cached:
        go_offline()  # the cached copy loads without the retries
        return
    raise RequestError(field, f"{problem}; {_download_hint(repo_id)}")


def _download_hint(repo_id: str) -> str:
    return (
        f"download it where there is network (`hf download {repo_id} --local-dir DIR`) "
        "and give the folder instead"
    )


def _check_refiner(path: Path, field: str) -> None:
    """A model folder's ``refiner/`` must be complete: refused here, before the model loads."""
    from tryon.handlers import refiner

    folder = refiner.find(path)
    if folder is not None:
        try:
            refiner.check_folder(folder)
        except refiner.RefinerLayoutError as exc:
            raise RequestError(field, str(exc)) from None


def check_model_source(source: str, field: str, *, pipeline: bool = False) -> str:
    """A local model folder (``model_index.json`` if ``pipeline``) or a loadable hub id; RequestError."""
    from tryon.handlers.common import resolve_model_source

    path = Path(source).expanduser()
    if path.is_file():
        raise RequestError(field, f"{source} is a file; give a model folder or a hub id")
    if path.is_dir():
        if resolve_model_source(path, "") != str(path):
            raise RequestError(
                field,
                f"{source} has no {' or '.join(_MARKERS)}: not a folder written by save_pretrained",
            )
        if pipeline and not (path / "model_index.json").is_file():
            raise RequestError(
                field,
                f"{source} is not a diffusers pipeline folder (no model_index.json; its config.json "
                "describes a single model): give a Stable Diffusion inpainting pipeline folder",
            )
        _check_refiner(path, field)
        return str(path)
    if resolve_model_source(source, "") != source:
        raise RequestError(
            field, f"{source} does not exist (neither a model folder nor a hub id like owner/name)"
        )
    check_hub_model(source, field)
    return source
