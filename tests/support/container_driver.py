"""Answer requests through the Hugging Face inference toolkit's own handler service, as the image does.

Run by tests/serving/test_container_compat.py under ``.venv-serving/bin/python`` (the serving image's
library versions), never with the repository's ``src/`` on the path: the handlers come from the
archive's ``code/`` folder, which the toolkit puts on ``sys.path`` itself.

    python container_driver.py MODEL_DIR REQUESTS_JSON ANSWERS_JSON

REQUESTS_JSON holds a list of request bodies (strings); ANSWERS_JSON receives one
``{"status": int, "body": str}`` per request. ``status`` is what the model server would send:
200, or the ``PredictionException`` code the toolkit raised (it maps every handler error to 400).
"""

from __future__ import annotations

import json
import sys

from mms.context import Context, RequestProcessor
from mms.metrics.metrics_store import MetricsStore
from mms.service import PredictionException
from sagemaker_huggingface_inference_toolkit.handler_service import HuggingFaceHandlerService


def main() -> None:
    """Initialise the service on MODEL_DIR (model_fn), then handle each request in turn."""
    model_dir, requests_path, answers_path = sys.argv[1:]
    context = Context("model", model_dir, {}, 1, None, "1.1.11")
    service = HuggingFaceHandlerService()
    service.initialize(context)
    answers = []
    with open(requests_path, encoding="utf-8") as fh:
        bodies = json.load(fh)
    for i, body in enumerate(bodies):
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        context.request_processor = [RequestProcessor(headers)]
        context.metrics = MetricsStore({0: f"request-{i}"}, "model")
        try:
            [response] = service.handle([{"body": body.encode("utf-8")}], context)
        except PredictionException as exc:
            answers.append({"status": exc.error_code, "body": exc.message})
            continue
        answers.append({"status": 200, "body": response if isinstance(response, str) else response.decode()})
    with open(answers_path, "w", encoding="utf-8") as fh:
        json.dump(answers, fh)


if __name__ == "__main__":
    main()
