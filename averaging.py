"""An exponential moving average of the generator's weights: the generator we show.

G's weights never settle: every step moves them to answer D's latest verdict, so the
images of one step's G wobble around the ones G is converging to. An average of G's
recent weights sits nearer that centre and gives visibly cleaner, more varied images at
no cost to training (Yazici et al. 2019, "The Unusual Effectiveness of Averaging in GAN
Training"; StyleGAN uses it for every published image). Training goes on with the raw G;
the epoch grids, the evaluation, `generator.keras` and the shipped generator are the
average's.

After every step the shadow copy moves towards G:

    average = beta * average + (1 - beta) * G,   beta = 0.5 ** (images in the step / half-life)

so G's weights of `half_life_images` images ago count half as much as its current ones,
whatever the batch size. Early in training the weights move fast and an average over a long
half-life would still hold the random start, so the half-life grows with training: it is
at most `warmup_fraction` of the images seen so far (StyleGAN2's "ramp-up").

The copy is float32 whatever the run's precision: under mixed_bfloat16 G computes in
bfloat16, whose 8-bit mantissa would round an update of (1 - beta) = 0.001 of a weight
away. Its variables are in the checkpoint next to the raw G, so a resumed run averages
exactly as an uninterrupted one.

BatchNorm: G's BatchNorm layers normalize with the mean and variance of their inputs,
which they track as moving statistics while training. Those statistics belong to the raw
G's weights; the averaged weights produce other activations, and statistics are not
linear in the weights, so neither copying nor averaging them is right. Before the
average is used, `generator()` runs it once in training mode over a fixed batch of
RECALIBRATION_IMAGES noise vectors, with the layers' momentum set to 0, so the moving
statistics become exactly that batch's statistics under the averaged weights.
"""

import keras
import numpy as np
import tensorflow as tf

HALF_LIFE_IMAGES = 40_000  # two-thirds of an epoch; 10k, 40k, 160k measured alike up to 30 minutes
WARMUP_FRACTION = 0.1  # the half-life is at most a tenth of the images seen so far (StyleGAN2: 0.05)
RECALIBRATION_IMAGES = 2048  # BatchNorm statistics from this many samples: about 0.2 s on a CPU


class GeneratorAverage:
    """A float32 exponential moving average of `generator`'s weights.

    Create it inside the run's `tf.distribute` scope, after `generator` has its initial
    weights: the average starts as a copy of them.

    Args:
        generator: the G being trained (a functional or sequential `keras.Model`).
        half_life_images: images after which a weight's contribution halves; None turns
            the average off: `update` does nothing and `generator()` returns G itself.
        warmup_fraction: the half-life is at most this fraction of the images seen so
            far; 0 turns the warm-up off.
        seed: seeds the noise behind the BatchNorm statistics.

    Raises:
        ValueError: a half-life that is not positive, or a warm-up outside [0, 1].
    """

    def __init__(self, generator, half_life_images=HALF_LIFE_IMAGES, warmup_fraction=WARMUP_FRACTION, seed=0):
        if half_life_images is not None and not (np.isfinite(half_life_images) and half_life_images > 0):
            raise ValueError(f"the averaged generator's half-life must be a positive number of images, got "
                             f"{half_life_images!r} (None turns the average off)")
        if not 0 <= warmup_fraction <= 1:
            raise ValueError(f"the averaged generator's warm-up fraction must be in [0, 1], got {warmup_fraction!r}")
        self.half_life_images = None if half_life_images is None else float(half_life_images)
        self.warmup_fraction = float(warmup_fraction)
        self._generator = generator
        self.model = None
        self.images_seen = None
        if self.half_life_images is None:
            return
        self.model = _float32_copy(generator)
        self.images_seen = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="averaged_images")
        latent_dim = generator.input_shape[-1]
        self._recalibration_noise = tf.random.stateless_normal([RECALIBRATION_IMAGES, latent_dim],
                                                                seed=[int(seed), -2])
        self._update = tf.function(self._update_variables)
        self.reset()

    @property
    def enabled(self):
        return self.model is not None

    def reset(self):
        """Makes the average a copy of G's current weights, with no images seen."""
        if not self.enabled:
            return
        for average, weight in zip(self.model.weights, self._generator.weights):
            average.assign(tf.cast(weight, tf.float32))
        self.images_seen.assign(0.0)

    def update(self, images):
        """Moves the average towards G's weights after a step that trained on `images` images."""
        if self.enabled:
            self._update(tf.cast(images, tf.float64))

    def _update_variables(self, images):
        self.images_seen.assign_add(images)
        half_life = tf.constant(self.half_life_images, tf.float64)
        if self.warmup_fraction > 0:
            half_life = tf.minimum(half_life, self.warmup_fraction * self.images_seen)
        beta = tf.cast(tf.pow(tf.constant(0.5, tf.float64), images / half_life), tf.float32)
        for average, weight in zip(self.model.trainable_weights, self._generator.trainable_weights):
            # average + (1 - beta) * (weight - average): the same, with one rounding less.
            average.assign_add((1.0 - beta) * (tf.cast(weight, tf.float32) - average))

    def generator(self):
        """Returns the averaged generator, its BatchNorm statistics computed for the
        averaged weights (see the module's docstring); G itself when averaging is off."""
        if not self.enabled:
            return self._generator
        batch_norms = [layer for layer in self.model._flatten_layers()
                       if isinstance(layer, keras.layers.BatchNormalization)]
        momenta = [layer.momentum for layer in batch_norms]
        try:
            for layer in batch_norms:
                layer.momentum = 0.0  # the moving statistics become this batch's
            self.model(self._recalibration_noise, training=True)
        finally:
            for layer, momentum in zip(batch_norms, momenta):
                layer.momentum = momentum
        return self.model

    def checkpoint_objects(self):
        """Returns the averaged model and its image count as named checkpoint entries
        (none when averaging is off)."""
        if not self.enabled:
            return {}
        return {"averaged_generator": self.model, "averaged_images": self.images_seen}


def _float32_copy(generator):
    """Returns a new model of `generator`'s architecture whose layers compute in float32,
    on one device (its BatchNorm unsynchronized: it is only run outside the train step)."""

    def clone_layer(layer):
        config = layer.get_config()
        if "dtype" in config:
            config["dtype"] = "float32"
        if isinstance(layer, keras.layers.BatchNormalization):
            config["synchronized"] = False
        return layer.__class__.from_config(config)

    model = keras.models.clone_model(generator, clone_function=clone_layer)
    model.build(generator.input_shape)
    if [tuple(w.shape) for w in model.weights] != [tuple(w.shape) for w in generator.weights]:
        raise ValueError("could not copy the generator's architecture for averaging: its weights differ")
    return model
