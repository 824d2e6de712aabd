"""Files in and out: atomic writes now; model importers/exporters (GGUF, safetensors) later."""

from jaxllm.io.files import atomic_write, write_json_atomic

__all__ = ["atomic_write", "write_json_atomic"]
