"""A model_90.pt in the original train.py's layout, copied into the run folder, inverts through notebook 03
when params name it."""
import json

import torch
import yaml

from inverse_vae.core.config import load_config
from inverse_vae.core.model import build_model
from inverse_vae.runs.notebooks import run_study


def test_original_checkpoint_inverts_through_notebook_03(root, tmp_path, write_params):
    smoke = root / "params" / "smoke.yaml"
    torch.manual_seed(3)
    model = build_model(load_config(smoke))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=50, gamma=0.1)
    # A user's file is copied into the run folder: params paths may not leave reports/<run>/.
    checkpoint = tmp_path / "reports" / "original_ckpt" / "pretrained" / "model_90.pt"
    checkpoint.parent.mkdir(parents=True)
    torch.save({"epoch": 90, "model_state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict(),
                "history": {"train": [0.2], "validation": [0.2]},
                "lr_scheduler_state_dict": scheduler.state_dict()}, checkpoint)

    raw = yaml.safe_load(smoke.read_text())
    raw["test"]["model_path"] = "pretrained/model_90.pt"
    raw["invert"]["n_prior"] = 100
    raw["data"].update(test_subset=200)
    params = write_params(raw, "original_ckpt")
    run_study([str(params)], only=["03"], reports_root=str(tmp_path / "reports"), root=root)

    metrics = json.loads((tmp_path / "reports" / "original_ckpt" / "metrics" / "03_invert.json").read_text())
    # An untrained decoder has small pre-activations: float64 inversion is exact, as theory says.
    assert metrics["realizable"]["prior"]["float64"]["success_1e-6"] == 1.0
    assert metrics["realizable"]["prior"]["float64"]["nonfinite"] == 0
    assert metrics["real"]["original_clamp"]["nonfinite_latents"] == 0
    assert metrics["n_test"] == 200
