"""Where the demo's compute goes: the training step's operators and the backbone's blocks.

Prints, measured in this process (shares are steadier than times on a shared machine):

1. one training step of the patch scorer at the demo's shape (16 videos x 13 snippets x
   14 x 14 cells, C = 55 encoded channels, default ModelConfig, one thread as each of the
   demo's parallel fits has): forward + backward time and the ten operators with the
   most self time (torch.profiler);
2. EfficientNet-Lite0 up to its stride-32 block, time per block and its share: the
   package's layers on 16 images of 224x224 (one batch of 8 snippets x 2 passes), then
   the fused network as CPU extraction runs it (4 images on one worker thread).

    .venv/bin/python benchmarks/profile_demo.py [--threads 1] [--repeat 5]
"""

from __future__ import annotations

import argparse
import time

import torch


def scorer_profile(threads: int, repeat: int) -> None:
    """Time and operator breakdown of one scorer training step (forward + backward)."""
    from torch.profiler import ProfilerActivity, profile

    from patchvad.config import ModelConfig
    from patchvad.model.scorer import PatchScorer

    torch.set_num_threads(threads)
    net = PatchScorer(55, ModelConfig())
    net.train()
    x = torch.randn(16, 13, 14, 14, 55)
    mask = torch.ones(16, 13, dtype=torch.bool)

    def step() -> None:
        net(x, mask).sum().backward()

    for _ in range(2):
        step()
    t0 = time.perf_counter()
    for _ in range(repeat):
        step()
    print(f"scorer step (16 x 13 x 14 x 14 x 55, {threads} thread(s)): "
          f"{(time.perf_counter() - t0) / repeat * 1e3:.0f} ms forward + backward")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(repeat):
            step()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    for e in events[:10]:
        share = 100 * e.self_cpu_time_total / total
        print(f"  {e.key:<32} {share:5.1f}% of self time ({e.count // repeat} calls/step)")


def _block_times(layers, images: torch.Tensor, repeat: int) -> dict[str, float]:
    """Seconds per layer over ``repeat`` passes (after one warm-up pass)."""
    times = {name: 0.0 for name, _ in layers}
    with torch.inference_mode():
        for rep in range(repeat + 1):
            z = images
            for name, layer in layers:
                t0 = time.perf_counter()
                z = layer(z)
                if rep:                         # the first pass warms up
                    times[name] += time.perf_counter() - t0
    return times


def _print_blocks(title: str, times: dict[str, float], images: int, repeat: int) -> None:
    total = sum(times.values())
    print(f"{title}: {total / repeat * 1e3:.0f} ms ({total / repeat / images * 1e3:.1f} ms per image)")
    for name, t in times.items():
        print(f"  {name:<9} {t / repeat * 1e3:7.1f} ms  {100 * t / total:5.1f}%")


def backbone_profile(threads: int, repeat: int) -> None:
    """Time per EfficientNet-Lite0 block, stem to the stride-32 block.

    The package's layers on 16 images with ``threads`` threads, then the fused network as
    CPU extraction runs it (one micro-batch of 4 images in channels-last format on one
    thread, what each worker does).
    """
    from patchvad.features.backbones.effnet import MICRO_BATCH, STRIDE32_BLOCK, EffNetLite0Appearance, zero_pad

    torch.set_num_threads(threads)
    model = EffNetLite0Appearance()
    net, fused = model.net, model.fused
    images = (torch.rand(16, 3, 224, 224) * 255 - 127.0) / 128.0
    layers = [("stem", lambda z: net._swish(net._bn0(net._conv_stem(z))))]
    layers += [(f"block {i}", block) for i, block in enumerate(net._blocks) if i <= STRIDE32_BLOCK]
    _print_blocks(f"EfficientNet-Lite0 to stride 32 (package layers), 16 images 224x224, {threads} thread(s)",
                  _block_times(layers, images, repeat), 16, repeat)

    torch.set_num_threads(1)
    small = images[:MICRO_BATCH].contiguous(memory_format=torch.channels_last)
    stem = fused.stem
    layers = [("stem", lambda z: stem(zero_pad(z, stem.pad) if stem.pad is not None else z))]
    layers += [(f"block {i}", block) for i, block in enumerate(fused.blocks)]
    _print_blocks(f"fused, as extraction runs it: {MICRO_BATCH} images, channels last, 1 thread",
                  _block_times(layers, small, repeat), MICRO_BATCH, repeat)
    torch.set_num_threads(threads)


def main() -> None:
    """Both profiles, with the thread counts the demo uses."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1, help="torch threads for the scorer (the demo's fits use 1)")
    p.add_argument("--backbone-threads", type=int, default=2, help="torch threads for the backbone (extraction's)")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    scorer_profile(args.threads, args.repeat)
    backbone_profile(args.backbone_threads, args.repeat)


if __name__ == "__main__":
    main()
