"""The hosted server under a hostile mix: peak memory, peak disk, and what a normal visitor waits.

Starts the real server (`streamlit run streamlit_app.py`, hosted mode, fresh run store and cache)
and drives three visitors at once in headless Chromium (one browser context each):

- hostile uploader: a 0.5 MB zip of 499 members of 1 MiB zeros, a zip with a path 40 folders
  deep, and a zip of PNGs of 6000x6000 pixels (each upload in a new session, timed from the
  file being set to the refusal or acceptance shown);
- hostile trainer: a zip of 7,000 tiny PNGs, then a 1-epoch training at 128 px (its decoded
  images take 344 MB);
- normal visitor, a few seconds later: home page (time to the title), Train page, a 1-epoch
  training of the default model on the built-in sample (time from Start to the first batch).

Every second a thread samples the server's process-tree RSS and the disk used by its cache and
run store. With `--before REF` the same mix runs first against that commit's code (exported with
`git archive` into a temporary folder), then against the working tree. Measures and prints;
asserts nothing.

    python -m bench.bench_hostile [--before main] [--images 40]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from bench.bench_server import MemorySampler, gb
from bench.machine import machine
from tests.e2e_server import CHROMIUM_ARGS, REPO_ROOT, StreamlitServer, find_chromium

TIMEOUT_MS = 300_000
APP_IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
PNG_SIDE = 6000


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return path


def make_zips(folder: Path, num_big: int) -> dict[str, Path]:
    """The hostile uploads and the hostile trainer's dataset."""
    # Diagonal bands: about 230 KB as a PNG, like the probe's 10.5 MB zip of 100 such images.
    ramp = np.linspace(0, 255, PNG_SIDE, dtype=np.float32)
    bands = ((ramp[:, None] + ramp[None, :]) / 2).astype(np.uint8) // 16 * 16
    big = png(bands[..., None].repeat(3, axis=2))
    rng = np.random.default_rng(0)
    tiny = {
        f"{c}/{c}_{i:04d}.png": png(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)) for c in "ab" for i in range(3500)
    }
    return {
        "bomb": write_zip(folder / "bomb.zip", {f"cats/{i:03d}.png": bytes((1 << 20) - 1) for i in range(499)}),
        "deep": write_zip(folder / "deep.zip", {"a/" * 40 + "x.png": b"x", "cats/a.png": b"a", "dogs/b.png": b"b"}),
        "pixels": write_zip(folder / "pixels.zip", {f"{'ab'[i % 2]}/{i:03d}.png": big for i in range(num_big)}),
        "tiny": write_zip(folder / "tiny.zip", tiny),
    }


def disk_bytes(*folders: Path) -> int:
    total = 0
    for folder in folders:
        for dirpath, _dirs, files in os.walk(folder):
            for name in files:
                try:
                    total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
                except OSError:
                    continue
    return total


class DiskSampler(threading.Thread):
    """Samples the disk blocks used under some folders every `interval` seconds; keeps the peak."""

    def __init__(self, folders: list[Path], interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.folders, self.interval, self.peak = folders, interval, 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            self.peak = max(self.peak, disk_bytes(*self.folders))
            self.halt.wait(self.interval)


async def open_page(page, title: str) -> None:
    await page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title, exact=True).click()
    await page.get_by_role("heading", name=title, exact=True).wait_for()


async def new_page(browser):
    """A page in a new browser context: a new visitor with their own session."""
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    return await context.new_page()


async def upload(page, url: str, path: Path) -> tuple[float, str]:
    """Upload a zip on the Data page; (seconds from the file being set to the outcome, the outcome)."""
    try:
        await page.goto(url)
        await open_page(page, "Data")
        await page.get_by_text("Upload a zip", exact=True).click()
        chooser = page.locator('[data-testid="stFileUploader"] input[type="file"]')
        await chooser.wait_for(state="attached")
        start = time.monotonic()
        await chooser.set_input_files(path)
        error = page.locator('[data-testid="stAlertContentError"]')
        accepted = page.get_by_role("heading", name=f"Upload: {path.name}")
        await error.or_(accepted).first.wait_for()
        outcome = "accepted" if await accepted.count() else "refused: " + await alert_text(error)
        return time.monotonic() - start, outcome
    except Exception as exc:  # noqa: BLE001 - a visitor that times out is a finding, not a crash
        return float("nan"), f"no outcome ({type(exc).__name__})"


async def alert_text(alert) -> str:
    """The start of an error alert's message."""
    return (await alert.first.locator('[data-testid="stMarkdownContainer"]').inner_text())[:110]


async def hostile_uploader(browser, url: str, zips: dict[str, Path], log: dict) -> None:
    for name in ("bomb", "deep", "pixels"):  # each from a new visitor
        page = await new_page(browser)
        log[f"hostile upload {name}"] = await upload(page, url, zips[name])
        await page.context.close()


async def hostile_trainer(browser, url: str, zips: dict[str, Path], log: dict) -> None:
    page = await new_page(browser)
    log["hostile upload tiny"] = await upload(page, url, zips["tiny"])
    try:
        await open_page(page, "Train")
        summary = page.get_by_text(re.compile(r"Model summary: \d+ layers"))
        before = await summary.inner_text()
        slider = page.locator('[data-testid="stSidebar"] input[type="range"][aria-label="Image size (pixels)"]')
        await slider.focus()
        await slider.press("Home")
        for _ in range(4):  # 32, 48, 64, 96, 128
            await slider.press("ArrowRight")
        await page.wait_for_function(
            "() => document.querySelector('input[aria-label=\"Image size (pixels)\"]')"
            ".getAttribute('aria-valuetext') === '128'"
        )
        # The summary (its memory per step) changes once the server has the new size, before Start is pressed.
        await page.wait_for_function(
            "(before) => [...document.querySelectorAll('summary, p, span')]"
            ".some((el) => el.innerText.startsWith('Model summary:') && el.innerText !== before)",
            arg=before,
        )
        await set_epochs(page, 1)
        await page.get_by_role("button", name="Start training", exact=True).click()
        error = page.locator('[data-testid="stAlertContentError"]')
        started = page.get_by_text(re.compile(r"Preparing data|Epoch 1 of 1|Waiting for a free training slot"))
        await error.or_(started).first.wait_for()
        outcome = "refused: " + await alert_text(error) if await error.count() else "started"
    except Exception as exc:  # noqa: BLE001 - a visitor that times out is a finding, not a crash
        outcome = f"no outcome ({type(exc).__name__})"
    log["hostile training at 128 px"] = (float("nan"), outcome)


async def set_epochs(page, epochs: int) -> None:
    field = page.get_by_label("Epochs", exact=True)
    await field.fill(str(epochs))
    await field.press("Enter")
    await page.wait_for_function(f"() => document.querySelector('input[aria-label=\"Epochs\"]').value === '{epochs}'")
    await settle(page)


async def settle(page) -> None:
    """Wait for the rerun a widget change starts to finish."""
    await page.wait_for_timeout(1000)
    await page.locator(APP_IDLE).wait_for(state="attached")


async def normal_visitor(browser, url: str, log: dict, delay: float) -> None:
    await asyncio.sleep(delay)
    page = await new_page(browser)
    start = time.monotonic()
    await page.goto(url)
    await page.get_by_role("heading", name="CNN Lab", exact=True).wait_for()
    log["normal: home page shown"] = (time.monotonic() - start, "")
    start = time.monotonic()
    await open_page(page, "Train")
    await page.get_by_text(re.compile(r"Model summary: \d+ layers")).wait_for()
    log["normal: Train page ready (model summary)"] = (time.monotonic() - start, "")
    await set_epochs(page, 1)
    start = time.monotonic()
    await page.get_by_role("button", name="Start training", exact=True).click()
    try:
        await page.get_by_text(re.compile(r"Epoch 1 of 1, batch [1-9]")).first.wait_for(timeout=TIMEOUT_MS)
        log["normal: Start -> first batch trained"] = (time.monotonic() - start, "")
    except Exception:  # noqa: BLE001 - still queued behind the hostile training
        log["normal: Start -> first batch trained"] = (float("inf"), f"not within {TIMEOUT_MS / 1000:.0f} s")


async def hostile_mix(server: StreamlitServer, zips: dict[str, Path], chromium: str) -> dict:
    from playwright.async_api import async_playwright

    log: dict = {}
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        await asyncio.gather(
            hostile_trainer(browser, server.url, zips, log),
            hostile_uploader(browser, server.url, zips, log),
            normal_visitor(browser, server.url, log, delay=5.0),
        )
        await browser.close()
    return log


def run_side(label: str, app_root: Path, zips: dict[str, Path], chromium: str, work: Path) -> None:
    side = label.split()[0]
    cache, models = work / f"{side}-cache", work / f"{side}-models"
    env = {"CNNLAB_HOSTED": "1", "PYTHONPATH": str(app_root)}
    server = StreamlitServer(models, cache, env=env, log_path=work / f"{side}.log", app_root=app_root)
    server.start()
    memory = MemorySampler(server.pid).start()
    disk = DiskSampler([cache, models])
    disk.start()
    started = time.monotonic()
    try:
        log = asyncio.run(hostile_mix(server, zips, chromium))
    finally:
        memory.stop()
        disk.halt.set()
        disk.join()
        left = disk_bytes(cache / "uploads", cache / "prepared")
        server.stop()
    print(f"\n== {label}: {app_root} ({time.monotonic() - started:.0f} s)")
    for name, (seconds, outcome) in log.items():
        print(f"{name:<45} {seconds:8.2f} s  {outcome}")
    print(f"{'peak RSS of the server':<45} {gb(memory.peak):>10}")
    print(f"{'peak disk (cache + run store)':<45} {gb(disk.peak):>10}")
    print(f"{'uploads + decoded images left at the end':<45} {gb(left):>10}")


def export(ref: str, folder: Path) -> Path:
    """The tree of commit `ref`, exported with `git archive` (no checkout, no worktree)."""
    folder.mkdir()
    archive = subprocess.run(["git", "archive", ref], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="also run the mix against this commit first (e.g. main)")
    parser.add_argument("--images", type=int, default=40, help=f"PNGs of {PNG_SIDE}x{PNG_SIDE} in the pixels zip")
    args = parser.parse_args()
    chromium = find_chromium()
    if chromium is None:
        sys.exit("No Chromium found (apt-get install chromium).")
    print(f"machine: {machine()}, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        work = Path(tmp)
        zips = make_zips(work, args.images)
        print("zips: " + ", ".join(f"{k} {p.stat().st_size / 2**20:.1f} MB" for k, p in zips.items()))
        if args.before:
            sha = subprocess.run(
                ["git", "rev-parse", "--short", args.before], cwd=REPO_ROOT, capture_output=True, text=True
            )
            run_side(
                f"before ({args.before} {sha.stdout.strip()})",
                export(args.before, work / "before"),
                zips,
                chromium,
                work,
            )
        run_side("after (working tree)", REPO_ROOT, zips, chromium, work)


if __name__ == "__main__":
    main()
