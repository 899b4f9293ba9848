"""The whole user path in a real browser: Data, Train (live chart, page switch, Stop), Evaluate, Predict, Runs.

Starts `streamlit run streamlit_app.py` on a free port with its own run store, drives Debian's
Chromium with Playwright by clicking and typing only, and saves a full-page screenshot of every
step under `test-output/e2e/` (with the server's log) so a failure can be looked at.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from e2e_server import REPO_ROOT, StreamlitServer, find_chromium, launch_chromium

from cnnlab.data.sample import SAMPLE_CLASSES

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

OUTPUT_DIR = REPO_ROOT / "test-output" / "e2e"
MIN_GRID = 12  # the Data page shows a page of thumbnails, at least this many
# Streamlit reruns and the first TensorFlow import take seconds on a busy 2-core machine.
PAGE_TIMEOUT_MS = 60_000
TRAIN_TIMEOUT_MS = 120_000
LIVE_EPOCHS = 10  # the first training, watched epoch by epoch: long enough to span several polls
EXCEPTION = '[data-testid="stException"]'
# The live job's Stop (key "stop-job"), not Streamlit's own Stop in the header while a script runs.
STOP_JOB = ".st-key-stop-job button"
APP_IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
# The live training curves are keyed `curves-<job id>`; the element carries the class `st-key-curves-<job id>`.
CURVES_KEYS_JS = """() => [...document.querySelectorAll('[class*="st-key-curves-"]')]
    .map((el) => [...el.classList].find((c) => c.startsWith("st-key-curves-")))"""
# Number of epochs drawn in a plotly chart's "Training" trace (-1 while there is no chart).
# The confusion matrix cell with the most images: its labels, count and where it is on screen.
BUSIEST_CELL_JS = """(plot) => {
    const cells = plot._fullData[0];
    const counts = Array.from(cells.marker.color);
    const i = counts.indexOf(Math.max(...counts));
    const xa = plot._fullLayout.xaxis, ya = plot._fullLayout.yaxis, box = plot.getBoundingClientRect();
    return {
        true: cells.y[i], predicted: cells.x[i], count: counts[i],
        x: box.left + xa._offset + xa.d2p(cells.x[i]), y: box.top + ya._offset + ya.d2p(cells.y[i]),
    };
}"""

# The app's navigation as the sidebar shows it: each link's label.
NAV_LABELS_JS = """() => [...document.querySelectorAll('[data-testid="stSidebarNavLink"] span[label]')]
    .map((span) => span.getAttribute("label"))"""
MAIN_WIDTH_JS = """() => document.querySelector('[data-testid="stMainBlockContainer"]').getBoundingClientRect().width"""
APP_NAV = ["Home", "Data", "Train", "Evaluate", "Predict", "Inspect", "Runs", "Sweep"]

COUNT_POINTS_JS = """(selector) => {
    const plot = document.querySelector(selector);
    if (!plot) return -1;
    const traces = plot._fullData || plot.data || [];
    const training = traces.find((t) => t.name === "Training");
    return training && training.x ? training.x.length : 0;
}"""


def _cannot_run(reason: str) -> None:
    """Skip loudly, or fail when CI says the browser test must run (CNNLAB_REQUIRE_BROWSER=1)."""
    reason = f"BROWSER TEST NOT RUN: {reason}"
    if os.environ.get("CNNLAB_REQUIRE_BROWSER", "").strip() == "1":
        pytest.fail(f"{reason} (CNNLAB_REQUIRE_BROWSER=1 requires it)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of the system Chromium; skip loudly without one (fail when CI requires a browser)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _cannot_run("the Python package 'playwright' is not installed (pip install -r requirements-dev.txt).")
    path = find_chromium()
    if path is None:
        _cannot_run("no Chromium found (apt-get install chromium); the whole-app path is untested.")
    return path


@pytest.fixture(scope="session")
def e2e_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache folder for the session, so the sample dataset is generated once."""
    return tmp_path_factory.mktemp("e2e-cache")


@pytest.fixture
def server(chromium: str, e2e_cache: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[StreamlitServer]:
    """The app on a free port with an empty run store; its log is printed if the test fails."""
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    for old in OUTPUT_DIR.glob("*.png"):
        old.unlink()
    failed_before = request.session.testsfailed
    app = StreamlitServer(tmp_path / "models", e2e_cache, log_path=OUTPUT_DIR / "server.log")
    with app:
        yield app
    if request.session.testsfailed > failed_before:
        print(f"----- Streamlit server log ({app.log_path}) -----\n{app.log()}")


@pytest.fixture
def page(server: StreamlitServer, chromium: str) -> Iterator[Page]:
    """A fresh browser page on a desktop-sized viewport."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p, chromium)
        context = browser.new_context(viewport={"width": 1400, "height": 2000})
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        yield context.new_page()
        browser.close()


class Steps:
    """Numbered steps: each ends with a check for Streamlit exceptions and a full-page screenshot."""

    def __init__(self, page: Page, output_dir: Path = OUTPUT_DIR) -> None:
        self.page, self.number, self.output_dir = page, 0, output_dir
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.number += 1
        shot = self.output_dir / f"{self.number:02d}-{name}.png"
        started = time.monotonic()
        try:
            yield
            self.check_no_exception(name)
        except BaseException:
            self.page.screenshot(path=str(shot.with_name(f"{shot.stem}-FAILED.png")), full_page=True)
            raise
        finally:
            self.seconds[name] = time.monotonic() - started
            print(f"step {self.number:02d} {name}: {self.seconds[name]:.1f}s")
        self.page.screenshot(path=str(shot), full_page=True)

    def check_no_exception(self, name: str) -> None:
        """Fail on a Streamlit exception element or a traceback anywhere on the page."""
        errors = self.page.locator(EXCEPTION)
        if errors.count():
            pytest.fail(f"Step '{name}': Streamlit showed an exception:\n{errors.first.inner_text()}")
        body = self.page.locator("body").inner_text()
        assert "Traceback" not in body, f"Step '{name}': the page shows a traceback:\n{body[-2000:]}"


def open_page(page: Page, title: str) -> None:
    """Click the page's sidebar link and wait until its title is shown and the script is idle."""
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title, exact=True).click()
    page.get_by_role("heading", name=title, exact=True).wait_for()
    wait_idle(page)


def wait_idle(page: Page, timeout: float = PAGE_TIMEOUT_MS) -> None:
    """Wait until no script run is in progress."""
    page.locator(APP_IDLE).wait_for(state="attached", timeout=timeout)


def set_slider(page: Page, label: str, steps_from_min: int, expected: str) -> None:
    """Move a sidebar slider with the keyboard (Home, then Right arrows) to `expected`."""
    slider = page.locator(f'[data-testid="stSidebar"] input[type="range"][aria-label="{label}"]')
    slider.focus()
    slider.press("Home")
    for _ in range(steps_from_min):
        slider.press("ArrowRight")
    page.wait_for_function(
        "([label, value]) => [...document.querySelectorAll('input[type=range]')]"
        ".some((el) => el.getAttribute('aria-label') === label && el.getAttribute('aria-valuetext') === value)",
        arg=[label, expected],
    )


def set_number(page: Page, label: str, value: int) -> None:
    """Type a value into a number input and commit it with Enter."""
    field = page.get_by_label(label, exact=True)
    field.fill(str(value))
    field.press("Enter")
    page.wait_for_function(
        "([label, value]) => [...document.querySelectorAll('input[type=number]')]"
        ".some((el) => el.getAttribute('aria-label') === label && el.value === value)",
        arg=[label, str(value)],
    )


def configure_small_training(page: Page, epochs: int) -> None:
    """A quick model: 32x32 pixels, 2 conv blocks, batch size 16, and `epochs` epochs."""
    set_slider(page, "Image size (pixels)", 0, "32")
    set_slider(page, "Conv blocks", 1, "2")
    set_slider(page, "Batch size", 1, "16")
    set_number(page, "Epochs", epochs)
    wait_idle(page)


def start_training(page: Page) -> str:
    """Press "Start training" and return the CSS selector of the new job's live training curves."""
    old_keys = page.evaluate(CURVES_KEYS_JS)
    page.get_by_role("button", name="Start training", exact=True).click()
    new_key = page.wait_for_function(
        f"(old) => ({CURVES_KEYS_JS})().find((key) => !old.includes(key)) || false",
        arg=old_keys,
        timeout=TRAIN_TIMEOUT_MS,
    ).json_value()
    return f".{new_key} .js-plotly-plot"


def wait_loss_points(page: Page, chart: str, at_least: int, timeout: float = TRAIN_TIMEOUT_MS) -> int:
    """Wait until the training curves show at least `at_least` epochs; return how many it showed then.

    The count comes from the same poll that saw it: a second query could land while a rerun
    redraws the chart.
    """
    found = page.wait_for_function(
        f"(chart) => {{ const n = ({COUNT_POINTS_JS})(chart); return n >= {at_least} ? n : null; }}",
        arg=chart,
        timeout=timeout,
        polling=100,
    )
    return int(found.json_value())


def final_message(page: Page, phrase: str, timeout: float = TRAIN_TIMEOUT_MS) -> str:
    """The text of the message that ends a training, e.g. "Run ... stopped after 1 epochs"."""
    message = page.locator('[data-testid="stAlert"]').filter(has_text=re.compile(rf"Run .* {phrase}"))
    message.wait_for(timeout=timeout)
    return " ".join(message.inner_text().split())


def stop_during_an_epoch(page: Page) -> None:
    """Press Stop once batches are being trained, and check that the run stopped in the epoch it was
    pressed in or the next (one may end between reading the progress and clicking).

    How long the stop takes is the benchmarks' business: on a loaded machine the validation,
    test evaluation and save that follow it can take a while.
    """
    progress = page.get_by_text(re.compile(r"Epoch \d+ of \d+, batch [1-9]\d* of \d+"))
    progress.wait_for(timeout=TRAIN_TIMEOUT_MS)
    epoch = int(re.search(r"Epoch (\d+) of", progress.inner_text()).group(1))  # type: ignore[union-attr]
    page.locator(STOP_JOB).click()
    stopped = re.search(r"stopped after (\d+) epochs", final_message(page, "stopped after"))
    assert stopped is not None and epoch <= int(stopped.group(1)) <= epoch + 1


def expect_value(locator: Locator, pattern: str, timeout: float = PAGE_TIMEOUT_MS) -> None:
    """Wait until an input's value matches `pattern` (a regular expression)."""
    from playwright.sync_api import expect

    expect(locator).to_have_value(re.compile(pattern), timeout=timeout)


def test_whole_user_path(page: Page, server: StreamlitServer, e2e_cache: Path, tmp_path: Path) -> None:
    """Data -> Train (live, switch pages, complete) -> Train and Stop -> Evaluate -> Predict -> Runs."""
    started = time.monotonic()
    step = Steps(page)

    with step("home"):
        page.goto(server.url)
        page.get_by_role("heading", name="CNN Lab", exact=True).wait_for()
        wait_idle(page)

    with step("data"):
        open_page(page, "Data")
        page.wait_for_function(
            f"() => document.querySelectorAll('[data-testid=\"stImageCaption\"]').length >= {MIN_GRID}"
        )
        wait_idle(page)
        captions = page.locator('[data-testid="stImageCaption"]').all_inner_texts()
        assert len(captions) >= MIN_GRID, f"Expected a grid of sample images with captions, found {len(captions)}"
        assert set(captions) <= set(SAMPLE_CLASSES), f"Captions are not class labels: {sorted(set(captions))}"
        assert len(set(captions)) >= 3, f"The grid should mix classes, found only {sorted(set(captions))}"

    with step("train-started"):
        open_page(page, "Train")
        configure_small_training(page, epochs=LIVE_EPOCHS)
        chart = start_training(page)
        page.locator(STOP_JOB).wait_for()

    with step("train-first-epoch"):
        first = wait_loss_points(page, chart, 1)
        # The page polls every 3 s and a later epoch takes about 1 s here (less on a faster machine),
        # so several may land between polls; a chart drawn only at the end would jump to all ten.
        assert first < LIVE_EPOCHS, f"The loss chart should grow while training, but it jumped from none to {first}"

    with step("runs-during-training"):
        # Leave while it trains: the training thread must not depend on the page being open.
        open_page(page, "Runs")
        expect_value(page.get_by_role("combobox", name="Run", exact=True), r"\[(running|completed)")

    with step("train-completed"):
        open_page(page, "Train")
        # The sidebar keeps what the user set before leaving the page.
        expect_value(page.get_by_label("Epochs", exact=True), rf"^{LIVE_EPOCHS}$")
        assert wait_loss_points(page, chart, LIVE_EPOCHS) == LIVE_EPOCHS
        assert f"completed after {LIVE_EPOCHS} epochs" in final_message(page, "completed after")

    with step("train-stopped"):
        configure_small_training(page, epochs=50)
        start_training(page)
        # Stop in the middle of the first epoch, once batches are being trained.
        stop_during_an_epoch(page)

    with step("evaluate"):
        open_page(page, "Evaluate")
        confusion = page.locator(".st-key-confusion .js-plotly-plot")
        confusion.wait_for()
        page.wait_for_function(
            "(el) => (el._fullData || []).some((t) => t.x && t.x.length > 0)", arg=confusion.element_handle()
        )
        wait_idle(page)

    with step("evaluate-cell"):
        # Click the fullest cell, where plotly draws it: that cell's images appear below the matrix.
        cell = page.evaluate(BUSIEST_CELL_JS, confusion.element_handle())
        page.mouse.click(cell["x"], cell["y"])
        heading = page.get_by_role(
            "heading", name=f"True {cell['true']}, predicted {cell['predicted']}: {cell['count']} images"
        )
        heading.wait_for(timeout=PAGE_TIMEOUT_MS)
        page.wait_for_function(
            f"() => document.querySelectorAll('[data-testid=\"stImageCaption\"]').length >= {min(cell['count'], 8)}"
        )
        wait_idle(page)

    sample_png = sorted((e2e_cache / "sample-v1-seed0" / "star").glob("*.png"))[0]
    with step("predict"):
        open_page(page, "Predict")
        with page.expect_file_chooser() as chooser:
            page.get_by_role("button", name=re.compile("Browse files|Upload")).click()
        chooser.value.set_files(sample_png)
        page.get_by_text(re.compile(rf"{re.escape(sample_png.name)}: ({'|'.join(SAMPLE_CLASSES)}) \(")).wait_for()
        # The four maps, drawn side by side in one chart whose panels carry the methods' names.
        maps = page.locator('[data-testid="stPlotlyChart"]').filter(has_text="SmoothGrad")
        maps.locator(".main-svg").first.wait_for(timeout=PAGE_TIMEOUT_MS)
        assert all(
            maps.get_by_text(name, exact=True).count() for name in ["Grad-CAM", "Integrated gradients", "Occlusion"]
        )
        wait_idle(page)

    with step("predict-bad-file"):
        fake = tmp_path / "notes.png"
        fake.write_text("this is a text file, not a picture\n")
        page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(fake)
        error = page.locator('[data-testid="stAlertContentError"]').filter(has_text="notes.png")
        error.wait_for()
        message = error.locator('[data-testid="stMarkdownContainer"]').inner_text().strip()
        assert "\n" not in message, f"The bad-file message should be one line: {message!r}"
        wait_idle(page)

    with step("runs"):
        open_page(page, "Runs")
        page.get_by_text("Manage a run").wait_for()
        page.get_by_role("combobox", name="Run", exact=True).click()
        options = page.get_by_role("option").all_inner_texts()
        page.keyboard.press("Escape")
        assert any("[completed" in o for o in options), options
        assert any("[stopped" in o for o in options), options

    print(f"browser path took {time.monotonic() - started:.0f}s")


@pytest.mark.parametrize("url_path", ["", "data", "train", "evaluate", "predict", "inspect", "runs", "sweep"])
def test_a_page_url_opened_first_on_a_fresh_server_runs_inside_the_app(
    page: Page, server: StreamlitServer, url_path: str
) -> None:
    """A bookmark or a reload after a restart: the first request the server gets is the page's own URL.

    The page must come with the app's title, wide layout and navigation, not as a file run alone.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    page.goto(f"{server.url}/{url_path}")
    heading = url_path.capitalize() or "CNN Lab"
    page.get_by_role("heading", name=heading, exact=True, level=1).wait_for()
    with contextlib.suppress(PlaywrightTimeout):  # then the assertion below shows the sidebar found instead
        shows_app_nav = f"(want) => JSON.stringify(({NAV_LABELS_JS})()) === JSON.stringify(want)"
        page.wait_for_function(shows_app_nav, arg=APP_NAV, timeout=PAGE_TIMEOUT_MS)
    assert page.evaluate(NAV_LABELS_JS) == APP_NAV
    expect(page).to_have_title("CNN Lab")
    # The app's wide layout: Streamlit's centred layout is at most 736 pixels wide.
    assert page.evaluate(MAIN_WIDTH_JS) > 900


def wait_chart_title(page: Page, key: str, prefix: str) -> None:
    """Wait until the plotly chart keyed `key` is drawn with a title starting with `prefix`.

    Looked up afresh on every poll: Streamlit replaces the element while the script reruns (and
    wraps the title in <b> tags).
    """
    page.wait_for_function(
        """([key, prefix]) => {
            const el = document.querySelector(`.st-key-${key} .js-plotly-plot`);
            return Boolean(el && el._fullLayout && (el._fullLayout.title.text || "").replace(/<[^>]*>/g, "").startsWith(prefix));
        }""",
        arg=[key, prefix],
    )


def test_inspect_page_shows_the_demo_models_feature_maps(page: Page, server: StreamlitServer) -> None:
    """Inspect for the demo run: feature maps drawn, a deeper layer chosen, its top images and pattern shown."""
    step = Steps(page)

    with step("inspect"):
        page.goto(server.url)
        page.get_by_role("heading", name="CNN Lab", exact=True).wait_for()
        open_page(page, "Inspect")
        expect_value(page.get_by_role("combobox", name="Run", exact=True), r"\(demo\)")
        wait_chart_title(page, "feature-maps", "conv_1: output 64x64x32")
        wait_idle(page)

    with step("inspect-layer"):
        page.get_by_role("combobox", name="Layer", exact=True).click()
        page.get_by_role("option", name=re.compile(r"conv_3 \(conv, 16x16x128\)")).click()
        wait_chart_title(page, "feature-maps", "conv_3: output 16x16x128")
        page.get_by_text("What channel 0 of conv_3 responds to").wait_for()
        page.get_by_text("Mean activation reached").wait_for()
        wait_idle(page)
        captions = page.locator('[data-testid="stImageCaption"]').all_inner_texts()
        assert len([c for c in captions if c.split(":")[0] in SAMPLE_CLASSES]) == 9, captions
