"""Sampler names -> diffusers schedulers, built from the pipeline's own config and cached.

Requests may name a sampler the way Stability AI's SDXL API and JumpStart models do
(``EulerEDMSampler`` ...) or by a diffusers scheduler class name that is compatible with
the loaded pipeline (``pipe.scheduler.compatibles``). Either way the scheduler is built
with ``from_config(pipe.scheduler.config)`` so the model's noise schedule and prediction
type carry over, and kept in a per-model cache (building is cheap but not free, and a
cached instance is reset by ``set_timesteps`` on every run).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tryon.core.errors import RequestError


@dataclass(frozen=True)
class SamplerSpec:
    """A named sampler: the diffusers scheduler class and config overrides."""

    scheduler: str
    overrides: tuple[tuple[str, Any], ...] = ()
    description: str = ""


#: Stability AI sampler names -> the closest diffusers scheduler.
STABILITY_SAMPLERS: dict[str, SamplerSpec] = {
    "EulerEDMSampler": SamplerSpec(
        "EulerDiscreteScheduler", (("use_karras_sigmas", True),), "Euler, Karras (EDM) sigmas"
    ),
    "HeunEDMSampler": SamplerSpec(
        "HeunDiscreteScheduler", (("use_karras_sigmas", True),), "Heun, Karras (EDM) sigmas"
    ),
    "EulerAncestralSampler": SamplerSpec("EulerAncestralDiscreteScheduler", (), "Euler ancestral (Euler a)"),
    "DPMPP2SAncestralSampler": SamplerSpec(
        "DPMSolverSinglestepScheduler", (("algorithm_type", "dpmsolver++"),), "DPM++ 2S (singlestep)"
    ),
    "DPMPP2MSampler": SamplerSpec(
        "DPMSolverMultistepScheduler", (("algorithm_type", "dpmsolver++"),), "DPM++ 2M"
    ),
    "LinearMultistepSampler": SamplerSpec("LMSDiscreteScheduler", (), "LMS (linear multistep)"),
}


@dataclass
class SchedulerCache:
    """Per-pipeline cache of schedulers by sampler name; the pipeline's own scheduler is the default.

    Not thread-safe on its own: use it under the model's lock, like the pipeline.
    """

    base: Any
    _cache: dict[str, Any] = field(default_factory=dict)

    @property
    def default_name(self) -> str:
        """Class name of the scheduler the checkpoint ships with."""
        return type(self.base).__name__

    def compatible(self) -> dict[str, type]:
        """Diffusers scheduler classes compatible with the base scheduler, by class name."""
        return {cls.__name__: cls for cls in self.base.compatibles}

    def valid_names(self) -> list[str]:
        """Every name a request may use: Stability names, then compatible diffusers class names."""
        compatible = self.compatible()
        stability = [n for n, spec in STABILITY_SAMPLERS.items() if spec.scheduler in compatible]
        return stability + sorted(compatible)

    def validate(self, name: str | None) -> type | None:
        """The scheduler class ``name`` stands for (None -> none); RequestError if unknown. Read-only."""
        if name is None:
            return None
        spec = STABILITY_SAMPLERS.get(name) or SamplerSpec(name)
        cls = self.compatible().get(spec.scheduler)
        if cls is None:
            raise RequestError(
                "sampler", f"unknown sampler {name!r}; valid names: {', '.join(self.valid_names())}"
            )
        return cls

    def get(self, name: str | None) -> Any:
        """The scheduler for ``name`` (None -> the checkpoint's own); RequestError naming ``sampler``."""
        if name is None or name == self.default_name:
            return self.base
        if name in self._cache:
            return self._cache[name]
        cls = self.validate(name)
        spec = STABILITY_SAMPLERS.get(name) or SamplerSpec(name)
        try:
            scheduler = cls.from_config(self.base.config, **dict(spec.overrides))
        except ImportError as exc:  # e.g. DPMSolverSDEScheduler without torchsde
            detail = " ".join(str(exc).split())
            raise RequestError("sampler", f"{name!r} is not available in this container: {detail}") from exc
        self._cache[name] = scheduler
        return scheduler
