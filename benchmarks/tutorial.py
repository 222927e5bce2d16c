"""The TensorFlow DCGAN tutorial's published configuration: the baseline of the benchmarks.

This is the code of the tutorial "Deep Convolutional Generative Adversarial Network"
(tensorflow.org/tutorials/generative/dcgan), written out unchanged in behaviour so that
the project's training can be measured against it in the same process: the same two
models, the same losses, two Adam(1e-4) optimizers, batches of 256 and noise of size 100.

The only differences from the published page are in form, not behaviour:
- `train_step` is built by `make_tutorial_train_step()` from models and optimizers passed
  as arguments, instead of reading globals, so that several copies can run side by side.
- The models start with `keras.Input(...)` instead of the `input_shape=` argument of their
  first layer, which Keras 3 deprecates; the layers and their shapes are the same.
- `make_tutorial_dataset()` is the tutorial's input pipeline as a function.

Everything here builds under the global Keras dtype policy, which is float32 unless a
caller changes it; the published tutorial runs in float32.
"""

import keras
import tensorflow as tf

# ----------------------------------------------------------------------------------------
# The tutorial's published constants.
BUFFER_SIZE = 60000  # shuffle buffer: the whole training set
BATCH_SIZE = 256  # images per step; also the size of every noise batch
NOISE_DIM = 100  # noise size (the tutorial calls it `noise_dim`)
LEARNING_RATE = 1e-4  # both Adam optimizers, with Keras's other defaults (beta_1 = 0.9)
EPOCHS = 50
NUM_EXAMPLES_TO_GENERATE = 16
# ----------------------------------------------------------------------------------------

# The tutorial's loss: binary cross-entropy on D's logits (D has no sigmoid).
cross_entropy = keras.losses.BinaryCrossentropy(from_logits=True)


def make_tutorial_generator_model():
    """Builds the tutorial's generator: noise (batch, 100) -> images (batch, 28, 28, 1).

    Returns:
        A `keras.Sequential` model whose output is in [-1, 1] (tanh).
    """
    model = keras.Sequential()
    model.add(keras.Input(shape=(NOISE_DIM,)))
    model.add(keras.layers.Dense(7 * 7 * 256, use_bias=False))
    model.add(keras.layers.BatchNormalization())
    model.add(keras.layers.LeakyReLU())

    model.add(keras.layers.Reshape((7, 7, 256)))
    assert model.output_shape == (None, 7, 7, 256)  # None is the batch size

    model.add(keras.layers.Conv2DTranspose(128, (5, 5), strides=(1, 1), padding="same", use_bias=False))
    assert model.output_shape == (None, 7, 7, 128)
    model.add(keras.layers.BatchNormalization())
    model.add(keras.layers.LeakyReLU())

    model.add(keras.layers.Conv2DTranspose(64, (5, 5), strides=(2, 2), padding="same", use_bias=False))
    assert model.output_shape == (None, 14, 14, 64)
    model.add(keras.layers.BatchNormalization())
    model.add(keras.layers.LeakyReLU())

    model.add(keras.layers.Conv2DTranspose(1, (5, 5), strides=(2, 2), padding="same", use_bias=False,
                                           activation="tanh"))
    assert model.output_shape == (None, 28, 28, 1)
    return model


def make_tutorial_discriminator_model():
    """Builds the tutorial's discriminator: images (batch, 28, 28, 1) -> logits (batch, 1).

    Returns:
        A `keras.Sequential` model; its output is a logit, not a probability.
    """
    model = keras.Sequential()
    model.add(keras.Input(shape=[28, 28, 1]))
    model.add(keras.layers.Conv2D(64, (5, 5), strides=(2, 2), padding="same"))
    model.add(keras.layers.LeakyReLU())
    model.add(keras.layers.Dropout(0.3))

    model.add(keras.layers.Conv2D(128, (5, 5), strides=(2, 2), padding="same"))
    model.add(keras.layers.LeakyReLU())
    model.add(keras.layers.Dropout(0.3))

    model.add(keras.layers.Flatten())
    model.add(keras.layers.Dense(1))
    return model


def discriminator_loss(real_output, fake_output):
    """The tutorial's D loss: real images against 1 plus fakes against 0.

    Returns:
        A float32 scalar.
    """
    real_loss = cross_entropy(tf.ones_like(real_output), real_output)
    fake_loss = cross_entropy(tf.zeros_like(fake_output), fake_output)
    total_loss = real_loss + fake_loss
    return total_loss


def generator_loss(fake_output):
    """The tutorial's G loss: fakes against 1 (the non-saturating loss).

    Returns:
        A float32 scalar.
    """
    return cross_entropy(tf.ones_like(fake_output), fake_output)


def make_tutorial_optimizers():
    """Returns the tutorial's (generator_optimizer, discriminator_optimizer): two Adam(1e-4)."""
    generator_optimizer = keras.optimizers.Adam(LEARNING_RATE)
    discriminator_optimizer = keras.optimizers.Adam(LEARNING_RATE)
    return generator_optimizer, discriminator_optimizer


def make_tutorial_dataset(train_images):
    """The tutorial's input pipeline over uint8 images of shape (N, 28, 28).

    Returns:
        A `tf.data.Dataset` of float32 batches (up to 256, 28, 28, 1) in [-1, 1], reshuffled
        every epoch; the last batch of an epoch is smaller, as in the tutorial.
    """
    train_images = train_images.reshape(train_images.shape[0], 28, 28, 1).astype("float32")
    train_images = (train_images - 127.5) / 127.5  # normalize the images to [-1, 1]
    return tf.data.Dataset.from_tensor_slices(train_images).shuffle(BUFFER_SIZE).batch(BATCH_SIZE)


def make_tutorial_train_step(generator, discriminator, generator_optimizer, discriminator_optimizer):
    """Builds the tutorial's `train_step(images)` for these models and optimizers.

    This is the baseline step of the benchmarks, as published: fresh noise from the
    stateful `tf.random.normal` of a fixed BATCH_SIZE rows (even when the last batch of
    an epoch is smaller), two gradient tapes, and D called separately on the real and on
    the generated images.

    Returns:
        A `tf.function` taking a float32 batch of images (batch, 28, 28, 1) in [-1, 1]; like
        the published one it returns nothing (read the optimizers' `iterations` to wait
        for it).
    """

    @tf.function
    def train_step(images):
        noise = tf.random.normal([BATCH_SIZE, NOISE_DIM])

        with tf.GradientTape() as gen_tape, tf.GradientTape() as disc_tape:
            generated_images = generator(noise, training=True)

            real_output = discriminator(images, training=True)
            fake_output = discriminator(generated_images, training=True)

            gen_loss = generator_loss(fake_output)
            disc_loss = discriminator_loss(real_output, fake_output)

        gradients_of_generator = gen_tape.gradient(gen_loss, generator.trainable_variables)
        gradients_of_discriminator = disc_tape.gradient(disc_loss, discriminator.trainable_variables)

        generator_optimizer.apply_gradients(zip(gradients_of_generator, generator.trainable_variables))
        discriminator_optimizer.apply_gradients(zip(gradients_of_discriminator,
                                                    discriminator.trainable_variables))

    return train_step
