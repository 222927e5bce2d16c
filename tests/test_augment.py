"""Differentiable augmentation (augment.py): what each augmentation does to an image, that
gradients pass through, and that the train step trains with it."""

import numpy as np
import pytest
import tensorflow as tf

import augment
import models
import train

SEED = tf.constant([3, 4], tf.int64)


def _one_bright_pixel(batch, row=14, column=14):
    images = -np.ones((batch, 28, 28, 1), np.float32)
    images[:, row, column, 0] = 1.0
    return tf.constant(images)


@pytest.mark.parametrize("text, expected", [
    ("translation,cutout", ("translation", "cutout")),
    (" cutout ", ("cutout",)),
    ("none", ()),
    ((), ()),
    (["translation"], ("translation",)),
])
def test_parse(text, expected):
    assert augment.parse(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("flip", "unknown augmentation flip: choose from translation, cutout"),
    ("translation,colour", "unknown augmentation colour"),
    ("", "unknown augmentation ''"),
    ("cutout,cutout", "named twice"),
])
def test_parse_refuses_bad_names(text, expected):
    with pytest.raises(ValueError, match=expected):
        augment.parse(text)


def test_translation_shifts_each_image_by_at_most_four_pixels_and_fills_with_background():
    images = _one_bright_pixel(256)
    shifted = augment.augment(images, ("translation",), SEED).numpy()
    assert shifted.shape == images.shape
    positions = []
    for image in shifted[..., 0]:
        bright = np.argwhere(image == 1.0)
        assert len(bright) == 1 and np.all(image[image != 1.0] == -1.0)
        positions.append(tuple(bright[0]))
    offsets = np.array(positions) - 14
    assert np.abs(offsets).max() == 4 and len(set(positions)) > 40  # shifts in [-4, 4]^2, 28 * 0.125 rounded
    # A pixel shifted out of the image is gone, and the background comes in.
    corner = augment.augment(_one_bright_pixel(64, 0, 0), ("translation",), SEED).numpy()
    assert (corner == 1.0).sum() < 64 and set(np.unique(corner)) <= {-1.0, 1.0}
    # The same seed, the same shifts.
    np.testing.assert_array_equal(augment.augment(images, ("translation",), SEED).numpy(), shifted)


def test_cutout_zeroes_a_square_of_half_the_side_and_keeps_the_rest():
    images = tf.constant(np.random.default_rng(0).uniform(0.5, 1.0, (128, 28, 28, 1)).astype(np.float32))
    cut = augment.augment(images, ("cutout",), SEED).numpy()
    erased = cut[..., 0] == 0
    np.testing.assert_array_equal(cut[~erased], images.numpy()[~erased])
    for mask in erased:
        rows, columns = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
        assert 1 <= len(rows) <= 14 and 1 <= len(columns) <= 14
        assert mask.sum() == len(rows) * len(columns)  # a rectangle: a square cut by the border
    assert (erased.sum(axis=(1, 2)) == 14 * 14).mean() > 0.15  # often the whole square is inside


def test_gradients_flow_through_both_augmentations():
    images = tf.Variable(tf.random.stateless_uniform([8, 28, 28, 1], [0, 1], -1, 1))
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(augment.augment(images, ("translation", "cutout"), SEED))
    gradient = tape.gradient(total, images).numpy()
    # Each output pixel comes from one input pixel or from none: gradients are 0 or 1.
    assert set(np.unique(gradient)) <= {0.0, 1.0} and gradient.sum() > 8 * 28 * 28 * 0.5


def test_the_train_step_trains_through_augmentation():
    generator, discriminator = models.make_generator_model(), models.make_discriminator_model()
    generator_optimizer, discriminator_optimizer = models.make_optimizers()
    generator_optimizer.build(generator.trainable_variables)
    discriminator_optimizer.build(discriminator.trainable_variables)
    before = [weight.numpy().copy() for weight in generator.trainable_weights]
    real_images = tf.random.stateless_uniform([16, 28, 28, 1], [0, 2], -1, 1)
    results = train.train_step(real_images, generator, discriminator, generator_optimizer, discriminator_optimizer,
                               tf.constant(5, tf.int64), 0.0, ("translation", "cutout"))
    assert all(np.isfinite(float(value)) for value in results.values())
    assert all(not np.array_equal(old, new.numpy()) for old, new in zip(before, generator.trainable_weights))
