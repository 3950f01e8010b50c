"""The price of invertibility, one design at a time: params/default.yaml with a decoder constraint, a
pre-activation penalty and decoder biases, trained for a few epochs, then measured as the study measures.

    .venv/bin/python bench/price_sweep.py NAME --epochs 30 --step 20 [--cond 16] [--rotate] [--bias]
                                          [--bound 2 --weight 3] [--train-subset N] [--n-prior 10000]

Prints one JSON record (and appends it to --out, default reports/summary/price_sweep.json, replacing a record
of the same name): its settings, float32 closed-form recovery of prior z to 1e-4 and float64 to 1e-6 (the
chain without a clamp), the test negative ELBO and reconstruction BCE, the weights' condition numbers, and on
the first 1,000 test images the original-clamp chain's BCE against the encoder's. The committed sweep's
records were made this way, one CPU thread each (their `settings` say how; the `train_seconds` are wall
times on a shared machine).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

from inverse_vae.core.checkpoints import load_model  # noqa: E402
from inverse_vae.core.training import train  # noqa: E402
from inverse_vae.runs.run import open_run  # noqa: E402
from inverse_vae.study import evaluate, invert, shared  # noqa: E402


def config_for(args):
    run = open_run(ROOT / "params" / "default.yaml", root=ROOT, say=lambda line: None)
    decoder = [dict(layer.to_dict()) for layer in run.config.model.architecture.decoder]
    if args.bias:
        decoder = [{"Linear": {**d["Linear"], "bias": True}} if "Linear" in d else d for d in decoder]
    updates = {"model": {"architecture": {"decoder": decoder},
                         "decoder_constraint": {"cond_max": args.cond, "rotate": args.rotate} if args.cond else None},
               "train": {"train_epochs": args.epochs, "plot_epochs": args.epochs,
                         "lr_scheduler": {"name": "steplr", "others": {"step_size": args.step, "gamma": 0.1}},
                         "preactivation_penalty": {"bound": args.bound, "weight": args.weight} if args.weight else None},
               "data": {"train_subset": args.train_subset}, "device": "cpu"}
    return dataclasses.replace(run, config=run.config.replace(**updates))


def measure(model, run, n_prior: int) -> dict:
    z = torch.randn(n_prior, model.latent_dim, generator=torch.Generator().manual_seed(0))
    out = {"cond": {str(i): float(torch.linalg.cond(layer.weight.detach().double()))
                    for i, layer in enumerate(model.decoder) if isinstance(layer, torch.nn.Linear)}}
    for arithmetic, key in (("float32", "success_1e-4"), ("float64", "success_1e-6")):
        summary, _ = invert.realizable_case(model.decoder, z, arithmetic, 0.0)
        out[f"{'f32' if arithmetic == 'float32' else 'f64'}_{key}"] = summary[key]
        out[f"{arithmetic}_failures"] = summary["failures"]
    x_test, _ = shared.test_images(run, log=lambda line: None)
    t = run.config.train
    losses = evaluate.test_losses(model, x_test, t.alpha, t.reconstruction_loss, run.config.test.batch_size, 0)
    means = evaluate.encode_means(model, x_test)
    out.update(test_nelbo_nats=losses["nelbo_nats"],
               test_recon_bce_per_pixel=evaluate.reconstruction_metrics(model, evaluate.decode(model, means), x_test)["bce"])
    x = x_test[:1000]
    closed = invert.InverseChain(model.decoder).invert(x, dtype=torch.float32, eps=1e-3)
    real = evaluate.reconstruction_metrics(model, evaluate.decode(model, closed.float()), x)["bce"]
    encoder = evaluate.reconstruction_metrics(model, evaluate.decode(model, means[:1000]), x)["bce"]
    out["real_first_1000"] = {"closed_form_bce": real, "encoder_bce": encoder, "ratio_to_encoder": real / encoder}
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--step", type=int, default=20, help="StepLR's step size (gamma 0.1)")
    parser.add_argument("--cond", type=float, help="model.decoder_constraint.cond_max (none: plain weights)")
    parser.add_argument("--rotate", action="store_true", help="model.decoder_constraint.rotate")
    parser.add_argument("--bias", action="store_true", help="biases on the decoder's Linear layers")
    parser.add_argument("--bound", type=float, default=2.0)
    parser.add_argument("--weight", type=float, help="train.preactivation_penalty.weight (none: no penalty)")
    parser.add_argument("--train-subset", type=int)
    parser.add_argument("--n-prior", type=int, default=10000)
    parser.add_argument("--out", default=str(ROOT / "reports" / "summary" / "price_sweep.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    run = config_for(args)
    (x_train, _), (x_val, _) = shared.train_val_images(run, log=lambda line: None)
    with tempfile.TemporaryDirectory() as tmp:
        run = dataclasses.replace(run, dir=Path(tmp))
        started = time.perf_counter()
        result = train(run, x_train, x_val, progress=False, say=lambda line: None)
        seconds = time.perf_counter() - started
        model = load_model(run.config, result.checkpoint)
    settings = {"epochs": args.epochs, "lr_step": args.step, "cond_max": args.cond, "rotate": args.rotate,
                "decoder_bias": args.bias, "penalty": {"bound": args.bound, "weight": args.weight} if args.weight else None,
                "train_images": len(x_train), "threads": 1, "script": "bench/price_sweep.py"}
    design = ", ".join(filter(None, [f"W = Q diag(d) V^T, cond < {args.cond:g}" if args.cond and args.rotate else
                                     f"W = Q diag(d), cond < {args.cond:g}" if args.cond else "plain weights",
                                     "decoder biases" if args.bias else "",
                                     f"penalty bound {args.bound:g} weight {args.weight:g}" if args.weight else ""]))
    record = {"name": args.name, "design": design, "settings": settings, "train_seconds": seconds,
              **measure(model, run, args.n_prior)}
    print(json.dumps(record))
    out = Path(args.out)
    records = [r for r in (json.loads(out.read_text()) if out.is_file() else []) if r["name"] != args.name]
    out.write_text(json.dumps(records + [record], indent=1) + "\n")


if __name__ == "__main__":
    main()
