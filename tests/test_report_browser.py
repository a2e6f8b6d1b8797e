"""`maskstudy report` in a real browser: headless Chromium opens the page from disk, every figure
loads, no script fails, the tables sort; a screenshot is kept as a test artifact."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from maskstudy.sweep_report import write_report

CHROMIUM = Path("/usr/bin/chromium")
# CI installs Chromium and sets MASKSTUDY_REQUIRE_BROWSER, so there the test fails, never skips
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and not os.environ.get("MASKSTUDY_REQUIRE_BROWSER"),
    reason="headless Chromium not installed (/usr/bin/chromium): apt-get install chromium",
)
FIGURES = ("p1_accuracy", "p2_seed_overlap", "p5_conv_masks", "p7_stability")
ARTIFACTS = Path(os.environ.get("MASKSTUDY_TEST_ARTIFACTS") or Path(__file__).parent / "artifacts")

# Injected as the page's first script: records console.error calls, script errors, resources
# that fail to load and unhandled rejections; at load, counts the images that loaded, sorts the
# results table by its `level` header (clicked twice) and writes it all into <html data-probe>.
PROBE = """<script>
(function () {
  var errors = [], log = console.error;
  console.error = function () {
    errors.push("console.error: " + Array.from(arguments).join(" "));
    log.apply(console, arguments);
  };
  window.addEventListener("error", function (e) {
    errors.push("error: " + (e.message || (e.target && e.target.outerHTML || "").slice(0, 120)));
  }, true);
  window.addEventListener("unhandledrejection", function (e) {
    errors.push("unhandled rejection: " + e.reason);
  });
  window.addEventListener("load", function () {
    var images = Array.from(document.images);
    var th = Array.from(document.querySelectorAll("#results th")).find(function (h) {
      return h.textContent === "level";
    });
    var column = function () {
      return Array.from(th.closest("table").tBodies[0].rows).map(function (r) {
        return Number(r.cells[th.cellIndex].textContent);
      });
    };
    th.click();
    var ascending = column();
    th.click();
    document.documentElement.setAttribute("data-probe", JSON.stringify({
      images: images.length,
      loaded: images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length,
      errors: errors, ascending: ascending, descending: column()
    }));
  });
})();
</script>"""


def chromium(tmp_path: Path, *args: str) -> str:
    """Run headless Chromium with a fresh profile and no network; its stdout."""
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    command = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.fixture(scope="module")
def report(conv_sweep_dir, tmp_path_factory) -> tuple[Path, list[str]]:
    """The tiny conv sweep's report with a few of its figures (quick to draw), and their names."""
    out = tmp_path_factory.mktemp("browser") / "report.html"
    drawn = write_report(conv_sweep_dir, out, FIGURES).drawn
    return out, list(drawn)


def test_every_figure_loads_without_errors(report, tmp_path):
    page, drawn = report
    probed = tmp_path / "probed.html"
    text = page.read_text()
    probed.write_text(text.replace('<meta charset="utf-8">', '<meta charset="utf-8">' + PROBE, 1))
    dom = chromium(tmp_path, "--dump-dom", "--virtual-time-budget=10000", probed.as_uri())
    found = re.search(r'<html[^>]*data-probe="([^"]*)"', dom)
    assert found, "the probe never ran: " + dom[:500]
    probe = json.loads(html.unescape(found.group(1)))
    assert probe["errors"] == []
    assert probe["images"] == len(drawn) > 0
    assert probe["loaded"] == len(drawn)
    assert probe["ascending"] == sorted(probe["ascending"])
    assert probe["descending"] == sorted(probe["ascending"], reverse=True)


def test_screenshot_is_kept(report, tmp_path):
    page, _ = report
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1400,2000", page.as_uri())
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
