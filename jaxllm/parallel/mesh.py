"""A device mesh from a spec string: "data=2,fsdp=2,tensor=2" (-1 fills the remaining devices).

    mesh = make_mesh("data=2,tensor=4")      # 8 devices; axes data, stage, fsdp, sequence, tensor

Every jaxllm mesh has the same five named axes, in this order, absent ones of size 1:

    data      data parallel: the batch is split; ZeRO (--zero N) shards state along it
    stage     pipeline stages: the scanned layers are split into contiguous groups
    fsdp      fully sharded data parallel: the batch is split and parameters are sharded
    sequence  sequence (context) parallel: every activation is split along the sequence, and
              attention runs as ring attention (model.attention=ring, models/attention.py)
    tensor    Megatron tensor parallel: heads, mlp and vocabulary are split

A fixed axis set keeps the rule tables (layout.py) and PartitionSpecs independent of which axes a
run happens to use. The axes are `Auto`: jit propagates shardings from the in/out shardings and
the few constraints jaxllm sets, rather than requiring every op to be annotated (Explicit).
"""

from __future__ import annotations

import math

import jax
from jax.sharding import AxisType, Mesh

from jaxllm.errors import ConfigError

AXES = ("data", "stage", "fsdp", "sequence", "tensor")
BATCH_AXES = ("data", "fsdp")  # the batch is split over both


def parse_mesh_spec(spec: str, n_devices: int, platform: str = "") -> dict[str, int]:
    """{"data": 2, "stage": 1, ...} from "data=2,tensor=4", validated against n_devices (of
    the platform, "cpu" adds how to simulate more devices to the error)."""
    sizes = {a: 1 for a in AXES}
    fill = None
    seen = set()
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        name, eq, value = part.partition("=")
        name = name.strip()
        if not eq or name not in AXES:
            raise ConfigError(f"mesh spec {spec!r}: {part!r} is not AXIS=SIZE with AXIS one of "
                              f"{', '.join(AXES)} (for example data=2,tensor=4)")
        if name in seen:
            raise ConfigError(f"mesh spec {spec!r}: axis {name!r} is given twice")
        seen.add(name)
        try:
            size = int(value)
        except ValueError:
            raise ConfigError(f"mesh spec {spec!r}: size {value!r} of {name} is not an "
                              f"integer") from None
        if size == -1:
            if fill is not None:
                raise ConfigError(f"mesh spec {spec!r}: only one axis may be -1")
            fill = name
        elif size < 1:
            raise ConfigError(f"mesh spec {spec!r}: size of {name} must be >= 1 or -1 (fill)")
        else:
            sizes[name] = size
    known = math.prod(sizes.values())
    simulate = (f" (on a CPU, XLA_FLAGS=--xla_force_host_platform_device_count={known} "
                f"simulates {known} devices)" if platform == "cpu" and known > n_devices else "")
    if fill is not None:
        if n_devices % known:
            raise ConfigError(f"mesh spec {spec!r}: {n_devices} devices are not divisible by "
                              f"the other axes' product {known}, so {fill}=-1 cannot fill "
                              f"them{simulate}")
        sizes[fill] = n_devices // known
    elif known != n_devices:
        processes = jax.process_count()
        where = f" ({processes} processes together)" if processes > 1 else ""
        raise ConfigError(f"mesh spec {spec!r}: the axis sizes multiply to {known} but there "
                          f"are {n_devices} devices{where}; make them multiply to {n_devices} "
                          f"or use -1 for one axis{simulate}")
    return sizes


def make_mesh(spec: str | dict = "", devices=None) -> Mesh:
    """A Mesh with axes AXES from a spec string ("" = all devices on `data`) or a sizes dict."""
    devices = list(devices if devices is not None else jax.devices())
    if isinstance(spec, dict):
        spec = ",".join(f"{k}={v}" for k, v in spec.items())
    sizes = parse_mesh_spec(spec or "data=-1", len(devices), devices[0].platform)
    return jax.make_mesh(tuple(sizes[a] for a in AXES), AXES,
                         axis_types=(AxisType.Auto,) * len(AXES), devices=devices)


def describe(mesh: Mesh) -> str:
    """'data=2,tensor=4' (axes of size 1 left out)."""
    return ",".join(f"{a}={n}" for a, n in mesh.shape.items() if n > 1) or "single device"
