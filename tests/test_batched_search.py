"""The batched post-processing: as good as checking one variant at a time, and far fewer sequential calls."""

from __future__ import annotations

import torch

from conftest import clean_labels
from sparseviz.attacks.sparse import TARGETED, UNTARGETED, SparseConfig, sparse_attack
from sparseviz.attacks.sparse import refine
from sparseviz.attacks.sparse.checks import Checker
from sparseviz.attacks.sparse.prune import prune_batch
from sparseviz.models import ImageClassifier

FAST = SparseConfig(steps=15).retuned(patience=10, swap_calls=60)


def never_spent() -> bool:
    """A budget that is never spent, for calling the post-processing stages directly."""
    return False


def random_images(count: int, seed: int = 3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.round(torch.rand(count, 3, 32, 32, generator=generator) * 255) / 255


def unpruned_solutions(model: ImageClassifier, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Optimised but unpruned solutions: something for pruning to work on."""
    labels = clean_labels(model, images)
    result = sparse_attack(model, images, labels, config=FAST.retuned(prune=False))
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
    pruned = prune_batch(checker, images, masks, adversarials, required=1e-3, spent=never_spent,
                         tuning=UNTARGETED.changed({"greedy_passes": 8}))
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
                           adversarials, required=1e-3, spent=never_spent, tuning=UNTARGETED)
    for index in range(4):
        part = slice(index, index + 1)
        alone = prune_batch(Checker(tiny_model, labels[part], None, torch.zeros(1, dtype=torch.long)), images[part],
                            masks[part], adversarials[part], required=1e-3, spent=never_spent, tuning=UNTARGETED)
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
                         spent=never_spent, tuning=UNTARGETED, only=only)
    assert torch.equal(pruned[~only], masks[~only]) and calls[~only].sum() == 0
    assert int(pruned[1].sum()) < int(masks[1].sum()) and calls[1] > 0


def test_a_large_set_that_first_order_cannot_shrink_still_gets_exact_checks(tiny_model, one_torch_thread) -> None:
    # exact_limit=1 keeps every set in the first-order stage; with one prefix length per call the
    # rounds soon find nothing removable, and then the exact_cap least-needed pixels are checked
    # one by one instead of the set being left as it is.
    images = random_images(4, seed=3)
    labels, masks, adversarials = unpruned_solutions(tiny_model, images)
    tuning = UNTARGETED.changed({"exact_limit": 1, "prefix_lengths": 1, "prefix_calls": 1})
    capped = prune_batch(Checker(tiny_model, labels, None, torch.zeros(4, dtype=torch.long)), images, masks,
                         adversarials, required=1e-3, spent=never_spent, tuning=tuning.changed({"exact_cap": 4}))
    none = prune_batch(Checker(tiny_model, labels, None, torch.zeros(4, dtype=torch.long)), images, masks,
                       adversarials, required=1e-3, spent=never_spent, tuning=tuning.changed({"exact_cap": 0}))
    for index in range(4):
        assert fools(tiny_model, torch.where(capped[index], adversarials[index], images[index]), labels[index])
    assert capped.flatten(1).sum(1).sum() < none.flatten(1).sum(1).sum()


def test_refine_and_prune_cycles_never_cost_pixels_in_total(tiny_model, one_torch_thread) -> None:
    images = random_images(6, seed=11)
    labels = clean_labels(tiny_model, images)
    without = sparse_attack(tiny_model, images, labels, config=FAST.retuned(refine_cycles=0, swap_calls=0))
    with_cycles = sparse_attack(tiny_model, images, labels, config=FAST.retuned(swap_calls=0))
    assert with_cycles.success.all() and without.success.all()
    assert int(with_cycles.l0_pixels.sum()) <= int(without.l0_pixels.sum())
    assert int(with_cycles.model_calls.sum()) > int(without.model_calls.sum())  # the cycles ran


def test_colour_refinement_gives_large_sets_twice_the_steps(tiny_model, one_torch_thread) -> None:
    # Sets over large_set pixels need the most slack from their first-order prune, so they keep
    # refining after the small ones stop; each step is charged for a soft and an 8-bit image.
    images = random_images(2, seed=5)
    labels = clean_labels(tiny_model, images)
    masks = torch.zeros(2, 32, 32, dtype=torch.bool)
    masks[0].view(-1)[:60] = True
    masks[1].view(-1)[:10] = True
    calls = torch.zeros(2, dtype=torch.long)
    tuning = UNTARGETED.changed({"refine_steps": 3, "large_set": 30})
    values = refine.refine_colours(Checker(tiny_model, labels, None, calls), images, masks, torch.rand(2, 3, 32, 32),
                                   torch.arange(2), tuning=tuning, required=1e-3, spent=never_spent)
    assert calls.tolist() == [2 * 2 * 3, 2 * 3]
    assert values.shape == images.shape


def test_colour_refinement_skips_small_sets_and_waits_for_a_prune_on_medium_ones(
    tiny_model, one_torch_thread, monkeypatch
) -> None:
    # Exact pruning and the swap search handle sets of up to refine_min pixels; sets up to
    # refine_first_min are pruned once before their first refinement.
    images = random_images(3, seed=5)
    labels = clean_labels(tiny_model, images)
    masks = torch.zeros(3, 32, 32, dtype=torch.bool)
    for index, size in enumerate((8, 9, 151)):
        masks[index].view(-1)[:size] = True
    refined: list[list[int]] = []
    real = refine.refine_colours

    def spy(checker, images, masks, values, selected, **kwargs):  # type: ignore[no-untyped-def]
        refined.append(selected.tolist())
        return real(checker, images, masks, values, selected, **kwargs)

    monkeypatch.setattr(refine, "refine_colours", spy)
    monkeypatch.setattr(refine, "prune_batch", lambda checker, images, masks, *args, **kwargs: masks.clone())
    tuning = UNTARGETED.changed({"refine_steps": 2, "refine_min": 8, "refine_first_min": 150})
    refine.refine_and_prune(Checker(tiny_model, labels, None, torch.zeros(3, dtype=torch.long)), images, masks,
                            torch.rand(3, 3, 32, 32), tuning=tuning, required=1e-3, spent=never_spent)
    # Before the first prune, then the first cycle; no second cycle: that prune removed nothing.
    assert refined == [[2], [1, 2]]


def test_post_processing_runs_on_the_tuning_the_call_picked(tiny_model, one_torch_thread, monkeypatch) -> None:
    # Targeted and untargeted calls prune with their own preset (e.g. a different exact shortlist),
    # and a tuning change given in the config reaches the pruning of both kinds.
    images = random_images(1, seed=7)
    labels = clean_labels(tiny_model, images)
    seen: list[tuple[bool, int]] = []
    real = refine.prune_batch

    def spy(*args, tuning, **kwargs):  # type: ignore[no-untyped-def]
        seen.append((tuning == TARGETED.changed({"patience": 10, "swap_calls": 0}), tuning.exact_cap))
        return real(*args, tuning=tuning, **kwargs)

    monkeypatch.setattr(refine, "prune_batch", spy)
    config = SparseConfig(steps=5).retuned(patience=10, swap_calls=0)
    sparse_attack(tiny_model, images, labels, targets=(labels + 1) % 10, config=config)
    assert seen and all(is_targeted and cap == TARGETED.exact_cap for is_targeted, cap in seen)
    seen.clear()
    sparse_attack(tiny_model, images, labels, config=config.retuned(exact_cap=5))
    assert seen and all(cap == 5 for _, cap in seen)


def test_targeted_runs_settle_longer_after_the_annealing(tiny_model, one_torch_thread) -> None:
    # A targeted run is still shrinking when the annealing ends: its preset goes on for settle_steps
    # more at the final temperature (patience permitting); untargeted runs stop sooner; a change wins.
    assert TARGETED.settle_steps > UNTARGETED.settle_steps
    images = random_images(1, seed=7)
    labels = clean_labels(tiny_model, images)
    targets = (labels + 1) % 10
    totals: dict[str, set[int]] = {"targeted": set(), "untargeted": set(), "changed": set()}
    config = SparseConfig(steps=5).retuned(patience=10, prune=False)
    for kind, chosen, chosen_config in (("targeted", targets, config), ("untargeted", None, config),
                                        ("changed", targets, config.retuned(settle_steps=3))):
        sparse_attack(tiny_model, images, labels, targets=chosen, config=chosen_config,
                      progress=lambda info, kind=kind: totals[kind].add(info.total_steps))
    assert totals == {"targeted": {5 + TARGETED.settle_steps}, "untargeted": {5 + UNTARGETED.settle_steps}, "changed": {5 + 3}}
