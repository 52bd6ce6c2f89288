"""``tryon eval`` end to end: the workflow on a 4-row manifest, existing results, dataset folders,
refusals, the HTML report, and ``tryon eval compare``."""

from __future__ import annotations

import json

import pytest
from bs4 import BeautifulSoup
from PIL import Image
from support.evaluation import person

from tryon.cli import run
from tryon.evaluation import eval_compare

pytestmark = pytest.mark.slow


def _write_rows(folder, count=4, *, results=True, truth=True):
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["id,photo,result,ground_truth,packshot,reference_mask,mask,class,prompt"]
    for i in range(count):
        photo, mask = person(shade=10 * i)
        photo.save(folder / f"p{i}.png")
        mask.save(folder / f"m{i}.png")
        result = photo.copy()
        result.paste((30, 30, 200), (18, 32, 46, 68))
        result.save(folder / f"r{i}.png")
        cls = "upper-body" if i % 2 else "dress"
        lines.append(
            f"row{i},p{i}.png,{f'r{i}.png' if results else ''},{f'p{i}.png' if truth else ''},p{i}.png,"
            f"m{i}.png,m{i}.png,{cls},a blue shirt"
        )
    (folder / "rows.csv").write_text("\n".join(lines) + "\n")
    return folder / "rows.csv"


def test_eval_runs_the_workflow_on_a_4_row_manifest_and_writes_the_three_reports(
    tiny_models, tiny_metric_models, tmp_path, capsys
):
    data = tmp_path / "data"
    data.mkdir()
    lines = ["photo,prompt,query,class"]
    for i in range(4):
        person(size=(96, 80), shade=15 * i)[0].save(data / f"shopper{i}.png")
        lines.append(f"shopper{i}.png,a blue shirt,a red garment,{'upper-body' if i < 2 else 'dress'}")
    (data / "rows.csv").write_text("\n".join(lines) + "\n")
    models = [f"clipseg={tiny_models['clipseg']}", f"sd_inpaint={tiny_models['sd-inpaint']}"]
    models.append(f"sd_upscale={tiny_models['sd-x4-upscaler']}")
    out = tmp_path / "eval"
    argv = ["eval", str(data / "rows.csv"), "--out", str(out), "--metric-models", str(tiny_metric_models)]
    code = run([*argv, "--metrics", "prompt,preservation,unpaired", "--json", *_models(models)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    answer = json.loads(captured.out)
    assert set(answer["files"]) == {"json", "csv", "html"}
    document = json.loads((out / "eval.json").read_text())
    assert len(document["rows"]) == 4 and document["source"].endswith("(local workflow)")
    ran = [r for r in document["rows"] if r["status"] == "ok"]
    for row in ran:  # the workflow's own mask and photo-sized image were scored
        assert row["result"].endswith("inpainted-0.png") and row["mask"].endswith("mask.png")
        assert "clip_t" in row["metrics"]
        # our edge: not one pixel outside the mask changed
        assert row["metrics"]["changed_outside"] == 0.0 and row["metrics"]["changed_outside_pixels"] == 0
    unscored = [r for r in document["rows"] if r["status"] != "ok"]
    assert all(r["status"] in {"no-garment-found"} or r["status"].startswith("failed") for r in unscored)
    if len(ran) >= 2:
        assert document["set_metrics"]["real_set"] == "photos"
    csv_lines = (out / "eval.csv").read_text().splitlines()
    assert len(csv_lines) == 5 and "changed_outside" in csv_lines[0]
    soup = BeautifulSoup((out / "eval.html").read_text(), "html.parser")
    assert soup.find("table", class_="anchors") is not None


def _models(assignments):
    return [arg for assignment in assignments for arg in ("--models", assignment)]


def test_existing_results_report_every_family_with_plots_worst_rows_and_anchors(
    tiny_metric_models, tmp_path, capsys
):
    manifest = _write_rows(tmp_path / "data")
    out = tmp_path / "eval"
    code = run(["eval", "run", str(manifest), "--out", str(out), "--metric-models", str(tiny_metric_models)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    document = json.loads((out / "eval.json").read_text())
    assert document["families"] == ["paired", "unpaired", "garment", "prompt", "mask", "preservation"]
    summary = document["summary"]
    assert 0 < summary["ssim"]["mean"] < 1 and summary["mask_iou"]["mean"] == 1.0
    assert summary["changed_outside"]["mean"] == 0.0
    assert set(document["per_class"]) == {"dress", "upper-body"}
    assert document["set_metrics"]["fid"] >= 0 and document["set_metrics"]["real_set"] == "ground truths"
    soup = BeautifulSoup((out / "eval.html").read_text(), "html.parser")
    headings = [h.get_text() for h in soup.find_all("h2")]
    for heading in ("Metrics", "Set metrics", "By garment class", "Distributions", "Worst rows"):
        assert heading in headings
    assert soup.find("table", class_="metrics").find_all("tr")[1].find("td").get_text() == "ssim"
    plots = soup.select(".plots img")
    assert len(plots) >= 5 and all(img["src"].startswith("data:image/png;base64,") for img in plots)
    assert soup.select(".worst img")  # thumbnails of the worst rows
    worst = soup.select_one("table.worst")
    assert [th.get_text() for th in worst.find_all("th")][2:] == [
        "photo", "mask", "reference mask", "result", "ground truth"
    ]  # fmt: skip
    assert worst.find("td").get_text() in {f"row{i}" for i in range(4)}  # no seed: none shown
    anchors = soup.find("table", class_="anchors").get_text()
    assert "CatVTON" in anchors and "0.870" in anchors and "arXiv:2407.15886" in anchors
    assert "ssim" in captured.out and "eval.html" in captured.out


def test_refusals_are_one_line_naming_the_file_or_flag(tiny_metric_models, tmp_path, capsys, monkeypatch):
    manifest = _write_rows(tmp_path / "data", truth=False)

    def refused(*argv):
        code = run(["eval", str(manifest), "--out", str(tmp_path / "out"), *argv])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, err
        return err

    err = refused("--metrics", "paired", "--metric-models", str(tiny_metric_models))
    assert "ground_truth: row 2 (row0) has none, and --metrics paired needs it" in err
    # images of different sizes: the result and the photo it is compared with
    Image.new("RGB", (50, 50)).save(tmp_path / "data" / "r1.png")
    err = refused("--metrics", "preservation")
    assert "r1.png is 50x50 but its photo" in err and "p1.png is 64x96" in err and "different sizes" in err
    # metric weights: neither a folder nor the caches, and no network (offline)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    err = refused("--metrics", "garment")
    assert "--metric-models" in err and "--download" in err and "openai/clip-vit-large-patch14" in err
    err = refused("--metrics", "garment", "--metric-models", str(tmp_path))
    assert f"{tmp_path}/clip/config.json is missing" in err
    err = refused("--metrics", "sharpness")
    assert "--metrics: unknown family 'sharpness'" in err
    assert not (tmp_path / "out" / "eval.json").exists()


def test_dataset_folder_in_the_viton_hd_layout(tiny_metric_models, tmp_path, capsys):
    root = tmp_path / "viton"
    for sub in ("image", "cloth", "image-parse-v3", "results"):
        (root / sub).mkdir(parents=True)
    for i in range(3):
        photo = person(shade=20 * i)[0]
        photo.save(root / "image" / f"0000{i}_00.jpg", quality=95)
        photo.crop((16, 30, 49, 71)).save(root / "cloth" / f"0000{i}_00.jpg")
        parse = Image.new("P", photo.size, 0)
        parse.putpalette([v for i in range(256) for v in (i, 255 - i, 7 * i % 256)])  # LIP-style colours
        parse.paste(5, (16, 30, 49, 71))  # label 5: upper clothes
        parse.paste(13, (20, 5, 40, 25))  # label 13: face, not the garment
        parse.save(root / "image-parse-v3" / f"0000{i}_00.png")
        photo.save(root / "results" / f"0000{i}_00.png")
    (root / "test_pairs.txt").write_text("00000_00.jpg 00001_00.jpg\n")
    out = tmp_path / "out"
    code = run(["eval", str(root), "--results", str(root / "results"), "--out", str(out),
                "--metrics", "paired,garment", "--metric-models", str(tiny_metric_models)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    document = json.loads((out / "eval.json").read_text())
    assert [r["id"] for r in document["rows"]] == ["00000_00", "00001_00", "00002_00"]
    assert document["summary"]["ssim"]["mean"] > 0.95  # the results are the (re-encoded) photos
    reference = Image.open(out / "reference-masks" / "00000_00.png")
    assert reference.getpixel((20, 40)) == 255 and reference.getpixel((25, 10)) == 0


#: DressCode's categories, the label each garment is painted with in the tiny label maps, and the
#: labels its reference mask takes (4 upper clothes; 5 skirt, 6 pants; 7 dress).
DRESSCODE = {"upper_body": (4, {4}), "lower_body": (6, {5, 6}), "dresses": (7, {7})}


def _dresscode(root, *, per_category=2):
    """A tiny DressCode test folder: per category images/ (X_0 person, X_1 garment), label_maps/ (X_4),
    test_pairs_paired.txt and test_pairs_unpaired.txt."""
    number = 0
    for category, (label, _) in DRESSCODE.items():
        for sub in ("images", "label_maps"):
            (root / category / sub).mkdir(parents=True)
        stems = []
        for _ in range(per_category):
            stem = f"{number:06d}"
            number += 1
            photo = person(shade=25 * number)[0]
            photo.save(root / category / "images" / f"{stem}_0.jpg", quality=95)
            photo.crop((16, 30, 49, 71)).save(root / category / "images" / f"{stem}_1.jpg")
            labels = Image.new("L", photo.size, 0)
            labels.paste(label, (16, 30, 49, 71))  # the garment
            labels.paste(5 if label == 4 else 4, (16, 72, 49, 90))  # another garment: not in the mask
            labels.paste(11, (20, 5, 40, 25))  # head
            labels.save(root / category / "label_maps" / f"{stem}_4.png")
            stems.append(stem)
        paired = "".join(f"{s}_0.jpg {s}_1.jpg\n" for s in stems)
        unpaired = "".join(f"{a}_0.jpg {b}_1.jpg\n" for a, b in zip(stems, stems[::-1], strict=True))
        (root / category / "test_pairs_paired.txt").write_text(paired)
        (root / category / "test_pairs_unpaired.txt").write_text(unpaired)
    return root


def test_dataset_folder_in_the_dresscode_layout(tiny_metric_models, tmp_path, capsys):
    root = _dresscode(tmp_path / "dresscode")
    results = tmp_path / "results"
    for category in DRESSCODE:  # upper_body's results in results/upper_body/, the others' in results/
        folder = results / category if category == "upper_body" else results
        folder.mkdir(parents=True, exist_ok=True)
        for image in sorted((root / category / "images").glob("*_0.jpg")):
            Image.open(image).save(folder / f"{image.stem}.png")
    out = tmp_path / "out"
    code = run(["eval", str(root), "--results", str(results), "--out", str(out),
                "--metrics", "paired,garment", "--metric-models", str(tiny_metric_models)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert "Loading weights" not in err  # the libraries' loading bars only with --verbose
    document = json.loads((out / "eval.json").read_text())
    ids = [r["id"] for r in document["rows"]]
    assert ids == ["upper_body/000000_0", "upper_body/000001_0", "lower_body/000002_0",
                   "lower_body/000003_0", "dresses/000004_0", "dresses/000005_0"]  # fmt: skip
    by_id = {r["id"]: r for r in document["rows"]}
    assert by_id["lower_body/000002_0"]["packshot"].endswith("lower_body/images/000002_1.jpg")
    assert by_id["upper_body/000000_0"]["result"] == str(results / "upper_body" / "000000_0.png")
    assert set(document["per_class"]) == {"upper-body", "lower-body", "dress"}
    assert document["summary"]["ssim"]["mean"] > 0.95  # the results are the (re-encoded) photos
    assert "clip_i" in document["summary"]
    # each category's reference mask: its garment labels of the label map, nothing else
    for number, (category, (_, labels)) in enumerate(DRESSCODE.items()):
        reference = Image.open(out / "reference-masks" / category / f"{2 * number:06d}.png")
        label_map = Image.open(root / category / "label_maps" / f"{2 * number:06d}_4.png")
        for xy in ((20, 40), (20, 80), (25, 10), (2, 2)):
            assert (reference.getpixel(xy) == 255) == (label_map.getpixel(xy) in labels), (category, xy)

    # unpaired: the pairs of test_pairs_unpaired.txt, no ground truth, results named <person>_<cloth>
    unpaired_results = tmp_path / "unpaired"
    unpaired_results.mkdir()
    for category in DRESSCODE:
        for line in (root / category / "test_pairs_unpaired.txt").read_text().split("\n")[:-1]:
            person_name, cloth = line.split()
            Image.open(root / category / "images" / person_name).save(
                unpaired_results / f"{person_name[:-4]}_{cloth[:-4]}.png"
            )
    options = [
        "--out",
        str(tmp_path / "u"),
        "--metrics",
        "garment",
        "--metric-models",
        str(tiny_metric_models),
    ]
    code = run(["eval", str(root), "--unpaired", "--results", str(unpaired_results), *options])
    err = capsys.readouterr().err
    assert code == 0, err
    rows = json.loads((tmp_path / "u" / "eval.json").read_text())["rows"]
    assert rows[0]["id"] == "upper_body/000000_0_000001_1" and rows[0]["ground_truth"] is None
    assert rows[0]["packshot"].endswith("upper_body/images/000001_1.jpg")

    # refusals in one line: paired metrics without ground truth, a pairs file naming a missing image,
    # mask quality of results that come without the mask they were painted in
    def refused(*argv):
        assert run(["eval", str(root), "--out", str(tmp_path / "r"), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        return err

    err = refused("--unpaired", "--results", str(unpaired_results), "--metrics", "paired")
    assert "ground_truth: row 1 (upper_body/000000_0_000001_1) has none, and --metrics paired needs it" in err
    err = refused("--results", str(results), "--metrics", "mask")
    assert "mask: row 1 (upper_body/000000_0) has none, and --metrics mask needs it" in err
    (root / "dresses" / "images" / "000005_1.jpg").unlink()
    err = refused("--results", str(results), "--metrics", "paired")
    assert "000005_1.jpg does not exist (named in" in err and "dresses/test_pairs_paired.txt" in err


def _document(values_by_seed, metric="ssim"):
    rows = [{"id": f"r{i}", "seed": seed, "metrics": {metric: value + 0.001 * i}}
            for seed, value in values_by_seed.items() for i in range(3)]  # fmt: skip
    return {"schema_version": 1, "rows": rows, "higher_is_better": {metric: True}, "set_metrics": {}}


def test_compare_marks_a_difference_significant_only_beyond_the_seed_noise():
    a = _document({0: 0.80, 1: 0.82, 2: 0.78})  # seed noise: std of the per-seed means 0.02
    b_far = _document({0: 0.90, 1: 0.91, 2: 0.89})
    b_near = _document({0: 0.81, 1: 0.79, 2: 0.83})
    far = eval_compare.compare(a, b_far)["metrics"][0]
    assert far["significant"] and far["better"] == "B" and far["diff"] == pytest.approx(0.1, abs=1e-9)
    assert far["noise"] == pytest.approx(((0.02**2 + 0.01**2) / 3) ** 0.5)
    near = eval_compare.compare(a, b_near)["metrics"][0]
    assert not near["significant"] and near["better"] is None
    one_seed = eval_compare.compare(_document({0: 0.8}), _document({0: 0.9}))
    assert one_seed["metrics"][0]["noise"] is None and not one_seed["metrics"][0]["significant"]
    assert "--seeds 2 or more" in one_seed["notes"][0]


def test_compare_cli_reads_two_evaluations(tiny_metric_models, tmp_path, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_document({0: 0.80, 1: 0.82, 2: 0.78})))
    b.write_text(json.dumps(_document({0: 0.90, 1: 0.91, 2: 0.89})))
    assert run(["eval", "compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "ssim" in out and "B better (significant)" in out
    assert run(["eval", "compare", str(a), str(tmp_path / "missing")]) == 2
    assert "is not an eval.json nor a folder holding one" in capsys.readouterr().err
