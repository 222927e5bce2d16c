"""The averaged generator (averaging.py): its arithmetic, its BatchNorm statistics, and
its place in training: grids, generator.keras and the checkpoint."""

import os

import imageio.v3 as iio
import keras
import numpy as np
import pytest
import tensorflow as tf

import averaging
import data
import devices
import display
import models
import storage
import train


def _small_generator(policy="float32"):
    keras.utils.set_random_seed(0)
    with devices.dtype_policy(policy):
        return models.make_generator_model(latent_dim=8, filters=(8, 4))


def _shift_weights(generator, amount):
    for weight in generator.trainable_weights:
        weight.assign(weight + amount)


def test_the_average_starts_as_a_float32_copy_of_a_mixed_precision_generator():
    generator = _small_generator("mixed_bfloat16")
    average = averaging.GeneratorAverage(generator, 1000)
    assert {layer.dtype_policy.name for layer in average.model.layers} == {"float32"}
    for averaged, weight in zip(average.model.weights, generator.weights):
        assert averaged.dtype == "float32"
        np.testing.assert_array_equal(averaged.numpy(), weight.numpy())
    assert average.model is not generator


def test_an_update_moves_the_average_by_the_half_life_in_images():
    generator = _small_generator()
    average = averaging.GeneratorAverage(generator, half_life_images=1000, warmup_fraction=0)
    start = [weight.numpy().copy() for weight in generator.trainable_weights]
    _shift_weights(generator, 1.0)
    average.update(1000)  # one half-life: half-way towards G
    for averaged, initial in zip(average.model.trainable_weights, start):
        np.testing.assert_allclose(averaged.numpy(), initial + 0.5, rtol=0, atol=1e-5)
    average.update(500)  # half a half-life: 1 - 0.5 ** 0.5 of the remaining half
    expected_shift = 0.5 + 0.5 * (1 - 0.5 ** 0.5)
    for averaged, initial in zip(average.model.trainable_weights, start):
        np.testing.assert_allclose(averaged.numpy(), initial + expected_shift, rtol=0, atol=1e-5)
    assert float(average.images_seen.numpy()) == 1500
    # G itself is untouched.
    for weight, initial in zip(generator.trainable_weights, start):
        np.testing.assert_allclose(weight.numpy(), initial + 1.0, atol=1e-6)


def test_the_warm_up_shortens_the_half_life_early_in_training():
    generator = _small_generator()
    average = averaging.GeneratorAverage(generator, half_life_images=1e9, warmup_fraction=0.5)
    start = [weight.numpy().copy() for weight in generator.trainable_weights]
    _shift_weights(generator, 1.0)
    # 100 images seen: the half-life is min(1e9, 0.5 * 100) = 50 images, so the step of
    # 100 images is two half-lives: three-quarters of the way.
    average.update(100)
    for averaged, initial in zip(average.model.trainable_weights, start):
        np.testing.assert_allclose(averaged.numpy(), initial + 0.75, atol=1e-5)
    # Without a warm-up the same half-life would barely move it.
    no_warmup = averaging.GeneratorAverage(_small_generator(), half_life_images=1e9, warmup_fraction=0)
    before = [weight.numpy().copy() for weight in no_warmup.model.trainable_weights]
    no_warmup.update(100)
    for averaged, initial in zip(no_warmup.model.trainable_weights, before):
        np.testing.assert_allclose(averaged.numpy(), initial, atol=1e-6)


def test_batchnorm_statistics_are_recomputed_for_the_averaged_weights():
    generator = _small_generator()
    average = averaging.GeneratorAverage(generator, 1000, warmup_fraction=0, seed=5)
    _shift_weights(generator, 0.3)
    average.update(700)
    averaged_generator = average.generator()
    batch_norms = [layer for layer in averaged_generator._flatten_layers()
                   if isinstance(layer, keras.layers.BatchNormalization)]
    assert batch_norms and all(layer.momentum == 0.99 for layer in batch_norms)  # restored
    # The moving statistics are exactly those of the recalibration batch under the
    # averaged weights: inference then matches a training-mode pass over that batch.
    noise = tf.random.stateless_normal([averaging.RECALIBRATION_IMAGES, 8], seed=[5, -2])
    np.testing.assert_allclose(averaged_generator(noise, training=False).numpy(),
                               averaged_generator(noise, training=True).numpy(), atol=1e-4)
    # ... and they are not the trained G's statistics, which belong to other weights.
    for layer, trained_layer in zip(batch_norms, [layer for layer in generator._flatten_layers()
                                                  if isinstance(layer, keras.layers.BatchNormalization)]):
        assert not np.allclose(layer.moving_mean.numpy(), trained_layer.moving_mean.numpy())


@pytest.mark.parametrize("half_life, warmup, expected", [
    (0, 0.1, "half-life must be a positive number"),
    (-5, 0.1, "half-life must be a positive number"),
    (float("nan"), 0.1, "half-life must be a positive number"),
    (1000, -0.1, "warm-up fraction must be in"),
    (1000, 1.5, "warm-up fraction must be in"),
])
def test_bad_settings_are_refused(half_life, warmup, expected):
    with pytest.raises(ValueError, match=expected):
        averaging.GeneratorAverage(_small_generator(), half_life, warmup)


def test_without_a_half_life_the_trained_generator_is_used():
    generator = _small_generator()
    average = averaging.GeneratorAverage(generator, None)
    average.update(64)
    assert average.generator() is generator and average.checkpoint_objects() == {}


@pytest.fixture(scope="module")
def tiny_images():
    return np.random.default_rng(4).integers(0, 256, (256, 28, 28), dtype=np.uint8)


def _checkpoint_value(out_dir, name):
    return tf.train.load_variable(tf.train.latest_checkpoint(os.path.join(out_dir, "checkpoints")),
                                  f"{name}/.ATTRIBUTES/VARIABLE_VALUE")


def _restored_from_checkpoint(out_dir, name):
    model = models.make_generator_model()
    tf.train.Checkpoint(**{name: model}).restore(
        tf.train.latest_checkpoint(os.path.join(out_dir, "checkpoints"))).expect_partial()
    return model


def test_training_saves_the_averaged_generator_and_checkpoints_both(tiny_images, tmp_path):
    out_dir = str(tmp_path / "run")
    train.train(data.make_dataset(tiny_images, 64, seed=1), 2, out_dir=out_dir, seed=1, verbose=0,
                ema_half_life_images=200, precision="float32")
    assert float(_checkpoint_value(out_dir, "averaged_images")) == 2 * 256
    saved = keras.saving.load_model(os.path.join(out_dir, storage.GENERATOR_FILE))
    trained = _restored_from_checkpoint(out_dir, "generator")
    averaged = _restored_from_checkpoint(out_dir, "averaged_generator")
    # generator.keras holds the averaged weights (and their BatchNorm statistics), not
    # the trained G's, which the checkpoint keeps for training.
    for saved_weight, averaged_weight in zip(saved.weights, averaged.weights):
        np.testing.assert_array_equal(saved_weight.numpy(), averaged_weight.numpy())
    assert not np.allclose(saved.trainable_weights[0].numpy(), trained.trainable_weights[0].numpy())
    # The epoch grids are the averaged generator's too.
    fixed_noise = _checkpoint_value(out_dir, "fixed_noise")
    grid = display.images_to_grid(saved(fixed_noise, training=False).numpy())
    written = iio.imread(os.path.join(out_dir, storage.GRID_PATTERN.format(epoch=1)))
    assert np.abs(grid.astype(int) - written.astype(int)).max() <= 1


def test_a_resumed_run_averages_exactly_as_an_uninterrupted_one(tiny_images, tmp_path):
    def dataset():
        tf.random.set_seed(None)  # as in a new process
        return data.make_dataset(tiny_images, 64, seed=2)

    settings = dict(seed=2, verbose=0, ema_half_life_images=300, precision="float32")
    straight_dir, resumed_dir = str(tmp_path / "straight"), str(tmp_path / "resumed")
    train.train(dataset(), 2, out_dir=straight_dir, **settings)
    train.train(dataset(), 1, out_dir=resumed_dir, **settings)
    train.train(dataset(), 2, out_dir=resumed_dir, max_minutes=1e-9, **settings)  # stops after a step
    train.train(dataset(), 2, out_dir=resumed_dir, **settings)
    straight = keras.saving.load_model(os.path.join(straight_dir, storage.GENERATOR_FILE))
    resumed = keras.saving.load_model(os.path.join(resumed_dir, storage.GENERATOR_FILE))
    for straight_weight, resumed_weight in zip(straight.weights, resumed.weights):
        np.testing.assert_allclose(resumed_weight.numpy(), straight_weight.numpy(), rtol=1e-5, atol=1e-6)


def test_a_checkpoint_without_an_average_resumes_with_the_average_started_from_its_g(tiny_images, tmp_path,
                                                                                      capsys):
    out_dir = str(tmp_path / "run")
    train.train(data.make_dataset(tiny_images, 64, seed=3), 1, out_dir=out_dir, seed=3, verbose=0,
                ema_half_life_images=None, precision="float32")
    train.train(data.make_dataset(tiny_images, 64, seed=3), 2, out_dir=out_dir, verbose=1,
                ema_half_life_images=500, precision="float32")
    output = capsys.readouterr().out
    assert "holds no averaged generator: the average starts from its G" in output
    assert "ema_half_life_images None -> 500" in output
    assert float(_checkpoint_value(out_dir, "averaged_images")) == 256
