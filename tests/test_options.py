"""Options declared once in the config fields drive validation, the CLI, ``--set`` and widget ranges."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from sparseviz.attacks import ATTACKS, SparseConfig, options
from sparseviz.bench import build_config
from sparseviz.cli import build_parser


@pytest.mark.parametrize("name", list(ATTACKS))
def test_every_option_has_help_and_a_valid_default(name: str) -> None:
    config_type = ATTACKS[name].config_type
    specs = options.specs(config_type)
    assert [s.name for s in specs] == [f.name for f in dataclasses.fields(config_type)]
    for spec in specs:
        assert spec.help, f"{name}.{spec.name} has no help text"
        assert spec.kind in (bool, int, float, str)
        assert spec.choices or spec.kind is bool or (spec.low is not None and spec.high is not None), spec.name
    config_type()  # the defaults pass their own validation


@pytest.mark.parametrize("name", list(ATTACKS))
def test_ranges_in_the_metadata_are_enforced(name: str) -> None:
    config_type = ATTACKS[name].config_type
    for spec in options.specs(config_type):
        if spec.low is not None:
            below = spec.low - 1 if spec.kind is int else spec.low - abs(spec.low) * 0.5 - 1e-3
            with pytest.raises(ValueError, match=rf"{spec.name} must be a number in \["):
                config_type(**{spec.name: below})
        if spec.choices is not None:
            with pytest.raises(ValueError, match=f"{spec.name} must be one of"):
                config_type(**{spec.name: "no-such-choice"})
        if spec.kind is bool and not spec.optional:
            with pytest.raises(ValueError, match="true or false"):
                config_type(**{spec.name: "yes"})
        if spec.kind is int:
            with pytest.raises(ValueError, match=f"{spec.name} must be a whole number"):
                config_type(**{spec.name: spec.low + 0.5})


@pytest.mark.parametrize("name", list(ATTACKS))
def test_every_option_is_reachable_from_the_command_line(name: str) -> None:
    config_type = ATTACKS[name].config_type
    parser = argparse.ArgumentParser()
    options.add_arguments(parser, config_type)
    changed: dict[str, str] = {}
    for spec in options.specs(config_type):
        if spec.choices:
            changed[spec.name] = spec.choices[-1]
        elif spec.kind is bool:
            changed[spec.name] = "false" if spec.default else "true"
        elif spec.optional and spec.default is None:
            changed[spec.name] = str(int(spec.low or 0) + 1)
        else:
            changed[spec.name] = str(spec.default if spec.default != spec.low else spec.low + 1)
    argv = [token for spec in options.specs(config_type) for token in (spec.flag, changed[spec.name])]
    config = options.from_arguments(config_type, parser.parse_args(argv))
    for spec in options.specs(config_type):
        assert getattr(config, spec.name) == options.parse_value(spec, changed[spec.name]), spec.name
    assert options.from_arguments(config_type, parser.parse_args([])) == config_type()


def test_sparseviz_attack_exposes_every_sparse_option() -> None:
    args = build_parser().parse_args(["attack", "x.png", "--out", "o", "--steps", "50", "--swap-calls", "0",
                                      "--patience", "none", "--relaxed-view", "true", "--prune", "false"])
    config = options.from_arguments(SparseConfig, args)
    assert (config.steps, config.swap_calls, config.patience, config.relaxed_view, config.prune) == (50, 0, None, True, False)


def test_bad_option_text_is_one_line() -> None:
    spec = options.spec(SparseConfig, "steps")
    with pytest.raises(ValueError, match="sparse.steps expects a whole number; got 'many'"):
        options.parse_value(spec, "many", "sparse.steps")
    with pytest.raises(ValueError, match="relaxed_view expects true/false or none"):
        options.parse_value(options.spec(SparseConfig, "relaxed_view"), "maybe")
    assert build_config("sparse", {"swap_calls": "none", "relaxed_view": "on"}) == SparseConfig(relaxed_view=True)


def test_widget_ranges_sit_inside_the_valid_ranges() -> None:
    for config_type in {spec.config_type for spec in ATTACKS.values()}:
        for spec in options.specs(config_type):
            if spec.ui is not None:
                low, high, step = spec.ui
                assert spec.low is not None and spec.high is not None
                assert spec.low <= low <= spec.default <= high <= spec.high and step > 0, spec.name
