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
    # The default head: one 3x3 convolution of 32 channels over D's 128 at 7x7 and the
    # minibatch spread, read by the logit.
    head = [layer for layer in discriminator.layers if isinstance(layer, keras.layers.Conv2D)][2:]
    assert [tuple(layer.kernel.shape) for layer in head] == [(3, 3, 129, 32)]
    assert discriminator.get_layer("logit").kernel.shape == (7 * 7 * 32, 1)


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
        assert float(optimizer.beta_1) == pytest.approx(models.BETA_1)
        assert float(optimizer.beta_2) == pytest.approx(models.BETA_2)
    assert generator_optimizer is not discriminator_optimizer
    assert all(float(optimizer.beta_2) == pytest.approx(0.99) for optimizer in models.make_optimizers(beta_2=0.99))
    scaled = models.make_optimizers(loss_scaling=True)
    assert all(isinstance(optimizer, keras.optimizers.LossScaleOptimizer) for optimizer in scaled)


def test_discriminator_scores_images_independently_of_their_batch():
    # No BatchNorm in D: apart from the minibatch feature, which exists to see the batch,
    # its verdict on an image must not depend on the rest of the batch.
    discriminator = models.make_discriminator_model(minibatch_stddev=False)
    images = tf.random.uniform([6, 28, 28, 1], -1, 1)
    together = discriminator(images, training=True).numpy()
    apart = np.concatenate([discriminator(images[:2], training=True), discriminator(images[2:], training=True)])
    np.testing.assert_allclose(together, apart, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("upsampling", models.UPSAMPLINGS)
@pytest.mark.parametrize("extra_convolutions", [0, 2])
def test_generator_variants_keep_the_shape_and_range(upsampling, extra_convolutions):
    generator = models.make_generator_model(latent_dim=8, upsampling=upsampling,
                                            extra_convolutions=extra_convolutions)
    images = generator(tf.random.normal([3, 8]), training=True)
    assert images.shape == (3, 28, 28, 1) and float(tf.reduce_max(tf.abs(images))) <= 1.0
    layer_types = [type(layer).__name__ for layer in generator.layers]
    # resize: nearest-neighbour upsampling and plain convolutions, never a transposed one.
    assert layer_types.count("Conv2DTranspose") == (2 if upsampling == "transposed" else 0)
    assert layer_types.count("UpSampling2D") == (0 if upsampling == "transposed" else 2)
    # The extra 3x3 convolutions come at 7x7 and at 14x14, each with BatchNorm.
    extra = [layer for layer in generator.layers if isinstance(layer, keras.layers.Conv2D)
             and not isinstance(layer, keras.layers.Conv2DTranspose) and layer.strides == (1, 1)
             and layer.filters > 1]
    assert len(extra) == 2 * extra_convolutions + (1 if upsampling == "resize" else 0)
    assert layer_types.count("BatchNormalization") == 2 + 2 * extra_convolutions


@pytest.mark.parametrize("upsampling", models.UPSAMPLINGS)
def test_generator_with_a_full_size_layer_makes_its_image_from_those_features(upsampling, tmp_path):
    generator = models.make_generator_model(latent_dim=8, filters=(16, 8, 4), upsampling=upsampling)
    noise = tf.random.normal([3, 8])
    images = generator(noise, training=False)
    assert images.shape == (3, 28, 28, 1) and float(tf.reduce_max(tf.abs(images))) <= 1.0
    # 4 channels at 28x28 with BatchNorm, then a 3x3 convolution makes the one-channel image.
    full_size = [layer for layer in generator.layers if isinstance(layer, keras.layers.BatchNormalization)
                 and layer.output.shape[1:] == (28, 28, 4)]
    assert len(full_size) == 1
    last_convolution = [layer for layer in generator.layers if isinstance(layer, keras.layers.Conv2D)][-1]
    assert last_convolution.kernel.shape == (3, 3, 4, 1)
    path = str(tmp_path / "generator.keras")
    generator.save(path)
    np.testing.assert_allclose(keras.models.load_model(path)(noise, training=False), images, rtol=1e-5, atol=1e-5)


def test_discriminator_variants_give_one_float32_logit_and_save(tmp_path):
    with devices.dtype_policy("mixed_bfloat16"):
        discriminator = models.make_discriminator_model(extra_convolutions=1, minibatch_stddev=True,
                                                        spectral_norm=True, head_convolutions=1)
    images = tf.random.uniform([8, 28, 28, 1], -1, 1)
    logits = discriminator(images, training=False)
    assert logits.shape == (8, 1) and logits.dtype == tf.float32
    layer_types = [type(layer).__name__ for layer in discriminator.layers]
    # Every layer with weights is normalized: 2 strided + 2 extra convolutions, the head's
    # convolution, the logit.
    assert layer_types.count("SpectralNormalization") == 6
    assert layer_types.count("MinibatchStandardDeviation") == 1
    path = str(tmp_path / "discriminator.keras")
    discriminator.save(path)
    np.testing.assert_allclose(keras.models.load_model(path)(images, training=False), logits, rtol=1e-2, atol=1e-2)


def test_spectral_norm_bounds_every_weight_matrix_by_one():
    discriminator = models.make_discriminator_model(spectral_norm=True)
    images = tf.random.uniform([8, 28, 28, 1], -1, 1)
    for _ in range(30):  # each training call runs one power iteration
        discriminator(images, training=True)
    for layer in discriminator.layers:
        if isinstance(layer, keras.layers.SpectralNormalization):
            kernel = layer.layer.kernel.numpy()
            largest = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]
            assert largest == pytest.approx(1.0, abs=0.05)


def test_minibatch_stddev_appends_the_spread_of_each_group():
    layer = models.MinibatchStandardDeviation(group_size=2)
    # Groups are consecutive images: (0, 1) differ by 2 everywhere, (2, 3) are equal.
    features = tf.constant([0.0, 2.0, 5.0, 5.0])[:, None, None, None] * tf.ones([4, 3, 3, 2])
    spread = layer(features)
    assert spread.shape == (4, 3, 3, 3)
    np.testing.assert_allclose(spread[..., :2], features)
    np.testing.assert_allclose(spread[:, 0, 0, 2], [1.0, 1.0, 1e-4, 1e-4], rtol=1e-3)
    # A batch the group size does not divide uses the largest group size that does.
    assert models.MinibatchStandardDeviation(group_size=4)(tf.ones([3, 2, 2, 1])).shape == (3, 2, 2, 2)
    # One group of all four: their standard deviation, the same number for every image.
    whole = models.MinibatchStandardDeviation(group_size=4)(features)
    np.testing.assert_allclose(whole[:, 0, 0, 2], [np.std([0.0, 2.0, 5.0, 5.0])] * 4, rtol=1e-5)


def test_the_discriminator_groups_its_minibatch_feature_as_asked():
    def group_sizes(discriminator):
        return [layer.group_size for layer in discriminator.layers
                if isinstance(layer, models.MinibatchStandardDeviation)]

    assert group_sizes(models.make_discriminator_model()) == [models.MINIBATCH_GROUP_SIZE]
    assert group_sizes(models.make_discriminator_model(minibatch_group_size=None)) == [models.MINIBATCH_GROUP_SIZE]
    whole_batch = models.make_discriminator_model(filters=(8, 16), minibatch_group_size=32)
    assert group_sizes(whole_batch) == [32]
    assert whole_batch(tf.random.uniform([32, 28, 28, 1], -1, 1)).shape == (32, 1)
    for bad in (0, -4, 2.5, True):
        with pytest.raises(ValueError, match="minibatch group size"):
            models.make_discriminator_model(minibatch_group_size=bad)


def test_pack_stacks_consecutive_images_into_the_channels_and_fills_up_a_short_batch():
    # Image i is filled with the number i, so each channel shows which image it holds.
    images = tf.range(5, dtype=tf.float32)[:, None, None, None] * tf.ones([5, 3, 3, 1])
    packs = models.Pack(2)(images)
    # Five images make three packs: (0, 1), (2, 3) and (4, 0), the first image filling up.
    assert packs.shape == (3, 3, 3, 2)
    np.testing.assert_array_equal(packs[:, 0, 0, :], [[0, 1], [2, 3], [4, 0]])
    np.testing.assert_array_equal(packs[:, 2, 1, :], [[0, 1], [2, 3], [4, 0]])
    np.testing.assert_array_equal(models.Pack(4)(images[:1])[0, 0, 0], [0, 0, 0, 0])


def test_a_packed_discriminator_gives_one_logit_per_pack_and_survives_saving(tmp_path):
    discriminator = models.make_discriminator_model(filters=(8, 16), pack=2)
    assert discriminator.get_layer(index=2).kernel.shape[2] == 2  # the first convolution sees both images
    images = tf.random.uniform([32, 28, 28, 1], -1, 1)
    logits = discriminator(images)
    assert logits.shape == (16, 1)
    assert discriminator(images[:5]).shape == (3, 1) and discriminator(images[:1]).shape == (1, 1)
    # A pack's verdict depends on its own images only (up to the minibatch feature's group).
    alone = models.make_discriminator_model(filters=(8, 16), pack=2, minibatch_stddev=False)
    changed = tf.concat([images[:2], -images[2:4], images[4:]], axis=0)
    difference = np.abs(alone(images).numpy() - alone(changed).numpy())[:, 0]
    assert difference[1] > 0 and np.all(difference[[0] + list(range(2, 16))] == 0)
    assert float(models.r1_penalty(discriminator, images)) > 0  # each image's gradient, from its pack's logit
    path = str(tmp_path / "discriminator.keras")
    discriminator.save(path)
    np.testing.assert_allclose(keras.models.load_model(path)(images), logits, rtol=1e-5, atol=1e-6)
    assert all(not isinstance(layer, models.Pack) for layer in models.make_discriminator_model().layers)
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="pack"):
            models.make_discriminator_model(pack=bad)


def test_the_discriminators_head_convolves_the_minibatch_feature_with_the_images_features():
    discriminator = models.make_discriminator_model(filters=(8, 16), head_convolutions=2, head_filters=None)
    head = [layer for layer in discriminator.layers if isinstance(layer, keras.layers.Conv2D)][2:]
    # The first takes the 16 channels at 7x7 and the spread; without a width of their
    # own (None), both keep D's 16 channels.
    assert [tuple(layer.kernel.shape) for layer in head] == [(3, 3, 17, 16), (3, 3, 16, 16)]
    assert discriminator.get_layer("logit").kernel.shape == (7 * 7 * 16, 1)
    assert discriminator(tf.random.uniform([4, 28, 28, 1], -1, 1)).shape == (4, 1)
    for bad in (-1, 1.5):
        with pytest.raises(ValueError, match="head convolutions"):
            models.make_discriminator_model(head_convolutions=bad)
    # A narrower head: its convolutions have their own channels, the logit reads them.
    narrow = models.make_discriminator_model(filters=(8, 16), head_convolutions=2, head_filters=4)
    head = [layer for layer in narrow.layers if isinstance(layer, keras.layers.Conv2D)][2:]
    assert [tuple(layer.kernel.shape) for layer in head] == [(3, 3, 17, 4), (3, 3, 4, 4)]
    assert narrow.get_layer("logit").kernel.shape == (7 * 7 * 4, 1)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="head filters"):
            models.make_discriminator_model(head_convolutions=1, head_filters=bad)


@pytest.mark.parametrize("bad", [dict(upsampling="bilinear"), dict(extra_convolutions=-1),
                                 dict(extra_convolutions=1.5), dict(filters=(128,)), dict(filters=(128, 64, 32, 16)),
                                 dict(filters=(128, 64, 0))])
def test_generator_rejects_bad_variants(bad):
    with pytest.raises(ValueError):
        models.make_generator_model(**bad)


def test_r1_penalty_of_a_linear_discriminator_is_its_squared_weights():
    # D(x) = w . x + b: its gradient with respect to x is w everywhere.
    weights = np.random.default_rng(0).normal(size=(28 * 28, 1)).astype("float32")
    images = keras.Input(shape=models.IMAGE_SHAPE)
    dense = keras.layers.Dense(1)
    discriminator = keras.Model(images, dense(keras.layers.Flatten()(images)))
    dense.set_weights([weights, np.array([0.3], "float32")])
    penalty = models.r1_penalty(discriminator, tf.random.uniform([5, 28, 28, 1], -1, 1))
    assert penalty.dtype == tf.float32
    assert float(penalty) == pytest.approx(float(np.sum(weights ** 2)), rel=1e-5)
