"""Augmentation keeps shape and dtype, moves all four channels together, and depends only on its seeds."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("imgaug")

from hpa_utils.training.augment import Augmenter, make_augmenter  # noqa: E402

SIZE = 80


def _shapes_batch(count: int = 3) -> np.ndarray:
    """A batch whose four channels are the same image: an off-centre bright rectangle and a disc."""
    rows, cols = np.mgrid[:SIZE, :SIZE]
    batch = np.zeros((count, SIZE, SIZE, 4), dtype=np.uint8)
    for index in range(count):
        image = np.zeros((SIZE, SIZE), dtype=np.uint8)
        image[10 + index : 30 + index, 15:50] = 200
        image[(rows - 55) ** 2 + (cols - 40 - index) ** 2 < 12**2] = 120
        batch[index] = image[..., None]
    return batch


def _random_batch(count: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, SIZE, SIZE, 4), dtype=np.uint8)


def test_keeps_shape_and_dtype():
    batch = _random_batch()
    out = Augmenter(seed=1)(batch)
    assert out.shape == batch.shape
    assert out.dtype == np.uint8


def test_geometry_is_shared_by_all_four_channels_without_noise():
    batch = _shapes_batch()
    out = Augmenter(seed=3, noise_std=0.0).augment(batch, seed=7)
    assert not np.array_equal(out, batch), "the augmentation should have moved the shapes"
    for channel in range(1, 4):
        np.testing.assert_array_equal(out[..., channel], out[..., 0])


def test_with_noise_channels_stay_aligned_and_close():
    batch = _shapes_batch()
    out = Augmenter(seed=3).augment(batch, seed=7).astype(int)
    geometry_only = Augmenter(seed=3, noise_std=0.0).augment(batch, seed=7).astype(int)
    for channel in range(4):
        difference = np.abs(out[..., channel] - geometry_only[..., 0])
        assert difference.mean() < 6  # noise std is at most 0.02 * 255 ~ 5 grey levels
        assert np.corrcoef(out[..., channel].ravel(), geometry_only[..., 0].ravel())[0, 1] > 0.95


def test_same_seeds_give_the_same_output_in_any_call_order():
    batch = _random_batch()
    first = Augmenter(seed=5)
    expected = [first.augment(batch, seed) for seed in range(4)]
    second = Augmenter(seed=5)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda seed: second.augment(batch, seed), reversed(range(4))))
    for expected_batch, result in zip(expected, reversed(results), strict=True):
        np.testing.assert_array_equal(result, expected_batch)


def test_different_seeds_give_different_outputs():
    batch = _random_batch()
    reference = Augmenter(seed=5).augment(batch, seed=1)
    assert not np.array_equal(Augmenter(seed=5).augment(batch, seed=2), reference)
    assert not np.array_equal(Augmenter(seed=6).augment(batch, seed=1), reference)


def test_unseeded_calls_are_reproducible_sequences():
    batch = _random_batch()
    first, second = Augmenter(seed=9), Augmenter(seed=9)
    a1, a2 = first(batch), first(batch)
    assert not np.array_equal(a1, a2)
    np.testing.assert_array_equal(second(batch), a1)
    np.testing.assert_array_equal(second(batch), a2)


def test_disabled_returns_the_input_unchanged():
    batch = _random_batch()
    copy = batch.copy()
    out = make_augmenter(seed=1, enabled=False)(batch)
    np.testing.assert_array_equal(out, copy)
    np.testing.assert_array_equal(batch, copy)


def test_enabled_does_not_modify_the_input_in_place():
    batch = _random_batch()
    copy = batch.copy()
    Augmenter(seed=1, flips=True).augment(batch, seed=0)
    np.testing.assert_array_equal(batch, copy)


@pytest.mark.parametrize(
    "bad", [np.zeros((SIZE, SIZE, 4), np.uint8), np.zeros((2, SIZE, SIZE, 4), np.float32), [[1, 2]]]
)
def test_rejects_anything_but_a_4d_uint8_batch(bad):
    with pytest.raises(ValueError, match="uint8"):
        Augmenter()(bad)


def test_rejects_out_of_range_options():
    with pytest.raises(ValueError, match="translate"):
        Augmenter(translate=0.7)
    with pytest.raises(ValueError, match="scale"):
        Augmenter(scale=(1.2, 0.8))


def test_parameters_are_what_a_study_records_and_the_report_states():
    assert Augmenter(enabled=False).parameters() == {
        "enabled": False,
        "translate": 0.1,
        "scale": [0.9, 1.1],
        "shear": 10.0,
        "noise_std": 0.02,
        "flips": False,
        "mode": "constant",
    }
