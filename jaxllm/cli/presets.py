"""List the presets, or print one's full config (with overrides applied).

  jaxllm presets                                   names and what each is for
  jaxllm presets shakespeare-char                  its resolved config.json
  jaxllm presets shakespeare-char --set model.n_layers=6 --steps 5000
"""

from __future__ import annotations

import argparse


def add_parser(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("name", nargs="?", help="a preset to print in full")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, as for jaxllm train (repeatable)")
    p.add_argument("--steps", type=int, help="train.steps")


def run(args) -> int:
    from jaxllm import config as config_lib
    from jaxllm.errors import ConfigError

    if args.name is None:
        if args.overrides or args.steps is not None:
            raise ConfigError("--set and --steps apply to one preset: jaxllm presets NAME --set ...")
        width = max(map(len, config_lib.PRESETS))
        for name in config_lib.PRESETS:
            print(f"{name:<{width}}  {config_lib.PRESET_NOTES.get(name, '')}")
        return 0
    overrides = args.overrides + ([f"train.steps={args.steps}"] if args.steps is not None else [])
    cfg = config_lib.validate(config_lib.apply_overrides(config_lib.get_preset(args.name),
                                                         overrides))
    print(cfg.to_json())
    return 0
