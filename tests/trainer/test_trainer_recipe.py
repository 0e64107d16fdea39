"""The auto training recipe (how many steps, in what batches, with what patience and learning rate)
and what the validation split steers."""

from __future__ import annotations

import numpy as np
import pytest

from cis490_train.core.hyper import resolve
from cis490_train.trainer.models.base import MIN_VALIDATION, Part, steering
from cis490_train.trainer.models.recipe import MAX_AUTO_EPOCHS, MIN_AUTO_EPOCHS, MIN_BATCH, Recipe
from cis490_train.trainer.models.torch_loop import Validation


def auto(n: int, **hyper) -> Recipe:
    return Recipe.for_rows(n, resolve("mlp", hyper))


@pytest.mark.parametrize("n", [1, 5, 45, 180, 1_000, 50_000, 2_000_000])
def test_auto_recipe_gives_tiny_and_large_data_a_sensible_amount_of_training(n):
    r = auto(n)
    assert 1 <= r.batch <= max(MIN_BATCH, n) and r.batch <= n
    assert r.per_epoch == -(-n // r.batch)
    assert MIN_AUTO_EPOCHS <= r.epochs <= MAX_AUTO_EPOCHS
    steps = resolve("mlp", {})["steps"]
    # Near the step budget unless the epoch bounds say otherwise.
    if MIN_AUTO_EPOCHS < r.epochs < MAX_AUTO_EPOCHS:
        assert steps <= r.steps < steps + r.per_epoch


def test_small_data_gets_small_batches_and_far_more_than_twenty_steps():
    r = auto(45)
    assert r.batch == MIN_BATCH and r.steps >= 1000
    old = Recipe.for_rows(45, resolve("mlp", {"epochs": 20, "batch_size": 256}))
    assert old.steps == 20  # what a fixed 20 passes of 256 gave 45 windows


def test_settings_in_hyper_win_over_auto():
    r = auto(10_000, epochs=7, batch_size=100, patience=3)
    assert (r.epochs, r.batch, r.per_epoch, r.patience) == (7, 100, 100, 3)
    assert auto(10_000, early_stopping=False).patience is None
    assert auto(10_000, epochs=100).patience == 20 and auto(10_000, epochs=20).patience == 10


def test_batches_cover_every_row_once_without_a_tiny_remainder():
    r = Recipe.for_rows(41, resolve("mlp", {"batch_size": 8}))
    order = np.random.default_rng(0).permutation(41)
    batches = r.batches(order)
    assert len(batches) == r.per_epoch == 6
    assert sorted(np.concatenate(batches).tolist()) == list(range(41))
    assert min(map(len, batches)) >= 6


def test_cosine_schedule_warms_up_then_decays_to_zero():
    r = auto(1_000)
    factors = [r.lr_factor(step) for step in range(r.steps)]
    assert r.warmup_steps > 0 and factors[0] < factors[r.warmup_steps] == pytest.approx(1.0)
    after = factors[r.warmup_steps :]
    assert all(a >= b for a, b in zip(after, after[1:]))
    assert after[-1] < 0.01
    flat = Recipe.for_rows(1_000, resolve("mlp", {"schedule": "constant"}))
    assert {flat.lr_factor(step) for step in range(flat.steps)} == {1.0}


def part(n: int, start: int = 0) -> Part:
    y = np.arange(start, start + n) % 3
    return Part(y=y, features=np.full((n, 2), start, np.float32), sequences=np.zeros((n, 4, 1), np.float32))


def test_a_validation_split_too_small_to_steer_by_is_trained_on_instead():
    train, val = part(40), part(MIN_VALIDATION - 1, start=100)
    used_train, used_val, why = steering(train, val, True)
    assert used_train.n == 40 + MIN_VALIDATION - 1 and used_val.n == 0
    assert np.array_equal(used_train.y, np.concatenate([train.y, val.y]))
    assert used_train.features.shape == (used_train.n, 2) and used_train.sequences.shape == (used_train.n, 4, 1)
    assert "training" in why and str(MIN_VALIDATION) in why
    big = part(MIN_VALIDATION, start=100)
    assert steering(train, big, True)[:2] == (train, big)
    assert steering(train, big.empty(), True)[1].n == 0
    assert steering(train, big, False)[2] == "progress only"


def test_validation_ranks_by_macro_f1_then_by_loss():
    assert Validation(0.8, 0.5).beats(None)
    assert Validation(0.9, 2.0).beats(Validation(0.8, 0.1))
    assert Validation(0.8, 0.4).beats(Validation(0.8, 0.5))
    assert not Validation(0.8, 0.5).beats(Validation(0.8, 0.5))
    assert not Validation(0.7, 0.01).beats(Validation(0.8, 0.5))
