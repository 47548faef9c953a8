"""Config <-> YAML round trip and validation errors."""

from __future__ import annotations

import dataclasses

import pytest

from patchvad.config import LossConfig, RunConfig, TrainConfig
from patchvad.errors import ConfigError


def test_yaml_round_trip():
    cfg = RunConfig(method="plain_topk", loss=LossConfig(k=6, sigma=1.5), train=TrainConfig(steps=7))
    again = RunConfig.from_yaml(cfg.to_yaml())
    assert again == cfg


def test_partial_yaml_keeps_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("loss:\n  window: cusum\n  w_n: 0.5\ntrain:\n  steps: 10\n")
    cfg = RunConfig.load(path)
    assert cfg.loss.window == "cusum" and cfg.loss.w_n == 0.5 and cfg.train.steps == 10
    assert cfg.model == RunConfig().model


@pytest.mark.parametrize("text,needle", [
    ("loss:\n  windw: fixed\n", "loss.windw"),
    ("loss:\n  window: sideways\n", "loss.window"),
    ("train:\n  batch_size: 3\n", "train.batch_size"),
    ("train:\n  lr: -1\n", "train.lr"),
    ("train:\n  steps: ten\n", "train.steps"),
    ("model:\n  prior_channel: colour\n", "model.prior_channel"),
    ("method: magic\n", "method"),
    ("extra: 1\n", "extra"),
    ("- 1\n- 2\n", "mapping"),
    ("loss: [\n", "YAML"),
])
def test_bad_configs_raise_config_error_naming_key_and_file(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        RunConfig.load(path)
    assert needle in str(err.value)
    assert str(path) in str(err.value)


def test_for_method_sets_the_ablation_switches():
    plain = RunConfig.for_method("plain_topk")
    assert plain.loss.window == "none" and plain.loss.selection == "plain"
    prox = RunConfig.for_method("proximity", dataclasses.replace(RunConfig(), loss=LossConfig(window="cusum")))
    assert prox.loss.window == "cusum" and prox.loss.selection == "gauss"
    with pytest.raises(ConfigError):
        RunConfig.for_method("nope")
