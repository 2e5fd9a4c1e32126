"""Attack options declared once: range, widget step and help live in the config field.

A config field is written ``steps: int = option(100, low=1, high=10_000, help="...")``.
From that one declaration come the config's validation (:func:`validate`, called by
``AttackConfig.__post_init__``), the CLI's ``--steps`` (:func:`add_arguments`), the
parsing of ``--set attack.steps=50`` (:func:`parse_value`) and the app's widget ranges
(:func:`spec`). Types come from ``typing.get_type_hints``, never from annotation strings.

A config may also hold a frozen *tuning* object (:func:`tuning_field`, the sparse attack's
``SparseTuning``): numbers for benchmarks, not for users, so they are neither CLI flags nor
widgets. ``--set attack.tuning.FIELD=VALUE`` reaches them (:func:`build`) as changes to the
tuning the call uses (:func:`tuning_changes_field`).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass
from collections.abc import Callable, Mapping
from typing import Any, Union

from .base import check_range


def option(
    default: Any,
    *,
    help: str,
    low: float | None = None,
    high: float | None = None,
    ui: tuple[float, float, float] | None = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """A config field with its valid range ``[low, high]``, choices, help text and widget range ``ui``.

    ``ui = (low, high, step)`` is the range a slider offers: narrower than what is
    valid, wide enough for what people try.
    """
    metadata = {"help": help, "low": low, "high": high, "ui": ui, "choices": choices}
    return dataclasses.field(default=default, metadata=metadata)


def tuning_field(tuning_type: type, *, help: str) -> Any:
    """A config field holding a frozen tuning dataclass, or None for the attack's own preset.

    Not an option: no CLI flag, no widget; its fields are ``--set attack.tuning.FIELD=VALUE``.
    """
    return dataclasses.field(default=None, metadata={"help": help, "tuning": tuning_type})


def tuning_changes_field(*, help: str) -> Any:
    """A config field of ``(name, value)`` changes to the tuning a call uses (``--set`` writes here)."""
    return dataclasses.field(default=(), metadata={"help": help, "tuning_changes": True})


def tuning_type(config_type: type) -> type | None:
    """The tuning dataclass a config holds (see :func:`tuning_field`), if any."""
    for field in dataclasses.fields(config_type):
        if "tuning" in field.metadata:
            found: type = field.metadata["tuning"]
            return found
    return None


def _is_option(field: dataclasses.Field[Any]) -> bool:
    return "tuning" not in field.metadata and "tuning_changes" not in field.metadata


@dataclass(frozen=True)
class OptionSpec:
    """Everything the CLI, ``--set`` and the app need to know about one option."""

    name: str
    kind: type  # bool, int, float or str
    optional: bool  # None is a valid value (it means "pick for me", see the field's help)
    default: Any
    help: str
    low: float | None
    high: float | None
    ui: tuple[float, float, float] | None
    choices: tuple[str, ...] | None

    @property
    def flag(self) -> str:
        return "--" + self.name.rstrip("_").replace("_", "-")

    def describe(self) -> str:
        """Help text with the default and the valid values, for ``--help``."""
        def number(value: float) -> str:
            return f"{int(value)}" if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"

        if self.choices:
            valid = "one of " + ", ".join(self.choices)
        elif self.kind is bool:
            valid = "true or false"
        elif self.low is not None and self.high is not None:
            valid = f"{number(self.low)}..{number(self.high)}"
        else:
            valid = "any"
        shown = "none" if self.default is None else str(self.default).lower() if self.kind is bool else self.default
        return f"{self.help} (default {shown}; {valid}{' or none' if self.optional else ''})"


def _kind(annotation: Any) -> tuple[type, bool]:
    """``int | None`` -> (int, True); ``float`` -> (float, False)."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"an option must have one type (optionally | None); got {annotation}.")
        return args[0], True
    return annotation, False


_SPECS: dict[type, tuple[OptionSpec, ...]] = {}


def specs(config_type: type) -> tuple[OptionSpec, ...]:
    """The options of a config dataclass, in field order (read once per type)."""
    if config_type not in _SPECS:
        _SPECS[config_type] = _read_specs(config_type)
    return _SPECS[config_type]


def _read_specs(config_type: type) -> tuple[OptionSpec, ...]:
    hints = typing.get_type_hints(config_type)
    found = []
    for field in filter(_is_option, dataclasses.fields(config_type)):
        kind, optional = _kind(hints[field.name])
        meta = field.metadata
        found.append(OptionSpec(
            name=field.name, kind=kind, optional=optional, default=field.default, help=meta.get("help", ""),
            low=meta.get("low"), high=meta.get("high"), ui=meta.get("ui"), choices=meta.get("choices"),
        ))
    return tuple(found)


def spec(config_type: type, name: str) -> OptionSpec:
    for option_spec in specs(config_type):
        if option_spec.name == name:
            return option_spec
    raise KeyError(f"{config_type.__name__} has no option {name!r}.")


def validate(config: Any) -> None:
    """Raise ``ValueError`` naming the valid values for the first option outside them."""
    for option_spec in specs(type(config)):
        value = getattr(config, option_spec.name)
        if value is None and option_spec.optional:
            continue
        if option_spec.choices is not None:
            if value not in option_spec.choices:
                raise ValueError(
                    f"{option_spec.name} must be one of {', '.join(map(repr, option_spec.choices))}; got {value!r}."
                )
        elif option_spec.kind is bool:
            if not isinstance(value, bool):
                raise ValueError(f"{option_spec.name} must be true or false; got {value!r}.")
        elif option_spec.low is not None and option_spec.high is not None:
            check_range(option_spec.name, value, option_spec.low, option_spec.high)
            if option_spec.kind is int and not float(value).is_integer():
                raise ValueError(f"{option_spec.name} must be a whole number; got {value!r}.")


def parse_value(option_spec: OptionSpec, text: str, what: str | None = None) -> Any:
    """Turn command-line text into the option's type ("none" for optional ones); one-line errors."""
    what = what or option_spec.name
    cleaned = text.strip()
    if option_spec.optional and cleaned.lower() == "none":
        return None
    try:
        if option_spec.kind is bool:
            if cleaned.lower() in {"true", "1", "yes", "on"}:
                return True
            if cleaned.lower() in {"false", "0", "no", "off"}:
                return False
            raise ValueError
        if option_spec.kind is int:
            return int(cleaned)
        if option_spec.kind is float:
            return float(cleaned)
    except ValueError:
        expected = {bool: "true/false", int: "a whole number", float: "a number"}[option_spec.kind]
        raise ValueError(f"{what} expects {expected}{' or none' if option_spec.optional else ''}; got {text!r}.") from None
    return cleaned


def build(config_type: type, texts: Mapping[str, str], *, what: str, **fixed: Any) -> Any:
    """A config from command-line text (``--set``): ``fixed`` values, then ``texts``.

    ``{"steps": "50"}`` sets an option; ``{"tuning.patience": "8"}`` changes a field of the
    config's tuning (of the preset the call picks, or of an explicit tuning). Unknown names
    raise ``ValueError`` listing the known ones; values are parsed and range-checked.
    """
    known = {option_spec.name: option_spec for option_spec in specs(config_type)}
    tuned = tuning_type(config_type)
    tunable = {} if tuned is None else {option_spec.name: option_spec for option_spec in specs(tuned)}
    values = dict(fixed)
    changes: dict[str, Any] = {}
    for key, text in texts.items():
        head, dot, field = key.partition(".")
        if dot and head == "tuning" and tuned is not None:
            if field not in tunable:
                raise ValueError(f"{what} tuning has no field {field!r}; fields: {', '.join(tunable)}.")
            changes[field] = parse_value(tunable[field], text, f"{what}.{key}")
        elif key in known:
            values[key] = parse_value(known[key], text, f"{what}.{key}")
        else:
            hint = f"; tuning fields are set as {what}.tuning.FIELD" if key in tunable else ""
            raise ValueError(f"{what} has no option {key!r}; options: {', '.join(known)}{hint}.")
    if changes:
        values["tuning_changes"] = tuple(changes.items())
    return config_type(**values)


def add_arguments(parser: argparse.ArgumentParser, config_type: type, *, skip: tuple[str, ...] = ()) -> None:
    """One ``--option`` per config field; an option not given keeps the config's default."""
    group = parser.add_argument_group(f"{config_type.__name__} options")
    for option_spec in specs(config_type):
        if option_spec.name in skip:
            continue
        group.add_argument(
            option_spec.flag, dest=f"option_{option_spec.name}", default=argparse.SUPPRESS, metavar=option_spec.kind.__name__.upper(),
            type=_argument_parser(option_spec), help=option_spec.describe().replace("%", "%%"),
        )


def _argument_parser(option_spec: OptionSpec) -> Callable[[str], Any]:
    """argparse's ``type=``: a parse error becomes argparse's one-line usage error."""
    def parse(text: str) -> Any:
        try:
            return parse_value(option_spec, text, option_spec.flag)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return parse


def from_arguments(config_type: type, args: argparse.Namespace, **fixed: Any) -> Any:
    """The config the command line asked for: defaults, then ``fixed``, then what was given."""
    values = dict(fixed)
    for option_spec in specs(config_type):
        if hasattr(args, f"option_{option_spec.name}"):  # absent unless given (argparse.SUPPRESS)
            values[option_spec.name] = getattr(args, f"option_{option_spec.name}")
    return config_type(**values)
