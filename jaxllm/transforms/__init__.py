"""Pure pytree -> pytree transforms selected by path rules: quantization, QAT, BitNet, LoRA/QLoRA.

    from jaxllm.transforms import Rule, quantize, dequantize, lora
    qp = quantize(params, [Rule("**/kernel", options={"method": "nf4", "group": 64})])
    qlp = lora.init(qp, lora.targets("attn"), rank=8, alpha=16)      # QLoRA
    float_params = lora.merge(qlp)                                    # merged export

They work on any pytree of arrays (a plain dict, another Flax model's params) and on jaxllm
params, whose Dense layers run transformed kernels directly (models/layers.Dense). Modules:
rules (selection), quantize (QArray), calibrate (static W8A8 ranges), qat (fake quantization,
BitNet), lora (LoraArray), partition (trainable / frozen split).

The two spec strings the config and CLI use are parsed here:
  quantization  "method=int4,group=64[,symmetric=false][,act=dynamic][,embed=true]"
                (model.weights; embed=true also quantizes the token embedding, per row)
  LoRA          "rank=8,alpha=16,targets=attn|all|REGEX[,dropout=0.05]"  (train.lora)
"""

from __future__ import annotations

import jax

from jaxllm.transforms import lora
from jaxllm.transforms.calibration import apply_calibration, calibrate
from jaxllm.transforms.partition import combine, partition
from jaxllm.transforms.quantize import METHODS, QArray, dequantize, quantize, with_act
from jaxllm.transforms.select import Rule, TransformError, logical_axes, tree_bytes

__all__ = ["METHODS", "QArray", "Rule", "TransformError", "apply_calibration", "calibrate",
           "combine", "dequantize", "embedding_rule", "linear_rules", "logical_axes", "lora", "parse_spec",
           "partition", "quantize", "tree_bytes", "with_act", "apply_lora_spec",
           "apply_weights_spec"]


def linear_rules() -> list[Rule]:
    """Every linear-layer kernel of a jaxllm model (the attention output contracts two axes)."""
    return [Rule("**/*attn/out/kernel", n_in=2), Rule("**/kernel")]


_SPEC_KEYS = {
    "quantize": {"method": str, "group": str, "symmetric": bool, "act": str, "embed": bool},
    "lora": {"rank": int, "alpha": float, "targets": str, "dropout": float},
}


def parse_spec(text: str, kind: str) -> dict:
    """"k=v,k=v" -> a typed dict for kind "quantize" or "lora"; TransformError on a bad key."""
    keys = _SPEC_KEYS[kind]
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        k, eq, v = part.partition("=")
        if not eq or k not in keys:
            raise TransformError(f"{kind} spec {text!r}: {part!r} is not one of "
                                 f"{', '.join(f'{k}=...' for k in keys)}")
        typ = keys[k]
        try:
            if typ is bool:
                if v.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                out[k] = v.lower() in ("true", "1")
            else:
                out[k] = typ(v)
        except ValueError:
            raise TransformError(f"{kind} spec {text!r}: {k}={v!r} is not a "
                                 f"{typ.__name__}") from None
    if "group" in out and out["group"] not in ("channel", "tensor"):
        try:
            out["group"] = int(out["group"])
        except ValueError:
            raise TransformError(f"quantize spec {text!r}: group must be channel, tensor or an "
                                 f"integer") from None
    if kind == "quantize" and out.get("method") not in METHODS:
        raise TransformError(f"quantize spec {text!r}: method must be one of "
                             f"{', '.join(METHODS)}")
    return out


def embedding_rule(**options) -> Rule:
    """The token embedding (vocab, D), quantized per row: the vocabulary axis is a stacked
    (lead) axis, so "channel" means one step per token row and a group size counts along D.
    Weight-only whatever `act` the kernels get (the table is looked up, not multiplied)."""
    return Rule("embed/embedding", lead=1, options={**options, "act": "none"})


def apply_weights_spec(params, spec: str, axes=None):
    """params quantized as a model.weights spec says: every linear kernel, and the token
    embedding too with embed=true (default false: it stays float)."""
    o = parse_spec(spec, "quantize")
    rules = ([embedding_rule()] if o.pop("embed", False) else []) + linear_rules()
    return quantize(params, rules, axes=axes, **o)


def apply_lora_spec(params, spec: str, rng, axes=None):
    """params with LoRA factors as a train.lora spec says."""
    o = parse_spec(spec, "lora")
    rules = lora.targets(o.pop("targets", "attn"))
    return lora.init(params, rules, rng=rng, axes=axes, **o)


def abstract(tree):
    """ShapeDtypeStructs of a tree (for orbax restores)."""
    return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)
