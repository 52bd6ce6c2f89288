"""The local stand-in for Amazon Rekognition ``DetectModerationLabels`` (moto does not implement it).

:class:`ModerationStandIn` serves the operation over HTTP on Rekognition's own protocol (AWS
JSON 1.1, ``X-Amz-Target: RekognitionService.DetectModerationLabels``), so the Moderate
function's unmodified boto3 client reaches it through ``TRYON_REKOGNITION_URL`` and the local
stack runs exactly the code path AWS runs: the same requests, refusals and quarantine.

It is as strict as Rekognition about what it accepts (image bytes of at most 5 MB, JPEG or
PNG, 80 to 10,000 pixels per side, ``MinConfidence`` within 0..100) and answers the same
errors. What it decides, in order:

1. **Rules tests set**: an image whose pixels are those of a given image, as the workflow sends
   it (:meth:`ModerationStandIn.flag`), or any image a predicate accepts
   (:meth:`ModerationStandIn.flag_when`), gets the given labels (with their parents, as
   Rekognition returns them).
2. **A tiny classifier** (:func:`skin_fraction`): the share of pixels that both classic skin-colour
   rules accept (RGB, Peer et al. 2003; YCbCr, Chai and Ngan 1999), computed on a 256 px
   thumbnail. At a share ``f`` of 0.3 or more it answers "Non-Explicit Nudity" (under
   "Non-Explicit Nudity of Intimate parts and Kissing"), at 0.6 or more "Explicit Nudity"
   (under "Explicit") too, each with confidence ``100 * f``. With the default minimum
   confidence of 50, a photo that is half skin-coloured is refused; grey or noise is not.

A crude rule on purpose: it exercises the path, it does not moderate real photos (a face
close-up is mostly skin-coloured; docs/responsible-use.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tryon.core.content_policy import Label, ancestors

TARGET = "RekognitionService.DetectModerationLabels"
#: What the stand-in reports as ``ModerationModelVersion`` (Rekognition answers e.g. ``7.0``).
MODEL_VERSION = "local-stand-in-1"
MAX_BYTES = 5 * 1024 * 1024
MIN_SIDE, MAX_SIDE = 80, 10_000
#: The classifier's thresholds on the skin-coloured share of the pixels.
NON_EXPLICIT_AT = 0.3
EXPLICIT_AT = 0.6
THUMBNAIL = 256


def skin_fraction(img: Any) -> float:
    """The share of pixels both skin-colour rules accept (a PIL image, any mode)."""
    import numpy as np

    small = img.convert("RGB")
    small.thumbnail((THUMBNAIL, THUMBNAIL))
    rgb = np.asarray(small).astype(np.int16)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    spread = rgb.max(axis=-1) - rgb.min(axis=-1)
    peer = (r > 95) & (g > 40) & (b > 20) & (spread > 15) & (np.abs(r - g) > 15) & (r > g) & (r > b)
    ycc = np.asarray(small.convert("YCbCr")).astype(np.int16)
    cb, cr = ycc[..., 1], ycc[..., 2]
    chai = (cb >= 77) & (cb <= 127) & (cr >= 133) & (cr <= 173)
    return float((peer & chai).mean())


def classify(img: Any) -> list[Label]:
    """The classifier's labels for an image (before the minimum confidence applies)."""
    share = skin_fraction(img)
    confidence = round(min(99.9, 100.0 * share), 1)
    labels: list[Label] = []
    if share >= EXPLICIT_AT:
        labels += [Label("Explicit", "", confidence, 1), Label("Explicit Nudity", "Explicit", confidence, 2)]
    if share >= NON_EXPLICIT_AT:
        parent = "Non-Explicit Nudity of Intimate parts and Kissing"
        labels += [Label(parent, "", confidence, 1), Label("Non-Explicit Nudity", parent, confidence, 2)]
    return labels


def with_parents(named: Mapping[str, float] | Sequence[Label]) -> list[Label]:
    """Labels given by name (``{"Explicit Nudity": 97.5}``) or as :class:`Label`, plus their parents."""
    given = (
        [Label(name, (ancestors(name) or [""])[0], float(conf)) for name, conf in named.items()]
        if isinstance(named, Mapping)
        else list(named)
    )
    out: dict[str, Label] = {}
    for label in given:
        chain = [label.name, *ancestors(label.name, label.parent)]
        for depth, name in enumerate(chain):
            if name not in out:
                parent = chain[depth + 1] if depth + 1 < len(chain) else ""
                out[name] = Label(name, parent, label.confidence, len(chain) - depth)
    return list(out.values())


def pixel_digest(img: Any) -> str:
    """A digest of an image's pixels (RGB) and size: the same picture however it was encoded."""
    rgb = img.convert("RGB")
    return hashlib.sha256(f"{rgb.width}x{rgb.height}".encode() + rgb.tobytes()).hexdigest()


@dataclass(frozen=True)
class StandInCall:
    """One ``DetectModerationLabels`` call the stand-in answered."""

    digest: str
    width: int
    height: int
    format: str
    min_confidence: float
    labels: tuple[Label, ...]
    rule: bool  # answered by a rule a test set (not the classifier)
    elapsed_ms: float = 0.0  # the stand-in's own time: decoding and classifying (Rekognition's, on AWS)


class StandInError(Exception):
    """An error answered the way Rekognition answers it (``__type`` and message, HTTP 400)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _decode(image: Any) -> tuple[Any, str]:
    """The image of a request's ``Image`` member, checked as Rekognition checks it."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(image, Mapping) or ("Bytes" in image) == ("S3Object" in image):
        raise StandInError("InvalidParameterException", "Request has invalid parameters")
    if "S3Object" in image:  # the workflow always sends bytes; the stand-in reads no bucket
        raise StandInError("InvalidS3ObjectException", "Unable to get object metadata from S3 (stand-in)")
    try:
        data = base64.b64decode(image["Bytes"], validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise StandInError("InvalidParameterException", "Request has invalid parameters") from None
    if len(data) > MAX_BYTES:
        raise StandInError("ImageTooLargeException", "Image size is too large.")
    try:
        opened = Image.open(io.BytesIO(data))
        opened.load()
    except (UnidentifiedImageError, OSError, SyntaxError):
        raise StandInError("InvalidImageFormatException", "Request has invalid image format") from None
    if opened.format not in ("JPEG", "PNG"):
        raise StandInError("InvalidImageFormatException", "Request has invalid image format")
    if min(opened.size) < MIN_SIDE or max(opened.size) > MAX_SIDE:
        raise StandInError("InvalidParameterException", "Request has invalid parameters")
    return opened, opened.format


class ModerationStandIn:
    """Rekognition's ``DetectModerationLabels`` on ``127.0.0.1``, in a daemon thread.

    ``with ModerationStandIn() as standin:`` (or :meth:`start` / :meth:`stop`); :attr:`url` is the
    ``endpoint_url`` of a boto3 ``rekognition`` client. :meth:`flag` sets labels for an image,
    :attr:`calls` records what was asked.
    """

    def __init__(self) -> None:
        self.calls: list[StandInCall] = []
        self._rules: dict[str, list[Label]] = {}
        self._predicates: list[tuple[Callable[[Any], bool], list[Label]]] = []
        self._lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ rules
    def flag(self, image: bytes | Any, labels: Mapping[str, float] | Sequence[Label]) -> str:
        """Answer ``labels`` (and their parents) for ``image`` as the workflow sends it; its digest.

        ``image``: encoded bytes (PNG, JPEG, WebP, any size) or a PIL image. The workflow converts
        what Rekognition cannot take (:func:`tryon.workflow.moderate.rekognition_image`); the rule
        matches the picture after that conversion, so any image the workflow checks can be flagged.
        """
        from PIL import Image

        from tryon.core import imaging
        from tryon.workflow.moderate import rekognition_image

        data = image if isinstance(image, bytes) else imaging.encode_png(image)
        sent, _ = rekognition_image(data, field="image", max_bytes=len(data))
        with Image.open(io.BytesIO(sent)) as opened:
            digest = pixel_digest(opened)
        with self._lock:
            self._rules[digest] = with_parents(labels)
        return digest

    def flag_when(
        self, predicate: Callable[[Any], bool], labels: Mapping[str, float] | Sequence[Label]
    ) -> None:
        """Answer ``labels`` for every image ``predicate`` accepts (a PIL image, as the workflow sent it).

        E.g. ``flag_when(lambda img: pixel_digest(img) != photo_digest, {"Explicit Nudity": 98})``
        refuses every result of a job whose photo passes.
        """
        with self._lock:
            self._predicates.append((predicate, with_parents(labels)))

    def clear(self) -> None:
        """Forget the rules and the calls."""
        with self._lock:
            self._rules.clear()
            self._predicates.clear()
            self.calls.clear()

    def _rule(self, img: Any, digest: str) -> list[Label] | None:
        with self._lock:
            rule = self._rules.get(digest)
            predicates = list(self._predicates)
        if rule is not None:
            return rule
        return next((labels for predicate, labels in predicates if predicate(img)), None)

    def answer(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """A ``DetectModerationLabels`` answer for a request body (StandInError as Rekognition refuses)."""
        if not isinstance(body, Mapping):
            raise StandInError("InvalidParameterException", "Request has invalid parameters")
        start = time.perf_counter()
        minimum = body.get("MinConfidence", 50.0)
        if not isinstance(minimum, int | float) or isinstance(minimum, bool) or not 0 <= minimum <= 100:
            raise StandInError("InvalidParameterException", "Request has invalid parameters")
        img, fmt = _decode(body.get("Image"))
        digest = pixel_digest(img)
        rule = self._rule(img, digest)
        labels = rule if rule is not None else classify(img)
        shown = tuple(label for label in labels if label.confidence >= minimum)
        with self._lock:
            elapsed = round((time.perf_counter() - start) * 1000.0, 2)
            self.calls.append(
                StandInCall(
                    digest, img.width, img.height, fmt, float(minimum), shown, rule is not None, elapsed
                )
            )
        return {
            "ModerationLabels": [label.to_rekognition() for label in shown],
            "ModerationModelVersion": MODEL_VERSION,
            "ContentTypes": [],
        }

    # ------------------------------------------------------------------ HTTP
    def app(self) -> Any:
        """The Starlette app: ``POST /`` with the operation in ``X-Amz-Target``."""
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import Response
        from starlette.routing import Route

        content_type = "application/x-amz-json-1.1"

        def error(code: str, message: str) -> Response:
            body = json.dumps({"__type": code, "Message": message})
            return Response(body, 400, {"x-amzn-ErrorType": code}, media_type=content_type)

        async def invoke(request: Request) -> Response:
            from starlette.concurrency import run_in_threadpool

            if request.headers.get("x-amz-target") != TARGET:
                return error("UnknownOperationException", f"the stand-in serves only {TARGET}")
            try:
                body = json.loads(await request.body())
                answer = await run_in_threadpool(self.answer, body)
            except ValueError:
                return error("SerializationException", "the body is not JSON")
            except StandInError as exc:
                return error(exc.code, str(exc))
            return Response(json.dumps(answer), 200, media_type=content_type)

        return Starlette(routes=[Route("/", invoke, methods=["POST"])])

    def start(self) -> ModerationStandIn:
        """Serve on a free port of 127.0.0.1 and return once it answers."""
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app(), log_config=None, access_log=False, lifespan="off")
        self._server = server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="tryon-moderation-standin", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the moderation stand-in did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Shut the server down and wait for its thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._server = None
        self._thread = None

    def __enter__(self) -> ModerationStandIn:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
