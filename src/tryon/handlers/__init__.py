"""SageMaker inference handlers (heavy: torch, transformers, diffusers).

Each module exposes the Hugging Face inference toolkit contract: ``model_fn``,
``input_fn``, ``predict_fn``, ``output_fn``. ``models/<name>/code/inference.py`` re-exports
them; the local endpoint server drives them directly.
"""

#: endpoint kind -> handler module
HANDLER_MODULES = {
    "clipseg": "tryon.handlers.clipseg",
    "sd_inpaint": "tryon.handlers.sd_inpaint",
    "sd_upscale": "tryon.handlers.sd_upscale",
}
