"""The whole fix-and-retrain loop of issue 22 in a real browser: a class folder with wrong labels
planted (tests/helpers.py `swap_labels`) chosen on the Data page, a tiny model trained on the Train
page, its likely label errors found on the Evaluate page, two of them relabelled by clicking and
typing in the fixer's grid, saved as version 2, retrained on it, and the two runs compared on the
Runs page on their shared test images.

Clicking and typing only, as in test_e2e_browser.py; screenshots of every step go to
`test-output/e2e-loop/`, with the server's log on failure.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from e2e_server import REPO_ROOT, StreamlitServer, launch_chromium
from test_e2e_browser import (
    PAGE_TIMEOUT_MS,
    Steps,
    chromium,  # noqa: F401 - the fixture
    configure_small_training,
    e2e_cache,  # noqa: F401 - the fixture
    final_message,
    open_page,
    set_number,
    start_training,
    wait_idle,
)

from cnnlab.analysis.evaluate import saved_evaluation
from cnnlab.data import versions
from cnnlab.runs.store import RunStore
from helpers import swap_labels, tree_hashes, write_dataset

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

OUTPUT_DIR = REPO_ROOT / "test-output" / "e2e-loop"
PER_CLASS = 30  # with the Data page's 15% test split, two of the six swapped images are test images
EPOCHS = 5  # enough for the swapped test images to be confident mistakes
# The fixer's grid: the label column (after image, path and "shown as"), and the height of its header row.
LABEL_COLUMN = 3
HEADER_HEIGHT = 35


@pytest.fixture
def folder(tmp_path: Path) -> tuple[Path, list[str]]:
    """A class folder of cats, dogs and owls (32x32 pixels) with six labels swapped on purpose, and those six."""
    root = write_dataset(tmp_path / "server-data" / "pets", per_class=PER_CLASS)
    return root, swap_labels(root)


@pytest.fixture
def server(
    chromium: str,  # noqa: F811 - the imported fixture
    e2e_cache: Path,  # noqa: F811 - the imported fixture
    tmp_path: Path,
    folder: tuple[Path, list[str]],
    request: pytest.FixtureRequest,
) -> Iterator[StreamlitServer]:
    """The app with an empty run store, server folders under the test's data folder, and its own datasets folder."""
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    for old in OUTPUT_DIR.glob("*.png"):
        old.unlink()
    env = {"CNNLAB_DATA_ROOTS": str(folder[0].parent), "CNNLAB_DATASETS_DIR": str(tmp_path / "datasets")}
    failed_before = request.session.testsfailed
    with StreamlitServer(tmp_path / "models", e2e_cache, env=env, log_path=OUTPUT_DIR / "server.log") as app:
        yield app
    if request.session.testsfailed > failed_before:
        print(f"----- Streamlit server log ({app.log_path}) -----\n{app.log()}")


@pytest.fixture
def page(server: StreamlitServer, chromium: str) -> Iterator[Page]:  # noqa: F811 - the imported fixture
    """A fresh browser page, tall enough that each step's screenshot shows the section it works in."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p, chromium)
        context = browser.new_context(viewport={"width": 1400, "height": 3000})
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        yield context.new_page()
        browser.close()


def keyed(key: str) -> str:
    """The CSS selector of the element Streamlit keyed `key` (a prefix of it, for keys with a suffix)."""
    return f'[class*="st-key-{key}"]'


def relabel_in_grid(page: Page, grid: Locator, row: int, label: str) -> None:
    """Relabel one row of a data_editor as a person does: click the row's first cell, move to the label
    column with the arrow keys, open its dropdown with Enter, type the class and pick it with Enter.

    glide-data-grid draws on a canvas, but keeps an accessible table of its cells (`glide-cell-<column>-<row>`)
    that says which cell is selected and what it holds: each step waits for the grid to get there, and
    typing waits for the cell's editor to open (keys typed before it opens move the selection instead).
    """
    canvas = grid.locator("canvas").first
    box = canvas.bounding_box()
    assert box is not None
    first = grid.locator('[data-testid="glide-cell-0-0"]')
    # A real click where the canvas draws the cell (the grid's scroller takes the pointer events above it).
    page.mouse.click(box["x"] + 12, box["y"] + HEADER_HEIGHT + 4)
    page.wait_for_function("(td) => td.getAttribute('aria-selected') === 'true'", arg=first.element_handle())
    for _ in range(row):
        page.keyboard.press("ArrowDown")
    for _ in range(LABEL_COLUMN):
        page.keyboard.press("ArrowRight")
    cell = grid.locator(f'[data-testid="glide-cell-{LABEL_COLUMN}-{row}"]')
    page.wait_for_function("(td) => td.getAttribute('aria-selected') === 'true'", arg=cell.element_handle())
    page.keyboard.press("Enter")
    editor = page.get_by_test_id("portal").locator(".gdg-clip-region")  # glide's cell editor, over the canvas
    editor.wait_for()
    page.keyboard.type(label)
    page.get_by_role("option", name=label, exact=True).wait_for()  # the dropdown's menu, left alone with it
    page.keyboard.press("Enter")
    editor.wait_for(state="detached")
    page.wait_for_function(
        "([td, label]) => td.textContent === label", arg=[cell.element_handle(), label], timeout=PAGE_TIMEOUT_MS
    )


def grid_paths(grid: Locator) -> list[str]:
    """The path column of a fixer's grid, row by row, from its accessible table (drawn shortly after the canvas)."""
    cells = grid.locator('[data-testid^="glide-cell-1-"]')
    cells.first.wait_for(state="attached")
    return [cells.nth(i).text_content() or "" for i in range(cells.count())]


def metric(page: Page, label: str) -> str:
    """The value a metric with this label shows."""
    box = page.locator('[data-testid="stMetric"]').filter(has=page.get_by_text(label, exact=True))
    return box.locator('[data-testid="stMetricValue"]').inner_text().strip()


def test_fix_two_labels_retrain_and_compare(
    page: Page,
    server: StreamlitServer,
    folder: tuple[Path, list[str]],
    tmp_path: Path,
) -> None:
    """Data (server folder) -> Train -> Evaluate: likely label errors, relabel two, save version 2 ->
    retrain on it -> Runs: the comparison on shared test images shows the two relabelled and the accuracies."""
    root, swapped = folder
    files_before = tree_hashes(root)
    step = Steps(page, OUTPUT_DIR)

    with step("data"):
        page.goto(server.url)
        page.get_by_role("heading", name="CNN Lab", exact=True).wait_for()
        open_page(page, "Data")
        page.get_by_text("Server folder", exact=True).click()
        page.get_by_label("Folder on the server").fill(str(root))
        page.get_by_label("Folder on the server").press("Enter")
        page.get_by_role("button", name="Use this folder").click()
        page.get_by_role("heading", name=f"Folder: {root}").wait_for()
        wait_idle(page)
        assert metric(page, "Images") == str(3 * PER_CLASS)
        page.get_by_text("Versions (1)").click()
        wait_idle(page)

    (dataset,) = [d for d in versions.list_datasets(tmp_path / "datasets") if d.source == root]
    first = versions.manifest_path(dataset, 1).read_bytes()
    manifest = dataset.manifest(1)
    # The two swapped images the run will hold out as test images; their true class is in their name.
    fixed = {p: p.split("_")[2] for p in swapped if manifest.entry(p).split == "test"}
    assert len(fixed) == 2, [(p, manifest.entry(p).split) for p in swapped]

    with step("train"):
        open_page(page, "Train")
        configure_small_training(page, epochs=EPOCHS)
        set_number(page, "Early-stopping patience (0 = off)", 0)
        start_training(page)
        assert f"completed after {EPOCHS} epochs" in final_message(page, "completed after")
        wait_idle(page)

    with step("label-errors"):
        open_page(page, "Evaluate")
        page.get_by_text("Look for likely label errors").click()
        page.locator(keyed("fixing-label-issues")).wait_for()
        wait_idle(page)

    with step("fixer"):
        page.locator(keyed("fixing-label-issues")).get_by_text("Fix labels").click()
        grid = page.locator(keyed("fix-label-issues-"))
        grid.locator("canvas").first.wait_for()
        wait_idle(page)
        rows = grid_paths(grid)
        assert set(fixed) <= set(rows), rows

    with step("relabel"):
        for path, label in fixed.items():
            relabel_in_grid(page, grid, rows.index(path), label)
        page.get_by_role("button", name="Add 2 changes to the pending edits").click()
        page.get_by_role("heading", name="Pending edits (2)").wait_for()
        wait_idle(page)
        body = page.locator("body").inner_text()
        for path, label in fixed.items():
            assert f"{path}: {manifest.entry(path).label} → {label}" in body

    with step("save-version"):
        page.get_by_role("button", name="Save as version 2").click()
        page.get_by_text("Saved version 2 (from version 1): 2 relabelled.").wait_for()
        wait_idle(page)

    with step("retrain"):
        page.get_by_role("button", name="Retrain on version 2").click()
        page.get_by_text("Training on version 2 started.").wait_for()
        wait_idle(page)
        open_page(page, "Train")
        assert f"completed after {EPOCHS} epochs" in final_message(page, "completed after")
        wait_idle(page)

    store = RunStore(tmp_path / "models")
    after_run, before_run = (r for r in store.list() if not r.is_demo)
    assert (before_run.record.dataset.version, after_run.record.dataset.version) == (1, 2)

    with step("compare"):
        open_page(page, "Runs")
        page.get_by_text("Compare them").click()
        page.get_by_text("Shared test images", exact=True).wait_for()
        wait_idle(page)

    second = dataset.manifest(2)
    tests = [e for e in second.entries if e.split == "test"]
    labels = {e.path: e.label for e in tests}
    predicted = saved_evaluation(before_run).predictions
    before_right = sum(labels[p] == q for p, q in zip(predicted["path"], predicted["predicted_label"], strict=True))
    body = page.locator("body").inner_text()
    assert f"{len(tests)} test images both runs held out" in body
    assert "2 of them are labelled otherwise in 'pets' version 1" in body  # the older run's version, named
    assert metric(page, "Shared test images") == str(len(tests))
    assert metric(page, "Accuracy before") == f"{before_right / len(tests):.1%}"
    assert metric(page, "Accuracy after") == f"{after_run.record.metrics.test_accuracy:.1%}"
    captions = page.locator('[data-testid="stImageCaption"]').all_inner_texts()
    relabelled = sorted(c for c in captions if " → " in c.split(" · ")[0])
    assert [c.split(" · ")[0] for c in relabelled] == sorted(
        f"{manifest.entry(p).label} → {q}" for p, q in fixed.items()
    )
    flipped = re.fullmatch(r"\+(\d+) / -(\d+)", metric(page, "Flipped"))
    assert flipped is not None
    assert (
        "Relabelled (2)" in body and f"Wrong → right ({flipped[1]})" in body and f"Right → wrong ({flipped[2]})" in body
    )
    assert len(captions) == 2 + int(flipped[1]) + int(flipped[2])

    with step("versions"):
        open_page(page, "Data")
        page.get_by_text("Versions (2)").click()
        page.get_by_text("From version 1 to version 2: 2 relabelled.").wait_for()
        wait_idle(page)
        assert page.get_by_text("Relabelled: 2").count() == 1

    # On disk: version 2 is version 1 with the two relabels, version 1 and the user's files unchanged.
    assert versions.manifest_path(dataset, 1).read_bytes() == first
    changed = {e.path: e.label for e in second.entries if e.label != manifest.entry(e.path).label}
    assert changed == fixed
    assert second.parent == 1 and second.change == "2 relabelled"
    assert tree_hashes(root) == files_before
