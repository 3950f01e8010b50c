"""Inversion speed: images per second and peak memory of each method on the real test images.

`warm s` is the method's own time (MethodResult.seconds; for the closed form, with the
pseudo-inverses of an InverseChain built beforehand); `wall s` adds what the call records for plots.

Each method runs in a fresh subprocess so that its peak memory (resident set on the CPU, allocated
memory on CUDA) is its own. The closed-form chain is timed twice: with the pseudo-inverses computed
in the call (cold) and with them held by the decoder's InverseChain (warm, the steady state).

    .venv/bin/python bench/invert_speed.py [--device cpu|cuda] [--n 10000] [--methods a,b,...] [--repeats 5]
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))  # runnable without installing

FAST = ["closed_form", "encoder", "layerwise_constrained", "hybrid_layerwise_lm", "hybrid_encoder_lm"]


def _peak_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure_one(name: str, device_name: str, n: int, repeats: int, params: str) -> dict:
    """Run one method `repeats` times on the first n test images; median seconds and peak memory."""
    import torch

    import inverse_vae as iv
    from inverse_vae.core.model import resolve_device
    from inverse_vae.inversion import methods
    from inverse_vae.inversion.chain import InverseChain
    from inverse_vae.study import shared as splits

    device = resolve_device(device_name)
    run = iv.open_run(params, root=ROOT)
    model = iv.load_model(run.config, run.model_file, device)
    x = splits.test_images(run, log=lambda s: None)[0][:n].to(device)
    baseline = _peak_mb(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times, walls = [], []
    warm = {}  # after the cold first run, the closed form reuses one chain's pseudo-inverses
    for _ in range(repeats):
        started = time.perf_counter()
        result = methods.run_method(name, None, x, model, **warm)
        if device.type == "cuda":
            torch.cuda.synchronize()
        walls.append(time.perf_counter() - started)
        times.append(result.seconds)  # the method itself, without the history it records for plots
        if name == "closed_form":
            warm = {"chain": InverseChain(model.decoder)}
    extra = _products_floor(model.decoder, x, repeats) if name == "closed_form" else {}
    cold = times[0]
    warm = statistics.median(times[1:]) if len(times) > 1 else cold
    wall = statistics.median(walls[1:]) if len(walls) > 1 else walls[0]
    return {"method": name, "n": len(x), "cold_s": cold, "warm_s": warm, "wall_s": wall, "images_per_s": len(x) / warm,
            "peak_mb": _peak_mb(device), "baseline_mb": baseline, "device": str(device), "torch": torch.__version__,
            **extra}


def _products_floor(decoder, x, repeats: int) -> dict:
    """The closed form's matrix products alone, same shapes and dtype: what no chain can go under."""
    import torch
    from torch import nn

    shapes = [(layer.out_features, layer.in_features) for layer in reversed(decoder) if isinstance(layer, nn.Linear)]
    operands = [(torch.rand(len(x), k, device=x.device), torch.rand(k, m, device=x.device)) for k, m in shapes]
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        for a, b in operands:
            torch.mm(a, b)
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    seconds = statistics.median(times[1:]) if len(times) > 1 else times[0]
    flop = sum(2 * len(x) * k * m for k, m in shapes)
    return {"products_s": seconds, "products_gflop": flop / 1e9}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n", type=int, default=10000, help="test images")
    parser.add_argument("--methods", default=",".join(FAST), help="comma-separated names from methods.METHODS")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--params", default="params/default.yaml")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure this method here, print JSON
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure_one(args.one, args.device, args.n, args.repeats, args.params)))
        return
    rows = []
    for name in args.methods.split(","):
        done = subprocess.run([sys.executable, __file__, "--one", name, "--device", args.device, "--n", str(args.n),
                               "--repeats", str(args.repeats), "--params", args.params],
                              capture_output=True, text=True, cwd=ROOT)
        if done.returncode != 0:
            print(f"{name}: failed: {done.stderr.strip().splitlines()[-1]}")
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    if not rows:
        sys.exit("no method ran")
    print(f"device {rows[0]['device']}, torch {rows[0]['torch']}, {rows[0]['n']} images, median of {args.repeats - 1} warm runs")
    print(f"{'method':<26}{'cold s':>10}{'warm s':>10}{'wall s':>10}{'images/s':>12}{'peak MB':>10}{'(+ over load)':>15}")
    for r in rows:
        print(f"{r['method']:<26}{r['cold_s']:>10.4f}{r['warm_s']:>10.4f}{r['wall_s']:>10.4f}{r['images_per_s']:>12,.0f}"
              f"{r['peak_mb']:>10.0f}{r['peak_mb'] - r['baseline_mb']:>+15.0f}")
    for r in rows:
        if "products_s" in r:
            print(f"{r['method']}: its matrix products alone ({r['products_gflop']:.1f} GFLOP) take "
                  f"{r['products_s']:.4f} s here ({r['products_gflop'] / r['products_s']:.0f} GFLOP/s); "
                  f"the rest of its {r['warm_s']:.4f} s is the elementwise inverses")


if __name__ == "__main__":
    main()
