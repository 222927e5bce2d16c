"""The same DCGAN as a `keras.Model`, trained with `model.fit()`.

train.py writes the training loop out by hand, which is the clearest way to see a GAN
learn. Keras users may prefer `fit()`: this file wraps the very same `train_step` of
train.py in a `keras.Model`, so callbacks, `fit()`'s progress bar and distribution
strategies come for free. Nothing of the step is written twice.

    import fit, train
    gan = fit.DCGAN(models.make_generator_model(), models.make_discriminator_model())
    gan.compile(*models.make_optimizers())
    gan.fit(train.load_training_dataset(), epochs=5, callbacks=[fit.GridMonitor("fit_output")])

or `python fit.py --epochs 5`.
"""

import os

# Hide TensorFlow's C++ start-up chatter when run as a script; real errors still show.
if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import sys  # noqa: E402

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import cli  # noqa: E402
import display  # noqa: E402
import run_history  # noqa: E402
import models  # noqa: E402
import storage  # noqa: E402
import train  # noqa: E402


class DCGAN(keras.Model):
    """A generator and a discriminator trained together by `fit()`.

    `fit()` feeds batches of real images (float32, (batch, 28, 28, 1), in [-1, 1]); each
    batch is one call of `train.train_step`. The logged metrics are epoch means of
    d_loss, g_loss, d_real = D(x) and d_fake = D(G(z)).
    """

    def __init__(self, generator, discriminator, seed=0, label_smoothing=models.LABEL_SMOOTHING, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.label_smoothing = label_smoothing
        self.noise_seed = tf.Variable(seed, dtype=tf.int64, trainable=False)
        self.metric_trackers = {name: keras.metrics.Mean(name=name) for name in run_history.METRIC_NAMES}

    def compile(self, generator_optimizer, discriminator_optimizer, **kwargs):
        """Takes one optimizer per network instead of Keras' single optimizer and loss."""
        super().compile(**kwargs)
        self.generator_optimizer = generator_optimizer
        self.discriminator_optimizer = discriminator_optimizer
        # Create the optimizer slots now: fit() runs the step in a tf.function, which may
        # not create variables on later calls.
        generator_optimizer.build(self.generator.trainable_variables)
        discriminator_optimizer.build(self.discriminator.trainable_variables)

    @property
    def metrics(self):
        # Listing the trackers here makes fit() reset them at the start of every epoch.
        return list(self.metric_trackers.values())

    def call(self, noise, training=False):
        """Generates images from noise; returns a (batch, 28, 28, 1) tensor in [-1, 1]."""
        return self.generator(noise, training=training)

    def train_step(self, real_images):
        results = train.train_step(real_images, self.generator, self.discriminator,
                                   self.generator_optimizer, self.discriminator_optimizer,
                                   self.noise_seed, self.label_smoothing)
        for name, tracker in self.metric_trackers.items():
            tracker.update_state(results[name])
        return {name: tracker.result() for name, tracker in self.metric_trackers.items()}


class GridMonitor(keras.callbacks.Callback):
    """Saves the grid of a fixed noise batch after every epoch, as train.py does.

    Files are `image_at_epoch_NNNN.png` in `out_dir`, epochs counted from 0, so
    `display.display_image(epoch, out_dir)` and `display.make_gif(out_dir)` work on them.
    """

    def __init__(self, out_dir=storage.OUT_DIR, num_examples=train.NUM_EXAMPLES_TO_GENERATE,
                 latent_dim=models.LATENT_DIM, seed=0):
        super().__init__()
        self.out_dir = storage.prepare_out_dir(out_dir)
        self.fixed_noise = tf.random.stateless_normal([num_examples, latent_dim], seed=[seed, -1])

    def on_epoch_end(self, epoch, logs=None):
        images = self.model.generator(self.fixed_noise, training=False)
        display.save_image_grid(images.numpy(), os.path.join(self.out_dir, storage.GRID_PATTERN.format(epoch=epoch)))


def make_argument_parser():
    """Returns the command-line parser of fit.py."""
    parser = cli.make_parser("fit.py", "Train the DCGAN with keras.Model.fit().")
    parser.add_argument("--epochs", type=cli.bounded_int(1, train.MAX_EPOCHS), default=train.EPOCHS,
                        help="passes over the training images")
    parser.add_argument("--batch-size", type=cli.bounded_int(1, train.MAX_BATCH_SIZE), default=train.BATCH_SIZE,
                        help="images per step")
    parser.add_argument("--out-dir", default="fit_output", help="epoch grids, GIF and models")
    parser.add_argument("--data-dir", default=None, help="directory of the four Fashion-MNIST .gz files")
    parser.add_argument("--max-images", type=cli.bounded_int(1, 10**9), default=None,
                        help="train on the first N images only")
    cli.add_seed_argument(parser)
    return parser


def main(argv=None):
    """Trains with fit() from the command line; returns the exit code."""
    args = make_argument_parser().parse_args(argv)
    try:
        seed = cli.choose_seed(args.seed)
        dataset = train.load_training_dataset(args.batch_size, args.data_dir, args.max_images, seed)
        monitor = GridMonitor(args.out_dir, seed=seed)
    except (ValueError, FileNotFoundError) as error:
        return cli.report("fit.py", error)
    keras.utils.set_random_seed(seed)
    gan = DCGAN(models.make_generator_model(), models.make_discriminator_model(), seed=seed)
    gan.compile(*models.make_optimizers())
    gan.fit(dataset, epochs=args.epochs, callbacks=[monitor])
    display.make_gif(args.out_dir)
    storage.save_model(gan.generator, os.path.join(args.out_dir, storage.GENERATOR_FILE))
    storage.save_model(gan.discriminator, os.path.join(args.out_dir, storage.DISCRIMINATOR_FILE))
    return 0


if __name__ == "__main__":
    sys.exit(main())
