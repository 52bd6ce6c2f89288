"""LoRA adapters for the inpainting pipeline: where a request's adapter comes from, and a bounded LRU.

One base model serves many fine-tuned garments. A request names its adapter:

- absent: the model's default adapter (``<model_dir>/adapter/``) if it has one, else none;
- ``"none"``: the base model;
- ``"default"``: ``<model_dir>/adapter/``;
- a name: ``<model_dir>/adapters/<name>/``;
- ``s3://bucket/prefix/``: the ``*.safetensors`` files under the prefix, downloaded once
  into a local cache folder (``TRYON_ADAPTER_CACHE_DIR``).

Loaded adapters stay in the pipeline (peft layers next to the base weights) in an LRU of
at most ``TRYON_MAX_ADAPTERS`` (default 4); the least recently used one is removed with
``pipe.delete_adapters``. Switching only calls ``set_adapters`` / ``disable_lora``: the
base model is never reloaded. Like the pipeline, :class:`AdapterCache` must be used under
the model's lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tryon.core.contract import ADAPTER_NAME_PATTERN, check_adapter_spec
from tryon.core.errors import RequestError
from tryon.core.s3uri import parse_s3_uri

FIELD = "adapter"
DEFAULT_NAME = "default"
NONE_NAME = "none"
#: File diffusers writes with ``save_lora_weights``.
LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
NAME_PATTERN = ADAPTER_NAME_PATTERN
#: Limits for adapters downloaded from S3.
MAX_S3_FILES = 16
MAX_S3_BYTES = int(os.environ.get("TRYON_MAX_ADAPTER_BYTES", 2 * 1024**3))


@dataclass(frozen=True)
class AdapterSource:
    """A resolved adapter: the name reported to clients, the peft adapter key, and its folder."""

    name: str
    key: str
    path: Path


def adapter_key(name: str) -> str:
    """The peft adapter name for an adapter name: no dots (peft keeps adapters in ModuleDicts)."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", name)
    return safe if safe == name else f"{safe}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def max_adapters_from_env() -> int:
    """``TRYON_MAX_ADAPTERS`` (default 4, at least 1)."""
    raw = os.environ.get("TRYON_MAX_ADAPTERS", "4")
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"TRYON_MAX_ADAPTERS must be an integer, got {raw!r}") from exc
    if value < 1:
        raise ValueError(f"TRYON_MAX_ADAPTERS must be >= 1, got {value}")
    return value


def cache_dir_from_env() -> Path:
    """Where S3 adapters are downloaded (``TRYON_ADAPTER_CACHE_DIR`` or a temp folder)."""
    return Path(os.environ.get("TRYON_ADAPTER_CACHE_DIR") or Path(tempfile.gettempdir()) / "tryon-adapters")


def weight_file(folder: Path) -> Path | None:
    """The LoRA safetensors file in ``folder``: the diffusers name, else the only ``*.safetensors``."""
    if not folder.is_dir():
        return None
    standard = folder / LORA_WEIGHT_NAME
    if standard.is_file():
        return standard
    candidates = sorted(folder.glob("*.safetensors"))
    return candidates[0] if len(candidates) == 1 else None


def default_adapter(model_dir: str | os.PathLike[str] | None) -> AdapterSource | None:
    """The default adapter in ``<model_dir>/adapter/``, if there is one."""
    if not model_dir:
        return None
    folder = Path(model_dir) / "adapter"
    return AdapterSource(DEFAULT_NAME, DEFAULT_NAME, folder) if weight_file(folder) else None


def _download_s3_prefix(uri: str, cache_root: Path) -> Path:
    """Download the ``*.safetensors`` files under an S3 prefix once; return the local folder."""
    from tryon.handlers.s3io import classify, s3_client

    bucket, prefix = parse_s3_uri(uri, field=FIELD)
    target = cache_root / hashlib.sha256(uri.encode()).hexdigest()[:24]
    if weight_file(target):
        return target
    client = s3_client()
    prefix = prefix if prefix.endswith("/") else prefix + "/"
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        objects = [o for page in pages for o in page.get("Contents", []) if o["Key"].endswith(".safetensors")]
    except Exception as exc:  # missing/forbidden: the client's; throttling, 5xx: retried
        raise classify(exc, field=FIELD, uri=uri, action="listed") from exc
    if not objects:
        raise RequestError(FIELD, f"no .safetensors files under {uri}")
    if len(objects) > MAX_S3_FILES:
        raise RequestError(
            FIELD, f"{uri} holds {len(objects)} .safetensors files; the limit is {MAX_S3_FILES}"
        )
    total = sum(o["Size"] for o in objects)
    if total > MAX_S3_BYTES:
        raise RequestError(FIELD, f"{uri} holds {total} bytes; the limit is {MAX_S3_BYTES} bytes")
    cache_root.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=cache_root))
    try:
        for obj in objects:
            name = obj["Key"].rsplit("/", 1)[-1]
            client.download_file(bucket, obj["Key"], str(partial / name))
    except Exception as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise classify(exc, field=FIELD, uri=uri, action="downloaded") from exc
    if target.exists() and not weight_file(target):  # a stale, incomplete folder
        shutil.rmtree(target, ignore_errors=True)
    try:
        partial.rename(target)
    except OSError:  # a concurrent request finished the same download first
        shutil.rmtree(partial, ignore_errors=True)
    return target


def resolve_adapter(
    spec: str | None,
    model_dir: str | os.PathLike[str] | None,
    *,
    cache_root: Path | None = None,
) -> AdapterSource | None:
    """The adapter a request asks for (see the module docstring); None means the base model."""
    if spec is None:
        return default_adapter(model_dir)
    if spec == NONE_NAME:
        return None
    if spec == DEFAULT_NAME:
        source = default_adapter(model_dir)
        if source is None:
            raise RequestError(FIELD, "'default' was requested but the model has no adapter/ folder")
        return source
    if spec.startswith("s3://"):
        folder = _download_s3_prefix(spec, cache_root or cache_dir_from_env())
        if not weight_file(folder):
            raise RequestError(FIELD, f"{spec} must hold {LORA_WEIGHT_NAME} or exactly one .safetensors file")
        return AdapterSource(spec, "s3_" + folder.name, folder)
    check_adapter_spec(spec, FIELD)
    folder = Path(model_dir or "") / "adapters" / spec
    if not weight_file(folder):
        available = ", ".join(list_adapters(model_dir))
        raise RequestError(FIELD, f"unknown adapter {spec!r}; available: {available}")
    return AdapterSource(spec, adapter_key(spec), folder)


def list_adapters(model_dir: str | os.PathLike[str] | None) -> list[str]:
    """Names a request may use: 'none', 'default' (if present) and the folders under ``adapters/``."""
    names = [NONE_NAME]
    if default_adapter(model_dir):
        names.append(DEFAULT_NAME)
    root = Path(model_dir or "") / "adapters"
    if model_dir and root.is_dir():
        names += sorted(p.name for p in root.iterdir() if NAME_PATTERN.fullmatch(p.name) and weight_file(p))
    return names


class AdapterCache:
    """A bounded LRU of LoRA adapters loaded into one pipeline (use under the model's lock)."""

    def __init__(self, pipe: Any, max_loaded: int) -> None:
        if max_loaded < 1:
            raise ValueError("max_loaded must be >= 1")
        self.pipe = pipe
        self.max_loaded = max_loaded
        self._loaded: OrderedDict[str, AdapterSource] = OrderedDict()

    def loaded(self) -> list[str]:
        """peft keys of the loaded adapters, least recently used first."""
        return list(self._loaded)

    def _load(self, source: AdapterSource) -> None:
        weights = weight_file(source.path)
        if weights is None:
            raise RequestError(FIELD, f"{source.name!r} has no LoRA weights")
        try:
            self.pipe.load_lora_weights(
                str(source.path), weight_name=weights.name, adapter_name=source.key, use_safetensors=True
            )
        except (ValueError, KeyError, OSError, RuntimeError) as exc:
            self._discard(source.key)
            detail = " ".join(str(exc).split())[:300]  # size-mismatch lists run to kilobytes
            raise RequestError(FIELD, f"{source.name!r} could not be loaded as a LoRA: {detail}") from exc
        self._loaded[source.key] = source
        # Evict only after a successful load, so a bad adapter never costs a good one its place.
        while len(self._loaded) > self.max_loaded:
            evicted, _ = self._loaded.popitem(last=False)
            self.pipe.delete_adapters(evicted)

    def _discard(self, key: str) -> None:
        """Remove whatever a failed load left behind (best effort)."""
        with contextlib.suppress(ValueError, KeyError, RuntimeError):
            self.pipe.delete_adapters(key)

    def activate(self, source: AdapterSource | None, scale: float = 1.0) -> None:
        """Make ``source`` the only active adapter at ``scale`` (None -> base model), loading if needed."""
        if source is None:
            if self._loaded:
                self.pipe.disable_lora()
            return
        if source.key in self._loaded:
            self._loaded.move_to_end(source.key)
        else:
            self._load(source)
        self.pipe.enable_lora()
        self.pipe.set_adapters([source.key], adapter_weights=[scale])
