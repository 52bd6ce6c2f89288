"""Garment classes (presets), garment_image/garment_scale and Prepare's garment checks (moto, no models)."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from support.images import flat_png

from tryon.core import contract
from tryon.core.errors import RequestError
from tryon.workflow import job, params
from tryon.workflow.settings import Settings

IN, OUT = "in-bucket", "out-bucket"


def _resolve(preset: str | None, **console) -> dict:
    return params.resolve(
        defaults=params.template_defaults({}),
        preset_table=params.presets({}),
        preset=preset,
        metadata={},
        console=console,
    )


@pytest.mark.parametrize("name", sorted(params.GARMENT_CLASSES))
def test_each_garment_class_sets_the_query_and_keeps_face_and_hands_out(name):
    effective = _resolve(name)
    assert effective["query"] == params.GARMENT_CLASSES[name]["query"]
    assert "hands" in effective["negative_queries"]
    assert ("face" in effective["negative_queries"]) == (name != "footwear")


def test_presets_combine_left_to_right_and_console_wins():
    both = _resolve("lower-body, quality")
    assert both["query"] == "pants or a skirt" and both["steps"] == 50 and both["upscale"] is True
    assert _resolve("lower-body,upper-body")["query"] == "upper body clothes"
    assert _resolve("footwear", negative_queries=["socks"])["negative_queries"] == ["socks"]
    with pytest.raises(
        RequestError, match=r"^preset: unknown preset 'skirts'; known: .*footwear.*upper-body"
    ):
        _resolve("lower-body,skirts")
    # the Presets template parameter may redefine a garment class
    table = params.presets({"TRYON_PRESETS": '{"footwear": {"query": "boots"}}'})
    assert table["footwear"] == {"query": "boots"}


def test_garment_parameters_take_the_contract_limits_and_an_s3_uri():
    by_name = {p.name: p for p in params.PARAMS}
    assert dict(by_name["garment_scale"].limits) == dict(contract.SD_INPAINT["garment_scale"].limits)
    assert params.template_defaults({})["garment_scale"] == contract.GARMENT_SCALE
    values, _, _ = params.metadata_overrides({"garment-image": "s3://b/garments/a.png?versionId=v1"})
    assert values == {"garment_image": "s3://b/garments/a.png?versionId=v1"}
    with pytest.raises(
        RequestError, match=r"^garment_image \(from metadata\): must be an s3://bucket/key URI"
    ):
        params.metadata_overrides({"garment-image": "garments/a.png"})
    with pytest.raises(RequestError, match=r"^garment_scale: must be <= 2\.0"):
        params.validate_layer({"garment_scale": 3}, "input")
    assert params.to_metadata({"garment_image": "s3://b/garments/a.png"}) == {
        "garment-image": "s3://b/garments/a.png"
    }


@pytest.fixture
def s3(moto_s3):
    env = {"TRYON_INPUT_BUCKET": IN, "TRYON_OUTPUT_BUCKET": OUT, "TRYON_INPAINT_ENDPOINT": "inp"}
    return moto_s3(IN, OUT, versioned=(IN,), env=env)


def test_prepare_pins_the_garment_version_into_the_job_and_its_id(s3):
    s3.put_object(Bucket=IN, Key="inputs/p.png", Body=flat_png())
    first = s3.put_object(Bucket=IN, Key="garments/g.png", Body=flat_png((20, 24)))["VersionId"]
    console = {"image": f"s3://{IN}/inputs/p.png", "garment_image": f"s3://{IN}/garments/g.png"}
    settings = Settings.from_env()
    before = job.build_job(settings, console)
    assert before["garment"] == {
        "bucket": IN,
        "key": "garments/g.png",
        "version_id": first,
        "uri": f"s3://{IN}/garments/g.png?versionId={first}",
        "size": len(flat_png((20, 24))),
        "image": {"format": "PNG", "width": 20, "height": 24, "mode": "RGB", "orientation": 1},
    }
    assert before["params"]["garment_image"] == before["garment"]["uri"]
    s3.put_object(Bucket=IN, Key="garments/g.png", Body=flat_png((22, 24)))  # a new packshot: a new job
    after = job.build_job(settings, console)
    assert after["job_id"] != before["job_id"] and after["garment"]["image"]["width"] == 22
    pinned = job.build_job(settings, {**console, "garment_image": before["garment"]["uri"]})
    assert pinned["job_id"] == before["job_id"]
    assert job.build_job(settings, {"image": console["image"]})["garment"] is None


def test_prepare_refuses_garments_it_cannot_use(s3):
    s3.put_object(Bucket=IN, Key="inputs/p.png", Body=flat_png())
    bomb = io.BytesIO()
    Image.new("L", (7000, 7000)).save(bomb, "PNG")
    s3.put_object(Bucket=IN, Key="garments/bomb.png", Body=bomb.getvalue())
    s3.put_object(Bucket=IN, Key="garments/empty.png", Body=b"")
    s3.put_object(Bucket=IN, Key="garments/notes.txt", Body=b"hello")
    settings = Settings.from_env()
    for uri, message in [
        (f"s3://{IN}/garments/bomb.png", "7000x7000 = 49000000 pixels; the limit is"),
        (f"s3://{IN}/garments/empty.png", "is empty (0 bytes)"),
        (f"s3://{IN}/garments/notes.txt", "must end with one of .jpg"),
        (f"s3://{IN}/inputs/p.png", f"is not under s3://{IN}/garments/"),
        (f"s3://{IN}/garments/g.png?versionId=nope", "does not exist (or the version is gone)"),
    ]:
        with pytest.raises(RequestError) as info:
            job.build_job(settings, {"image": f"s3://{IN}/inputs/p.png", "garment_image": uri})
        assert info.value.field == "garment_image" and message in info.value.detail, (uri, str(info.value))


def test_a_batch_row_names_its_garment_and_the_report_shows_it(s3):
    from tryon.workflow import batch_report, batch_validate

    photo = s3.put_object(Bucket=IN, Key="inputs/p.png", Body=flat_png())["VersionId"]
    version = s3.put_object(Bucket=IN, Key="garments/g.png", Body=flat_png((20, 24)))["VersionId"]
    rows = [
        {"image": "p.png", "garment_image": f"s3://{IN}/garments/g.png", "preset": "dress"},
        {"image": "p.png", "garment_image": f"s3://{IN}/inputs/p.png"},
    ]
    good, bad = batch_validate.validate_rows(Settings.from_env(), rows)
    pinned = f"s3://{IN}/garments/g.png?versionId={version}"
    assert good["status"] == "pending" and good["params"]["garment_image"] == pinned
    assert good["params"]["query"] == params.GARMENT_CLASSES["dress"]["query"]
    assert batch_report.report_row(Settings.from_env(), good, None)["garment"] == pinned
    assert bad["status"] == "invalid" and bad["error"]["field"] == "garment_image"
    # the row's execution reads the photo version validated, even if it is replaced meanwhile
    assert good["input"]["image"] == f"s3://{IN}/inputs/p.png?versionId={photo}"


def test_a_batch_reads_a_packshot_once_however_many_rows_name_it(s3):
    from tryon.workflow import batch_validate, clients

    s3.put_object(Bucket=IN, Key="inputs/p.png", Body=flat_png())
    s3.put_object(Bucket=IN, Key="inputs/q.png", Body=flat_png((44, 30)))
    s3.put_object(Bucket=IN, Key="garments/g.png", Body=flat_png((20, 24)))
    reads: list[str] = []  # GetObject calls on the input bucket (complete-result checks read the output's)

    def count(params, **_):
        if IN in params["url"]:
            reads.append(params["url_path"].lstrip("/"))

    clients.client("s3").meta.events.register("before-call.s3.GetObject", count)
    garment = f"s3://{IN}/garments/g.png"
    rows = [
        {"image": "p.png", "garment_image": garment, "prompt": "a red dress"},
        {"image": "q.png", "garment_image": garment},
        {"image": "p.png", "garment_image": garment, "preset": "dress"},
    ]
    records = batch_validate.validate_rows(Settings.from_env(), rows)
    assert [r["status"] for r in records] == ["pending"] * 3
    assert len({r["params"]["garment_image"] for r in records}) == 1
    # each object read (and decoded) once: the packshot once for three rows, p.png once for two
    assert sorted(reads) == ["garments/g.png", "inputs/p.png", "inputs/q.png"], reads
