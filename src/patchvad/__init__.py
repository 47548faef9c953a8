"""patchvad: where and when anomalies happen in video, learned from video-level labels.

The data walks one way through the package::

    video -> snippets -> patch features -> patch scores -> selection / loss
          -> frame scores, maps, boxes, tracks -> metrics -> report
"""

from patchvad.errors import PatchvadError

__version__ = "0.1.0"
__all__ = ["PatchvadError", "__version__"]
