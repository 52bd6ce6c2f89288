"""Adapter resolution (names, the default adapter, S3 prefixes) without loading a pipeline."""

from __future__ import annotations

import shutil
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from tryon.core.errors import RequestError
from tryon.handlers import adapters
from tryon.handlers.adapters import AdapterSource, resolve_adapter


@pytest.fixture
def model_dir(tiny_models, tmp_path) -> Path:
    root = tmp_path / "model"
    (root / "adapters").mkdir(parents=True)
    shutil.copytree(tiny_models["lora-a"], root / "adapter")
    shutil.copytree(tiny_models["lora-b"], root / "adapters" / "lora-b")
    # a custom file name is accepted when it is the only safetensors file
    (root / "adapters" / "shirt_v2").mkdir()
    shutil.copy(
        tiny_models["lora-a"] / adapters.LORA_WEIGHT_NAME, root / "adapters" / "shirt_v2" / "w.safetensors"
    )
    (root / "adapters" / "empty").mkdir()
    return root


def test_absent_means_default_or_base(model_dir, tmp_path):
    assert resolve_adapter(None, model_dir) == AdapterSource("default", "default", model_dir / "adapter")
    assert resolve_adapter(None, tmp_path / "no-such-model") is None
    assert resolve_adapter(None, None) is None


def test_none_default_and_named(model_dir, tmp_path):
    assert resolve_adapter("none", model_dir) is None
    assert resolve_adapter("default", model_dir).path == model_dir / "adapter"
    named = resolve_adapter("lora-b", model_dir)
    assert named == AdapterSource("lora-b", "lora-b", model_dir / "adapters" / "lora-b")
    assert adapters.weight_file(resolve_adapter("shirt_v2", model_dir).path).name == "w.safetensors"
    with pytest.raises(
        RequestError, match=r"^adapter: 'default' was requested but the model has no adapter/"
    ):
        resolve_adapter("default", tmp_path)


def test_dotted_names_get_a_peft_safe_key(model_dir):
    (model_dir / "adapters" / "shirt.v2").symlink_to(model_dir / "adapters" / "lora-b")
    source = resolve_adapter("shirt.v2", model_dir)
    assert source.name == "shirt.v2" and "." not in source.key and source.key.startswith("shirt_v2_")
    assert source.key != resolve_adapter("shirt_v2", model_dir).key
    assert adapters.adapter_key("lora-b") == "lora-b"


def test_list_adapters(model_dir):
    assert adapters.list_adapters(model_dir) == ["none", "default", "lora-b", "shirt_v2"]
    assert adapters.list_adapters(None) == ["none"]


@pytest.mark.parametrize(
    "name",
    ["../adapter", "..", ".hidden", "lora-b/../../x", "/etc", "-lead", "x" * 65, "lora b", "ad\\x", "%2e%2e"],
)
def test_invalid_names_are_refused_before_any_file_access(model_dir, name):
    with pytest.raises(RequestError, match=r"^adapter: .*is not a valid adapter name") as info:
        resolve_adapter(name, model_dir)
    assert info.value.field == "adapter"


@pytest.mark.parametrize("name", ["lora-z", "empty"])
def test_unknown_adapter_lists_available(model_dir, name):
    with pytest.raises(RequestError, match=rf"^adapter: unknown adapter '{name}'; available: none, default"):
        resolve_adapter(name, model_dir)


def test_max_adapters_from_env(monkeypatch):
    monkeypatch.delenv("TRYON_MAX_ADAPTERS", raising=False)
    assert adapters.max_adapters_from_env() == 4
    monkeypatch.setenv("TRYON_MAX_ADAPTERS", "2")
    assert adapters.max_adapters_from_env() == 2
    for bad in ("0", "two"):
        monkeypatch.setenv("TRYON_MAX_ADAPTERS", bad)
        with pytest.raises(ValueError, match="TRYON_MAX_ADAPTERS"):
            adapters.max_adapters_from_env()
    with pytest.raises(ValueError, match="max_loaded"):
        adapters.AdapterCache(object(), 0)


def test_s3_prefix_is_downloaded_once(tiny_models, tmp_path):
    weights = (tiny_models["lora-b"] / adapters.LORA_WEIGHT_NAME).read_bytes()
    cache = tmp_path / "cache"
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="loras")
        s3.put_object(Bucket="loras", Key="garments/shirt/pytorch_lora_weights.safetensors", Body=weights)
        s3.put_object(Bucket="loras", Key="garments/shirt/README.md", Body=b"not downloaded")
        s3.put_object(Bucket="loras", Key="garments/shirt-other/x.safetensors", Body=b"other prefix")
        source = resolve_adapter("s3://loras/garments/shirt", None, cache_root=cache)
        assert source.name == "s3://loras/garments/shirt"
        assert source.key.startswith("s3_") and "." not in source.key and "/" not in source.key
        assert sorted(p.name for p in source.path.iterdir()) == [adapters.LORA_WEIGHT_NAME]
        assert (source.path / adapters.LORA_WEIGHT_NAME).read_bytes() == weights
        # served from the local cache afterwards, even if the prefix goes away
        s3.delete_object(Bucket="loras", Key="garments/shirt/pytorch_lora_weights.safetensors")
        assert resolve_adapter("s3://loras/garments/shirt", None, cache_root=cache) == source
        # inputs are never deleted by the handler
        assert s3.list_objects_v2(Bucket="loras", Prefix="garments/shirt/")["KeyCount"] == 1


def test_s3_errors_name_the_adapter_field(tmp_path, monkeypatch):
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="loras")
        s3.put_object(Bucket="loras", Key="two/a.safetensors", Body=b"a")
        s3.put_object(Bucket="loras", Key="two/b.safetensors", Body=b"b")
        for uri, message in [
            ("s3://loras/nothing/", r"no \.safetensors files under"),
            ("s3://missing-bucket/x/", "the bucket does not exist"),
            ("s3://loras", "must be an s3://bucket/key URI"),
            ("s3://loras/two/", "must hold pytorch_lora_weights.safetensors or exactly one"),
        ]:
            with pytest.raises(RequestError, match=rf"^adapter: .*{message}"):
                resolve_adapter(uri, None, cache_root=tmp_path / "cache")
        monkeypatch.setattr(adapters, "MAX_S3_BYTES", 1)
        with pytest.raises(RequestError, match=r"^adapter: .* holds 2 bytes; the limit is 1 bytes"):
            resolve_adapter("s3://loras/two/", None, cache_root=tmp_path / "cache2")
