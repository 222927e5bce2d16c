"""The same DCGAN as a `keras.Model`, trained with `model.fit()`.

train.py writes the training loop out by hand, which is the clearest way to see a GAN
learn. Keras users may prefer `fit()`: this file wraps the very same `train_step` of
train.py in a `keras.Model`, so callbacks, `fit()`'s progress bar and distribution
strategies come for free. Nothing of the step is written twice.

    import fit, models, train
    gan = fit.DCGAN(models.make_generator_model(), models.make_discriminator_model())
    gan.compile(*models.make_optimizers())
    gan.fit(train.load_training_dataset(), epochs=5, callbacks=fit.make_callbacks("fit_output"))

or `python fit.py --epochs 5`. The callbacks are the ones Keras users know:
`BackupAndRestore` (rerunning after an interruption resumes from the last finished epoch),
`TerminateOnNaN`, `CSVLogger` (metrics.csv) and `TensorBoard` (logs/), plus `GridMonitor`,
which saves the epoch grids as train.py does.
"""

import os

# Hide TensorFlow's C++ start-up chatter when run as a script; real errors still show.
if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import math  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import cli  # noqa: E402
import controller  # noqa: E402
import devices  # noqa: E402
import display  # noqa: E402
import models  # noqa: E402
import precision_probe  # noqa: E402
import run_history  # noqa: E402
import run_settings  # noqa: E402
import storage  # noqa: E402
import train  # noqa: E402

OUT_DIR = "fit_output"


class DCGAN(keras.Model):
    """A generator and a discriminator trained together by `fit()`.

    `fit()` feeds batches of real images (float32, (batch, 28, 28, 1), in [-1, 1]); each
    batch is one call of `train.train_step`. The logged metrics are epoch means of
    d_loss, g_loss, d_real = D(x) and d_fake = D(G(z)), and of loss = d_loss + g_loss.
    """

    def __init__(self, generator, discriminator, seed=0, label_smoothing=models.LABEL_SMOOTHING, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.label_smoothing = label_smoothing
        self.noise_seed = tf.Variable(seed, dtype=tf.int64, trainable=False)
        self.metric_trackers = {name: keras.metrics.Mean(name=name) for name in run_history.METRIC_NAMES}
        # Keras callbacks that watch "the loss" (TerminateOnNaN) read logs["loss"]; the sum
        # of both objectives is finite exactly when both are.
        self.metric_trackers["loss"] = keras.metrics.Mean(name="loss")
        # Both networks arrive built and the pair has no weights of its own; saying so lets
        # BackupAndRestore restore the weights before the first step.
        self.built = True

    def compile(self, generator_optimizer, discriminator_optimizer, **kwargs):
        """Takes one optimizer per network instead of Keras' single optimizer and loss."""
        # No optimizer of Keras' own: its default would be an RMSprop that nothing uses,
        # built and saved with every backup all the same.
        super().compile(optimizer=None, **kwargs)
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
        for name in run_history.METRIC_NAMES:
            self.metric_trackers[name].update_state(results[name])
        self.metric_trackers["loss"].update_state(results["d_loss"] + results["g_loss"])
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


def make_callbacks(out_dir=OUT_DIR, seed=0, latent_dim=models.LATENT_DIM):
    """Returns the callbacks of `python fit.py`, for `gan.fit(..., callbacks=...)`.

    - BackupAndRestore keeps the models and optimizers of the last finished epoch in
      `out_dir`/backup, and a rerun after an interruption starts from the next epoch;
      a finished run deletes it, so the next one starts over;
    - TerminateOnNaN stops at the first non-finite loss, with a RuntimeError, which
      leaves the backup of the last good epoch in place;
    - GridMonitor saves the epoch grids; CSVLogger writes metrics.csv; TensorBoard
      writes `out_dir`/logs (`tensorboard --logdir fit_output/logs`).

    The backup comes first, so that an epoch's grid, row and summaries are written only
    once the epoch is safe: a run killed in between redoes nothing that was logged.
    Without a backup in `out_dir` (a new run), the TensorBoard logs of an earlier run
    there are deleted, as CSVLogger starts metrics.csv anew.

    Raises:
        ValueError: `out_dir` is a file or cannot be written.
    """
    out_dir = storage.prepare_out_dir(out_dir)
    backup_dir = os.path.join(out_dir, storage.BACKUP_DIR)
    log_dir = os.path.join(out_dir, storage.TENSORBOARD_DIR)
    resuming = os.path.isdir(backup_dir)
    if not resuming:
        shutil.rmtree(log_dir, ignore_errors=True)
    return [
        keras.callbacks.BackupAndRestore(backup_dir, double_checkpoint=True),
        keras.callbacks.TerminateOnNaN(raise_error=True),
        GridMonitor(out_dir, latent_dim=latent_dim, seed=seed),
        keras.callbacks.CSVLogger(os.path.join(out_dir, storage.METRICS_CSV), append=resuming),
        keras.callbacks.TensorBoard(log_dir),
    ]


def make_argument_parser():
    """Returns the command-line parser of fit.py."""
    parser = cli.make_parser("fit.py", "Train the DCGAN with keras.Model.fit().")
    parser.add_argument("--epochs", type=cli.bounded_int(1, train.MAX_EPOCHS), default=train.EPOCHS,
                        help="passes over the training images")
    parser.add_argument("--batch-size", type=cli.bounded_int(1, train.MAX_BATCH_SIZE), default=train.BATCH_SIZE,
                        help="images per step")
    parser.add_argument("--out-dir", default=OUT_DIR,
                        help="epoch grids, GIF, models, metrics.csv, logs/ and the backup of an interrupted "
                             "run, which rerunning resumes")
    parser.add_argument("--data-dir", default=None, help="directory of the four Fashion-MNIST .gz files")
    parser.add_argument("--max-images", type=cli.bounded_int(1, 10**9), default=None,
                        help="train on the first N images only")
    cli.add_seed_argument(parser, help_text="random seed; resuming keeps the run's")
    parser.add_argument("--fresh", action="store_true",
                        help="delete the backup of an interrupted run in --out-dir and start over")
    parser.add_argument("--precision", choices=devices.PRECISIONS, default=None,
                        help="none: the fastest on this machine, measured once and remembered")
    parser.add_argument("--remeasure-precision", action="store_true", help="measure the fastest precision again")
    return parser


def main(argv=None):
    """Trains with fit() from the command line; returns the exit code."""
    args = make_argument_parser().parse_args(argv)
    backup_dir = os.path.join(args.out_dir, storage.BACKUP_DIR)
    try:
        if args.fresh:
            shutil.rmtree(backup_dir, ignore_errors=True)
        # A resumed run keeps its seed: its fixed noise, and so its grids, stay the same.
        settings = run_settings.load(args.out_dir) if os.path.isdir(backup_dir) else None
        seed = cli.choose_seed(args.seed, (settings or {}).get("seed"))
        dataset = train.load_training_dataset(args.batch_size, args.data_dir, args.max_images, seed)
        callbacks = make_callbacks(args.out_dir, seed)
        # Measured before the models are seeded and built: the probe draws on Keras' random state.
        precision = precision_probe.decide(args.precision, train.train_step, args.batch_size,
                                           remeasure=args.remeasure_precision).precision
        run_settings.save(args.out_dir, {"seed": seed, "precision": precision})
    except (ValueError, FileNotFoundError, storage.StorageError) as error:
        return cli.report("fit.py", error)
    keras.utils.set_random_seed(seed)
    with devices.dtype_policy(precision):
        gan = DCGAN(models.make_generator_model(), models.make_discriminator_model(), seed=seed)
    gan.compile(*models.make_optimizers(loss_scaling=(precision == "mixed_float16")))
    try:
        gan.fit(dataset, epochs=args.epochs, callbacks=callbacks)
    except RuntimeError as error:
        if math.isfinite(float(gan.metric_trackers["loss"].result())):
            raise  # not TerminateOnNaN's
        return cli.report("fit.py", controller.TrainingDiverged(
            f"losses became non-finite ({error}); the models of the last finished epoch are kept in {backup_dir}, "
            "and no .keras file was written; try another --seed, with --fresh"))
    display.make_gif(args.out_dir)
    storage.save_model(gan.generator, os.path.join(args.out_dir, storage.GENERATOR_FILE))
    storage.save_model(gan.discriminator, os.path.join(args.out_dir, storage.DISCRIMINATOR_FILE))
    return 0


if __name__ == "__main__":
    sys.exit(main())
