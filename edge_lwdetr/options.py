"""Options as dataclasses, one per pipeline step: each field is the option, its default, its command-line flag and
help, and its record in sidecars and reports. The CLI, the API and the reports all read the same field.

A field's `metadata["cli"]` holds its argparse settings (`help`, `type`, `choices`, and optionally `flag`, or
`exclusive` naming a mutually exclusive group); booleans become store_true flags.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, fields
from pathlib import Path


def cli(help: str, **argparse_options) -> dict:
    """The field metadata that makes a field a command-line option."""
    return {"cli": {"help": help, **argparse_options}}


class CliOptions:
    """Base for the options dataclasses (frozen dataclasses that inherit from it)."""

    def record(self) -> dict:
        """The options as JSON values (sidecars, reports, ONNX metadata)."""
        return {
            k: str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v
            for k, v in asdict(self).items()  # type: ignore[call-overload]
        }

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
        """One option per field (`--calib-count`, ...)."""
        groups: dict[str, argparse._MutuallyExclusiveGroup] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            if f.name in skip or "cli" not in f.metadata:
                continue
            spec = dict(f.metadata["cli"])
            flag = spec.pop("flag", "--" + f.name.replace("_", "-"))
            exclusive = spec.pop("exclusive", None)
            target = parser
            if exclusive:
                if exclusive not in groups:
                    groups[exclusive] = parser.add_mutually_exclusive_group()
                target = groups[exclusive]
            if f.type == "bool":
                target.add_argument(flag, dest=f.name, action="store_true", **spec)
            else:
                target.add_argument(flag, dest=f.name, default=f.default, **spec)

    @classmethod
    def from_arguments(cls, args: argparse.Namespace, **overrides):
        """The options a parsed command line gives (fields it lacks keep their defaults), with `overrides`."""
        names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
        return cls(**{name: getattr(args, name) for name in names if hasattr(args, name)} | overrides)
