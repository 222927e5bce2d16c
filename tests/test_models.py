"""The networks, the losses on hand-made logits, and the optimizers."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import devices
import models


def test_generator_maps_noise_to_images_in_tanh_range():
    generator = models.make_generator_model(latent_dim=16)
    noise = tf.random.normal([5, 16])
    images = generator(noise, training=False)
    assert images.shape == (5, 28, 28, 1)
    assert images.dtype == tf.float32
    assert float(tf.reduce_min(images)) >= -1.0 and float(tf.reduce_max(images)) <= 1.0
    # Different noise gives different images: the output is not a constant.
    assert float(tf.math.reduce_std(images, axis=0).numpy().mean()) > 0


def test_discriminator_maps_images_to_one_logit_each():
    discriminator = models.make_discriminator_model()
    logits = discriminator(tf.random.uniform([7, 28, 28, 1], -1, 1), training=False)
    assert logits.shape == (7, 1)
    assert logits.dtype == tf.float32


def test_architecture_follows_dcgan_guidelines():
    generator = models.make_generator_model()
    discriminator = models.make_discriminator_model()
    for model in (generator, discriminator):
        for layer in model.layers:
            assert "Pooling" not in type(layer).__name__
    # The only Dense layers: G's projection from the noise and D's logit.
    assert [layer for layer in generator.layers if isinstance(layer, keras.layers.Dense)][0].input.shape[-1] == models.LATENT_DIM
    discriminator_dense = [layer for layer in discriminator.layers if isinstance(layer, keras.layers.Dense)]
    assert len(discriminator_dense) == 1 and discriminator_dense[0].units == 1
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in generator.layers)
    assert any(isinstance(layer, keras.layers.ReLU) for layer in generator.layers)
    leaky = [layer for layer in discriminator.layers if isinstance(layer, keras.layers.LeakyReLU)]
    assert leaky and all(math.isclose(layer.negative_slope, 0.2) for layer in leaky)
    assert generator.layers[-1].activation.__name__ == "tanh"


def test_mixed_precision_models_compute_in_bfloat16_but_output_float32():
    with devices.dtype_policy("mixed_bfloat16"):
        generator = models.make_generator_model(latent_dim=8)
        discriminator = models.make_discriminator_model()
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after the block
    assert generator.layers[1].compute_dtype == "bfloat16"
    assert generator.layers[1].variable_dtype == "float32"
    images = generator(tf.random.normal([2, 8]))
    assert images.dtype == tf.float32
    assert discriminator(images).dtype == tf.float32


@pytest.mark.parametrize("latent_dim", [0, -3, 2.5, "100", True])
def test_generator_rejects_bad_latent_dim(latent_dim):
    with pytest.raises(ValueError, match="latent_dim"):
        models.make_generator_model(latent_dim=latent_dim)


def _bce(target, logit):
    probability = 1 / (1 + math.exp(-logit))
    return -(target * math.log(probability) + (1 - target) * math.log(1 - probability))


def test_generator_loss_on_hand_made_logits():
    # A logit of 0 is D(G(z)) = 0.5: loss log 2. Fooling D (large logit) costs almost nothing.
    assert float(models.generator_loss(tf.zeros([4, 1]))) == pytest.approx(math.log(2), rel=1e-6)
    assert float(models.generator_loss(tf.fill([4, 1], 20.0))) < 1e-6
    logits = tf.constant([[2.0], [-1.0]])
    assert float(models.generator_loss(logits)) == pytest.approx((_bce(1, 2.0) + _bce(1, -1.0)) / 2, rel=1e-6)


def test_discriminator_loss_on_hand_made_logits():
    # Undecided D: log 2 on the real half plus log 2 on the fake half.
    assert float(models.discriminator_loss(tf.zeros([3, 1]), tf.zeros([3, 1]))) == pytest.approx(2 * math.log(2), rel=1e-6)
    # A perfect D: confident and right on both halves.
    assert float(models.discriminator_loss(tf.fill([3, 1], 20.0), tf.fill([3, 1], -20.0))) < 1e-6
    real_logits, fake_logits = tf.constant([[1.5], [0.5]]), tf.constant([[-0.5], [3.0]])
    expected = (_bce(1, 1.5) + _bce(1, 0.5)) / 2 + (_bce(0, -0.5) + _bce(0, 3.0)) / 2
    assert float(models.discriminator_loss(real_logits, fake_logits)) == pytest.approx(expected, rel=1e-6)


def test_label_smoothing_changes_only_the_real_targets():
    real_logits, fake_logits = tf.constant([[1.5]]), tf.constant([[-0.5]])
    smoothed = float(models.discriminator_loss(real_logits, fake_logits, label_smoothing=0.1))
    assert smoothed == pytest.approx(_bce(0.9, 1.5) + _bce(0, -0.5), rel=1e-6)


def test_losses_are_float32_for_bfloat16_logits():
    logits = tf.cast(tf.constant([[0.3], [-0.2]]), tf.bfloat16)
    assert models.generator_loss(logits).dtype == tf.float32
    assert models.discriminator_loss(logits, logits).dtype == tf.float32


def test_optimizers_are_adam_with_the_projects_settings():
    generator_optimizer, discriminator_optimizer = models.make_optimizers()
    for optimizer in (generator_optimizer, discriminator_optimizer):
        assert isinstance(optimizer, keras.optimizers.Adam)
        assert float(optimizer.learning_rate) == pytest.approx(5e-4)
        assert float(optimizer.beta_1) == pytest.approx(0.5)
    assert generator_optimizer is not discriminator_optimizer
    scaled = models.make_optimizers(loss_scaling=True)
    assert all(isinstance(optimizer, keras.optimizers.LossScaleOptimizer) for optimizer in scaled)


def test_discriminator_scores_images_independently_of_their_batch():
    # No BatchNorm in D: its verdict on an image must not depend on the rest of the batch.
    discriminator = models.make_discriminator_model()
    images = tf.random.uniform([6, 28, 28, 1], -1, 1)
    together = discriminator(images, training=True).numpy()
    apart = np.concatenate([discriminator(images[:2], training=True), discriminator(images[2:], training=True)])
    np.testing.assert_allclose(together, apart, rtol=1e-5, atol=1e-6)
