"""The studio's web app: one page (``static/``) over a JSON API on a :class:`StackBackend`.

Starlette and uvicorn (the ``server`` extra the local endpoints already use). The browser
never sees AWS: it sends photos, painted masks and packshots to this process, which checks
them with the workflow's own limits (:func:`tryon.studio.backend.check_job`) before anything
is uploaded, and reads back only what lies under the stack's documented prefixes.
"""

from __future__ import annotations

import base64
import binascii
import re
import tempfile
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from tryon.aws.executions import StateEvent, format_event
from tryon.core import imaging
from tryon.core.errors import RequestError
from tryon.studio import form
from tryon.studio.backend import StackBackend

STATIC = Path(__file__).with_name("static")
#: The largest JSON body a request may send: a photo, a painted mask and three packshots at the
#: workflow's upload limit, base64-encoded.
MAX_BODY_BYTES = 5 * (imaging.DEFAULT_MAX_BYTES * 4 // 3 + 1024)
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class Run:
    """A try-on the page started: its state lines as they come, then its outcome."""

    id: str
    folder: Path
    status: str = "queued"  # queued | running | succeeded | failed
    lines: list[str] = field(default_factory=list)
    states: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    outcome: str | None = None
    files: list[str] = field(default_factory=list)
    manifest: dict[str, Any] | None = None
    execution: str | None = None

    def event(self, event: StateEvent) -> None:
        self.lines.append(format_event(event))
        self.states.append({"phase": event.phase, "state": event.state, "duration_s": event.duration_s,
                            "error": event.error})  # fmt: skip

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "lines": list(self.lines),
            "states": list(self.states),
            "error": self.error,
            "outcome": self.outcome,
            "files": list(self.files),
            "manifest": self.manifest,
            "execution": self.execution,
        }


class ClientError(Exception):
    """A request the page made wrongly (HTTP 400 with the message)."""


def error_response(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class Studio:
    """The app's state: the back end, the runs it started, a scratch folder, one worker."""

    def __init__(self, backend: StackBackend, scratch: Path) -> None:
        self.backend = backend
        self.scratch = scratch
        self.runs: dict[str, Run] = {}
        self.batches: dict[str, dict[str, Any]] = {}  # handle -> {"arn": ..., "lines": [...]}
        # One job at a time: the local stack shares the machine's cores; a deployed stack queues anyway.
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="studio-run")
        self.lock = threading.Lock()

    # ------------------------------------------------------------------ uploads
    def save_upload(self, value: Any, what: str, *, default_name: str = "upload.png") -> Path:
        """A ``{"data": "data:...;base64,...", "name": ...}`` (or a sample's name) as a file in the scratch
        folder; the size limit is the workflow's, checked before decoding."""
        if isinstance(value, dict) and value.get("sample"):
            sample = form.sample_path(str(value["sample"]))
            target = self.scratch / "uploads" / uuid.uuid4().hex[:12] / sample.name
            target.parent.mkdir(parents=True)
            target.write_bytes(sample.read_bytes())
            return target
        if not isinstance(value, dict) or not isinstance(value.get("data"), str):
            raise RequestError(what, "is required: upload an image (JPEG, PNG or WebP)")
        data_url: str = value["data"]
        payload = data_url.split(",", 1)[1] if data_url.startswith("data:") else data_url
        limit = imaging.DEFAULT_MAX_BYTES
        if len(payload) * 3 // 4 > limit:
            raise RequestError(what, f"is {len(payload) * 3 // 4} bytes; the limit is {limit} bytes (8 MiB)")
        try:
            raw = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(what, "is not base64 data") from None
        name = _SAFE_NAME.sub("-", str(value.get("name") or default_name)).strip("-.") or default_name
        target = self.scratch / "uploads" / uuid.uuid4().hex[:12] / name  # errors name the user's file
        target.parent.mkdir(parents=True)
        target.write_bytes(raw)
        return target

    # ------------------------------------------------------------------ runs
    def start_run(self, body: dict[str, Any]) -> Run:
        request = form.job_request(body, self.save_upload)
        from tryon.studio.backend import check_job

        check_job(request)  # every refusal now, before anything is uploaded
        run = Run(id=uuid.uuid4().hex[:12], folder=self.scratch / "runs")
        run.folder = self.scratch / "runs" / run.id
        self.runs[run.id] = run
        self.worker.submit(self._run, run, request)
        return run

    def _run(self, run: Run, request: Any) -> None:
        run.status = "running"
        try:
            outcome = self.backend.run(request, run.folder, on_event=run.event, on_status=run.lines.append)
        except RequestError as exc:
            run.status, run.error = "failed", str(exc)
            return
        except Exception as exc:
            run.status, run.error = "failed", f"{exc or type(exc).__name__}"
            return
        run.execution = outcome.result.execution_arn
        run.files = [path.name for path in outcome.files]
        manifest = run.folder / "manifest.json"
        if manifest.is_file():
            import json

            run.manifest = json.loads(manifest.read_text())
        run.outcome = (outcome.result.output or {}).get("status") if outcome.result.succeeded else None
        run.error = outcome.error
        run.status = "succeeded" if outcome.result.succeeded else "failed"
        run.lines.append(f"execution {outcome.result.status}: {run.outcome or outcome.error}")


def _handler(fn: Callable[..., Any]) -> Callable[[Request], Any]:
    """Every workflow refusal as its message (HTTP 400), every other error as its message (500): never
    a traceback."""

    async def endpoint(request: Request) -> Response:
        try:
            return await fn(request)
        except (RequestError, ClientError) as exc:
            return error_response(str(exc))
        except Exception as exc:
            from botocore.exceptions import BotoCoreError
            from botocore.exceptions import ClientError as AwsError

            if isinstance(exc, AwsError | BotoCoreError):
                return error_response(str(exc), 502)
            return error_response(f"{exc or type(exc).__name__}", 500)

    return endpoint


def create_app(backend: StackBackend, scratch: Path | None = None) -> Starlette:
    """The studio app over ``backend`` (its uploads and downloads in ``scratch``, a temporary folder
    by default)."""
    if scratch is None:
        scratch = Path(tempfile.mkdtemp(prefix="tryon-studio-"))
    studio = Studio(backend, scratch)

    async def json_body(request: Request) -> dict[str, Any]:
        length = int(request.headers.get("content-length") or 0)
        if length > MAX_BODY_BYTES:
            raise ClientError(f"request: {length} bytes; the limit is {MAX_BODY_BYTES} bytes")
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            raise ClientError(f"request: {len(body)} bytes; the limit is {MAX_BODY_BYTES} bytes")
        import json

        try:
            value = json.loads(body or b"{}")
        except ValueError:
            raise ClientError("request: not JSON") from None
        if not isinstance(value, dict):
            raise ClientError("request: must be a JSON object")
        return value

    async def index(_request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def config(_request: Request) -> Response:
        return JSONResponse(form.page_config(backend))

    async def sample(request: Request) -> Response:
        return FileResponse(form.sample_path(request.path_params["name"]))

    async def start_run(request: Request) -> Response:
        body = await json_body(request)
        run = await _in_thread(studio.start_run, body)
        return JSONResponse(run.view())

    async def get_run(request: Request) -> Response:
        run = studio.runs.get(request.path_params["run"])
        if run is None:
            return error_response("run: no such run", 404)
        return JSONResponse(run.view())

    async def run_file(request: Request) -> Response:
        run = studio.runs.get(request.path_params["run"])
        name = request.path_params["name"]
        if run is None or name not in run.files:
            return error_response("file: no such file", 404)
        return FileResponse(run.folder / name)

    async def compare(request: Request) -> Response:
        body = await json_body(request)
        job = form.job_request(body, studio.save_upload)
        variants = form.variants(body.get("variants"))
        arn = await _in_thread(backend.compare, job, variants)
        handle = uuid.uuid4().hex[:12]
        studio.batches[handle] = {"arn": arn, "variants": variants}
        return JSONResponse({"batch": handle, "execution": arn})

    async def batch_state(request: Request) -> Response:
        entry = studio.batches.get(request.path_params["handle"])
        if entry is None:
            return error_response("batch: no such batch", 404)
        state = await _in_thread(backend.batch_state, entry["arn"])
        return JSONResponse({**state, "execution": entry["arn"], "variants": entry.get("variants")})

    async def start_batch(request: Request) -> Response:
        body = await json_body(request)
        manifest = body.get("manifest") or {}
        name = _SAFE_NAME.sub("-", str(manifest.get("name") or "")).strip("-.")
        data_url = str(manifest.get("data") or "")
        payload = data_url.split(",", 1)[1] if data_url.startswith("data:") else data_url
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise ClientError("manifest: is not base64 data") from None
        if not name:
            raise ClientError("manifest: upload a .csv, .jsonl or .ndjson file")
        options = {"allow_invalid_rows": True} if body.get("allow_invalid_rows") else {}
        arn = await _in_thread(backend.start_batch, data, name, options)
        handle = uuid.uuid4().hex[:12]
        studio.batches[handle] = {"arn": arn}
        return JSONResponse({"batch": handle, "execution": arn})

    async def list_batches(_request: Request) -> Response:
        return JSONResponse({"batches": await _in_thread(backend.batches)})

    async def report(request: Request) -> Response:
        page = int(request.query_params.get("page", "1") or 1)
        size = min(max(int(request.query_params.get("size", "20") or 20), 1), 100)
        report = await _in_thread(backend.report, request.path_params["batch"])
        rows = report.get("rows", [])
        pages = max(1, -(-len(rows) // size))
        page = min(max(page, 1), pages)
        shown = rows[(page - 1) * size : page * size]
        return JSONResponse({**{k: v for k, v in report.items() if k != "rows"}, "rows": shown, "page": page,
                             "pages": pages, "total_rows": len(rows)})  # fmt: skip

    async def report_file(request: Request) -> Response:
        batch, name = request.path_params["batch"], request.path_params["name"]
        if not re.fullmatch(r"[A-Za-z0-9._-]+\.(csv|jpg|png|json)", name):
            raise ClientError(f"file: not a report file: {name!r}")
        uri = f"s3://{backend.stack.output_bucket}/{backend.report_prefix(batch)}{name}"
        data, content_type = await _in_thread(backend.read_object, uri)
        headers = (
            {"Content-Disposition": f'attachment; filename="{batch}-{name}"'} if name.endswith(".csv") else {}
        )
        return Response(data, media_type=content_type, headers=headers)

    async def jobs(_request: Request) -> Response:
        return JSONResponse({"jobs": await _in_thread(backend.jobs)})

    async def s3_object(request: Request) -> Response:
        data, content_type = await _in_thread(backend.read_object, request.query_params.get("uri", ""))
        return Response(data, media_type=content_type)

    routes = [
        Route("/", _handler(index)),
        Route("/api/config", _handler(config)),
        Route("/api/samples/{name}", _handler(sample)),
        Route("/api/runs", _handler(start_run), methods=["POST"]),
        Route("/api/runs/{run}", _handler(get_run)),
        Route("/api/runs/{run}/files/{name}", _handler(run_file)),
        Route("/api/compare", _handler(compare), methods=["POST"]),
        Route("/api/batches", _handler(list_batches)),
        Route("/api/batches", _handler(start_batch), methods=["POST"]),
        Route("/api/batch-runs/{handle}", _handler(batch_state)),
        Route("/api/reports/{batch}", _handler(report)),
        Route("/api/reports/{batch}/files/{name}", _handler(report_file)),
        Route("/api/jobs", _handler(jobs)),
        Route("/api/object", _handler(s3_object)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes)
    app.state.studio = studio
    return app


async def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Blocking boto3 and file work off the event loop."""
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args)
