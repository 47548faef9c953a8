"""Training: ``fit(data_root, features, out, method, seed, config)`` -> RUN folder (see :mod:`.loop`).

* :mod:`.data`: train / validation split, :class:`BalancedSampler`, :func:`pad_batch`,
  :func:`pool_snippets`, the encoded-video cache (:class:`EncodedVideos`,
  :class:`ShardedVideos`, :func:`encode_videos`);
* :mod:`.augment`: :func:`augment` (mirroring, input noise) and :class:`BatchShare`
  (dropout masks of a distributed rank's share as in the whole batch);
* :mod:`.state`: the resume state (:func:`save_state`, :func:`load_state`);
* :mod:`.loop`: :func:`fit`, validation (:func:`evaluate_bags`) and checkpoint
  selection, :func:`fit_command` (the body of ``patchvad fit``).

Validation ROC-AUC and the bag-score threshold come from :mod:`patchvad.metrics`.
"""

from patchvad.training.augment import BatchShare, augment
from patchvad.training.data import (
    BalancedSampler,
    EncodedVideos,
    ShardedVideos,
    encode_videos,
    pad_batch,
    pool_snippets,
    split_train_val,
)
from patchvad.training.loop import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    LOG_FILE,
    MODEL_FILE,
    FitResult,
    bag_threshold,
    evaluate_bags,
    fit,
    fit_command,
    smoothed_best,
    video_auc,
)
from patchvad.training.state import STATE_FILE, load_state, save_state

__all__ = [
    "CHECKPOINT_DIR", "CONFIG_FILE", "LOG_FILE", "MODEL_FILE", "STATE_FILE", "BalancedSampler", "BatchShare",
    "EncodedVideos", "FitResult", "ShardedVideos", "augment", "bag_threshold", "encode_videos", "evaluate_bags",
    "fit", "fit_command", "load_state", "pad_batch", "pool_snippets", "save_state", "smoothed_best",
    "split_train_val", "video_auc",
]
