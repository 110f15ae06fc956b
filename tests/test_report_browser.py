"""The report in a real browser: headless Chromium opens it from a file URL, offline.

Uses the system Chromium (Debian package ``chromium``) through Playwright for Python,
never a downloaded browser; without Playwright it falls back to Chromium's own
``--screenshot`` and ``--dump-dom``. Skipped only when /usr/bin/chromium is absent.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from lrlab import hookimpl
from lrlab.plugins import load_plugins
from lrlab.report import Section, write_report
from lrlab.report.synthetic import write_synthetic

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
FIGURES = 7

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no {CHROMIUM}")]


class Notes:
    @hookimpl
    def lrlab_report_sections(self, runs):
        return [Section("Notes from a plugin", "<p id='plugin-note'>plugin markup</p>")]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """A report with every figure: 4 LRs x 2 augmentations x 2 stoppers x 2 schedules."""
    folder = write_synthetic(tmp_path_factory.mktemp("browser") / "sweep", name="browser",
                             lrs=[1e-4, 1e-2, 0.1, 10.0], epochs=(20,),
                             stoppers=("none", "patience"), schedules=("constant", "cosine"))
    host = load_plugins(use_entry_points=False)
    host.pm.register(Notes(), name="notes-plugin")
    return write_report(folder, plugins=host)


def assert_not_blank(shot: Path) -> None:
    image = Image.open(shot).convert("RGB")
    assert image.width >= 1000 and image.height >= 1500, image.size
    stat = ImageStat.Stat(image.convert("L"))
    assert stat.stddev[0] > 20, "the screenshot is nearly one colour"
    colours = image.resize((400, 400 * image.height // image.width)).getcolors(1 << 20)
    assert colours is not None and len(colours) > 200  # figures, badges, table tints


def test_report_renders_offline_in_headless_chromium(report, tmp_path, capsys):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - CI installs playwright; keep the check anyway
        return _check_with_chromium_cli(report, tmp_path)
    shot = tmp_path / "report.png"
    fetched, errors = [], []

    def block_network(route):
        fetched.append(route.request.url)
        route.abort()

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 1280, "height": 900})
        try:
            context.route("http*://**/*", block_network)
            page = context.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(report.as_uri(), wait_until="load")
            images = page.evaluate("""() => Array.from(document.images).map(i => ({
                figure: i.closest('figure') ? i.closest('figure').id : '',
                complete: i.complete, width: i.naturalWidth, height: i.naturalHeight}))""")
            title = page.title()
            plugin_text = page.inner_text("#plugin-note")
            # the inline script sorts the runs table by a clicked column
            page.click("#runs-table th:text-is('lr')")
            column = page.evaluate("""() => {
                const t = document.getElementById('runs-table');
                const i = Array.from(t.tHead.rows[0].cells).findIndex(c => c.textContent === 'lr');
                return Array.from(t.tBodies[0].rows).map(r => parseFloat(r.cells[i].dataset.v));
            }""")
            page.screenshot(path=str(shot), full_page=True)
        finally:
            context.close()
    with capsys.disabled():
        print(f"\n[report] browser screenshot: {shot}")
    assert title == "lrlab report · browser"
    assert len(images) == FIGURES, images
    for img in images:
        assert img["figure"].startswith("fig-")
        assert img["complete"] and img["width"] > 300 and img["height"] > 150, img
    assert plugin_text == "plugin markup"
    assert column == sorted(column)
    assert errors == []
    assert fetched == [], f"the report fetched {fetched}"
    assert_not_blank(shot)


def _check_with_chromium_cli(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    base = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    subprocess.run([*base, f"--screenshot={shot}", "--window-size=1280,3000",
                    report.as_uri()], check=True, timeout=120, capture_output=True)
    dom = subprocess.run([*base, "--dump-dom", report.as_uri()], check=True, timeout=120,
                         capture_output=True, text=True).stdout
    assert dom.count('src="data:image/png;base64,') == FIGURES
    assert "plugin markup" in dom
    assert_not_blank(shot)
