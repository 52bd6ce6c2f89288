"""The Inception-v3 network FID and KID are defined on, in plain torch (no torchvision).

FID's reference implementation (TensorFlow's ``inception-2015-12-05`` graph, ported to PyTorch
as ``pt_inception-2015-12-05-6726825d.pth`` by pytorch-fid and torch-fidelity) is torchvision's
Inception-v3 layout with three differences: 1008 classes, average pools that leave the padding
out of the mean (``count_include_pad=False``) in the A, C and first E blocks, and a max pool in
the last E block. Both libraries build it on torchvision, which does not install against every
torch build (docs/evaluation.md), so the blocks are written here with torchvision's module
names: that weights file loads into :class:`FIDInceptionV3` unchanged (``strict=True``).

``width`` scales every channel count: 1.0 is the real network (2048 features, 23.9 M
parameters); the tests build tiny random ones (e.g. 0.0625) through the same loader.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: The FID weights file (pytorch-fid's release asset; torch-fidelity ships the same numbers).
FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{FID_WEIGHTS_NAME}"
CONFIG_NAME = "config.json"
INPUT_SIZE = 299


class _Conv(nn.Module):
    """Conv (no bias) + batch norm (eps 1e-3) + ReLU: torchvision's ``BasicConv2d``."""

    def __init__(self, cin: int, cout: int, **kwargs: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


def _tf_avg_pool(x: torch.Tensor) -> torch.Tensor:
    """TensorFlow's 3x3 average pool: the padded zeros do not count in the mean."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class _BlockA(nn.Module):
    def __init__(self, cin: int, pool: int, c: Any) -> None:
        super().__init__()
        self.branch1x1 = _Conv(cin, c(64), kernel_size=1)
        self.branch5x5_1 = _Conv(cin, c(48), kernel_size=1)
        self.branch5x5_2 = _Conv(c(48), c(64), kernel_size=5, padding=2)
        self.branch3x3dbl_1 = _Conv(cin, c(64), kernel_size=1)
        self.branch3x3dbl_2 = _Conv(c(64), c(96), kernel_size=3, padding=1)
        self.branch3x3dbl_3 = _Conv(c(96), c(96), kernel_size=3, padding=1)
        self.branch_pool = _Conv(cin, pool, kernel_size=1)
        self.out_channels = c(64) + c(64) + c(96) + pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch5x5_2(self.branch5x5_1(x)),
                b3,
                self.branch_pool(_tf_avg_pool(x)),
            ],
            1,
        )


class _BlockB(nn.Module):
    def __init__(self, cin: int, c: Any) -> None:
        super().__init__()
        self.branch3x3 = _Conv(cin, c(384), kernel_size=3, stride=2)
        self.branch3x3dbl_1 = _Conv(cin, c(64), kernel_size=1)
        self.branch3x3dbl_2 = _Conv(c(64), c(96), kernel_size=3, padding=1)
        self.branch3x3dbl_3 = _Conv(c(96), c(96), kernel_size=3, stride=2)
        self.out_channels = c(384) + c(96) + cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class _BlockC(nn.Module):
    def __init__(self, cin: int, c7: int, c: Any) -> None:
        super().__init__()
        self.branch1x1 = _Conv(cin, c(192), kernel_size=1)
        self.branch7x7_1 = _Conv(cin, c7, kernel_size=1)
        self.branch7x7_2 = _Conv(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = _Conv(c7, c(192), kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _Conv(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = _Conv(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _Conv(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _Conv(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _Conv(c7, c(192), kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = _Conv(cin, c(192), kernel_size=1)
        self.out_channels = 4 * c(192)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = layer(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_tf_avg_pool(x))], 1)


class _BlockD(nn.Module):
    def __init__(self, cin: int, c: Any) -> None:
        super().__init__()
        self.branch3x3_1 = _Conv(cin, c(192), kernel_size=1)
        self.branch3x3_2 = _Conv(c(192), c(320), kernel_size=3, stride=2)
        self.branch7x7x3_1 = _Conv(cin, c(192), kernel_size=1)
        self.branch7x7x3_2 = _Conv(c(192), c(192), kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _Conv(c(192), c(192), kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _Conv(c(192), c(192), kernel_size=3, stride=2)
        self.out_channels = c(320) + c(192) + cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = layer(b7)
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class _BlockE(nn.Module):
    def __init__(self, cin: int, c: Any, *, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = _Conv(cin, c(320), kernel_size=1)
        self.branch3x3_1 = _Conv(cin, c(384), kernel_size=1)
        self.branch3x3_2a = _Conv(c(384), c(384), kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = _Conv(c(384), c(384), kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _Conv(cin, c(448), kernel_size=1)
        self.branch3x3dbl_2 = _Conv(c(448), c(384), kernel_size=3, padding=1)
        self.branch3x3dbl_3a = _Conv(c(384), c(384), kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _Conv(c(384), c(384), kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = _Conv(cin, c(192), kernel_size=1)
        self.out_channels = c(320) + 4 * c(384) + c(192)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _tf_avg_pool(x)
        return torch.cat([self.branch1x1(x), b3, d, self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    """FID's Inception-v3: ``uint8`` images ``(N, 3, H, W)`` in, pool3 features ``(N, num_features)`` out.

    Images are resized to 299x299 (bilinear) and scaled to [-1, 1], as pytorch-fid does.
    ``num_features`` is what torchmetrics' FID and KID read to size their statistics.
    """

    def __init__(self, width: float = 1.0, num_classes: int = 1008) -> None:
        super().__init__()
        self.width = width

        def c(channels: int) -> int:
            return max(1, round(channels * width))

        self.Conv2d_1a_3x3 = _Conv(3, c(32), kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = _Conv(c(32), c(32), kernel_size=3)
        self.Conv2d_2b_3x3 = _Conv(c(32), c(64), kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = _Conv(c(64), c(80), kernel_size=1)
        self.Conv2d_4a_3x3 = _Conv(c(80), c(192), kernel_size=3)
        self.Mixed_5b = _BlockA(c(192), c(32), c)
        self.Mixed_5c = _BlockA(self.Mixed_5b.out_channels, c(64), c)
        self.Mixed_5d = _BlockA(self.Mixed_5c.out_channels, c(64), c)
        self.Mixed_6a = _BlockB(self.Mixed_5d.out_channels, c)
        self.Mixed_6b = _BlockC(self.Mixed_6a.out_channels, c(128), c)
        self.Mixed_6c = _BlockC(self.Mixed_6b.out_channels, c(160), c)
        self.Mixed_6d = _BlockC(self.Mixed_6c.out_channels, c(160), c)
        self.Mixed_6e = _BlockC(self.Mixed_6d.out_channels, c(192), c)
        self.Mixed_7a = _BlockD(self.Mixed_6e.out_channels, c)
        self.Mixed_7b = _BlockE(self.Mixed_7a.out_channels, c, max_pool=False)
        self.Mixed_7c = _BlockE(self.Mixed_7b.out_channels, c, max_pool=True)
        self.num_features = self.Mixed_7c.out_channels
        # Unused by FID; kept so the reference weights file loads with strict=True.
        self.fc = nn.Linear(self.num_features, num_classes)
        self.eval()

    def randomise(self, seed: int = 0) -> FIDInceptionV3:
        """Random weights that keep the signal alive through every layer (He init), for tests and benchmarks.

        PyTorch's default init shrinks activations at each of the 90-odd layers, and the features
        of a random network come out all but zero, which would make every FID 0.
        """
        generator = torch.Generator().manual_seed(seed)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
                with torch.no_grad():
                    module.weight.copy_(
                        torch.randn(module.weight.shape, generator=generator) * (2 / fan_in) ** 0.5
                    )
        return self

    def train(self, mode: bool = True) -> FIDInceptionV3:
        """Always in eval mode: batch-norm statistics are part of the metric's definition."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        x = 2 * x - 1
        for layer in (self.Conv2d_1a_3x3, self.Conv2d_2a_3x3, self.Conv2d_2b_3x3):
            x = layer(x)
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


def save_inception(model: FIDInceptionV3, folder: str | Path) -> Path:
    """Write ``config.json`` (width, classes) and the state dict as :data:`FID_WEIGHTS_NAME`."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_NAME).write_text(
        json.dumps({"width": model.width, "num_classes": model.fc.out_features}, indent=2) + "\n"
    )
    torch.save(model.state_dict(), out / FID_WEIGHTS_NAME)
    return out


def from_state_dict(
    state: dict[str, Any], *, width: float = 1.0, num_classes: int = 1008, where: str = ""
) -> FIDInceptionV3:
    """The network with ``state`` loaded; ValueError naming ``where`` if the keys are not this network's."""
    model = FIDInceptionV3(width=width, num_classes=num_classes)
    result = model.load_state_dict(state, strict=False)
    # Files saved before batch norm counted its batches lack ``num_batches_tracked``: harmless.
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        wrong = (missing + list(result.unexpected_keys))[:3]
        raise ValueError(f"{where or 'the state dict'} is not an FID Inception-v3 state dict (keys {wrong})")
    return model.eval()


def load_inception(folder: str | Path) -> FIDInceptionV3:
    """The network in ``folder``: :data:`FID_WEIGHTS_NAME`, optionally ``config.json`` (none: full size)."""
    path = Path(folder)
    config = json.loads((path / CONFIG_NAME).read_text()) if (path / CONFIG_NAME).is_file() else {}
    state = torch.load(path / FID_WEIGHTS_NAME, map_location="cpu", weights_only=True)
    return from_state_dict(
        state,
        width=float(config.get("width", 1.0)),
        num_classes=int(config.get("num_classes", 1008)),
        where=str(path / FID_WEIGHTS_NAME),
    )
