"""Where the metric networks' weights come from: a local folder, or the hub when the user allows it.

Nothing is downloaded at import or by surprise. With ``--metric-models DIR`` every network is
read from ``DIR`` and nothing else; without it, weights already in the local caches (the
Hugging Face cache, torch hub's checkpoints folder) are used, and missing ones are fetched
only with ``--download``. A missing network is refused in one line naming the folder, the
id and the flag. ``tryon eval fetch-models DIR`` fills a folder for machines without network.

Layout of ``DIR`` (docs/evaluation.md#metric-weights)::

    DIR/clip/        a transformers CLIP checkpoint (model + processor), e.g. openai/clip-vit-large-patch14
    DIR/dinov2/      a transformers DINOv2 checkpoint (model + image processor), e.g. facebook/dinov2-base
    DIR/inception/   pt_inception-2015-12-05-6726825d.pth (FID's Inception-v3; config.json optional)
    DIR/lpips/checkpoints/alexnet-owt-7be5be79.pth   the LPIPS backbone as torchvision caches it
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tryon.core.errors import RequestError

CLIP_ID = "openai/clip-vit-large-patch14"
DINO_ID = "facebook/dinov2-base"
#: LPIPS backbone (torchmetrics' default, AlexNet) and the file torchvision caches it as.
LPIPS_NET = "alex"
LPIPS_BACKBONE_FILE = "alexnet-owt-7be5be79.pth"
LPIPS_BACKBONE_URL = f"https://download.pytorch.org/models/{LPIPS_BACKBONE_FILE}"
SUBFOLDERS = {"clip": "clip", "dino": "dinov2", "inception": "inception", "lpips": "lpips"}
FLAG = "--metric-models"
DOCS = "docs/evaluation.md#metric-weights"


def torchvision_available() -> bool:
    """Whether torchvision imports (LPIPS loads its backbone through it)."""
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        import torchvision  # noqa: F401
    except Exception:  # an install that fails at import (see FIELD-NOTES) is as good as none
        return False
    return True


@dataclass
class MetricModels:
    """The metric networks, loaded once on first use from ``folder`` or the hub caches."""

    folder: Path | None = None
    download: bool = False
    clip_id: str = CLIP_ID
    dino_id: str = DINO_ID
    _loaded: dict[str, Any] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ where from
    def describe(self) -> dict[str, str]:
        """Where each network comes from (recorded in eval.json)."""
        from tryon.evaluation.inception import FID_WEIGHTS_NAME

        if self.folder is not None:
            return {name: str(self.folder / sub) for name, sub in SUBFOLDERS.items()}
        return {
            "clip": self.clip_id,
            "dino": self.dino_id,
            "inception": f"torch hub checkpoints/{FID_WEIGHTS_NAME}",
            "lpips": f"torchvision {LPIPS_NET} ({LPIPS_BACKBONE_FILE})",
        }

    def _local(self, name: str, needs: str) -> Path:
        assert self.folder is not None
        path = self.folder / SUBFOLDERS[name]
        if not (path / needs).is_file():
            raise RequestError(FLAG, f"{path / needs} is missing ({_PURPOSE[name]}; layout: {DOCS})")
        return path

    def _hub(self, repo_id: str, name: str) -> str:
        from tryon.weights.hub import check_hub_model, is_cached

        if is_cached(repo_id):
            return repo_id
        if not self.download:
            raise RequestError(
                FLAG,
                f"{_PURPOSE[name]} needs {repo_id}, which is not in the local Hugging Face cache: "
                f"pass --download to fetch it, or {FLAG} DIR with {SUBFOLDERS[name]}/ ({DOCS})",
            )
        check_hub_model(repo_id, "--download")
        return repo_id

    def check(self, families: set[str]) -> None:
        """Refuse now, before any work, when a network the ``families`` need cannot be had."""
        for name in sorted(_needed(families)):
            self._source(name)

    def _source(self, name: str) -> Any:
        from tryon.evaluation.inception import FID_WEIGHTS_NAME

        if name == "lpips":
            return self._lpips_dir()
        if self.folder is not None:
            return self._local(name, FID_WEIGHTS_NAME if name == "inception" else "config.json")
        if name == "clip":
            return self._hub(self.clip_id, name)
        if name == "dino":
            return self._hub(self.dino_id, name)
        import torch

        cached = Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_NAME
        if not cached.is_file() and not self.download:
            raise RequestError(
                FLAG,
                f"{_PURPOSE[name]} needs {FID_WEIGHTS_NAME}, which is not in {cached.parent}: pass "
                f"--download to fetch it, or {FLAG} DIR with inception/ ({DOCS})",
            )
        return cached

    def _lpips_dir(self) -> Path:
        """The torch hub folder the LPIPS backbone is read from (checked; see the module doc)."""
        import torch

        hub_dir = self.folder / SUBFOLDERS["lpips"] if self.folder is not None else Path(torch.hub.get_dir())
        backbone = hub_dir / "checkpoints" / LPIPS_BACKBONE_FILE
        if not backbone.is_file() and (self.folder is not None or not self.download):
            how = (
                f"put it in {FLAG} DIR's lpips/checkpoints/"
                if self.folder is not None
                else f"pass --download to fetch it, or {FLAG} DIR"
            )
            raise RequestError(FLAG, f"LPIPS needs its backbone {backbone}, which is missing: {how} ({DOCS})")
        return hub_dir

    # ------------------------------------------------------------------ the networks
    def clip(self) -> tuple[Any, Any]:
        """(CLIPModel, CLIPProcessor), eval mode."""
        if "clip" not in self._loaded:
            from transformers import CLIPModel, CLIPProcessor

            from tryon.handlers.common import loading_progress_bars

            loading_progress_bars("transformers")  # the "Loading weights" bar only when asked for
            source = str(self._source("clip"))
            self._loaded["clip"] = (
                CLIPModel.from_pretrained(source).eval(),
                CLIPProcessor.from_pretrained(source),
            )
        return self._loaded["clip"]

    def dino(self) -> tuple[Any, Any]:
        """(Dinov2Model or another AutoModel with a pooled output, its image processor), eval mode."""
        if "dino" not in self._loaded:
            from transformers import AutoImageProcessor, AutoModel

            from tryon.handlers.common import loading_progress_bars

            loading_progress_bars("transformers")
            source = str(self._source("dino"))
            self._loaded["dino"] = (
                AutoModel.from_pretrained(source).eval(),
                AutoImageProcessor.from_pretrained(source),
            )
        return self._loaded["dino"]

    def inception(self) -> Any:
        """FID's Inception-v3 (:class:`tryon.evaluation.inception.FIDInceptionV3`)."""
        if "inception" not in self._loaded:
            from tryon.evaluation import inception

            source = self._source("inception")
            if self.folder is not None:
                model = inception.load_inception(source)
            else:
                import torch

                state = torch.hub.load_state_dict_from_url(inception.FID_WEIGHTS_URL, progress=True)
                model = inception.from_state_dict(state, where=str(source))
            self._loaded["inception"] = model.eval()
        return self._loaded["inception"]

    def lpips(self) -> Any:
        """torchmetrics' LPIPS (AlexNet backbone, inputs in [0, 1]); needs torchvision."""
        if "lpips" not in self._loaded:
            import torch
            from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

            hub_dir = self._lpips_dir()
            before = torch.hub.get_dir()
            torch.hub.set_dir(
                str(hub_dir)
            )  # torchvision reads (or, with --download, writes) the backbone here
            try:
                self._loaded["lpips"] = LearnedPerceptualImagePatchSimilarity(
                    net_type=LPIPS_NET, normalize=True
                )
            finally:
                torch.hub.set_dir(before)
        return self._loaded["lpips"]


_PURPOSE = {
    "clip": "garment and prompt fidelity (CLIP-I, CLIP-T)",
    "dino": "garment fidelity (DINO)",
    "inception": "FID and KID",
    "lpips": "LPIPS",
}


def _needed(families: set[str]) -> set[str]:
    needed = set()
    if "garment" in families:
        needed |= {"clip", "dino"}
    if "prompt" in families:
        needed.add("clip")
    if "unpaired" in families:
        needed.add("inception")
    if "paired" in families and torchvision_available():
        needed.add("lpips")  # without torchvision LPIPS is skipped with a note (docs/evaluation.md#lpips)
    return needed


def fetch_models(folder: Path, *, lpips: bool = True) -> dict[str, Path]:
    """Download every metric network into ``folder`` in the layout above (needs network)."""
    import shutil

    import torch
    from huggingface_hub import snapshot_download

    from tryon.evaluation.inception import CONFIG_NAME, FID_WEIGHTS_NAME, FID_WEIGHTS_URL

    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, repo_id in (("clip", CLIP_ID), ("dino", DINO_ID)):
        target = folder / SUBFOLDERS[name]
        snapshot_download(repo_id, local_dir=target, allow_patterns=["*.json", "*.txt", "*.safetensors"])
        written[name] = target
    inception_dir = folder / SUBFOLDERS["inception"]
    inception_dir.mkdir(exist_ok=True)
    torch.hub.download_url_to_file(FID_WEIGHTS_URL, str(inception_dir / FID_WEIGHTS_NAME))
    (inception_dir / CONFIG_NAME).write_text('{"width": 1.0, "num_classes": 1008}\n')
    written["inception"] = inception_dir
    if lpips:
        checkpoints = folder / SUBFOLDERS["lpips"] / "checkpoints"
        checkpoints.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(LPIPS_BACKBONE_URL, str(checkpoints / LPIPS_BACKBONE_FILE))
        written["lpips"] = checkpoints.parent
    shutil.rmtree(folder / SUBFOLDERS["clip"] / ".cache", ignore_errors=True)
    shutil.rmtree(folder / SUBFOLDERS["dino"] / ".cache", ignore_errors=True)
    return written
