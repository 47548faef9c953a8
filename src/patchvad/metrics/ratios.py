"""``weak / oracle``: how much of the supervised upper bound a weakly supervised method reaches.

The supervised oracle (``--method oracle``, model/methods/oracle.py) is the proximity
model's scorer trained on the training videos' ground-truth cells. Every results table
that holds it (``patchvad compare``'s results.md, the demo's terminal table and HTML
report) also shows, for each weakly supervised trained method, one ratio per metric:

    ratio = mean(weak method over seeds) / mean(oracle over seeds)

for a metric where higher is better, and ``mean(oracle) / mean(weak)`` for one where
lower is better, so that 1 always means "as good as the oracle" and smaller means
further below it. The ratio is of the raw means: no chance level is subtracted (a
chance-level frame AUC of 0.5 against an oracle at 0.9 gives 0.56). A metric that is
not a score (``higher_is_better`` None, e.g. the TIoU threshold) gets no ratio; a ratio
whose denominator is 0 or missing, or whose numerator is missing, is None.

Results files hold them as ``"ratios": {"<weak method>/oracle": {"<metric key>": float | None}}``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from patchvad.metrics.table import METRICS, table_metrics

#: registry name of the supervised upper bound.
ORACLE = "oracle"
#: the footnote every table with ratio rows carries.
RATIO_NOTE = ("weak / oracle: the weakly supervised method's mean over seeds divided by the supervised oracle's "
              "mean over seeds, per metric (1 = the oracle's level; oracle / weak for a metric where lower is "
              "better, so 1 still means the oracle's level). Raw means: no chance level is subtracted.")


def ratio_key(weak: str, oracle: str = ORACLE) -> str:
    """The name of a ratio row: ``"<weak>/<oracle>"``."""
    return f"{weak}/{oracle}"


def ratio_metric_keys() -> tuple[str, ...]:
    """The metrics that get a ratio: the results tables' scores with a direction."""
    return tuple(spec.key for spec in table_metrics() if spec.higher_is_better is not None)


def _mean(summary: Mapping[str, Any] | None, key: str) -> float | None:
    value = ((summary or {}).get("mean") or {}).get(key)
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def metric_ratio(weak: float | None, oracle: float | None, key: str) -> float | None:
    """One ratio (module docstring): weak / oracle, oracle / weak where lower is better; None if undefined."""
    if weak is None or oracle is None:
        return None
    lower_better = (spec := METRICS.get(key)) is not None and spec.higher_is_better is False
    num, den = (oracle, weak) if lower_better else (weak, oracle)
    return None if den == 0 else num / den


def oracle_ratios(methods: Mapping[str, Mapping[str, Any]], weak: Sequence[str], oracle: str = ORACLE,
                  keys: Sequence[str] | None = None) -> dict[str, dict[str, float | None]]:
    """``{"<weak>/oracle": {metric: ratio}}`` for each method of ``weak`` present in ``methods``.

    Args:
        methods: per method a summary with a ``"mean"`` dict (metrics.json's
            ``methods``, ``compare``'s ``summary``).
        weak: the weakly supervised methods to compare, in row order.
        oracle: the upper bound's name in ``methods``.
        keys: the metrics (default :func:`ratio_metric_keys`).

    Returns:
        The ratios (module docstring); empty when ``methods`` holds no ``oracle``.
    """
    if oracle not in methods:
        return {}
    keys = ratio_metric_keys() if keys is None else tuple(keys)
    ref = methods[oracle]
    return {ratio_key(m, oracle): {k: metric_ratio(_mean(methods[m], k), _mean(ref, k), k) for k in keys}
            for m in weak if m in methods and m != oracle}


__all__ = ["ORACLE", "RATIO_NOTE", "metric_ratio", "oracle_ratios", "ratio_key", "ratio_metric_keys"]
