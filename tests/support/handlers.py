"""Calling a model handler the way the serving container does, for tests in any folder."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

JSON = "application/json"


def invoke(handler: ModuleType, model: Any, request: dict[str, Any] | str, content_type: str = JSON) -> dict:
    """``request`` through ``handler``'s ``input_fn``, ``predict_fn`` and ``output_fn`` (the toolkit's
    order), and the JSON answer parsed back."""
    body = request if isinstance(request, str) else json.dumps(request)
    prediction = handler.predict_fn(handler.input_fn(body, content_type), model)
    return json.loads(handler.output_fn(prediction, JSON))
