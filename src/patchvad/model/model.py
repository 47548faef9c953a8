"""AnomalyModel: encoder + scorer of one method, and its safetensors checkpoint.

A checkpoint is ONE ``.safetensors`` file (loaded with ``safetensors.torch.load_file``;
no pickle anywhere):

* tensors: ``encoder.*`` (normaliser statistics, PCA, prior scale) and ``net.*``
  (scorer weights; none for the untrained methods);
* ``reduce.*`` and metadata ``reduction``: only for a model trained on reduced
  features (features/reduce.py), the projection from the backbone's raw features;
* metadata (all strings): ``format`` = ``patchvad-model/1``, ``method``, ``config``
  (the run's YAML), ``feature_spec`` (JSON of the extraction's FeatureSpec),
  ``normalizer`` (JSON: channel groups, prior channel, encoded width), ``threshold``
  (video / snippet score threshold chosen on training videos), ``seed``, ``step``,
  ``val_auc``, ``val_videos``.

Loading checks the feature spec against the features it is applied to and raises a
:class:`~patchvad.errors.CheckpointError` naming both when they differ (another
backbone, grid, snippet length...).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from patchvad.config import RunConfig
from patchvad.errors import CheckpointError, ConfigError
from patchvad.features.backbones import FeatureSpec
from patchvad.io.files import atomic_path
from patchvad.model.methods import Method, get_method
from patchvad.model.normalize import FeatureEncoder
from patchvad.model.scorer import PatchScorer
from patchvad.model.selections import SelectionConfig

if TYPE_CHECKING:
    from patchvad.features.reduce import Projection

FORMAT = "patchvad-model/1"


class AnomalyModel(nn.Module):
    """Encoder + scorer of one method.

    The method (model/methods/, by the config's ``method``) builds the network and
    makes the scores: ``scores(x, mask)`` maps encoded inputs ``(B, T, Gh, Gw, C)`` to
    patch scores ``(B, T, Gh, Gw)`` for every method with input-dependent scores.
    Video-level methods return their snippet score broadcast over the grid (their
    spatial output is the whole frame).
    """

    def __init__(self, config: RunConfig, spec: FeatureSpec):
        super().__init__()
        self.config = config
        self.spec = spec
        self.method = config.method
        self.impl: Method = get_method(config.method)
        self.encoder = FeatureEncoder(spec.channels, config.model)
        self.threshold = 0.5
        self.meta: dict[str, str] = {}
        self.reduction: Projection | None = None    # when trained on reduced features
        self.net: nn.Module | None = self.impl.build_net(self.encoder.out_dim, config.model)

    def init_prior(self) -> None:
        """Set the patch scorer's prior map to the fitted encoder's ``(a0, b0)``."""
        if isinstance(self.net, PatchScorer):
            a0, b0 = (float(v) for v in self.encoder.prior_scale)
            fresh = PatchScorer(self.encoder.out_dim, self.config.model, prior_init=(a0, b0))
            with torch.no_grad():
                self.net.alpha.copy_(fresh.alpha)
                self.net.beta.copy_(fresh.beta)

    @property
    def is_video_level(self) -> bool:
        """The method scores whole frames (snippet scores broadcast over the grid)."""
        return self.impl.video_level

    @property
    def selection(self) -> SelectionConfig:
        """Selection rule and settings of the snippet scores at inference (= training's bag score)."""
        return self.config.loss.selection_config()

    def scores(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Patch scores ``(B, T, Gh, Gw)`` of encoded inputs ``(B, T, Gh, Gw, C)``."""
        try:
            return self.impl.scores(self, x, mask)
        except NotImplementedError as exc:
            raise ConfigError(str(exc)) from None

    # -- checkpoint ---------------------------------------------------------------------
    def metadata(self, extra: dict | None = None) -> dict[str, str]:
        """The checkpoint's metadata strings (module docstring); ``extra`` and ``meta`` added as strings."""
        meta = {"format": FORMAT, "method": self.method, "config": self.config.to_yaml(),
                "feature_spec": json.dumps(self.spec.to_dict()),
                "normalizer": json.dumps({"channels": self.encoder.channels,
                                          "prior_channel": self.config.model.prior_channel,
                                          "encoded_dim": self.encoder.out_dim}),
                "threshold": repr(float(self.threshold))}
        if self.reduction is not None:
            meta["reduction"] = json.dumps(self.reduction.metadata())
        meta.update(self.meta)
        meta.update({k: str(v) for k, v in (extra or {}).items()})
        return meta

    def tensors(self) -> dict[str, torch.Tensor]:
        """The checkpoint's tensors on the CPU: ``encoder.*``, ``net.*``, ``reduce.*``."""
        out = {f"encoder.{k}": v.detach().cpu().contiguous() for k, v in self.encoder.state_dict().items()}
        if self.net is not None:
            out.update({f"net.{k}": v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()})
        if self.reduction is not None:
            out.update({f"reduce.{k}": v for k, v in self.reduction.tensors().items()})
        return out

    def save(self, path: str | Path, extra: dict | None = None) -> Path:
        """Write the checkpoint atomically (temporary file + rename)."""
        path = Path(path)
        try:
            with atomic_path(path) as tmp:
                save_file(self.tensors(), str(tmp), metadata=self.metadata(extra))
        except Exception as exc:    # safetensors raises its own error type for I/O failures
            raise CheckpointError(f"cannot write the checkpoint ({exc})", path=path) from exc
        return path

    def load_tensors(self, tensors: dict[str, torch.Tensor], source: str | Path | None = None) -> None:
        """Load the encoder's and the scorer's weights from checkpoint tensors (``reduce.*`` is read by load_model).

        Raises:
            CheckpointError: tensors that do not fit the configured model (``source`` is named).
        """
        enc = {k[len("encoder."):]: v for k, v in tensors.items() if k.startswith("encoder.")}
        net = {k[len("net."):]: v for k, v in tensors.items() if k.startswith("net.")}
        try:
            self.encoder.load_state_dict(enc, strict=True)
            if self.net is not None:
                self.net.load_state_dict(net, strict=True)
            elif net:
                raise CheckpointError(f"method '{self.method}' has no scorer but the checkpoint holds one",
                                      path=source)
        except RuntimeError as exc:
            raise CheckpointError(f"weights do not fit the configured model ({str(exc).splitlines()[0]})",
                                  path=source) from None


def read_metadata(path: str | Path) -> dict[str, str]:
    """Metadata of a checkpoint file (CheckpointError when it is not one)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("checkpoint not found", path=path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except Exception as exc:    # safetensors raises several types
        raise CheckpointError(f"not a safetensors file ({exc})", path=path) from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"not a patchvad model checkpoint (format {meta.get('format')!r}, "
                              f"expected {FORMAT!r})", path=path)
    return meta


def load_model(path: str | Path, spec: FeatureSpec | None = None, map_location: str = "cpu") -> AnomalyModel:
    """Load a checkpoint; refuse it when ``spec`` (the features' spec) differs from its own.

    Raises:
        CheckpointError: missing / malformed file, or features of another extraction.
    """
    path = Path(path)
    meta = read_metadata(path)
    try:
        config = RunConfig.from_yaml(meta["config"], source=f"{path} (embedded config)")
        stored = FeatureSpec.from_dict(json.loads(meta["feature_spec"]))
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"malformed checkpoint metadata ({exc})", path=path) from None
    except ConfigError as exc:
        raise CheckpointError(f"embedded config is invalid: {exc.message}", path=path) from None
    if spec is not None:
        diff = stored.compatible_with(spec)
        if diff:
            detail = ", ".join(f"{k}: checkpoint {stored.to_dict().get(k)!r} vs features {spec.to_dict().get(k)!r}"
                               for k in diff)
            raise CheckpointError(f"checkpoint was trained on features of another extraction ({detail}); "
                                  f"extract features with the checkpoint's settings or retrain", path=path)
    model = AnomalyModel(config, stored)
    try:
        tensors = load_file(str(path), device=map_location)
    except Exception as exc:    # safetensors raises several types
        raise CheckpointError(f"cannot read tensors ({exc})", path=path) from None
    model.load_tensors(tensors, source=path)
    if "reduction" in meta:
        from patchvad.errors import FeatureError
        from patchvad.features.reduce import Projection
        try:
            model.reduction = Projection.from_parts({k[len("reduce."):]: v for k, v in tensors.items()
                                                     if k.startswith("reduce.")}, json.loads(meta["reduction"]), path)
        except (FeatureError, ValueError) as exc:
            raise CheckpointError(f"malformed feature projection ({exc})", path=path) from None
    model.threshold = float(meta.get("threshold", 0.5))
    model.meta = {k: v for k, v in meta.items()
                  if k not in ("format", "method", "config", "feature_spec", "normalizer", "threshold", "reduction")}
    model.eval()
    return model


__all__ = ["AnomalyModel", "FORMAT", "load_model", "read_metadata"]
