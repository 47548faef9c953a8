"""The where-and-when model (docs/model.md).

    normalize.py   FeatureEncoder: raw (T, Gh, Gw, D) -> scene-relative, standardised (T, Gh, Gw, C)
    scorer.py      PatchScorer: (B, T, Gh, Gw, C) -> s (B, T, Gh, Gw), motion prior + learned correction
    selection.py   window (fixed / cusum / none) -> patch map -> proximity (gauss / radius) or plain top-k
    losses.py      L_PA, L_T, L_N, smoothness, total variation, sparsity, Sultani; MILLoss
    baselines.py   VideoMILScorer, RandomScorer, motion_floor_scores, video-level losses
    model.py       AnomalyModel (encoder + scorer of one method) and its safetensors checkpoint
    methods/       one file per method and the method registry
    selections/    one file per selection rule and the selection registry

Training lives in ``patchvad.training``, inference in ``patchvad.inference``, the experiment
harness (methods x seeds -> fit, test, evaluate) in ``patchvad.compare``; this package
imports none of them.
"""
