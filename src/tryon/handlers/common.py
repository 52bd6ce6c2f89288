"""What the three model handlers share: JSON in/out, image fields, device, seeds, timings.

Handlers follow the Hugging Face SageMaker inference toolkit contract
(``model_fn``, ``input_fn``, ``predict_fn``, ``output_fn``); the local endpoint server
drives the same four functions. Client errors are raised as
:class:`tryon.core.errors.RequestError` and become HTTP 400.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image

from tryon.core import imaging
from tryon.core.contract import MAX_SEED, WAITING_PHASES
from tryon.core.errors import RequestError
from tryon.core.s3uri import is_s3_uri
from tryon.handlers.png_writer import PendingPNG, start_png


class ModelFolderError(RuntimeError):
    """A model folder that cannot serve (a deployment mistake, reported when the model loads).

    Its message names the folder and what it lacks or what is wrong, in one line; servers print
    it as it is, without the exception's name.
    """


JSON_CONTENT_TYPE = "application/json"
#: Largest request body a handler accepts (SageMaker real-time caps payloads at 6 MB;
#: the local server and asynchronous endpoints may carry more).
MAX_BODY_BYTES = int(os.environ.get("TRYON_MAX_BODY_BYTES", 64 * 1024 * 1024))
#: Deepest nesting of objects and lists a request may have (the deepest real field is 3).
MAX_JSON_DEPTH = 32
_JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}
_JSON_TYPES[type(None)] = "null"
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def parse_json_request(data: Any, content_type: str | None) -> dict[str, Any]:
    """Decode a JSON request body into a dict; RequestError on anything else."""
    media_type = (content_type or JSON_CONTENT_TYPE).split(";")[0].strip().lower()
    if media_type not in {JSON_CONTENT_TYPE, "application/x-json", "text/json"}:
        raise RequestError("content_type", f"must be {JSON_CONTENT_TYPE}, got {content_type!r}")
    if isinstance(data, Mapping):
        check_json_tree(data)
        return dict(data)
    if isinstance(data, bytearray | memoryview):
        data = bytes(data)
    if isinstance(data, bytes | str) and len(data) > MAX_BODY_BYTES:
        raise RequestError("body", f"is {len(data)} bytes; the limit is {MAX_BODY_BYTES} bytes")
    try:
        payload = json.loads(data)
    except RecursionError as exc:  # the C scanner recurses once per nesting level
        raise RequestError("body", f"nests deeper than {MAX_JSON_DEPTH} levels") from exc
    except (TypeError, ValueError) as exc:
        raise RequestError("body", f"is not valid JSON ({exc})") from exc
    if not isinstance(payload, dict):
        raise RequestError("body", f"must be a JSON object, got {_JSON_TYPES.get(type(payload), 'a value')}")
    check_json_tree(payload)
    return payload


def check_json_tree(payload: Any) -> None:
    """RequestError unless ``payload`` nests at most MAX_JSON_DEPTH levels and all its text is valid Unicode.

    JSON's ``\\ud800`` escape decodes to a lone surrogate, which no UTF-8 consumer (tokenizers,
    S3 keys, logs) accepts; it is refused here, naming the field path (``queries[1]``).
    """
    stack: list[tuple[Any, str, int]] = [(payload, "body", 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            _check_text(value, path)
        elif isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                field = re.split(r"[.\[]", path, maxsplit=1)[0]  # the top-level field it is under
                raise RequestError(field, f"nests deeper than {MAX_JSON_DEPTH} levels")
            if isinstance(value, dict):
                for key, item in value.items():
                    _check_text(key, path, "has a key that is")
                    stack.append((item, key if path == "body" else f"{path}.{key}", depth + 1))
            else:
                stack.extend((item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value))


def _check_text(text: str, path: str, subject: str = "is") -> None:
    if text.isascii():  # the common case, and a fast one for megabytes of base64
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        where = f"lone surrogate {text[exc.start]!a} at index {exc.start}"
        raise RequestError(path, f"{subject} not valid Unicode text ({where})") from None


def json_response(prediction: Mapping[str, Any], accept: str | None) -> str:
    """Serialise a prediction as JSON; RequestError if the client accepts something else."""
    media = (accept or JSON_CONTENT_TYPE).split(";")[0].strip().lower()
    if media not in {JSON_CONTENT_TYPE, "*/*", "application/*"}:
        raise RequestError("accept", f"only {JSON_CONTENT_TYPE} responses are produced, got {accept!r}")
    return json.dumps(prediction)


def read_image_bytes(value: Any, *, field: str) -> bytes:
    """Bytes of an image field: base64 text (``data:`` URLs too) or ``s3://bucket/key[?versionId=V]``.

    An ``s3://`` image may weigh up to :data:`tryon.core.imaging.MAX_STORED_IMAGE_BYTES` (the
    workflow's own PNGs: an outfit's earlier pass, an image to upscale); base64 text is bounded
    by the request (SageMaker's 6 MB) and :data:`tryon.core.imaging.DEFAULT_MAX_BYTES`.
    """
    if is_s3_uri(value):
        from tryon.handlers import s3io

        return s3io.read_object(value, field=field, max_bytes=imaging.MAX_STORED_IMAGE_BYTES)
    return imaging.b64decode(value, field=field)


def load_image(
    payload: Mapping[str, Any],
    field: str,
    *,
    max_pixels: int = imaging.DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """Decode the image in ``payload[field]`` safely (limits, bombs, EXIF orientation)."""
    if field not in payload or payload[field] in (None, ""):
        raise RequestError(field, "is required (base64 PNG/JPEG/WebP or s3://bucket/key)")
    data = read_image_bytes(payload[field], field=field)
    max_bytes = imaging.MAX_STORED_IMAGE_BYTES if is_s3_uri(payload[field]) else imaging.DEFAULT_MAX_BYTES
    return imaging.decode_image(data, field=field, max_pixels=max_pixels, max_bytes=max_bytes)


def encode_image(img: Image.Image | PendingPNG) -> str:
    """Base64 PNG of an image (or of a PNG being compressed), as responses carry them."""
    png = img if isinstance(img, PendingPNG) else start_png(img)
    return imaging.b64encode(png.result())


def max_response_bytes() -> int:
    """The response limit of the mode this endpoint is deployed in (``TRYON_ENDPOINT_MODE``, realtime)."""
    from tryon.core.kinds import MODE_LIMITS, check_mode

    try:
        limits = MODE_LIMITS[check_mode(os.environ.get("TRYON_ENDPOINT_MODE") or "realtime")]
    except ValueError as exc:
        raise RuntimeError(f"TRYON_ENDPOINT_MODE: {exc}") from exc
    return limits.max_response_bytes or 0


def encode_inline(images: Sequence[Image.Image | PendingPNG]) -> list[str]:
    """Base64 PNGs for an answer without ``output``; RequestError if they cannot fit the response limit."""
    pngs = [img if isinstance(img, PendingPNG) else start_png(img) for img in images]  # all compress at once
    encoded = [encode_image(png) for png in pngs]
    total = sum(len(text) for text in encoded)
    limit = max_response_bytes()
    if limit and total > limit:
        raise RequestError(
            "output",
            f"the image(s) would make a {total}-byte response; SageMaker's limit is {limit} bytes: "
            "give output (an s3://bucket/prefix/ to write them to) and the answer carries their URIs",
        )
    return encoded


def resolve_model_source(model_dir: str | os.PathLike[str] | None, default_id: str) -> str:
    """Where to load weights from: the model folder if it has weights, else ``HF_MODEL_ID``, else default.

    SageMaker passes ``/opt/ml/model``; an archive packaged without weights (or an empty
    folder) falls back to a hub id, which needs network access. Locally ``model_dir`` may
    itself be a hub id (``CIDAS/clipseg-rd64-refined``) when it names no existing folder.
    """
    if model_dir:
        path = Path(model_dir)
        if (path / "model_index.json").exists() or (path / "config.json").exists():
            return str(path)
        if not path.exists() and _HUB_ID.fullmatch(str(model_dir)):
            return str(model_dir)
    return os.environ.get("HF_MODEL_ID") or default_id


def progress_bars_enabled() -> bool:
    """Whether pipelines show their tqdm progress bars (``TRYON_PROGRESS_BARS=1``; off when serving)."""
    return os.environ.get("TRYON_PROGRESS_BARS", "").lower() in {"1", "true", "yes"}


def loading_progress_bars(*libraries: str) -> None:
    """Show ``libraries``' model-loading bars (``transformers``, ``diffusers``) only when asked for.

    Both libraries draw them by default (``Loading weights``, ``Loading pipeline components``);
    in a served container or a quiet command they are noise. Call at the start of ``model_fn``.
    """
    import importlib

    for name in libraries:
        library = importlib.import_module(f"{name}.utils.logging")
        if progress_bars_enabled():
            library.enable_progress_bar()
        else:
            library.disable_progress_bar()


def torch_device_and_dtype():
    """(device, dtype): CUDA with float16 when available, else CPU with float32.

    ``TRYON_DEVICE`` (``cpu``/``cuda``) overrides the choice.
    """
    import torch

    wanted = os.environ.get("TRYON_DEVICE", "").lower()
    if wanted == "cpu" or (not wanted and not torch.cuda.is_available()):
        return torch.device("cpu"), torch.float32
    return torch.device("cuda"), torch.float16


def resolve_seed(payload: Mapping[str, Any], field: str = "seed") -> int:
    """The request's seed (an integer in [0, 2**32-1]) or a freshly drawn one."""
    from tryon.core.validation import get_int

    seed = get_int(payload, field, None, minimum=0, maximum=MAX_SEED)
    return secrets.randbelow(MAX_SEED + 1) if seed is None else seed


class PhaseTimer:
    """Collects wall-clock milliseconds per named phase: ``with timer.phase("decode"): ...``."""

    def __init__(self) -> None:
        self.timings_ms: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = (time.perf_counter() - start) * 1000.0
            self.timings_ms[name] = round(self.timings_ms.get(name, 0.0) + elapsed, 3)

    @contextmanager
    def holding(self, lock: Any) -> Iterator[None]:
        """Hold ``lock`` for the block; the wait for it is timed as the ``queue`` phase (not work)."""
        with self.phase("queue"):
            lock.acquire()
        try:
            yield
        finally:
            lock.release()

    def compute_seconds(self) -> float:
        """Seconds of work so far: every phase but the waiting ones (``contract.COMPUTE_SECONDS``)."""
        work = sum(ms for name, ms in self.timings_ms.items() if name not in WAITING_PHASES)
        return round(work / 1000.0, 3)
