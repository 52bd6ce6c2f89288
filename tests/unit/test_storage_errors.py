"""S3's 403 on a read is "missing or not allowed": named by object and permission, not a ClientError."""

from __future__ import annotations

import pytest
from botocore.stub import Stubber

from tryon.core.errors import RequestError
from tryon.workflow import clients, storage


@pytest.fixture
def s3(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    clients.reset_clients()
    client = clients.client("s3")
    with Stubber(client) as stub:
        yield stub
    clients.reset_clients()


def test_a_403_on_head_names_the_object_and_both_permissions(s3):
    s3.add_client_error("head_object", service_error_code="403", http_status_code=403)
    with pytest.raises(storage.ObjectNotReadable) as raised:
        storage.head("bucket", "garments/gone.png", field="garment_image")
    message = str(raised.value)
    assert message.startswith("garment_image: s3://bucket/garments/gone.png does not exist or may not")
    assert "s3:GetObject" in message and "s3:ListBucket on arn:aws:s3:::bucket" in message
    assert isinstance(raised.value, RequestError)  # Prepare's InvalidInput, a batch's invalid row


def test_a_404_on_head_is_missing(s3):
    s3.add_client_error("head_object", service_error_code="404", http_status_code=404)
    assert storage.head("bucket", "inputs/gone.png") is None


def test_a_403_on_get_is_not_missing(s3):
    s3.add_client_error("get_object", service_error_code="AccessDenied", http_status_code=403)
    with pytest.raises(storage.ObjectNotReadable, match=r"outputLocation: s3://b/async/outputs/x\.out"):
        storage.get_bytes("b", "async/outputs/x.out", max_bytes=10, field="outputLocation")
    s3.add_client_error("get_object", service_error_code="AccessDenied", http_status_code=403)
    with pytest.raises(storage.ObjectNotReadable):  # get_json's None means "missing", and this is not
        storage.get_json("b", "results/x/manifest.json")


def test_a_404_on_get_is_missing(s3):
    s3.add_client_error("get_object", service_error_code="NoSuchKey", http_status_code=404)
    with pytest.raises(storage.ObjectMissing, match="s3://b/k does not exist"):
        storage.get_bytes("b", "k", max_bytes=10, field="k")
    s3.add_client_error("get_object", service_error_code="NoSuchKey", http_status_code=404)
    assert storage.get_json("b", "results/x/manifest.json") is None
