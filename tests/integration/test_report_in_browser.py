"""A run's report.html, opened in headless Chromium as a reader opens it.

A report that renders in a test's string assertions can still show broken
images or throw in the browser. This opens the file a real run wrote, makes
every image load (lazy ones too), and requires each to have decoded
(``naturalWidth > 0``) with no console error, page error or failed request;
it leaves a full-page screenshot beside the report for a person to look at.
It reads structure only (images, errors), never the report's text.
Skipped, with the reason, where Chromium or playwright is missing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from progressbench.transports.sse import browser

from tests.helpers import UNIT, run_process

MISSING = browser.missing()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")

SCREENSHOT = "report-screenshot.png"

#: Make lazy images load, wait for every image to settle, then say what each became.
IMAGES_JS = """async () => {
  const images = [...document.images];
  for (const image of images) image.loading = "eager";
  await Promise.all(images.map((image) => image.decode().catch(() => null)));
  return images.map((image) => ({
    src: image.currentSrc.slice(0, 80), complete: image.complete, width: image.naturalWidth,
  }));
}"""


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, module_database_url: str) -> Path:
    """A small real run of two cells (plots, tables and the cost section all have data)."""
    out = tmp_path_factory.mktemp("report-run")
    args = ["run", "--transports", "polling,sse", "--profiles", "clean", "--users", "2"]
    args += ["--jobs-per-user", "1", "--time-scale", "0.05", "--model-call", "0"]
    done = run_process(
        [
            sys.executable,
            "-m",
            "progressbench",
            *args,
            "--out",
            str(out),
            "--database-url",
            module_database_url,
        ],
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out


async def test_report_html_renders_in_chromium_with_every_image_and_no_error(results: Path) -> None:
    """Every <img> of report.html decodes, nothing errors in the console or the page, no request
    fails; a full-page screenshot is saved into the results folder."""
    from playwright.async_api import async_playwright

    report = results / "report.html"
    errors: list[str] = []
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=browser.chromium_path(), headless=True, timeout=90_000 * UNIT
        )
        try:
            page = await chromium.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
            page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url[:80]} {r.failure}"))
            answer = await page.goto(report.as_uri(), wait_until="load", timeout=60_000 * UNIT)
            assert answer is not None and answer.ok
            images = await page.evaluate(IMAGES_JS)
            await page.screenshot(path=str(results / SCREENSHOT), full_page=True)
        finally:
            await chromium.close()
    assert images, "a run's report shows its plots as images"
    broken = [image for image in images if not image["complete"] or image["width"] <= 0]
    assert broken == [], broken
    assert errors == []
    assert (results / SCREENSHOT).stat().st_size > 10_000, "a blank page would be a tiny PNG"
