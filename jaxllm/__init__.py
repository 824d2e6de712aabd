"""jaxllm: an accelerator-native JAX/Flax library for language models.

Importing jaxllm imports nothing heavy (the command line configures XLA before JAX starts);
the convenience functions below import what they need when called.
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("jaxllm")  # pyproject.toml's, as installed
except _metadata.PackageNotFoundError:  # a source tree on sys.path without an install
    __version__ = "0+unknown"


def embed(texts, model: str = "all-minilm-l6-v2", *, batch_size: int = 32):
    """Sentence embeddings (N, D), L2-normalised, of a list of texts with a pretrained encoder
    (loaded once and cached): `jaxllm.embed(["a cat", "a dog"]) @ jaxllm.embed(["a kitten"]).T`."""
    from jaxllm import pretrained

    return pretrained.load(model).embed(texts, batch_size=batch_size)
