"""The two networks of a DCGAN, their losses and their optimizers.

The generator G maps a noise vector z to a 28x28x1 image in [-1, 1]; the discriminator D
maps an image to one logit, high for "real". Both follow the DCGAN guidelines (Radford et
al., 2015): strided convolutions instead of pooling, no hidden dense layers, BatchNorm and
ReLU in G, LeakyReLU(0.2) in D, tanh on G's output, weights drawn from N(0, 0.02).

D has no BatchNorm. The guidelines put it in every D layer but the first, but batch
statistics make D's verdict on one image depend on the rest of its batch, and D sees
all-real and all-fake batches, so it can learn to tell the batches apart by their
statistics instead of judging images. The TF tutorial's D leaves it out too, as do most
later GANs (WGAN-GP, SN-GAN, StyleGAN). D gets one batch statistic on purpose instead:
the minibatch standard deviation (Karras et al., 2018), a single extra channel saying how
much a few images differ from each other, so that a G making too little variety shows it.

Beyond the DCGAN paper, G has one more 3x3 convolution at 7x7 and at 14x14: depth where
it is cheap, before the image is large. Given a third width, G also makes features at
28x28 and draws the image from them with a 3x3 convolution, instead of making the image
in one linear step from 14x14 features. benchmarks/RESULTS.md has what each change gave.
"""

import keras
import tensorflow as tf

# ----------------------------------------------------------------------------------------
# Hyperparameters of the models and their training. train.py exposes them as flags.
# The DCGAN paper's and the TF tutorial's noise size. 128 over the hour (`--hour`, seed 1):
# FID 8.1 against 6.9, precision 0.69 against 0.71, recall 0.74 against 0.73
# (benchmarks/RESULTS.md, eighteenth round).
LATENT_DIM = 100
GENERATOR_FILTERS = (128, 64)  # channels at 7x7 and 14x14: FID as good as (256, 128), twice the images/s
DISCRIMINATOR_FILTERS = (64, 128)  # channels at 14x14 and at 7x7, as in the tutorial
KERNEL_SIZE = 4  # divisible by the stride 2, so transposed convolutions leave no checkerboard
# Resize-then-convolve was better per image but 0.8x the images/s: FID 68 against 62 after 5 minutes.
GENERATOR_UPSAMPLING = "transposed"
# One extra 3x3 convolution at 7x7 and at 14x14 in G: 0.7x the images/s, yet FID 31 against
# 47 after 5 minutes (batch 32, beta_1 0). D's extra convolutions cost more than they gave.
GENERATOR_EXTRA_CONVOLUTIONS = 1
DISCRIMINATOR_EXTRA_CONVOLUTIONS = 0  # one more in D: 0.6x the images/s, FID 100 against 62
MINIBATCH_STDDEV = True  # FID 27 against 31 after 5 minutes, and 60 against 62, at no measurable cost
# Images per group of the minibatch feature, Karras et al.'s 4; every size costs the same.
# Over a Zen 3's hour of `--hour` (seed 0), 8 and 32 (the whole batch; StyleGAN2-ADA's
# size for CIFAR-10) gave FID 7.55 and 6.61 against 6.89, recall 0.734 and 0.726 against
# 0.730, on five noise seeds (benchmarks/RESULTS.md, thirty-second round).
MINIBATCH_GROUP_SIZE = 4
# One 3x3 convolution of 32 channels after the minibatch feature, so that D can weigh the
# batch's variety against what each image shows (Karras et al. put one there, as wide as
# D's last layer). 32 channels cost no measurable speed (1,132 against 1,135 img/s with the
# default models, AMD EPYC Zen 5) and take FID after 5 minutes from 28.1 and 25.5 to 18.6
# and 16.6, after 20 from 12.8 and 11.7 to 11.0 and 11.1 (seeds 0 and 1), and precision
# after 20 from 0.66 and 0.65 to 0.75 (benchmarks/RESULTS.md, twenty-first round); over
# the hour (`--hour`) they took FID from 6.8, 6.9, 8.5 to 7.1, 5.2, 5.8 (seeds 0-2,
# twentieth round). As wide as D's last layer, the head drew the classes unevenly over
# the hour (FID 16.2 at seed 1, eighteenth round).
DISCRIMINATOR_HEAD_CONVOLUTIONS = 1
# The head's channels; None: as many as D's last convolution (Karras et al.'s choice).
DISCRIMINATOR_HEAD_FILTERS = 32
# D judges one image at a time. PacGAN's packs of 2 or more (`Pack` below) make D cheaper,
# the hour's models (`--hour`) training at 1.2x the images/s with packs of 2 and 1.35x with
# packs of 4 (AMD EPYC, Zen 4, float32), but over a Zen 3's hour counted at those speeds
# they lowered recall, 0.718 and 0.668 against 0.730, and ended at FID 8.7 and 14.3
# against 6.9 (seed 0, means over five noise seeds; thirty-third round).
PACK = 1
# Spectral normalization of this small D left G stuck (FID 186 after 5 minutes): too weak a D.
SPECTRAL_NORM = False
# 2.5x the DCGAN paper's 2e-4: FID 59 against 83 after 5 minutes; 1e-3 gave 68, 2e-3 worse
# still. The averaged G (averaging.py) smooths the larger steps' wobble.
GENERATOR_LEARNING_RATE = 5e-4
DISCRIMINATOR_LEARNING_RATE = 5e-4
# No momentum (as StyleGAN and BigGAN): FID 47 against 62 after 5 minutes with the DCGAN
# paper's 0.5. Adam's default 0.9 oscillates (FID 125).
BETA_1 = 0.0
# Adam's default: its second moment averages the squared gradients over about 1,000 steps.
BETA_2 = 0.999
# R1 off: gamma 0.1 gave FID 59 against 62 after 5 minutes, within the noise.
R1_WEIGHT = 0.0
R1_INTERVAL = 16  # StyleGAN2's lazy regularization: the penalty's cost over 16 steps
LABEL_SMOOTHING = 0.0  # one-sided smoothing of the real targets; 0.1 measured no better
# ----------------------------------------------------------------------------------------

IMAGE_SHAPE = (28, 28, 1)
UPSAMPLINGS = ("transposed", "resize")


def _weights_initializer():
    # The DCGAN paper draws all weights from a zero-centred normal with std 0.02.
    return keras.initializers.RandomNormal(mean=0.0, stddev=0.02)


def make_generator_model(latent_dim=LATENT_DIM, filters=GENERATOR_FILTERS, upsampling=GENERATOR_UPSAMPLING,
                         extra_convolutions=GENERATOR_EXTRA_CONVOLUTIONS):
    """Builds G: noise (batch, latent_dim) -> images (batch, 28, 28, 1) in [-1, 1].

    Dense projection to 7x7, then two steps that double the size: transposed convolutions,
    or nearest-neighbour upsampling followed by a 3x3 convolution ("resize"). Layers
    compute in the global Keras dtype policy (for example mixed_bfloat16); the output is
    always float32.

    Args:
        filters: channels at 7x7 and at 14x14, and optionally at 28x28. With a third
            number the last doubling makes that many channels (with BatchNorm and ReLU)
            and a 3x3 convolution turns them into the image; without, the last doubling
            makes the image itself.
        upsampling: "transposed" or "resize".
        extra_convolutions: 3x3 convolutions (with BatchNorm and ReLU) added at 7x7 and at
            14x14 each, for depth without more resolution.

    Returns:
        An unbuilt-optimizer `keras.Model` named "generator".

    Raises:
        ValueError: latent_dim or a filter count is not a positive integer, not two or three
            filter counts, an unknown upsampling, or extra_convolutions is not a whole number >= 0.
    """
    _check_positive("latent_dim", latent_dim)
    if len(filters) not in (2, 3):
        raise ValueError(f"generator filters: expected channels at 7x7, 14x14 and optionally 28x28, got {filters}")
    _check_positive("generator filters", *filters)
    projected_filters, upsampled_filters, *full_size_filters = filters
    _check_choice("generator upsampling", upsampling, UPSAMPLINGS)
    _check_non_negative("generator extra convolutions", extra_convolutions)

    # Built inside a multi-replica tf.distribute strategy, each replica sees only part of
    # the batch: synchronized BatchNorm keeps the statistics those of the whole batch.
    synchronized = tf.distribute.get_strategy().num_replicas_in_sync > 1

    def normalized(x):
        x = keras.layers.BatchNormalization(synchronized=synchronized)(x)
        return keras.layers.ReLU()(x)

    def extra(x, layer_filters):
        for _ in range(extra_convolutions):
            x = normalized(keras.layers.Conv2D(layer_filters, 3, padding="same", use_bias=False,
                                               kernel_initializer=_weights_initializer())(x))
        return x

    def doubled(x, layer_filters, **options):
        # A transposed convolution with kernel 4 and stride 2 gives every output pixel the
        # same number of taps; resize-then-convolve cannot make a checkerboard at all.
        if upsampling == "transposed":
            return keras.layers.Conv2DTranspose(layer_filters, KERNEL_SIZE, strides=2, padding="same",
                                                kernel_initializer=_weights_initializer(), **options)(x)
        x = keras.layers.UpSampling2D(2, interpolation="nearest")(x)
        return keras.layers.Conv2D(layer_filters, 3, padding="same", kernel_initializer=_weights_initializer(),
                                   **options)(x)

    noise = keras.Input(shape=(latent_dim,), name="noise")
    x = keras.layers.Dense(7 * 7 * projected_filters, use_bias=False,
                           kernel_initializer=_weights_initializer())(noise)
    x = normalized(x)
    x = keras.layers.Reshape((7, 7, projected_filters))(x)
    x = extra(x, projected_filters)
    assert tuple(x.shape) == (None, 7, 7, projected_filters)

    x = normalized(doubled(x, upsampled_filters, use_bias=False))
    x = extra(x, upsampled_filters)
    assert tuple(x.shape) == (None, 14, 14, upsampled_filters)

    if full_size_filters:
        # Features at full size: the image comes from a nonlinear layer that sees each
        # pixel's neighbours, not from one linear transposed convolution of 14x14 features.
        x = normalized(doubled(x, full_size_filters[0], use_bias=False))
        assert tuple(x.shape) == (None, 28, 28, full_size_filters[0])
        x = keras.layers.Conv2D(1, 3, padding="same", kernel_initializer=_weights_initializer())(x)
    else:
        x = doubled(x, 1)
    # tanh in float32: the image leaves the model at full precision whatever the policy.
    images = keras.layers.Activation("tanh", dtype="float32", name="image")(x)
    assert tuple(images.shape) == (None,) + IMAGE_SHAPE
    return keras.Model(noise, images, name="generator")


@keras.saving.register_keras_serializable(package="dcgan")
class MinibatchStandardDeviation(keras.layers.Layer):
    """Appends one channel: how much the images of a small group differ from each other.

    Karras et al. (2018): D sees, next to each image's features, the standard deviation of
    every feature over a group of `group_size` images, averaged to one number. A G that
    makes the same image over and over shows a low value there that D can learn to reject,
    which pushes G towards variety. Computed in float32 whatever the dtype policy.
    """

    def __init__(self, group_size=4, **kwargs):
        super().__init__(**kwargs)
        self.group_size = group_size

    def call(self, features):
        shape = tf.shape(features)
        batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
        # The largest group size up to group_size that divides the batch.
        group = tf.minimum(self.group_size, batch)
        group = tf.nest.flatten(tf.while_loop(lambda g: batch % g != 0, lambda g: [g - 1], [group]))[0]
        # Groups of consecutive images, so a batch split over devices in multiples of the
        # group size keeps its groups.
        grouped = tf.reshape(tf.cast(features, tf.float32), [-1, group, height, width, channels])
        deviation = tf.sqrt(tf.math.reduce_variance(grouped, axis=1) + 1e-8)  # (batch / group, h, w, c)
        deviation = tf.reduce_mean(deviation, axis=[1, 2, 3])  # one number per group
        deviation = tf.repeat(deviation, group)[:, None, None, None]  # back to (batch, 1, 1, 1)
        deviation = tf.cast(tf.broadcast_to(deviation, [batch, height, width, 1]), features.dtype)
        return tf.concat([features, deviation], axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (input_shape[-1] + 1,)

    def get_config(self):
        return {**super().get_config(), "group_size": self.group_size}


@keras.saving.register_keras_serializable(package="dcgan")
class Pack(keras.layers.Layer):
    """Stacks every `pack` consecutive images of the batch into one input of `pack` channels.

    PacGAN (Lin et al., 2018): D gives one verdict on a pack of images, all real or all
    generated. A G that covers only part of the data makes packs whose images resemble
    each other more than real ones do, which D can see and G is pushed away from; a single
    image cannot show that. D also runs on 1/pack as many inputs, which makes it cheaper.

    A batch that is not a multiple of `pack` is filled up with its own first images, so
    every batch size works (a batch of 1 makes one pack of copies).
    """

    def __init__(self, pack=2, **kwargs):
        super().__init__(**kwargs)
        self.pack = pack

    def call(self, images):
        batch = tf.shape(images)[0]
        filled = (batch + self.pack - 1) // self.pack * self.pack
        images = tf.gather(images, tf.range(filled) % batch)
        height, width, channels = images.shape[1:]
        # (packs, pack, h, w, c) -> (packs, h, w, pack, c): the images of a pack side by
        # side in the channels, so D's first convolution sees them all at every pixel.
        packs = tf.reshape(images, [-1, self.pack, height, width, channels])
        packs = tf.transpose(packs, [0, 2, 3, 1, 4])
        return tf.reshape(packs, [-1, height, width, self.pack * channels])

    def compute_output_shape(self, input_shape):
        return (None,) + tuple(input_shape[1:-1]) + (input_shape[-1] * self.pack,)

    def get_config(self):
        return {**super().get_config(), "pack": self.pack}


def make_discriminator_model(filters=DISCRIMINATOR_FILTERS, extra_convolutions=DISCRIMINATOR_EXTRA_CONVOLUTIONS,
                             minibatch_stddev=MINIBATCH_STDDEV, spectral_norm=SPECTRAL_NORM,
                             head_convolutions=DISCRIMINATOR_HEAD_CONVOLUTIONS,
                             head_filters=DISCRIMINATOR_HEAD_FILTERS, minibatch_group_size=MINIBATCH_GROUP_SIZE,
                             pack=PACK):
    """Builds D: images (batch, 28, 28, 1) in [-1, 1] -> logits (batch, 1), or with packs,
    one logit for every `pack` images: (ceil(batch / pack), 1).

    Two strided convolutions halve the size twice (28 -> 14 -> 7); after the minibatch
    feature and the head's convolutions, one Dense layer gives the logit. The logit is
    float32 whatever the dtype policy.

    Args:
        extra_convolutions: 3x3 convolutions added at 14x14 and at 7x7 each.
        minibatch_stddev: append `MinibatchStandardDeviation` before the Dense layer.
        minibatch_group_size: the images of each of its groups (fewer when the batch
            is not a multiple: the largest size up to this that divides it); None: the default.
        head_convolutions: 3x3 convolutions at 7x7 between the minibatch feature and the
            Dense layer. Without one, the logit adds the group's spread times a weight: D
            can only ask for more variety or less. Karras et al. put a convolution there,
            so that D can weigh the spread against what each image shows.
        head_filters: the channels of those convolutions; None: filters[-1].
        spectral_norm: divide every weight matrix by its largest singular value
            (Miyato et al., 2018), which bounds how fast D's verdict can change.
        pack: the images D judges together (`Pack`); 1: one at a time. The minibatch
            feature's groups are then groups of packs.

    Returns:
        A `keras.Model` named "discriminator".

    Raises:
        ValueError: a filter count, the group size or the pack is not a positive integer, or
            extra_convolutions or head_convolutions is not a whole number >= 0.
    """
    _check_positive("discriminator filters", *filters)
    if minibatch_group_size is None:
        minibatch_group_size = MINIBATCH_GROUP_SIZE
    _check_positive("minibatch group size", minibatch_group_size)
    _check_positive("pack", pack)
    if head_filters is None:
        head_filters = filters[-1]
    _check_positive("discriminator head filters", head_filters)
    _check_non_negative("discriminator extra convolutions", extra_convolutions)
    _check_non_negative("discriminator head convolutions", head_convolutions)

    def layer(wrapped):
        # The wrapper computes in the wrapped layer's dtype: the logit stays float32.
        return keras.layers.SpectralNormalization(wrapped, dtype=wrapped.dtype_policy) if spectral_norm else wrapped

    images = keras.Input(shape=IMAGE_SHAPE, name="image")
    x = Pack(pack)(images) if pack > 1 else images
    for size, layer_filters in zip((14, 7), filters):
        x = layer(keras.layers.Conv2D(layer_filters, KERNEL_SIZE, strides=2, padding="same",
                                      kernel_initializer=_weights_initializer()))(x)
        x = keras.layers.LeakyReLU(negative_slope=0.2)(x)
        for _ in range(extra_convolutions):
            x = layer(keras.layers.Conv2D(layer_filters, 3, padding="same",
                                          kernel_initializer=_weights_initializer()))(x)
            x = keras.layers.LeakyReLU(negative_slope=0.2)(x)
        assert tuple(x.shape) == (None, size, size, layer_filters)
    if minibatch_stddev:
        x = MinibatchStandardDeviation(group_size=minibatch_group_size)(x)
    for _ in range(head_convolutions):
        x = layer(keras.layers.Conv2D(head_filters, 3, padding="same", kernel_initializer=_weights_initializer()))(x)
        x = keras.layers.LeakyReLU(negative_slope=0.2)(x)
    x = keras.layers.Flatten()(x)
    logits = layer(keras.layers.Dense(1, dtype="float32", kernel_initializer=_weights_initializer(),
                                      name="logit"))(x)
    assert tuple(logits.shape) == (None, 1)
    return keras.Model(images, logits, name="discriminator")


def _check_positive(name, *values):
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_non_negative(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


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


def r1_penalty(discriminator, real_images):
    """The R1 penalty: mean over the batch of |grad_x D(x)|^2 at the real images x.

    The gradient is taken of the float32 logits and squared and summed in float32; D's
    pass itself computes in the dtype policy (under mixed_float16, which can underflow
    small gradients, prefer bfloat16 or float32 with R1).

    Returns:
        A float32 scalar, differentiable with respect to D's weights.
    """
    real_images = tf.cast(real_images, tf.float32)
    with tf.GradientTape() as input_tape:
        input_tape.watch(real_images)
        # An image's logit depends on its own pixels only (with the minibatch feature,
        # nearly so; with packs, on its pack's), so the gradient of the sum holds every
        # image's own gradient.
        summed_logits = tf.reduce_sum(tf.cast(discriminator(real_images, training=True), tf.float32))
    gradients = tf.cast(input_tape.gradient(summed_logits, real_images), tf.float32)
    return tf.reduce_mean(tf.reduce_sum(tf.square(gradients), axis=[1, 2, 3]))


def make_optimizers(generator_learning_rate=GENERATOR_LEARNING_RATE,
                    discriminator_learning_rate=DISCRIMINATOR_LEARNING_RATE,
                    beta_1=BETA_1, loss_scaling=False, beta_2=BETA_2):
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
        optimizer = keras.optimizers.Adam(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2,
                                          name=f"{name}_adam")
        if loss_scaling:
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer, name=f"{name}_loss_scale")
        optimizers.append(optimizer)
    return tuple(optimizers)
