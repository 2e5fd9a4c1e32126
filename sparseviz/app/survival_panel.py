"""The single-image view's "Does it survive?" panel: widgets only, the check is one library call
(:func:`sparseviz.audit.survival.survival`, one forward pass), kept per result in the session."""

from __future__ import annotations

import hashlib

import streamlit as st

from ..attacks.base import AttackResult
from ..audit.survival import LIMIT_TEXT, Outcome, survival
from ..images import to_pil, to_uint8
from ..models import ImageClassifier


def _key(model: ImageClassifier, result: AttackResult) -> str:
    digest = hashlib.sha256(to_uint8(result.adversarials[0].cpu()).numpy().tobytes())
    return f"{model.name}:{int(result.labels[0])}:{digest.hexdigest()}"


def outcomes_for(model: ImageClassifier, result: AttackResult) -> list[Outcome]:
    """The survival check of this result, computed once per session and result."""
    key = _key(model, result)
    kept = st.session_state.get("survival_check")
    if kept is None or kept[0] != key:
        kept = (key, survival(model, result.originals[0], result.adversarials[0], int(result.labels[0])))
        st.session_state["survival_check"] = kept
    return list(kept[1])


def survival_ui(model: ImageClassifier, result: AttackResult) -> None:
    """Each processed copy of the adversarial image and what the model says about it."""
    st.subheader("Does it survive?")
    if not bool(result.success[0]):
        st.caption("Nothing to check: the attack did not fool the model.")
        return
    outcomes = outcomes_for(model, result)
    names = model.class_names
    survived = sum(o.fools for o in outcomes)
    st.markdown(f"The adversarial image after everyday processing: **{survived} of {len(outcomes)}** copies still "
                f"fool the model.")
    columns = st.columns(len(outcomes))
    for column, outcome in zip(columns, outcomes):
        column.image(to_pil(outcome.image), caption=outcome.title, width="stretch")
        verdict = "still fooled" if outcome.fools else "back to the true class"
        column.markdown(f"**{names[outcome.label]}** ({outcome.confidence:.0%}): {verdict}")
        if not outcome.clean_ok:
            column.caption("the clean photo is misread after this step too")
    st.caption(LIMIT_TEXT)


__all__ = ["outcomes_for", "survival_ui"]
