"""A training outlives its browser tab, in a real browser: reload mid-training, and the progress,
the charts, the Stop button and the sidebar settings come back; in hosted mode only to the same
visitor (their id is in a cookie of their browser: a new tab finds their runs too), never to
another browser, even one given the page's address.

Screenshots of every step go to `test-output/e2e-reload/`, with the server's log on failure.
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
    STOP_JOB,
    TRAIN_TIMEOUT_MS,
    Steps,
    chromium,  # noqa: F401 - the fixture
    configure_small_training,
    e2e_cache,  # noqa: F401 - the fixture
    expect_value,
    final_message,
    open_page,
    set_number,
    start_training,
    wait_idle,
    wait_loss_points,
)

from cnnlab.runs.store import RunStore

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.browser, pytest.mark.slow]

OUTPUT_DIR = REPO_ROOT / "test-output" / "e2e-reload"
EPOCHS = 40  # far more than the test waits for: it stops the training itself


@pytest.fixture
def browser(chromium: str) -> Iterator[Browser]:  # noqa: F811 - uses the imported fixture
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p, chromium)
        yield browser
        browser.close()


def new_page(browser: Browser) -> Page:
    """A page in a new browser context: its own cookies and storage, like another person's browser."""
    context = browser.new_context(viewport={"width": 1400, "height": 2000})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    return context.new_page()


def serve(tmp_path: Path, cache: Path, request: pytest.FixtureRequest, **env: str) -> Iterator[StreamlitServer]:
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    failed_before = request.session.testsfailed
    with StreamlitServer(tmp_path / "models", cache, env=env, log_path=OUTPUT_DIR / "server.log") as app:
        yield app
    if request.session.testsfailed > failed_before:
        print(f"----- Streamlit server log ({app.log_path}) -----\n{app.log()}")


def train_then_reload(page: Page, step: Steps, url: str) -> str:
    """Start a long training, reload the tab once an epoch is drawn; returns the live chart's selector."""
    with step("train-started"):
        page.goto(url)
        page.get_by_role("heading", name="CNN Lab", exact=True).wait_for()
        wait_idle(page)
        open_page(page, "Train")
        configure_small_training(page, epochs=EPOCHS)
        set_number(page, "Early-stopping patience (0 = off)", 0)  # it must still be training when stopped
        chart = start_training(page)
        wait_loss_points(page, chart, 1)

    with step("reloaded"):
        page.reload()
        page.get_by_role("heading", name="Train", exact=True).wait_for()
        page.locator(STOP_JOB).wait_for(timeout=TRAIN_TIMEOUT_MS)
        assert wait_loss_points(page, chart, 1) >= 1  # the same job's chart, with the epochs so far
        assert page.get_by_role("button", name="Start training", exact=True).is_disabled()
        expect_value(page.get_by_label("Epochs", exact=True), rf"^{EPOCHS}$")  # the sidebar came back too
        page.get_by_text(re.compile(r"Epoch \d+ of \d+, batch \d+ of \d+")).wait_for(timeout=TRAIN_TIMEOUT_MS)
    return chart


def stop_from(page: Page, step: Steps) -> None:
    with step("stopped"):
        open_page(page, "Train")
        page.locator(STOP_JOB).click()
        final_message(page, "stopped after")


def run_options(page: Page) -> list[str]:
    """The runs offered in the Runs page's "Manage a run" box."""
    open_page(page, "Runs")
    page.get_by_text("Manage a run").wait_for()
    page.get_by_role("combobox", name="Run", exact=True).click()
    options = page.get_by_role("option").all_inner_texts()
    page.keyboard.press("Escape")
    return options


@pytest.fixture
def local_server(tmp_path, e2e_cache, request) -> Iterator[StreamlitServer]:  # noqa: F811
    yield from serve(tmp_path, e2e_cache, request)


def test_a_reload_brings_back_the_running_training_and_stop_still_works(browser, local_server, tmp_path):
    page = new_page(browser)
    step = Steps(page)
    train_then_reload(page, step, local_server.url)
    stop_from(page, step)
    (run,) = RunStore(tmp_path / "models").list()
    assert run.status == "stopped" and run.model_path.exists() and 1 <= len(run.history) < EPOCHS


@pytest.fixture
def hosted_server(tmp_path, e2e_cache, request) -> Iterator[StreamlitServer]:  # noqa: F811
    yield from serve(tmp_path, e2e_cache, request, CNNLAB_HOSTED="1")


def visitor_cookie(page: Page) -> str | None:
    """The visitor id the page's browser keeps, if any."""
    return next((c["value"] for c in page.context.cookies() if c["name"] == "cnnlab_visitor"), None)


def test_hosted_a_reload_or_new_tab_keeps_the_visitor_and_another_browser_sees_nothing(
    browser, hosted_server, tmp_path
):
    page = new_page(browser)
    step = Steps(page)
    train_then_reload(page, step, hosted_server.url)
    visitor = visitor_cookie(page)
    assert visitor is not None and re.fullmatch(r"[0-9a-f]{16}", visitor)
    assert "visitor" not in page.url, page.url  # nothing in the address to share
    (run,) = RunStore(tmp_path / "models").list()

    with step("runs-after-reload"):
        assert any(run.id in option and "[running" in option for option in run_options(page))

    tab = page.context.new_page()
    with step("new-tab"):
        tab.goto(hosted_server.url)
        tab.get_by_role("heading", name="CNN Lab", exact=True).wait_for()
        wait_idle(tab)
        assert any(run.id in option and "[running" in option for option in run_options(tab))
        tab.close()

    stranger = new_page(browser)
    with step("another-browser"):
        forged = {"name": "cnnlab_visitor", "value": "../../etc/passwd", "url": hosted_server.url}
        stranger.context.add_cookies([forged])  # a malformed id is replaced, not used
        stranger.goto(page.url)  # the address copied from the visitor's address bar
        stranger.get_by_role("heading", name="Runs", exact=True).wait_for()
        wait_idle(stranger)
        assert not any(run.id in option for option in run_options(stranger))
        assert re.fullmatch(r"[0-9a-f]{16}", visitor_cookie(stranger) or "")  # a visitor of its own
        assert visitor_cookie(stranger) != visitor
        open_page(stranger, "Train")
        assert stranger.locator(STOP_JOB).count() == 0

    stop_from(page, step)
    run = RunStore(tmp_path / "models").get(run.id)
    assert run.status == "stopped" and run.model_path.exists()
