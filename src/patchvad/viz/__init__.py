"""Pictures of the results: overlay frames and videos, figures, the HTML report (docs/report.md).

* :mod:`patchvad.viz.overlay`: :func:`draw_overlay` (one frame), :func:`write_overlay_video`;
* :mod:`patchvad.viz.plots`: matplotlib figures as PNG bytes;
* :mod:`patchvad.viz.report`: the report's input types, :func:`summarize_runs`,
  :func:`verdict`, :func:`write_report`;
* :mod:`patchvad.viz.collect`: :func:`build_report`, everything from a dataset folder
  and predictions folders in one call;
* :mod:`patchvad.viz.footage`: :func:`build_predict_report`, the page of a
  ``patchvad predict`` run on footage (no ground truth).
"""

from patchvad.viz.collect import TestVideos, build_report, gallery_items, method_curves, pick_frame
from patchvad.viz.footage import FootageVideo, build_predict_report, write_predict_report
from patchvad.viz.overlay import draw_overlay, write_overlay_video
from patchvad.viz.report import (
    GalleryItem,
    MethodCurves,
    OverlayVideo,
    Timeline,
    Verdict,
    render_report,
    summarize_runs,
    verdict,
    write_report,
)

__all__ = [
    "FootageVideo", "GalleryItem", "MethodCurves", "OverlayVideo", "TestVideos", "Timeline", "Verdict",
    "build_predict_report", "build_report", "draw_overlay", "gallery_items", "method_curves", "pick_frame",
    "render_report", "summarize_runs", "verdict", "write_overlay_video", "write_predict_report", "write_report",
]
