"""Batch prediction at folder scale: a folder or zip of images streamed into a CSV (`cnnlab.deploy.batch`),
`cnnlab predict RUN FOLDER|ZIP --csv` and the Predict page's zip of images."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cnnlab.cli import main
from cnnlab.deploy.batch import folder_source, predict_to_csv, write_predictions, zip_source
from cnnlab.deploy.prediction import predict
from helpers import class_image, copied_models, image_bytes, last_json, one_line_error, open_page


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> Path:
    """A folder of 10 good PNGs (some in a nested folder), a text file named like an image, a
    truncated PNG, and a note that is not an image."""
    root = tmp_path_factory.mktemp("pictures")
    rng = np.random.default_rng(3)
    (root / "nested" / "deeper").mkdir(parents=True)
    colors = [(200, 40, 40), (40, 200, 40), (40, 40, 200)]
    for i in range(10):
        folder = root if i < 4 else root / "nested" if i < 8 else root / "nested" / "deeper"
        (folder / f"img_{i:02d}.png").write_bytes(image_bytes(class_image(colors[i % 3], rng)))
    (root / "corrupt.png").write_bytes(b"definitely not a picture")
    whole = image_bytes(class_image(colors[0], rng))
    (root / "nested" / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (root / "notes.txt").write_text("not an image, left out")
    return root


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def expected(trained_run, folder: Path, names: list[str]) -> dict[str, str]:
    """What `predict` says about the same files (with the run's temperature): label or error, by name."""
    run = trained_run["run"]
    results = predict(
        run.load_model(),
        run.class_names,
        run.model_config(),
        [folder / n for n in names],
        names=names,
        errors="report",
        temperature=run.temperature,
    )
    return {r.name: r.label if r.label else "error" for r in results}


def to_csv(trained_run, source, out: Path, **options):
    run = trained_run["run"]
    return predict_to_csv(run.load_model(), run.class_names, run.model_config(), source, out, **options)


def test_a_folder_gives_one_row_per_image_as_predict_labels_them(trained_run, pictures, tmp_path):
    run = trained_run["run"]
    out = tmp_path / "out.csv"
    seen = []
    summary = to_csv(
        trained_run,
        folder_source(pictures),
        out,
        batch_size=4,
        temperature=run.temperature,
        progress=lambda done, total: seen.append((done, total)),
    )
    rows = rows_of(out.read_text())
    names = [r["image"] for r in rows]
    assert names == sorted(names) and len(names) == 12  # the note is not an image: left out
    assert summary.num_images == 12 and summary.num_unreadable == 2 and summary.num_skipped == 1
    assert seen == [(4, 12), (8, 12), (12, 12)]
    assert list(rows[0]) == ["image", "label", "confidence", *(f"P({c})" for c in run.class_names), "error"]
    want = expected(trained_run, pictures, names)
    assert {r["image"]: r["label"] or "error" for r in rows} == want
    bad = {r["image"]: r["error"] for r in rows if r["error"]}
    assert "not an image" in bad["corrupt.png"] and "truncated or corrupt" in bad["nested/truncated.png"]
    for r in rows:
        if not r["error"]:
            probs = [float(r[f"P({c})"]) for c in run.class_names]
            assert sum(probs) == pytest.approx(1.0, abs=1e-4) and float(r["confidence"]) == max(probs)


def test_a_zip_gives_the_same_rows_and_refuses_a_member_outside_it(trained_run, pictures, tmp_path):
    run = trained_run["run"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(pictures.rglob("*")):
            if path.is_file():
                zf.write(path, f"wrapped/{path.relative_to(pictures).as_posix()}")
        zf.writestr("../escape.png", (pictures / "img_00.png").read_bytes())
        zf.writestr("__MACOSX/._img_00.png", b"resource fork")
    out = io.StringIO()
    summary = write_predictions(
        run.load_model(),
        run.class_names,
        run.model_config(),
        zip_source(buf.getvalue()),
        out,
        batch_size=5,
        temperature=run.temperature,
    )
    rows = {r["image"]: r for r in rows_of(out.getvalue())}
    assert "outside its own folder" in rows.pop("../escape.png")["error"]
    assert summary.num_images == 13 and summary.num_unreadable == 3
    names = [n.removeprefix("wrapped/") for n in rows]
    assert {n: rows[f"wrapped/{n}"]["label"] or "error" for n in names} == expected(trained_run, pictures, names)


def test_an_interrupted_prediction_leaves_no_csv(trained_run, pictures, tmp_path):
    out = tmp_path / "out.csv"

    def stop(done: int, total: int) -> None:
        if done >= 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        to_csv(trained_run, folder_source(pictures), out, batch_size=4, progress=stop)
    assert list(tmp_path.iterdir()) == []  # neither the CSV nor its temporary


def test_a_folder_without_images_or_a_bad_zip_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("no pictures here")
    with pytest.raises(ValueError, match=r"No images found \(1 other files\)"):
        folder_source(tmp_path)
    with pytest.raises(ValueError, match="not a readable zip"):
        zip_source(b"not a zip")


def test_a_zip_bomb_member_is_a_row_with_its_reason_and_the_rest_are_read(pictures):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bomb.png", bytes(4 << 20))
        zf.write(pictures / "img_00.png", "good.png")
    items = {item.name: item for item in zip_source(buf.getvalue()).items()}
    assert "zip bomb" in items["bomb.png"].error and items["bomb.png"].source is None
    assert items["good.png"].source == (pictures / "img_00.png").read_bytes()
    with pytest.raises(ValueError, match="expand to"):
        zip_source(buf.getvalue(), max_total_bytes=1000)


def test_cli_predicts_a_folder_into_a_csv_and_exits_2_on_bad_input(
    trained_run, pictures, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(trained_run["base"] / "models"))
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(trained_run["cache"]))
    run_id, out = trained_run["run"].id, tmp_path / "out.csv"
    assert main(["predict", run_id, str(pictures), "--csv", str(out), "--batch-size", "8", "--json"]) == 0
    result = last_json(capsys)
    assert result["images"] == 12 and result["unreadable"] == 2 and result["csv"] == str(out)
    rows = rows_of(out.read_text())
    assert (
        len(rows) == 12
        and result["unlike_training_column"]
        and {r["unlike_training"] for r in rows} <= {"True", "False", ""}
    )
    assert main(["predict", run_id, str(pictures)]) == 2
    assert "add --csv" in one_line_error(capsys)
    assert main(["predict", run_id, str(tmp_path / "missing"), "--csv", str(tmp_path / "x.csv")]) == 2
    assert "does not exist" in one_line_error(capsys)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["predict", run_id, str(empty), "--csv", str(tmp_path / "x.csv")]) == 2
    assert "No images found" in one_line_error(capsys)
    assert not (tmp_path / "x.csv").exists()


def test_the_predict_page_offers_a_zip_of_images_as_a_csv(app, trained_run, pictures, tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(copied_models(trained_run["run"], tmp_path / "models")))
    at = open_page(app, "pages/predict.py")
    at.radio(key="image-source").set_value("Zip of images").run()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path in sorted(pictures.rglob("*.png")):
            zf.write(path, path.relative_to(pictures).as_posix())
    at.file_uploader(key="images-zip").set_value(("shots.zip", buf.getvalue(), "application/zip")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("12 images, 2 unreadable" in m.value for m in at.markdown)
    table = at.dataframe[0].value
    assert len(table) == 12 and table["error"].notna().sum() == 2
    assert at.get("download_button")
