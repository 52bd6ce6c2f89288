"""SageMaker inference handlers (heavy: torch, transformers, diffusers).

Each module exposes the Hugging Face inference toolkit contract: ``model_fn``,
``input_fn``, ``predict_fn``, ``output_fn``. ``models/<name>/code/inference.py`` re-exports
them; the local endpoint server drives them directly. Each kind's handler module is its
row in :data:`tryon.core.schema.ENDPOINT_KINDS`.
"""

from tryon.core.schema import HANDLER_MODULES

__all__ = ["HANDLER_MODULES"]
