"""Fixtures of the serving tests: each endpoint kind's handler module and its tiny model, loaded
once for the folder, and one intra-op thread for every module (see tests/conftest.py)."""

from __future__ import annotations

from types import ModuleType

import pytest


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread_per_module(one_torch_thread):
    """Tiny models gain nothing from threads: every serving module runs on one."""


@pytest.fixture(scope="session")
def inpaint_handler() -> ModuleType:
    """:mod:`tryon.handlers.sd_inpaint`, imported when a test first needs it (torch, diffusers)."""
    from tryon.handlers import sd_inpaint

    return sd_inpaint


@pytest.fixture(scope="session")
def clipseg_model(tiny_models):
    """The tiny CLIPSeg checkpoint loaded by its handler's ``model_fn``."""
    from tryon.handlers import clipseg

    return clipseg.model_fn(str(tiny_models["clipseg"]))


@pytest.fixture(scope="session")
def inpaint_model(inpaint_handler, tiny_models):
    """The tiny SD inpainting checkpoint (no adapters, no IP-Adapter) loaded by ``model_fn``."""
    return inpaint_handler.model_fn(str(tiny_models["sd-inpaint"]))


@pytest.fixture(scope="session")
def upscale_model(tiny_models):
    """The tiny x4 upscaler checkpoint loaded by its handler's ``model_fn``."""
    from tryon.handlers import sd_upscale

    return sd_upscale.model_fn(str(tiny_models["sd-x4-upscaler"]))


@pytest.fixture(scope="session")
def sdxl_model(inpaint_handler, tiny_models, tmp_path_factory):
    """The tiny SDXL inpainting checkpoint (no refiner) loaded by ``model_fn``, with one named
    adapter it cannot take: ``sd2-lora``, a LoRA made for the SD UNet."""
    from tryon.local.samples import assemble_inpaint_model

    folder = assemble_inpaint_model(
        tiny_models["sdxl-inpaint"], {"sd2-lora": tiny_models["lora-a"]}, tmp_path_factory.mktemp("tiny-sdxl")
    )
    return inpaint_handler.model_fn(str(folder))
