"""Build nn.Sequential stacks from the params' layer lists, from an allow-list only.

The original looked any name up in torch.nn's namespace, so a params file could construct
any torch.nn object. Here a name must be in ALLOWED_LAYERS, and the sizes of consecutive
Linear layers must chain.
"""
from __future__ import annotations

import copy

import torch.nn as nn

from .errors import ParamsError

# Layers a fully connected VAE needs; every other name is refused.
ALLOWED_LAYERS: dict[str, type[nn.Module]] = {
    cls.__name__: cls
    for cls in (
        nn.Linear, nn.Tanh, nn.Sigmoid, nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU,
        nn.Softplus, nn.Identity, nn.Flatten, nn.Dropout, nn.BatchNorm1d, nn.LayerNorm,
    )
}

IMAGE_SIZE = 28 * 28


def _split_block(block, where: str) -> tuple[str, list, dict]:
    """A block is a one-key mapping {Name: None | {args: [...], other kwargs}}."""
    if not isinstance(block, dict) or len(block) != 1:
        raise ParamsError(f"{where}: a layer must be a one-key mapping like {{Linear: {{args: [784, 512]}}}}, got {block!r}")
    name, options = next(iter(block.items()))
    if name not in ALLOWED_LAYERS:
        raise ParamsError(f"{where}: unknown layer {name!r}; allowed: {', '.join(sorted(ALLOWED_LAYERS))}")
    options = copy.deepcopy(options) if options is not None else {}
    if not isinstance(options, dict):
        raise ParamsError(f"{where}.{name}: options must be a mapping (args: [...], bias: ...), got {options!r}")
    args = options.pop("args", [])
    if not isinstance(args, list):
        raise ParamsError(f"{where}.{name}.args: must be a list, got {args!r}")
    return name, args, options


def build_layer(block, where: str = "layer") -> nn.Module:
    name, args, kwargs = _split_block(block, where)
    try:
        return ALLOWED_LAYERS[name](*args, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ParamsError(f"{where}.{name}: cannot build it with args={args} {kwargs}: {exc}") from None


def build_sequential(blocks: list, where: str = "layers") -> nn.Sequential:
    return nn.Sequential(*(build_layer(b, f"{where}[{i}]") for i, b in enumerate(blocks)))


def _chain_features(blocks: list, features: int, where: str) -> int:
    """Follow the feature count through a layer list; refuse a Linear that does not fit."""
    for i, block in enumerate(blocks):
        name, args, kwargs = _split_block(block, f"{where}[{i}]")
        if name != "Linear":
            continue
        sizes = list(args) + [kwargs.get(k) for k in ("in_features", "out_features") if k in kwargs]
        if len(sizes) < 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes[:2]):
            raise ParamsError(f"{where}[{i}].Linear.args: needs two positive integers [in, out], got {args!r}")
        n_in, n_out = sizes[:2]
        if n_in != features:
            raise ParamsError(f"{where}[{i}].Linear: takes {n_in} features but receives {features}")
        features = n_out
    return features


def check_architecture(arch: dict, where: str = "model.architecture") -> int:
    """Check that every layer is allowed and buildable and that sizes chain. Returns the latent size."""
    enc, dec = arch["encoder"], arch["decoder"]
    for part, blocks in (("encoder.conv", enc["conv"]), ("encoder.mean", enc["mean"]),
                         ("encoder.log_var", enc["log_var"])):
        build_sequential(blocks, f"{where}.{part}")
    decoder = build_sequential(dec, f"{where}.decoder")
    hidden = _chain_features(enc["conv"], IMAGE_SIZE, f"{where}.encoder.conv")
    latent = _chain_features(enc["mean"], hidden, f"{where}.encoder.mean")
    latent_var = _chain_features(enc["log_var"], hidden, f"{where}.encoder.log_var")
    if latent_var != latent:
        raise ParamsError(f"{where}.encoder.log_var: gives {latent_var} latent dims but encoder.mean gives {latent}")
    out = _chain_features(dec, latent, f"{where}.decoder")
    if out != IMAGE_SIZE:
        raise ParamsError(f"{where}.decoder: ends with {out} features but an MNIST image has {IMAGE_SIZE}")
    _check_invertible(decoder, f"{where}.decoder")
    return latent


def _check_invertible(decoder: nn.Sequential, where: str) -> None:
    """The study inverts the decoder: refuse, before training, one that cannot be inverted."""
    from .errors import StudyError
    from .inverse import build_inverse

    try:
        build_inverse(decoder)
    except StudyError as exc:
        raise ParamsError(f"{where}: cannot be inverted: {exc}") from None
