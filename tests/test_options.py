"""Options declared once in the config fields drive validation, the CLI, ``--set`` and widget ranges."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from sparseviz.attacks import ATTACKS, SparseConfig, SparseTuning, options
from sparseviz.attacks.sparse import TARGETED, UNTARGETED
from sparseviz.audit.bench import build_config, parse_overrides
from sparseviz.cli import build_parser


@pytest.mark.parametrize("name", list(ATTACKS))
def test_every_option_has_help_and_a_valid_default(name: str) -> None:
    config_type = ATTACKS[name].config_type
    specs = options.specs(config_type)
    tuning_fields = {"tuning", "tuning_changes"}  # the sparse attack's tuning: not options (see test below)
    assert [s.name for s in specs] == [f.name for f in dataclasses.fields(config_type) if f.name not in tuning_fields]
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


def test_sparseviz_attack_exposes_the_public_knobs_and_not_the_tuning(capsys) -> None:
    args = build_parser().parse_args(["attack", "x.png", "--out", "o", "--steps", "50", "--sparsity-weight", "2",
                                      "--seed", "3", "--max-seconds", "9"])
    config = options.from_arguments(SparseConfig, args)
    assert (config.steps, config.sparsity_weight, config.seed, config.max_seconds) == (50, 2.0, 3, 9.0)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["attack", "--help"])
    shown = capsys.readouterr().out
    for flag in ("--sparsity-weight", "--steps", "--seed", "--max-seconds"):
        assert flag in shown
    for field in dataclasses.fields(SparseTuning):
        assert "--" + field.name.replace("_", "-") not in shown, field.name
    assert "--tuning" not in shown
    with pytest.raises(SystemExit):
        build_parser().parse_args(["attack", "x.png", "--out", "o", "--patience", "3"])


def test_set_reaches_a_tuning_field_of_the_preset_the_run_picks() -> None:
    config = build_config("sparse", {"tuning.patience": "8", "tuning.relaxed_view": "off", "steps": "20"})
    assert config.steps == 20 and config.tuning is None
    for targeted, preset in ((False, UNTARGETED), (True, TARGETED)):
        assert config.tuning_for(targeted) == dataclasses.replace(preset, patience=8, relaxed_view=False)
    assert build_config("sparse", {}, max_seconds=5) == SparseConfig(max_seconds=5)
    with pytest.raises(ValueError, match="sparse tuning has no field 'nope'; fields: mask_lr"):
        build_config("sparse", {"tuning.nope": "1"})
    with pytest.raises(ValueError, match="sparse has no option 'patience'.*sparse.tuning.FIELD"):
        build_config("sparse", {"patience": "8"})
    with pytest.raises(ValueError, match="sparse.tuning.patience expects a whole number; got 'soon'"):
        build_config("sparse", {"tuning.patience": "soon"})
    with pytest.raises(ValueError, match="patience must be a number in"):
        build_config("sparse", {"tuning.patience": "0"})
    with pytest.raises(ValueError, match="pgd has no option 'tuning.steps'"):
        build_config("pgd", {"tuning.steps": "3"})  # only configs with a tuning have tuning fields


def test_every_tuning_field_has_help_a_range_and_is_reachable_with_set() -> None:
    for spec in options.specs(SparseTuning):
        assert spec.help and not spec.optional, spec.name
        assert spec.kind is bool or (spec.low is not None and spec.high is not None), spec.name
        text = str(not spec.default).lower() if spec.kind is bool else str(spec.high)
        if spec.name == "temperature_end":
            text = "0.5"  # at most temperature_start
        config = build_config("sparse", {f"tuning.{spec.name}": text})
        assert getattr(config.tuning_for(False), spec.name) == options.parse_value(spec, text), spec.name


def test_bench_set_parses_tuning_keys() -> None:
    overrides = parse_overrides(["sparse.tuning.swap_calls=0", "sparse.steps=7"])
    assert overrides == {"sparse": {"tuning.swap_calls": "0", "steps": "7"}}
    assert build_config("sparse", overrides["sparse"]).tuning_for(False).swap_calls == 0


def test_bad_option_text_is_one_line() -> None:
    spec = options.spec(SparseConfig, "steps")
    with pytest.raises(ValueError, match="sparse.steps expects a whole number; got 'many'"):
        options.parse_value(spec, "many", "sparse.steps")
    with pytest.raises(ValueError, match="relaxed_view expects true/false; got 'maybe'"):
        options.parse_value(options.spec(SparseTuning, "relaxed_view"), "maybe")
    assert build_config("sparse", {"seed": "4", "tuning.relaxed_view": "on"}) == SparseConfig(seed=4).retuned(relaxed_view=True)


def test_widget_ranges_sit_inside_the_valid_ranges() -> None:
    for config_type in {spec.config_type for spec in ATTACKS.values()}:
        for spec in options.specs(config_type):
            if spec.ui is not None:
                low, high, step = spec.ui
                assert spec.low is not None and spec.high is not None
                assert spec.low <= low <= spec.default <= high <= spec.high and step > 0, spec.name
