"""The two networks of a DCGAN, their losses and their optimizers.

The generator G maps a noise vector z to a 28x28x1 image in [-1, 1]; the discriminator D
maps an image to one logit, high for "real". Both follow the DCGAN guidelines (Radford et
al., 2015): strided convolutions instead of pooling, no hidden dense layers, BatchNorm and
ReLU in G, LeakyReLU(0.2) in D, tanh on G's output, weights drawn from N(0, 0.02).

D has no BatchNorm. The guidelines put it in every D layer but the first, but batch
statistics make D's verdict on one image depend on the rest of its batch, and D sees
all-real and all-fake batches, so it can learn to tell the batches apart by their
statistics instead of judging images. The TF tutorial's D leaves it out too, as do most
later GANs (WGAN-GP, SN-GAN, StyleGAN).
"""

import keras
import tensorflow as tf

# ----------------------------------------------------------------------------------------
# Hyperparameters of the models and their training. train.py exposes them as flags.
LATENT_DIM = 100  # noise size of the DCGAN paper and the TF tutorial; more buys nothing at 28x28
GENERATOR_FILTERS = (128, 64)  # channels at 7x7 and 14x14: FID as good as (256, 128), twice the images/s
DISCRIMINATOR_FILTERS = (64, 128)  # channels at 14x14 and at 7x7, as in the tutorial
KERNEL_SIZE = 4  # divisible by the stride 2, so transposed convolutions leave no checkerboard
# 2.5x the DCGAN paper's 2e-4: FID 59 against 83 after 5 minutes; 1e-3 gave 68, 2e-3 worse
# still. The averaged G (averaging.py) smooths the larger steps' wobble.
GENERATOR_LEARNING_RATE = 5e-4
DISCRIMINATOR_LEARNING_RATE = 5e-4
BETA_1 = 0.5  # the DCGAN paper: Adam's default 0.9 oscillates in GAN training
LABEL_SMOOTHING = 0.0  # one-sided smoothing of the real targets; 0.1 measured no better
# ----------------------------------------------------------------------------------------

IMAGE_SHAPE = (28, 28, 1)


def _weights_initializer():
    # The DCGAN paper draws all weights from a zero-centred normal with std 0.02.
    return keras.initializers.RandomNormal(mean=0.0, stddev=0.02)


def make_generator_model(latent_dim=LATENT_DIM, filters=GENERATOR_FILTERS):
    """Builds G: noise (batch, latent_dim) -> images (batch, 28, 28, 1) in [-1, 1].

    Dense projection to 7x7, then transposed convolutions that double the size twice.
    Layers compute in the global Keras dtype policy (for example mixed_bfloat16); the
    output is always float32.

    Returns:
        An unbuilt-optimizer `keras.Model` named "generator".

    Raises:
        ValueError: latent_dim or a filter count is not a positive integer.
    """
    _check_positive("latent_dim", latent_dim)
    projected_filters, upsampled_filters = filters
    _check_positive("generator filters", projected_filters, upsampled_filters)

    # Built inside a multi-replica tf.distribute strategy, each replica sees only part of
    # the batch: synchronized BatchNorm keeps the statistics those of the whole batch.
    synchronized = tf.distribute.get_strategy().num_replicas_in_sync > 1

    noise = keras.Input(shape=(latent_dim,), name="noise")
    x = keras.layers.Dense(7 * 7 * projected_filters, use_bias=False,
                           kernel_initializer=_weights_initializer())(noise)
    x = keras.layers.BatchNormalization(synchronized=synchronized)(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Reshape((7, 7, projected_filters))(x)
    assert tuple(x.shape) == (None, 7, 7, projected_filters)

    x = keras.layers.Conv2DTranspose(upsampled_filters, KERNEL_SIZE, strides=2, padding="same",
                                     use_bias=False, kernel_initializer=_weights_initializer())(x)
    x = keras.layers.BatchNormalization(synchronized=synchronized)(x)
    x = keras.layers.ReLU()(x)
    assert tuple(x.shape) == (None, 14, 14, upsampled_filters)

    x = keras.layers.Conv2DTranspose(1, KERNEL_SIZE, strides=2, padding="same",
                                     kernel_initializer=_weights_initializer())(x)
    # tanh in float32: the image leaves the model at full precision whatever the policy.
    images = keras.layers.Activation("tanh", dtype="float32", name="image")(x)
    assert tuple(images.shape) == (None,) + IMAGE_SHAPE
    return keras.Model(noise, images, name="generator")


def make_discriminator_model(filters=DISCRIMINATOR_FILTERS):
    """Builds D: images (batch, 28, 28, 1) in [-1, 1] -> logits (batch, 1).

    Two strided convolutions halve the size twice (28 -> 14 -> 7), then one Dense layer
    gives the logit. The logit is float32 whatever the dtype policy.

    Returns:
        A `keras.Model` named "discriminator".

    Raises:
        ValueError: a filter count is not a positive integer.
    """
    _check_positive("discriminator filters", *filters)
    images = keras.Input(shape=IMAGE_SHAPE, name="image")
    x = images
    for size, layer_filters in zip((14, 7), filters):
        x = keras.layers.Conv2D(layer_filters, KERNEL_SIZE, strides=2, padding="same",
                                kernel_initializer=_weights_initializer())(x)
        x = keras.layers.LeakyReLU(negative_slope=0.2)(x)
        assert tuple(x.shape) == (None, size, size, layer_filters)
    x = keras.layers.Flatten()(x)
    logits = keras.layers.Dense(1, dtype="float32", kernel_initializer=_weights_initializer(),
                                name="logit")(x)
    assert tuple(logits.shape) == (None, 1)
    return keras.Model(images, logits, name="discriminator")


def _check_positive(name, *values):
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _binary_cross_entropy(targets, logits):
    # Computed from logits, in float32, for numerical stability under mixed precision.
    logits = tf.cast(logits, tf.float32)
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits))


def generator_loss(fake_logits):
    """G's loss: binary cross-entropy of D's logits on generated images against "real".

    This is the non-saturating loss of Goodfellow et al.: G maximises log D(G(z)), which
    still has gradient when D confidently rejects the fakes.

    Returns:
        A float32 scalar, the mean over the batch.
    """
    return _binary_cross_entropy(tf.ones_like(fake_logits, dtype=tf.float32), fake_logits)


def discriminator_loss(real_logits, fake_logits, label_smoothing=LABEL_SMOOTHING):
    """D's loss: binary cross-entropy of real images against "real" plus fakes against "fake".

    Args:
        real_logits, fake_logits: D's logits on real and on generated images.
        label_smoothing: one-sided label smoothing; real targets become 1 - label_smoothing.

    Returns:
        A float32 scalar: mean loss on the real batch plus mean loss on the fake batch.
    """
    real_targets = tf.fill(tf.shape(real_logits), 1.0 - label_smoothing)
    fake_targets = tf.zeros_like(fake_logits, dtype=tf.float32)
    return _binary_cross_entropy(real_targets, real_logits) + _binary_cross_entropy(fake_targets, fake_logits)


def make_optimizers(generator_learning_rate=GENERATOR_LEARNING_RATE,
                    discriminator_learning_rate=DISCRIMINATOR_LEARNING_RATE,
                    beta_1=BETA_1, loss_scaling=False):
    """Builds one Adam optimizer for G and one for D.

    Args:
        loss_scaling: wrap both in a dynamic `LossScaleOptimizer`, which float16 training
            needs to keep small gradients from flushing to zero (bfloat16 does not).

    Returns:
        (generator_optimizer, discriminator_optimizer).
    """
    optimizers = []
    for name, learning_rate in (("generator", generator_learning_rate),
                                ("discriminator", discriminator_learning_rate)):
        optimizer = keras.optimizers.Adam(learning_rate=learning_rate, beta_1=beta_1,
                                          name=f"{name}_adam")
        if loss_scaling:
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer, name=f"{name}_loss_scale")
        optimizers.append(optimizer)
    return tuple(optimizers)
