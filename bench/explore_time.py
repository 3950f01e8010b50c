"""How long one update of the explorer (notebook 98) takes: measuring one image and drawing its figure.

    .venv/bin/python bench/explore_time.py [--params params/default.yaml] [--n 10]

For each of the explorer's choices (a real test digit or a prior sample; float32 or float64; the clamp on or
off) it times `explore.case` (the chain, the encoder, the best inversion, the attribution) and
`explore.draw` (the figure, rendered to PNG bytes as the notebook's output is) on n images, after one
warm-up update, and prints the median and the largest. Issue #24 asks for under 1 s per update on this CPU.
Then a run switch for every run of the family the explorer offers: loading its model and its first update (the
chain's pseudo-inverses are computed then), under 3 s asked (issue #33).
"""
from __future__ import annotations

import argparse
import io
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params/default.yaml")
    parser.add_argument("--n", type=int, default=10, help="images per choice")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from inverse_vae.core.checkpoints import load_model
    from inverse_vae.core.config import family, load_config
    from inverse_vae.core.data import load_mnist
    from inverse_vae.study import explore

    config = load_config(ROOT / args.params)
    model = load_model(config, ROOT / "reports" / Path(args.params).stem / config.test.model_path)
    x_test, _ = load_mnist(ROOT / "data", train=False)

    def update(source: str, i: int, arithmetic: str, clamp: bool) -> tuple[float, float]:
        started = time.perf_counter()
        if source == "prior sample":
            z = torch.randn(1, model.latent_dim, generator=torch.Generator().manual_seed(i), dtype=torch.float64)
            found = explore.case(model, None, z, arithmetic=arithmetic, clamp=clamp)
        else:
            found = explore.case(model, x_test[i:i + 1], arithmetic=arithmetic, clamp=clamp)
        measured = time.perf_counter()
        figure = explore.draw(found, model)
        figure.savefig(io.BytesIO(), format="png")
        plt.close(figure)
        return measured - started, time.perf_counter() - started

    update("test image", 0, "float32", False)  # warm-up: the chain's pseudo-inverses, the first figure
    print(f"{'image':<13} {'arithmetic':<10} {'clamp':<6} {'case median':>12} {'update median':>14} {'update max':>11}")
    every = []
    for source in ("test image", "prior sample"):
        for arithmetic in ("float32", "float64"):
            for clamp in (False, True):
                times = [update(source, i, arithmetic, clamp) for i in range(args.n)]
                total = [t for _, t in times]
                every += total
                print(f"{source:<13} {arithmetic:<10} {str(clamp):<6} {statistics.median(c for c, _ in times):11.3f}s "
                      f"{statistics.median(total):13.3f}s {max(total):10.3f}s", flush=True)
    every.sort()
    print(f"updates: {len(every)}, 95th percentile {every[math.ceil(0.95 * len(every)) - 1]:.3f} s (target under 1 s), "
          f"slowest {every[-1]:.3f} s")
    switches = {}
    for params in family(ROOT / "params"):
        other = load_config(params)
        checkpoint = ROOT / "reports" / params.stem / other.test.model_path
        if not (other.model.architecture.variational and checkpoint.is_file()):
            continue
        started = time.perf_counter()
        switched = load_model(other, checkpoint)
        figure = explore.draw(explore.case(switched, x_test[:1], arithmetic="float32"), switched)
        figure.savefig(io.BytesIO(), format="png")
        plt.close(figure)
        switches[params.stem] = time.perf_counter() - started
    print("run switch (load + first update): " + ", ".join(f"{k} {v:.2f} s" for k, v in switches.items()))
    print(f"slowest run switch: {max(switches.values()):.2f} s (target under 3 s)")


if __name__ == "__main__":
    main()
