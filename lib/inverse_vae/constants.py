"""The study's named constants, in one place (imports nothing from the study, nor torch)."""
from __future__ import annotations

# MNIST images: 28 x 28 pixels, flattened to 784 for the fully connected networks.
IMAGE_SIDE = 28
IMAGE_SIZE = IMAGE_SIDE * IMAGE_SIDE

# The original project's clamp margin: each bounded inverse's input kept eps inside its range ([0.001, 0.999]
# at the output, [-0.999, 0.999] at the hidden layers).
ORIGINAL_EPS = 1e-3

# The two arithmetics every inversion is measured in (names of torch dtypes).
ARITHMETICS = ("float32", "float64")

# When a recovered latent counts as exact, per arithmetic of the decoder's output: float32
# rounding alone, amplified by the chain, is of order 1e-6, so 1e-6 is no fair bar there.
RECOVERY_TARGETS = {"float32": ("success_1e-4", 1e-4), "float64": ("success_1e-6", 1e-6)}

# Success fractions reported by latent recovery: key -> relative-error threshold.
SUCCESS_THRESHOLDS = {"success_1e-2": 1e-2, "success_1e-4": 1e-4, "success_1e-6": 1e-6}

# Params names -> torch class names (torch.optim / torch.optim.lr_scheduler): the config
# validates the keys, the trainer looks the classes up; one list for both.
OPTIMIZERS = {"adam": "Adam", "sgd": "SGD", "rmsprop": "RMSprop"}
SCHEDULERS = {
    "steplr": "StepLR",
    "multisteplr": "MultiStepLR",
    "cosineannealinglr": "CosineAnnealingLR",
    "cycliclr": "CyclicLR",
    "exponentiallr": "ExponentialLR",
}

# The per-run notebooks, in order (notebooks/<name>.ipynb), and the summary across runs.
NOTEBOOKS = ("01_train", "02_evaluate", "03_invert", "04_failure_analysis", "05_inverse_methods")
SUMMARY = "99_summary"
