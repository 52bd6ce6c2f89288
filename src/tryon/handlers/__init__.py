"""SageMaker inference handlers (heavy: torch, transformers, diffusers).

Each module exposes the Hugging Face inference toolkit contract: ``model_fn``,
``input_fn``, ``predict_fn``, ``output_fn``. ``models/<name>/code/inference.py`` re-exports
them; the local endpoint server drives them directly. The kinds themselves are registered
in :mod:`tryon.core.kinds`.
"""

from tryon.core.kinds import HANDLER_MODULES

__all__ = ["HANDLER_MODULES"]
