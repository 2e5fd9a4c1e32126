"""Streamlit widgets generated from attack options, so the app's ranges and help are the config's own."""

from __future__ import annotations

from typing import Any

from ..attacks import options


def option_widget(container: Any, config_type: type, name: str, *, key: str, value: Any = None,
                  label: str | None = None) -> Any:
    """A slider (float), number box (int) or checkbox (bool) for one option, in ``container`` (``st`` or a column).

    Its range and step are the option's ``ui`` range (else its valid range), its help the
    option's help; ``value`` defaults to the option's default.
    """
    spec = options.spec(config_type, name)
    low, high, step = spec.ui if spec.ui is not None else (spec.low or 0, spec.high or 0, 1)
    value = spec.default if value is None else value
    label = label or name.replace("_", " ")
    if spec.kind is bool:
        return bool(container.checkbox(label, value=bool(value), key=key, help=spec.describe()))
    if spec.kind is float:
        return float(container.slider(label, float(low), float(high), float(value), float(step), key=key,
                                      help=spec.describe()))
    if spec.kind is int:
        return int(container.number_input(label, int(low), int(high), int(value), int(step), key=key,
                                          help=spec.describe()))
    raise TypeError(f"no widget for {config_type.__name__}.{name} ({spec.kind.__name__}).")
