"""The studio in a real browser (headless Chromium) on the local stack with the tiny models.

The tests run in order on one page, as a user would: load it, upload a photo, choose a class and an
adapter and run; dress the sample photo in two garments; paint a mask and run (no Segment call);
compare two adapters as one batch; open that batch's report; refuse a non-image with the workflow's
message; list the jobs; and, over the whole session, no request to anything but the app.
The ``--stack`` back end is tested at the end of the module on the same moto stack, reached by name
through a boto3 session as ``tryon submit`` reaches a deployed stack.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from support.images import save_photo

pytestmark = pytest.mark.slow

WAIT_S = 120


def _wait(browser: Any, condition: Any, timeout: float = WAIT_S) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.2).until(condition)


def _css(browser: Any, selector: str, timeout: float = 30.0) -> Any:
    """The element, once the page's script has rendered it (a busy machine renders late)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions

    present = expected_conditions.presence_of_element_located((By.CSS_SELECTOR, selector))
    return _wait(browser, present, timeout)


def _all(browser: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return browser.find_elements(By.CSS_SELECTOR, selector)


def _collect_requests(browser: Any) -> None:
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            browser.requests_seen.append(message["params"]["request"]["url"])


def _select(element: Any, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(element).select_by_value(value)


def _loaded_images(browser: Any, selector: str) -> list[Any]:
    """The images under ``selector`` that have loaded (a decoded, non-empty picture)."""
    return [
        img
        for img in _all(browser, selector)
        if browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img)
    ]


def _screenshot(browser: Any, path: Path) -> None:
    """The whole page (the window grown to its height), from the top."""
    size = browser.get_window_size()
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(size["width"], min(max(height, 600), 3000))
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(path))
    browser.set_window_size(size["width"], size["height"])


def _run_and_wait(browser: Any) -> str:
    """Click Run and wait until the state list ends; the run's final status text."""
    _css(browser, "#run").click()
    _wait(browser, lambda b: _css(b, "#run-status").text.startswith(("succeeded", "failed")))
    return _css(browser, "#run-status").text


def _states(browser: Any) -> list[str]:
    return [li.text.strip() for li in _all(browser, "#states li")]


def _choose_file(browser: Any, path: Path) -> None:
    """Upload ``path`` as the photo and wait until the page has read it (Run then sends it)."""
    _css(browser, "#photo-file").send_keys(str(path))
    _wait(browser, lambda b: _css(b, "body").get_attribute("data-photo") == path.name)


def _garment(browser: Any, number: int, *, cls: str = "", mode: str = "", adapter: str = "") -> None:
    card = f"#garment-{number}"
    if cls:
        _select(_css(browser, f"{card} select[name=class]"), cls)
    if mode:
        _select(_css(browser, f"{card} select[name=mode]"), mode)
    if adapter:
        field = _css(browser, f"{card} input[name=adapter]")
        field.clear()
        field.send_keys(adapter)


def test_page_loads_with_the_local_back_end(studio, browser, screenshots):
    browser.get(studio.url + "/")
    _wait(browser, lambda b: b.find_element("tag name", "body").get_attribute("data-ready") == "true")
    assert "tiny random checkpoints" in _css(browser, "#backend").text
    # the form's fields come from the schema's rows: their limits and help
    steps = _css(browser, "#job-fields input[name=steps]")
    from tryon.core import schema

    row = schema.param("steps")
    assert steps.get_attribute("max") == str(row.limits["maximum"])
    assert steps.get_attribute("title") == row.help_text()
    # the placeholder is the stack's own job default (the local stack's tiny-model steps)
    assert steps.get_attribute("placeholder") == str(studio.backend.parameters[row.template_parameter])
    adapters = [o.get_attribute("value") for o in _all(browser, "#adapter-list option")]
    assert adapters == ["garment-a", "garment-b"]
    # a newcomer starts from the sample photo and an upper-body garment; a second card is lower-body
    assert "chosen" in _css(browser, "#samples button[data-sample='astronaut.jpg']").get_attribute("class")
    assert _css(browser, "#garment-1 select[name=class]").get_attribute("value") == "upper-body"
    _css(browser, "#add-garment").click()
    assert _css(browser, "#garment-2 select[name=class]").get_attribute("value") == "lower-body"
    _css(browser, "#garment-2 button.remove").click()
    assert not _all(browser, "#garment-2")


def test_upload_a_photo_choose_a_class_and_an_adapter_and_run(studio, browser, screenshots, tmp_path):
    photo = save_photo(tmp_path / "shopper.png", (96, 128))
    _choose_file(browser, photo)
    assert not _css(browser, "#canvas-box").get_attribute("hidden")
    _garment(browser, 1, cls="upper-body", mode="class", adapter="garment-a")
    assert _run_and_wait(browser) == "succeeded: succeeded"
    states = _states(browser)
    assert "-> Segment" in states and "-> Inpaint" in states  # each state as it starts and ends
    assert any(line.startswith("<- Inpaint (") for line in states)
    assert states[-1] == "execution SUCCEEDED: succeeded"
    assert _loaded_images(browser, "#mask img") and _loaded_images(browser, "#results img")
    assert _loaded_images(browser, "#preview img")
    assert "compute_seconds" in _css(browser, "#cost").text
    assert "Inpaint" in _css(browser, "#timings").text or "inpaint" in _css(browser, "#timings").text
    # the job the page ran is the one it named: the adapter, the class, on the uploaded photo
    manifest = studio.app.state.studio.runs
    last = list(manifest.values())[-1].manifest
    assert last["garments"][0]["adapter"]["name"] == "garment-a"
    assert last["garments"][0]["garment_class"] == "upper-body"
    assert "/shopper.png" in json.dumps(last["input"])
    _screenshot(browser, screenshots / "studio-try-on.png")


def test_dress_the_sample_photo_in_two_garments(studio, browser, screenshots):
    _css(browser, "#samples button[data-sample='astronaut.jpg']").click()
    _wait(browser, lambda b: _css(b, "body").get_attribute("data-photo") == "astronaut.jpg")
    _garment(browser, 1, cls="upper-body", mode="class", adapter="garment-a")
    _css(browser, "#add-garment").click()
    _garment(browser, 2, cls="lower-body", mode="class", adapter="garment-b")
    assert _run_and_wait(browser) == "succeeded: succeeded"
    run = list(studio.app.state.studio.runs.values())[-1]
    worn = [(g["garment_class"], g["adapter"]["name"]) for g in run.manifest["garments"]]
    assert worn == [("lower-body", "garment-b"), ("upper-body", "garment-a")]  # in the order worn
    assert "/astronaut.jpg" in json.dumps(run.manifest["input"])
    assert len(_loaded_images(browser, "#mask img")) >= 1 and _loaded_images(browser, "#results img")
    _screenshot(browser, screenshots / "studio-outfit.png")
    _css(browser, "#garment-2 button.remove").click()


def test_paint_a_mask_and_run_without_segment(studio, browser, screenshots):
    from selenium.webdriver.common.action_chains import ActionChains

    _garment(browser, 1, cls="", mode="image")
    _wait(browser, lambda b: not _css(b, "#paint-tools").get_attribute("hidden"))
    canvas = _css(browser, "#paint-canvas")
    ActionChains(browser).move_to_element_with_offset(canvas, -60, -80).click_and_hold().move_by_offset(
        60, 40
    ).move_by_offset(60, 40).release().perform()
    painted = browser.execute_script(
        "const c = document.getElementById('paint-canvas'); const d = c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 3; i < d.length; i += 4)"
        " if (d[i] > 0) n++; return n;"
    )
    assert painted > 0
    status = _run_and_wait(browser)
    run = list(studio.app.state.studio.runs.values())[-1]
    assert status == "succeeded: succeeded"
    states = _states(browser)
    assert "-> Segment" not in states, states  # a painted mask needs no CLIPSeg call
    run = list(studio.app.state.studio.runs.values())[-1]
    garment = run.manifest["garments"][0]
    assert garment["mask_mode"] == "image" and garment["mask"]["painted"]
    assert _loaded_images(browser, "#mask img")
    _screenshot(browser, screenshots / "studio-painted-mask.png")
    _garment(browser, 1, cls="upper-body", mode="class")


def test_compare_two_adapters_as_one_batch(studio, browser, screenshots):
    _css(browser, "#tab-button-compare").click()
    rows = _all(browser, "#variants tbody tr")
    assert len(rows) == 2
    for row, adapter in zip(rows, ("garment-a", "garment-b"), strict=True):
        field = row.find_element("css selector", "input[name=adapter]")
        field.clear()
        field.send_keys(adapter)
    _css(browser, "#compare-run").click()
    _wait(browser, lambda b: len(_loaded_images(b, "#compare-grid img")) == 2)
    captions = [c.text for c in _all(browser, "#compare-grid figcaption")]
    assert "adapter=garment-a" in captions[0] and "adapter=garment-b" in captions[1]
    assert all(c.endswith(("(succeeded)", "(already-complete)")) for c in captions), captions
    _screenshot(browser, screenshots / "studio-compare.png")


def test_open_a_batch_report(studio, browser, screenshots):
    _css(browser, "#tab-button-batches").click()
    _wait(browser, lambda b: _all(b, "#batch-list tbody tr[data-batch]"))
    _all(browser, "#batch-list tbody tr[data-batch]")[0].click()
    _wait(browser, lambda b: len(_all(b, "#report-rows tbody tr")) == 2)
    assert _loaded_images(browser, "#report-rows img")
    _wait(browser, lambda b: _loaded_images(b, "#contact-sheets img"))
    csv_link = _css(browser, "#report-csv").get_attribute("href")
    assert csv_link.endswith("/files/report.csv")
    answer = browser.execute_script(
        "return fetch(arguments[0]).then(r => r.text())", csv_link
    )  # the CSV the link downloads
    assert answer.splitlines()[0].startswith("row,status")
    _screenshot(browser, screenshots / "studio-batches.png")


def test_start_a_batch_from_an_uploaded_manifest(studio, browser, tmp_path):
    key = f"{studio.backend.stack.input_prefix}astronaut.jpg"  # uploaded by the outfit test
    manifest = tmp_path / "two-prompts.csv"
    manifest.write_text(f"image,prompt,adapter\n{key},a red shirt,garment-a\n{key},a blue shirt,nonesuch\n")
    shown = _css(browser, "#report-title").text  # the compare batch's report, opened before
    _css(browser, "#allow-invalid").click()
    _css(browser, "#manifest-file").send_keys(str(manifest))
    _wait(browser, lambda b: _css(b, "#batch-status").text.startswith(("batch succeeded", "batch failed")))
    _wait(browser, lambda b: _css(b, "#report-title").text not in {"", shown})
    assert len(_all(browser, "#report-rows tbody tr")) == 2
    statuses = [td.text for td in _all(browser, "#report-rows tbody tr td:nth-child(2)")]
    failures = [td.text for td in _all(browser, "#report-rows tbody tr td.failure")]
    assert statuses[0] in {"succeeded", "already-complete"} and statuses[1] in {"failed", "invalid"}
    assert "nonesuch" in failures[1]  # the failure cause, in words


def test_a_non_image_is_refused_with_the_workflows_message(studio, browser, tmp_path):
    _css(browser, "#tab-button-tryon").click()
    before = len(studio.backend.jobs())
    text = tmp_path / "notes.txt"
    text.write_text("not a photo")
    _choose_file(browser, text)
    _css(browser, "#run").click()
    _wait(browser, lambda b: not _css(b, "#run-error").get_attribute("hidden"))
    message = _css(browser, "#run-error").text
    assert message == "photo: notes.txt must end with one of .jpg, .jpeg, .png, .webp"
    disguised = tmp_path / "notes.png"  # an image's name, not an image's bytes
    disguised.write_text("not a photo either")
    _choose_file(browser, disguised)
    _css(browser, "#run").click()
    _wait(
        browser,
        lambda b: _css(b, "#run-error").text.startswith("photo: ") and _css(b, "#run-error").text != message,
    )
    refusal = _css(browser, "#run-error").text
    from tryon.core import imaging
    from tryon.core.errors import RequestError

    with pytest.raises(RequestError) as expected:  # the workflow's own wording
        imaging.read_header(disguised.read_bytes(), field="photo")
    assert refusal == str(expected.value)
    assert "Traceback" not in browser.page_source
    assert len(studio.backend.jobs()) == before  # nothing was uploaded, no execution started


def test_jobs_lists_recent_executions(studio, browser, screenshots):
    _css(browser, "#tab-button-jobs").click()
    _wait(browser, lambda b: len(_all(b, "#jobs-table tbody tr.job")) >= 3)
    statuses = {td.text for td in _all(browser, "#jobs-table tbody tr.job td:nth-child(2)")}
    assert "SUCCEEDED" in statuses
    link = _all(browser, "#jobs-table a")[0].get_attribute("href")
    assert urlparse(link).path == "/api/object"
    _screenshot(browser, screenshots / "studio-jobs.png")


def test_the_page_requests_nothing_but_the_app(studio, browser):
    _collect_requests(browser)
    seen = browser.requests_seen
    assert len(seen) > 20
    outside = [u for u in seen if not (u.startswith(studio.url + "/") or u.startswith(("data:", "blob:")))]
    assert outside == []


def test_the_app_reads_nothing_outside_the_stacks_prefixes(studio):
    from starlette.testclient import TestClient

    client = TestClient(studio.app)
    stack = studio.backend.stack
    for uri in (
        f"s3://{stack.output_bucket}/elsewhere/secret.json",
        f"s3://{stack.input_bucket}/batches/../secret.json",
        "s3://another-bucket/results/x.png",
    ):
        answer = client.get("/api/object", params={"uri": uri})
        assert answer.status_code == 400 and "outside the stack's" in answer.json()["error"]


def test_the_stack_back_end_through_a_boto3_session(studio, tmp_path):
    """``tryon studio --stack NAME``: the same moto stack found by name with a session's clients, a job
    run through the app's API (uploads, EventBridge, the execution followed, results downloaded)."""
    import time

    from starlette.testclient import TestClient

    from tryon.studio.app import create_app
    from tryon.studio.launch import open_backend

    with open_backend("tryon-local", [], region="us-east-1") as backend:
        assert not backend.local and backend.label == "stack tryon-local (us-east-1)"
        client = TestClient(create_app(backend, tmp_path))
        config = client.get("/api/config").json()
        assert config["stack"] == "tryon-local" and config["batches"]
        body = {
            "photo": {"sample": "astronaut.jpg"},
            "garments": [{"mode": "box", "mask_box": "0.2,0.4,0.8,0.9", "prompt": "a denim jacket"}],
            "job": {"seed": "7"},
        }
        run = client.post("/api/runs", json=body).json()
        deadline = time.monotonic() + WAIT_S
        while (view := client.get(f"/api/runs/{run['id']}").json())["status"] not in {"succeeded", "failed"}:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert view["status"] == "succeeded", view
        assert "  -> Segment" not in view["lines"]  # a box needs no CLIPSeg call (no keep-regions)
        assert view["manifest"]["garments"][0]["mask_mode"] == "box"
        assert {"mask.png", "manifest.json", "preview.jpg"} <= set(view["files"])
        image = client.get(f"/api/runs/{run['id']}/files/{view['files'][0]}")
        assert image.status_code == 200
        bad = client.post("/api/runs", json={**body, "job": {"steps": "500"}})
        from tryon.core.errors import RequestError
        from tryon.local.runner import check_parameters

        with pytest.raises(RequestError) as cli:  # what tryon run/submit print after "error:"
            check_parameters({"steps": "500"}, None)
        assert bad.status_code == 400 and bad.json()["error"] == str(cli.value)
        assert "steps" in str(cli.value) and "150" in str(cli.value)
        # a text query and a packshot (the tiny inpainting model carries an IP-Adapter)
        packshot = base64.b64encode(save_photo(tmp_path / "top.png", (64, 64)).read_bytes()).decode()
        dressed = {
            **body,
            "garments": [
                {"mode": "text", "query": "a shirt", "packshot": {"name": "top.png", "data": packshot}}
            ],
        }
        run = client.post("/api/runs", json=dressed).json()
        while (view := client.get(f"/api/runs/{run['id']}").json())["status"] not in {"succeeded", "failed"}:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert view["status"] == "succeeded", view["error"]
        assert "-> Segment" in [line.strip() for line in view["lines"]]
        garment = view["manifest"]["garments"][0]
        assert garment["mask_mode"] == "text" and garment["params"]["query"] == "a shirt"
        assert "/garments/top.png" in json.dumps(garment["packshot"])  # uploaded under GarmentPrefix first
        failing = {**body, "garments": [{**body["garments"][0], "adapter": "nonesuch"}]}
        run = client.post("/api/runs", json=failing).json()
        while (view := client.get(f"/api/runs/{run['id']}").json())["status"] not in {"succeeded", "failed"}:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        # the execution's failure in words, as tryon submit prints it after "error:"
        assert view["status"] == "failed" and view["error"].startswith(
            "inpaint: endpoint tryon-sd-inpaint refused"
        )
        assert "unknown adapter 'nonesuch'" in view["error"] and "Traceback" not in view["error"]
        assert len(view["files"]) == 1 and view["files"][0].endswith(".json")  # the failure record
        assert any(row["status"] == "SUCCEEDED" for row in client.get("/api/jobs").json()["jobs"])
        assert client.get("/api/batches").json()["batches"]


def test_screenshots_were_written(screenshots):
    names = {p.name for p in Path(screenshots).glob("studio-*.png")}
    assert {"studio-try-on.png", "studio-compare.png", "studio-batches.png", "studio-jobs.png"} <= names
