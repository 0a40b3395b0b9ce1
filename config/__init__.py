"""Layer 1: the argument parser, YAML presets (as argparse defaults) and NNI overrides."""

from config.args import apply_overrides, get_args_parser, load_preset, str2bool

__all__ = ["apply_overrides", "get_args_parser", "load_preset", "str2bool"]
