"""Build nn.Sequential stacks from the config's layer lists (LayerSpecs), from an allow-list only.

The original looked any name up in torch.nn's namespace, so a params file could construct
any torch.nn object. Here a name must be in ALLOWED_LAYERS, and the sizes of consecutive
Linear layers must chain.
"""
from __future__ import annotations

import torch.nn as nn

from ..constants import IMAGE_SIZE
from ..errors import ParamsError, StudyError
from ..inversion.chain import InverseChain
from ..inversion.table import KINDS
from .config import ArchitectureConfig, LayerList, LayerSpec, thaw

# Layers a fully connected VAE or autoencoder needs; every other name is refused. The decoder's come from the
# inversion's table (what the study can invert); the encoder may also use these, never inverted.
ENCODER_ONLY_LAYERS = (nn.ReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Softplus, nn.Dropout, nn.BatchNorm1d, nn.LayerNorm)
ALLOWED_LAYERS: dict[str, type[nn.Module]] = {cls.__name__: cls for cls in (*KINDS, *ENCODER_ONLY_LAYERS)}



def _layer_class(spec: LayerSpec, where: str) -> type[nn.Module]:
    """The torch.nn class a LayerSpec names, if the allow-list has it."""
    if spec.name not in ALLOWED_LAYERS:
        raise ParamsError(f"{where}: unknown layer {spec.name!r}; allowed: {', '.join(sorted(ALLOWED_LAYERS))}")
    return ALLOWED_LAYERS[spec.name]


def build_layer(spec: LayerSpec, where: str = "layer") -> nn.Module:
    cls = _layer_class(spec, where)
    args, kwargs = thaw(spec.args), thaw(spec.kwargs)  # the plain lists and dicts a YAML file gives
    try:
        return cls(*args, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ParamsError(f"{where}.{spec.name}: cannot build it with args={args} {kwargs}: {exc}") from None


def build_sequential(specs: LayerList, where: str = "layers") -> nn.Sequential:
    return nn.Sequential(*(build_layer(s, f"{where}[{i}]") for i, s in enumerate(specs)))


def _chain_features(specs: LayerList, features: int, where: str) -> int:
    """Follow the feature count through a layer list; refuse a Linear that does not fit."""
    for i, spec in enumerate(specs):
        if spec.name != "Linear":
            continue
        sizes = list(spec.args) + [spec.kwargs.get(k) for k in ("in_features", "out_features") if k in spec.kwargs]
        if len(sizes) < 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes[:2]):
            raise ParamsError(f"{where}[{i}].Linear.args: needs two positive integers [in, out], "
                              f"got {thaw(spec.args)!r}")
        n_in, n_out = sizes[:2]
        if n_in != features:
            raise ParamsError(f"{where}[{i}].Linear: takes {n_in} features but receives {features}")
        features = n_out
    return features


def check_architecture(arch: ArchitectureConfig, where: str = "model.architecture") -> int:
    """Check that every layer is allowed and buildable, that sizes chain and that the decoder
    inverts. Returns the latent size (a VAE's heads', or a deterministic autoencoder's encoder.conv's).

    It builds each stack once to try it, drawing initial weights from torch's global generator:
    build_model runs it before building the model, so a seed gives the weights it always gave.
    """
    enc, dec = arch.encoder, arch.decoder
    built = {part: build_sequential(specs, f"{where}.{part}") for part, specs in arch.parts().items()}
    decoder = built["decoder"]
    latent = hidden = _chain_features(enc.conv, IMAGE_SIZE, f"{where}.encoder.conv")  # an autoencoder's z
    if arch.variational:  # a VAE: the two heads give the latent's mean and log-variance
        latent = _chain_features(enc.mean, hidden, f"{where}.encoder.mean")
        latent_var = _chain_features(enc.log_var, hidden, f"{where}.encoder.log_var")
        if latent_var != latent:
            raise ParamsError(f"{where}.encoder.log_var: gives {latent_var} latent dims but encoder.mean gives {latent}")
    out = _chain_features(dec, latent, f"{where}.decoder")
    if out != IMAGE_SIZE:
        raise ParamsError(f"{where}.decoder: ends with {out} features but an MNIST image has {IMAGE_SIZE}")
    _check_invertible(decoder, f"{where}.decoder")
    return latent


def _check_invertible(decoder: nn.Sequential, where: str) -> None:
    """The study inverts the decoder: refuse, before training, one that cannot be inverted."""
    try:
        InverseChain(decoder)
    except StudyError as exc:
        raise ParamsError(f"{where}: cannot be inverted: {exc}") from None
