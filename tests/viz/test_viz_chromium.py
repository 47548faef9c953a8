"""The report in a real browser: headless Chromium loads it without console errors,
shows the table and the images, and the overlay video has a non-zero duration.

Chromium is found as ``$PATCHVAD_CHROMIUM`` or ``chromium`` (Debian package) /
``chromium-browser`` / ``google-chrome`` on PATH. Without one the test is skipped,
except under CI (``CI=true``), where it fails.
"""

from __future__ import annotations

from pathlib import Path

from conftest import skip_or_fail

from .helpers import PAGE_PROBE, Chromium, find_chromium


def _chromium_or_skip() -> str:
    exe = find_chromium()
    if exe is None:
        skip_or_fail("headless Chromium not found (Debian: apt-get install -y chromium; or set PATCHVAD_CHROMIUM) "
                     "- needed to check report.html in a browser")
    return exe


def test_report_loads_in_headless_chromium(built_report: dict, tmp_path: Path) -> None:
    exe = _chromium_or_skip()
    page: Path = built_report["page"]
    with Chromium(exe, tmp_path / "chromium") as browser:
        session = browser.open(page.resolve().as_uri())
        info = browser.evaluate(session, PAGE_PROBE, timeout=40)
        errors = list(browser.errors)
        log = "\n".join(browser.messages) + "\n" + browser.stderr_tail()
    assert not errors, f"console errors: {errors}\n{log}"
    assert info["title"] == "viz test report"

    # The results table is there, visible, one row per method plus the ceiling row,
    # showing the numbers of the metrics dict.
    assert info["tableVisible"]
    assert info["tableRows"] == ["proximity", "plain_topk", "motion", "random", ""]
    methods = built_report["metrics"]["methods"]
    assert info["cells"]
    for c in info["cells"]:
        mean = methods[c["method"]]["mean"][c["metric"]]
        std = methods[c["method"]]["std"][c["metric"]]
        assert float(c["mean"]) == mean
        assert c["text"].strip() == f"{mean:.3f} ± {std:.3f}"
    assert info["verdict"] and "plain top-k" in info["verdict"]

    # Every image decoded and is laid out: 3 curves, 3 timelines, 3 gallery tiles.
    assert len(info["images"]) == 9
    for img in info["images"]:
        assert img["complete"] and img["w"] > 0 and img["h"] > 0 and img["shown"] > 0, img

    # The overlay video (H.264 mp4 beside the page) loads and has a duration.
    assert info["h264High"] in ("probably", "maybe"), f"this Chromium cannot play H.264: {info}"
    assert len(info["videos"]) == 1
    video = info["videos"][0]
    assert video["error"] is None, f"video failed to load: {video}\n{log}"
    assert video["duration"] > 0, video
    assert abs(video["duration"] - 32 / 25) < 0.1, video
    assert video["width"] > 0 and video["src"].endswith("overlays/test_00.mp4"), video
