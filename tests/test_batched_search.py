"""The batched post-processing: as good as checking one variant at a time, and far fewer sequential calls."""

from __future__ import annotations

import dataclasses

import torch

from conftest import clean_labels
from sparseviz.attacks.checks import Checker
from sparseviz.attacks.prune import prune_batch
from sparseviz.attacks.sparse import SparseConfig, sparse_attack
from sparseviz.models import ImageClassifier

FAST = SparseConfig(steps=15, patience=10, swap_calls=60)


class _Unlimited:
    """A budget that is never spent, for calling the post-processing stages directly."""

    def spent(self) -> bool:
        return False


NEVER_SPENT = _Unlimited()


def random_images(count: int, seed: int = 3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.round(torch.rand(count, 3, 32, 32, generator=generator) * 255) / 255


def unpruned_solutions(model: ImageClassifier, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Optimised but unpruned solutions: something for pruning to work on."""
    labels = clean_labels(model, images)
    result = sparse_attack(model, images, labels, config=dataclasses.replace(FAST, prune=False))
    assert result.success.all()
    return labels, result.pixel_mask, result.adversarials


def margin_of(model: ImageClassifier, image: torch.Tensor, label: torch.Tensor) -> float:
    with torch.no_grad():
        logits = model(image[None])[0]
    return float(logits[label] - logits.masked_fill(torch.arange(logits.shape[0]) == label, float("-inf")).max())


def fools(model: ImageClassifier, image: torch.Tensor, label: torch.Tensor, required: float = 1e-3) -> bool:
    return margin_of(model, image, label) < -required


def sequential_prune(model: ImageClassifier, image: torch.Tensor, mask: torch.Tensor, values: torch.Tensor,
                     label: torch.Tensor) -> torch.Tensor:
    """The reference, one network call per check (the attack before batching, with exact orders):
    order by single-revert margin, binary-search the longest removable prefix, re-score while
    that removes something from a large set, then try single removals of the next 24 pixels."""
    def without(current: torch.Tensor, drop: list[list[int]]) -> torch.Tensor:
        trial = current.clone()
        for y, x in drop:
            trial[y, x] = False
        return trial

    while True:
        coords = mask.nonzero().tolist()
        if len(coords) <= 1:
            return mask
        costs = [margin_of(model, torch.where(without(mask, [c]), values, image), label) for c in coords]
        ordered = [c for _, c in sorted(zip(costs, coords))]
        low, high = 0, len(ordered) - 1
        while low < high:
            middle = (low + high + 1) // 2
            if fools(model, torch.where(without(mask, ordered[:middle]), values, image), label):
                low = middle
            else:
                high = middle - 1
        mask = without(mask, ordered[:low])
        if len(coords) > 48 and low > 0:
            continue
        for pixel in ordered[low : low + 24]:
            trial = without(mask, [pixel])
            if trial.sum() >= 1 and fools(model, torch.where(trial, values, image), label):
                mask = trial
        return mask


def test_batched_pruning_keeps_no_more_pixels_than_one_at_a_time(tiny_model, one_torch_thread) -> None:
    images = random_images(6)
    labels, masks, adversarials = unpruned_solutions(tiny_model, images)
    calls = torch.zeros(6, dtype=torch.long)
    checker = Checker(tiny_model, labels, None, calls)
    pruned = prune_batch(checker, images, masks, adversarials, required=1e-3, spent=lambda: False, greedy_passes=8)
    for index in range(6):
        kept = pruned[index]
        assert fools(tiny_model, torch.where(kept, adversarials[index], images[index]), labels[index])
        assert not (kept & ~masks[index]).any(), "pruning only removes pixels"
        reference = sequential_prune(tiny_model, images[index], masks[index], adversarials[index], labels[index])
        assert int(kept.sum()) <= int(reference.sum()), index
    assert (pruned.flatten(1).sum(1) < masks.flatten(1).sum(1)).any()


def test_batched_pruning_of_an_image_does_not_depend_on_its_batch_mates(tiny_model, one_torch_thread) -> None:
    images = random_images(4)
    labels, masks, adversarials = unpruned_solutions(tiny_model, images)
    together = prune_batch(Checker(tiny_model, labels, None, torch.zeros(4, dtype=torch.long)), images, masks,
                           adversarials, required=1e-3, spent=lambda: False)
    for index in range(4):
        part = slice(index, index + 1)
        alone = prune_batch(Checker(tiny_model, labels[part], None, torch.zeros(1, dtype=torch.long)), images[part],
                            masks[part], adversarials[part], required=1e-3, spent=lambda: False)
        assert torch.equal(alone[0], together[index])


def test_a_batch_of_32_needs_an_eighth_of_the_sequential_calls_per_image(tiny_model, one_torch_thread) -> None:
    images = random_images(32, seed=5)
    labels = clean_labels(tiny_model, images)
    batched = sparse_attack(tiny_model, images, labels, config=FAST)
    single = [sparse_attack(tiny_model, images[i : i + 1], labels[i : i + 1], config=FAST) for i in range(32)]
    per_image_batched = batched.model_invocations / 32
    per_image_single = sum(result.model_invocations for result in single) / 32
    assert per_image_batched <= per_image_single / 8, (per_image_batched, per_image_single)
    # Same attack, same answers: batching changes only how the calls are grouped.
    assert torch.equal(batched.success, torch.cat([result.success for result in single]))
    assert torch.equal(batched.l0_pixels, torch.cat([result.l0_pixels for result in single]))


def test_invocations_are_counted_and_much_fewer_than_model_calls(tiny_model, tiny_images, one_torch_thread) -> None:
    image = tiny_images[:1]
    label = clean_labels(tiny_model, image)
    result = sparse_attack(tiny_model, image, label, config=FAST)
    forwards = []
    handle = tiny_model.network.register_forward_hook(lambda *_: forwards.append(1))
    try:
        again = sparse_attack(tiny_model, image, label, config=FAST)
    finally:
        handle.remove()
    assert again.model_invocations == result.model_invocations > 0  # deterministic
    assert result.model_invocations <= len(forwards)  # a chunked call counts once
    assert result.model_invocations * 2 < int(result.model_calls[0])  # rounds check many variants at once


def test_pruning_only_the_chosen_images_leaves_the_others_untouched_and_uncharged(tiny_model, one_torch_thread) -> None:
    images = random_images(3, seed=7)
    labels, masks, adversarials = unpruned_solutions(tiny_model, images)
    calls = torch.zeros(3, dtype=torch.long)
    only = torch.tensor([False, True, False])
    pruned = prune_batch(Checker(tiny_model, labels, None, calls), images, masks, adversarials, required=1e-3,
                         spent=lambda: False, only=only)
    assert torch.equal(pruned[~only], masks[~only]) and calls[~only].sum() == 0
    assert int(pruned[1].sum()) < int(masks[1].sum()) and calls[1] > 0


def test_a_large_set_that_first_order_cannot_shrink_still_gets_exact_checks(tiny_model, one_torch_thread) -> None:
    # exact_limit=1 keeps every set in the first-order stage; with one prefix length per call the
    # rounds soon find nothing removable, and then the exact_cap least-needed pixels are checked
    # one by one instead of the set being left as it is.
    images = random_images(4, seed=3)
    labels, masks, adversarials = unpruned_solutions(tiny_model, images)
    kwargs = dict(required=1e-3, spent=lambda: False, exact_limit=1, lengths=1, narrow=1)
    capped = prune_batch(Checker(tiny_model, labels, None, torch.zeros(4, dtype=torch.long)), images, masks,
                         adversarials, exact_cap=4, **kwargs)
    none = prune_batch(Checker(tiny_model, labels, None, torch.zeros(4, dtype=torch.long)), images, masks,
                       adversarials, exact_cap=0, **kwargs)
    for index in range(4):
        assert fools(tiny_model, torch.where(capped[index], adversarials[index], images[index]), labels[index])
    assert capped.flatten(1).sum(1).sum() < none.flatten(1).sum(1).sum()


def test_refine_and_prune_cycles_never_cost_pixels_in_total(tiny_model, one_torch_thread) -> None:
    images = random_images(6, seed=11)
    labels = clean_labels(tiny_model, images)
    without = sparse_attack(tiny_model, images, labels, config=dataclasses.replace(FAST, refine_cycles=0, swap_calls=0))
    with_cycles = sparse_attack(tiny_model, images, labels, config=dataclasses.replace(FAST, swap_calls=0))
    assert with_cycles.success.all() and without.success.all()
    assert int(with_cycles.l0_pixels.sum()) <= int(without.l0_pixels.sum())
    assert int(with_cycles.model_calls.sum()) > int(without.model_calls.sum())  # the cycles ran


def test_colour_refinement_gives_large_sets_twice_the_steps(tiny_model, one_torch_thread) -> None:
    # Sets over 48 pixels need the most slack from their first-order prune, so they keep
    # refining after the small ones stop; each step is charged for a soft and an 8-bit image.
    from sparseviz.attacks.sparse import _refine_colours

    images = random_images(2, seed=5)
    labels = clean_labels(tiny_model, images)
    masks = torch.zeros(2, 32, 32, dtype=torch.bool)
    masks[0].view(-1)[:60] = True
    masks[1].view(-1)[:10] = True
    calls = torch.zeros(2, dtype=torch.long)

    config = dataclasses.replace(FAST, refine_steps=3)
    values = _refine_colours(Checker(tiny_model, labels, None, calls), images, masks, torch.rand(2, 3, 32, 32),
                             torch.arange(2), config, NEVER_SPENT)  # type: ignore[arg-type]
    assert calls.tolist() == [2 * 2 * 3, 2 * 3]
    assert values.shape == images.shape


def test_colour_refinement_skips_small_sets_and_waits_for_a_prune_on_medium_ones(
    tiny_model, one_torch_thread, monkeypatch
) -> None:
    # Exact pruning and the swap search handle sets of up to 8 pixels; sets up to 150 are
    # pruned once before their first refinement (a plain prune removes most of their pixels).
    import sparseviz.attacks.sparse as sparse

    images = random_images(3, seed=5)
    labels = clean_labels(tiny_model, images)
    masks = torch.zeros(3, 32, 32, dtype=torch.bool)
    for index, size in enumerate((8, 9, 151)):
        masks[index].view(-1)[:size] = True
    refined: list[list[int]] = []
    real = sparse._refine_colours

    def spy(checker, images, masks, values, selected, *args):  # type: ignore[no-untyped-def]
        refined.append(selected.tolist())
        return real(checker, images, masks, values, selected, *args)

    monkeypatch.setattr(sparse, "_refine_colours", spy)
    monkeypatch.setattr(sparse, "prune_batch", lambda checker, images, masks, *args, **kwargs: masks.clone())
    calls = torch.zeros(3, dtype=torch.long)
    config = dataclasses.replace(FAST, refine_steps=2, swap_calls=0)
    sparse._prune_and_refine(Checker(tiny_model, labels, None, calls), images, masks, torch.rand(3, 3, 32, 32),
                             config, NEVER_SPENT, False)  # type: ignore[arg-type]
    # Before the first prune, then the first cycle; no second cycle: that prune removed nothing.
    assert refined == [[2], [1, 2]]


def test_targeted_runs_prune_in_more_cheaper_cycles(tiny_model, one_torch_thread, monkeypatch) -> None:
    # Targeted sets lose a few percent per cycle for many cycles: more cycles, each exact stage
    # checking a 64-pixel shortlist instead of 192 pixels; an explicit refine_cycles wins.
    import sparseviz.attacks.sparse as sparse

    assert (SparseConfig().refine_cycles_for(False), SparseConfig().refine_cycles_for(True)) == (4, 8)
    assert SparseConfig(refine_cycles=1).refine_cycles_for(True) == 1
    images = random_images(1, seed=7)
    labels = clean_labels(tiny_model, images)
    masks = torch.zeros(1, 32, 32, dtype=torch.bool)
    masks[0].view(-1)[::4] = True
    caps: dict[bool, set[int]] = {False: set(), True: set()}
    real = sparse.prune_batch

    for targeted in (False, True):
        def spy(*args, exact_cap: int, **kwargs):  # type: ignore[no-untyped-def]
            caps[targeted].add(exact_cap)
            return real(*args, exact_cap=exact_cap, **kwargs)

        monkeypatch.setattr(sparse, "prune_batch", spy)
        config = dataclasses.replace(FAST, refine_steps=1, swap_calls=0)
        sparse._prune_and_refine(Checker(tiny_model, labels, (labels + 1) % 10 if targeted else None,
                                         torch.zeros(1, dtype=torch.long)), images, masks, torch.rand(1, 3, 32, 32),
                                 config, NEVER_SPENT, targeted)  # type: ignore[arg-type]
    assert caps == {False: {192}, True: {64}}


def test_targeted_runs_settle_after_the_annealing_and_untargeted_ones_do_not(tiny_model, one_torch_thread) -> None:
    # A targeted run is still shrinking when the annealing ends: by default it may go on for
    # settle_steps more at the final temperature (patience permitting); untargeted runs stop.
    images = random_images(1, seed=7)
    labels = clean_labels(tiny_model, images)
    targets = (labels + 1) % 10
    totals: dict[str, set[int]] = {"targeted": set(), "untargeted": set()}
    config = dataclasses.replace(FAST, steps=5, prune=False)
    for kind, chosen in (("targeted", targets), ("untargeted", None)):
        sparse_attack(tiny_model, images, labels, targets=chosen, config=config,
                      progress=lambda info, kind=kind: totals[kind].add(info.total_steps))
    assert totals == {"targeted": {5 + 200}, "untargeted": {5}}
    assert config.settle_steps_for(True) == 200 and dataclasses.replace(config, settle_steps=3).settle_steps_for(True) == 3
