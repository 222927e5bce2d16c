"""Train a DCGAN on Fashion-MNIST.

    python train.py                  # the defaults below; rerun the same command to resume
    python train.py --epochs 5 --max-images 2000 --out-dir smoke   # a quick look

From a notebook:

    from train import train, load_training_dataset
    train_dataset = load_training_dataset()
    history = train(train_dataset, EPOCHS)

Each step draws a batch of noise z, makes fake images G(z), scores real and fake images
with D, and updates both networks from the same forward pass (two gradient tapes). After
every epoch a grid of the same fixed noise batch is saved, so the pictures show G
learning; a checkpoint makes every run resumable.
"""

import os

# Hide TensorFlow's C++ start-up chatter; real errors still reach the user.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import data  # noqa: E402
import devices  # noqa: E402
import display  # noqa: E402
import models  # noqa: E402
import storage  # noqa: E402

# ----------------------------------------------------------------------------------------
# Hyperparameters: every flag of the command line defaults to one of these.
EPOCHS = 20  # about 10 minutes on 2 CPU cores; clothes are recognisable after 2-3 epochs
BATCH_SIZE = 64  # twice the updates of the paper's 128 at equal images/s: FID 70, not 102, at 5 minutes
LATENT_DIM = models.LATENT_DIM  # 100, the DCGAN paper's noise size (defined in models.py)
GENERATOR_LEARNING_RATE = models.GENERATOR_LEARNING_RATE  # 2e-4, the DCGAN paper's
DISCRIMINATOR_LEARNING_RATE = models.DISCRIMINATOR_LEARNING_RATE  # 2e-4, the DCGAN paper's
BETA_1 = models.BETA_1  # 0.5, the DCGAN paper's: Adam's default 0.9 oscillates
LABEL_SMOOTHING = models.LABEL_SMOOTHING  # 0: one-sided 0.1 gave the same FID after 5 minutes
SEED = None  # None draws a seed and logs it; pass one to repeat a run exactly
NUM_EXAMPLES_TO_GENERATE = 64  # the fixed noise batch behind every epoch grid (8x8)
OUT_DIR = storage.OUT_DIR  # "training_output" in the current directory
CHECKPOINT_EVERY_MINUTES = 5.0  # a kill -9 loses at most this much work
CHECKPOINTS_TO_KEEP = 3  # older ones are the fallback when the newest is corrupt
EVALUATION_SAMPLES = 10_000  # generated images per FID, as many as the real test images
# ----------------------------------------------------------------------------------------

# Limits that catch typing mistakes (an extra zero or two) before hours are spent.
MAX_EPOCHS = 100_000
MAX_BATCH_SIZE = 65_536
MAX_LATENT_DIM = 10_000
# D(G(z)) below this for this many epochs in a row, with g_loss rising, is the classic
# failure where D wins outright and G stops learning.
COLLAPSE_D_FAKE = 0.05
COLLAPSE_EPOCHS = 3

METRIC_NAMES = ("d_loss", "g_loss", "d_real", "d_fake")
CSV_FIELDS = ("epoch", "steps", "d_loss", "g_loss", "d_real", "d_fake", "seconds",
              "images_per_second", "fid", "inception_score", "precision", "recall")


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on SIGINT or SIGTERM after saving a checkpoint.

    `exit_code` is the shell convention 128 + signal number: 130 for Ctrl-C, 143 for SIGTERM.
    """

    def __init__(self, message, signal_number):
        super().__init__(message)
        self.exit_code = 128 + signal_number


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint and `.keras` files were kept."""


def sample_noise(real_images, latent_dim, seed):
    """Draws standard-normal noise, one row per real image, from a counter-based RNG.

    The noise of the whole global batch is drawn from `seed` and every replica takes its
    own rows of it, so a step gives the same result on one device or split over several.

    Args:
        real_images: this replica's batch; only its size is used.
        latent_dim: noise size.
        seed: int64 tensor of shape (2,), different for every step.

    Returns:
        A float32 tensor of shape (batch, latent_dim).
    """
    local_batch_size = tf.shape(real_images)[0]
    replica_context = tf.distribute.get_replica_context()
    if replica_context is None or replica_context.num_replicas_in_sync == 1:
        return tf.random.stateless_normal([local_batch_size, latent_dim], seed=seed)
    batch_sizes = replica_context.all_gather(tf.reshape(local_batch_size, [1]), axis=0)
    offset = tf.reduce_sum(batch_sizes[:replica_context.replica_id_in_sync_group])
    global_noise = tf.random.stateless_normal([tf.reduce_sum(batch_sizes), latent_dim], seed=seed)
    return global_noise[offset:offset + local_batch_size]


@tf.function
def train_step(real_images, generator, discriminator, generator_optimizer, discriminator_optimizer,
               noise_seed, label_smoothing=LABEL_SMOOTHING):
    """One simultaneous update of G and D on a batch of real images.

    Args:
        real_images: float32 batch (batch, 28, 28, 1) in [-1, 1]; the last batch of an
            epoch may be smaller, and the noise batch follows its size.
        generator, discriminator: the models to train.
        generator_optimizer, discriminator_optimizer: their optimizers, already built
            (`optimizer.build(model.trainable_variables)`): a tf.function may create
            variables only on its first trace.
        noise_seed: int64 scalar tensor; with the optimizer's step counter it seeds the noise,
            so a resumed run draws exactly the noise an uninterrupted one would have.
        label_smoothing: one-sided label smoothing for D's real targets.

    Returns:
        A dict of float32 scalars: d_loss, g_loss, and d_real / d_fake, D's mean output
        (a probability) on real images, D(x), and on generated ones, D(G(z)).
    """
    latent_dim = generator.input_shape[-1]
    step_seed = tf.stack([tf.cast(noise_seed, tf.int64), tf.cast(generator_optimizer.iterations, tf.int64)])
    noise = sample_noise(real_images, latent_dim, step_seed)

    with tf.GradientTape() as generator_tape, tf.GradientTape() as discriminator_tape:
        fake_images = generator(noise, training=True)
        # Two D passes, not one over the concatenation of real and fake: on a CPU the
        # single larger pass measured about 10% slower (benchmarks/RESULTS.md).
        real_logits = discriminator(real_images, training=True)
        fake_logits = discriminator(fake_images, training=True)

        generator_loss = models.generator_loss(fake_logits)
        discriminator_loss = models.discriminator_loss(real_logits, fake_logits, label_smoothing)
        # Each replica averages over its share of the batch and the optimizers add the
        # replicas' gradients up, so dividing by their number gives the global mean.
        # scale_loss() multiplies by the loss scale under float16 and is a no-op otherwise.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        scaled_generator_loss = generator_optimizer.scale_loss(generator_loss / replicas)
        scaled_discriminator_loss = discriminator_optimizer.scale_loss(discriminator_loss / replicas)

    generator_gradients = generator_tape.gradient(scaled_generator_loss, generator.trainable_variables)
    discriminator_gradients = discriminator_tape.gradient(scaled_discriminator_loss,
                                                          discriminator.trainable_variables)
    generator_optimizer.apply_gradients(zip(generator_gradients, generator.trainable_variables))
    discriminator_optimizer.apply_gradients(zip(discriminator_gradients, discriminator.trainable_variables))

    return {
        "d_loss": discriminator_loss,
        "g_loss": generator_loss,
        "d_real": tf.reduce_mean(tf.sigmoid(real_logits)),
        "d_fake": tf.reduce_mean(tf.sigmoid(fake_logits)),
    }


@tf.function
def distributed_train_step(strategy, real_images, *step_arguments):
    """Runs `train_step` on every replica of `strategy`.

    Returns:
        train_step's dict averaged over replicas, plus "images": the global batch size.
    """
    per_replica_results = strategy.run(train_step, args=(real_images,) + step_arguments)
    results = {name: strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
               for name, value in per_replica_results.items()}
    # The images of every replica on every worker, for an honest images/s.
    per_replica_images = strategy.run(lambda images: tf.shape(images)[0], args=(real_images,))
    results["images"] = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica_images, axis=None)
    return results


def load_training_dataset(batch_size=BATCH_SIZE, data_dir=None, max_images=None, seed=SEED):
    """Loads the Fashion-MNIST training images and returns the `tf.data` pipeline over them.

    Args:
        max_images: train on the first N images only (smoke runs and tests).

    Raises:
        ValueError, FileNotFoundError: see `data.load_fashion_mnist` and `data.make_dataset`;
            also max_images outside 1..60000.
    """
    images, _ = data.load_fashion_mnist("train", data_dir)
    if max_images is not None:
        if not 1 <= max_images <= len(images):
            raise ValueError(f"--max-images must be between 1 and the {len(images)} training images, got {max_images}")
        images = images[:max_images]
    return data.make_dataset(images, batch_size, seed=seed)


class _StopSignals:
    """Turns SIGINT and SIGTERM into a request that the loop honours after the current step.

    A second signal while the first is pending gives up on saving and stops at once.
    Handlers can only be installed from the main thread; elsewhere this does nothing.
    """

    def __init__(self):
        self.signal_number = None
        self._previous_handlers = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signal_number in (signal.SIGINT, signal.SIGTERM):
                self._previous_handlers[signal_number] = signal.signal(signal_number, self._handle)
        return self

    def _handle(self, signal_number, frame):
        if self.signal_number is not None:
            raise KeyboardInterrupt("second interrupt: stopping without saving")
        self.signal_number = signal_number
        print(f"\n{signal.Signals(signal_number).name} received: saving a checkpoint after this step "
              "(send it again to stop at once)", file=sys.stderr, flush=True)

    def __exit__(self, *exception_info):
        for signal_number, handler in self._previous_handlers.items():
            signal.signal(signal_number, handler)
        return False


class _Checkpoints:
    """The run's state on disk: models, optimizers, counters and the fixed noise.

    `tf.train.CheckpointManager` keeps the newest CHECKPOINTS_TO_KEEP checkpoints; TensorFlow
    writes each one under a temporary name and updates its index file atomically.
    """

    def __init__(self, directory, **trackables):
        self.directory = directory
        self.checkpoint = tf.train.Checkpoint(**trackables)
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=CHECKPOINTS_TO_KEEP)

    def check_latent_dim(self, latent_dim):
        """Raises ValueError when the newest checkpoint was made for another noise size."""
        if self.manager.latest_checkpoint is None:
            return
        try:
            saved_noise = tf.train.load_variable(self.manager.latest_checkpoint, "fixed_noise/.ATTRIBUTES/VARIABLE_VALUE")
        except (tf.errors.OpError, ValueError):
            return  # unreadable: restore() reports it and falls back to an older checkpoint
        if saved_noise.shape[-1] != latent_dim:
            raise ValueError(
                f"{self.directory} holds a checkpoint for latent dim {saved_noise.shape[-1]}, not {latent_dim}: "
                f"pass --latent-dim {saved_noise.shape[-1]} to resume it, or --fresh or another --out-dir")

    def restore(self):
        """Restores the newest readable checkpoint, falling back to older ones.

        Returns:
            The path restored, or None when there is no checkpoint.

        Raises:
            ValueError: a checkpoint exists but holds a different architecture.
            StorageError: checkpoints exist but none can be read.
        """
        candidates = list(reversed(self.manager.checkpoints))
        for path in candidates:
            try:
                self.checkpoint.restore(path).assert_existing_objects_matched()
                return path
            except (ValueError, AssertionError) as error:
                raise ValueError(
                    f"{path} does not fit these models (another architecture or precision?): "
                    f"{str(error).splitlines()[0]}; pass --fresh or another --out-dir") from None
            except tf.errors.OpError as error:
                print(f"warning: checkpoint {path} is unreadable ({error.message.splitlines()[0]}); "
                      "trying the one before it", file=sys.stderr, flush=True)
        if candidates:
            raise storage.StorageError(f"no checkpoint in {self.directory} is readable; pass --fresh to start over")
        return None

    def save(self):
        """Saves a new checkpoint; returns its path.

        Raises:
            StorageError: it could not be written (the previous checkpoints stay usable).
        """
        try:
            return self.manager.save()
        except (tf.errors.OpError, OSError) as error:
            reason = storage.describe_os_error(error) if isinstance(error, OSError) else error.message.splitlines()[0]
            if "space" in reason.lower() or "quota" in reason.lower():
                reason = "no space left on device"
            raise storage.StorageError(
                f"could not save a checkpoint in {self.directory}: {reason}; "
                f"the previous checkpoint ({self.manager.latest_checkpoint}) is still usable") from None


def _remove_previous_results(out_dir):
    # Only the files this script writes: --fresh must never take a user's other files.
    shutil.rmtree(os.path.join(out_dir, storage.CHECKPOINT_DIR), ignore_errors=True)
    for epoch in display.saved_epochs(out_dir):
        os.remove(os.path.join(out_dir, storage.GRID_PATTERN.format(epoch=epoch)))
    for name in (storage.METRICS_CSV, storage.LOSS_PLOT, storage.PROGRESS_GIF,
                 storage.GENERATOR_FILE, storage.DISCRIMINATOR_FILE):
        if os.path.exists(os.path.join(out_dir, name)):
            os.remove(os.path.join(out_dir, name))


def stored_seed(out_dir):
    """Returns the seed saved in the newest checkpoint in `out_dir`, or None if there is none."""
    latest = tf.train.latest_checkpoint(os.path.join(out_dir, storage.CHECKPOINT_DIR))
    if latest is None:
        return None
    try:
        return int(tf.train.load_variable(latest, "noise_seed/.ATTRIBUTES/VARIABLE_VALUE"))
    except (tf.errors.OpError, ValueError):
        return None  # unreadable: train() reports it when it restores


def _is_chief(strategy):
    # Under MultiWorkerMirroredStrategy every worker trains, but only the chief (worker 0
    # when there is no "chief" task) writes results.
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    cluster = resolver.cluster_spec().as_dict()
    if "chief" in cluster:
        return resolver.task_type == "chief"
    return resolver.task_type == "worker" and resolver.task_id == 0


def _format_row(row, epochs):
    return (f"epoch {int(row['epoch']):>3}/{epochs}  d_loss {row['d_loss']:.3f}  g_loss {row['g_loss']:.3f}  "
            f"D(x) {row['d_real']:.3f}  D(G(z)) {row['d_fake']:.3f}  "
            f"{row['seconds']:.1f} s  {row['images_per_second']:.0f} img/s"
            + (f"  FID {row['fid']:.2f}" if row.get("fid") not in (None, "") else ""))


def _collapse_warning(rows):
    """Returns a warning when D has won outright for COLLAPSE_EPOCHS epochs, else None."""
    recent = rows[-COLLAPSE_EPOCHS:]
    if len(recent) < COLLAPSE_EPOCHS:
        return None
    d_fake = [float(row["d_fake"]) for row in recent]
    g_loss = [float(row["g_loss"]) for row in recent]
    if max(d_fake) < COLLAPSE_D_FAKE and g_loss[-1] > g_loss[0]:
        return (f"warning: for {COLLAPSE_EPOCHS} epochs D has rejected nearly every generated image "
                f"(D(G(z)) < {COLLAPSE_D_FAKE}) while g_loss rose: G is getting too little signal. "
                "Try --label-smoothing 0.1, a lower --d-learning-rate, or --fresh with another --seed.")
    return None


def train(dataset, epochs=EPOCHS, *, generator=None, discriminator=None,
          generator_optimizer=None, discriminator_optimizer=None, latent_dim=LATENT_DIM,
          out_dir=OUT_DIR, seed=SEED, fresh=False, precision=None, strategy=None,
          label_smoothing=LABEL_SMOOTHING, max_minutes=None,
          checkpoint_every_minutes=CHECKPOINT_EVERY_MINUTES, checkpoint_every_steps=0,
          evaluator=None, evaluate_every=0, evaluation_samples=EVALUATION_SAMPLES, verbose=1):
    """Trains a DCGAN on `dataset`, resuming from the checkpoint in `out_dir` if there is one.

    Epochs are numbered from 0: `train(dataset, 5)` after a finished 3-epoch run in the same
    `out_dir` trains epochs 3 and 4 only. Ctrl-C or SIGTERM saves a checkpoint first.

    Args:
        dataset: a `tf.data.Dataset` of float32 image batches (batch, 28, 28, 1) in [-1, 1]
            with a known number of batches, such as `load_training_dataset()` returns.
        epochs: total number of epochs, counting those done in earlier runs.
        generator, discriminator, generator_optimizer, discriminator_optimizer: None builds
            the defaults of models.py (under `precision` and inside `strategy`'s scope).
        latent_dim: noise size of a generator built here.
        out_dir: where grids, metrics, checkpoints and the final models are written.
        seed: seeds weights, noise and the fixed noise batch; None draws one (it is stored
            in the checkpoint, so a resumed run keeps the first run's seed).
        fresh: delete this script's earlier results in `out_dir` and start over.
        precision: "float32", "mixed_bfloat16" or "mixed_float16"; None picks the fastest
            for this machine (`devices.default_precision()`).
        strategy: a `tf.distribute.Strategy`; None trains on one device.
        max_minutes: stop cleanly, saving everything, at the first step after this many
            minutes of training.
        checkpoint_every_minutes, checkpoint_every_steps: mid-epoch checkpoint intervals
            (0 turns one off); a checkpoint is also saved at the end of every epoch.
        evaluator, evaluate_every: an object with `evaluate(generator, num_samples, seed)`
            returning a dict with "fid" (see evaluate.py), called every `evaluate_every` epochs.
        verbose: 0 silent, 1 progress bar and a line per epoch, 2 the line only.

    Returns:
        The history: one dict per epoch (all epochs in `out_dir`, earlier runs included),
        with the columns of metrics.csv.

    Raises:
        ValueError: bad arguments, or `out_dir` holds a checkpoint of other models.
        TrainingInterrupted: SIGINT/SIGTERM arrived; a checkpoint was saved first.
        TrainingDiverged: a loss became NaN or infinite.
        StorageError: a result could not be written (for example, the disk is full).
    """
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or not 1 <= epochs <= MAX_EPOCHS:
        raise ValueError(f"epochs must be an integer between 1 and {MAX_EPOCHS}, got {epochs!r}")
    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError(f"dataset must be a tf.data.Dataset, got {type(dataset).__name__}")
    steps_per_epoch = int(dataset.cardinality())
    if steps_per_epoch <= 0:
        raise ValueError("dataset must have a known, finite, non-zero number of batches per epoch "
                         "(see tf.data.experimental.assert_cardinality)")
    if max_minutes is not None and max_minutes <= 0:
        raise ValueError(f"max_minutes must be positive, got {max_minutes}")
    strategy = strategy or tf.distribute.get_strategy()
    if strategy.num_replicas_in_sync > 1:
        # A replica given no image at all fails (and leaves the other workers waiting).
        last_batch_size = int(dataset.skip(steps_per_epoch - 1).map(lambda images: tf.shape(images)[0])
                              .get_single_element())
        if last_batch_size < strategy.num_replicas_in_sync:
            raise ValueError(f"the last batch of an epoch holds {last_batch_size} image(s), fewer than the "
                             f"{strategy.num_replicas_in_sync} replicas; change the batch size or the number of images")
    precision = devices.check_precision(precision)
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % 2**31)
    out_dir = storage.prepare_out_dir(out_dir)
    is_chief = _is_chief(strategy)
    log = print if verbose else (lambda *args, **kwargs: None)

    # Build (or take) the models and optimizers, then every variable a checkpoint holds.
    with strategy.scope():
        if generator is None or discriminator is None:
            keras.utils.set_random_seed(seed)
            with devices.dtype_policy(precision):
                generator = generator or models.make_generator_model(latent_dim)
                discriminator = discriminator or models.make_discriminator_model()
        latent_dim = generator.input_shape[-1]
        if generator_optimizer is None or discriminator_optimizer is None:
            generator_optimizer, discriminator_optimizer = models.make_optimizers(
                loss_scaling=(precision == "mixed_float16"))
        # Keras builds optimizer slots lazily; building them now lets a checkpoint restore them.
        generator_optimizer.build(generator.trainable_variables)
        discriminator_optimizer.build(discriminator.trainable_variables)
        epoch = tf.Variable(0, dtype=tf.int64, trainable=False)  # epochs completed
        step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False)  # steps done in the current one
        # Sums of the metrics, seconds and images over the current epoch so far, so a run
        # resumed mid-epoch still logs the whole epoch's averages.
        epoch_totals = tf.Variable(tf.zeros([len(METRIC_NAMES) + 2], tf.float64), trainable=False)
        noise_seed = tf.Variable(seed, dtype=tf.int64, trainable=False)
        fixed_noise = tf.Variable(
            tf.random.stateless_normal([NUM_EXAMPLES_TO_GENERATE, latent_dim], seed=[seed, -1]), trainable=False)

    checkpoint_dir = os.path.join(out_dir, storage.CHECKPOINT_DIR)
    if not is_chief:
        # Every worker must take part in saving (it is a collective operation), but only
        # the chief's copy is kept.
        checkpoint_dir = os.path.join(out_dir, f".worker_{strategy.cluster_resolver.task_id}_checkpoints")
    if is_chief:
        storage.remove_partial_files(out_dir)
        if fresh:
            _remove_previous_results(out_dir)
    checkpoints = _Checkpoints(checkpoint_dir, generator=generator, discriminator=discriminator,
                               generator_optimizer=generator_optimizer,
                               discriminator_optimizer=discriminator_optimizer,
                               epoch=epoch, step_in_epoch=step_in_epoch, epoch_totals=epoch_totals,
                               noise_seed=noise_seed, fixed_noise=fixed_noise)
    restored = None
    if not fresh:
        checkpoints.check_latent_dim(latent_dim)
        restored = checkpoints.restore()
    # .numpy() because int() refuses the mirrored variables of a multi-replica strategy.
    start_epoch, start_step, seed = (int(variable.numpy()) for variable in (epoch, step_in_epoch, noise_seed))
    if restored:
        log(f"Resuming from {restored}: epoch {start_epoch}, step {start_step} (seed {seed})", flush=True)

    metrics_path = os.path.join(out_dir, storage.METRICS_CSV)
    # Rows of epochs that the checkpoint has not seen completed are redone below.
    history = [row for row in storage.read_csv(metrics_path) if int(row["epoch"]) < start_epoch]
    history = [{name: _to_number(value) for name, value in row.items()} for row in history]

    if start_epoch >= epochs:
        log(f"{out_dir} already holds {start_epoch} epochs; pass a larger epochs to train more, or fresh=True")
    else:
        log(f"Training epochs {start_epoch}-{epochs - 1}: {steps_per_epoch} steps an epoch, precision {precision}, "
            f"{strategy.num_replicas_in_sync} replica(s), seed {seed}", flush=True)

    # One iterator over all remaining epochs, fast-forwarded to where the checkpoint stopped:
    # with a seeded dataset from load_training_dataset() the batches are exactly those an
    # uninterrupted run would have seen.
    batches = dataset.repeat().skip(start_epoch * steps_per_epoch + start_step)
    if strategy.num_replicas_in_sync > 1:
        # Every worker holds the whole (small) data set, so it is split by batch, not by file.
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        batches = batches.with_options(options)
        batches = strategy.experimental_distribute_dataset(batches)
    batch_iterator = iter(batches)

    step_arguments = (generator, discriminator, generator_optimizer, discriminator_optimizer,
                      noise_seed, label_smoothing)
    if strategy.num_replicas_in_sync == 1:
        # Trace once for any batch size, so the short last batch of an epoch does not retrace.
        train_step.get_concrete_function(tf.TensorSpec([None] + list(models.IMAGE_SHAPE), tf.float32),
                                         *step_arguments)

    def run_step(real_images):
        if strategy.num_replicas_in_sync > 1:
            return distributed_train_step(strategy, real_images, *step_arguments)
        return train_step(real_images, *step_arguments)

    def finish_epoch_row(epoch_index, steps_done):
        totals = epoch_totals.numpy()
        row = {"epoch": epoch_index, "steps": steps_done}
        row.update({name: totals[i] / steps_done for i, name in enumerate(METRIC_NAMES)})
        row["seconds"] = totals[len(METRIC_NAMES)]
        row["images_per_second"] = totals[len(METRIC_NAMES) + 1] / max(row["seconds"], 1e-9)
        return row

    def save_epoch_results(epoch_index, row):
        # Order matters for crash safety: the grid and the CSV row are written before the
        # checkpoint that marks the epoch as done, so a crash in between only redoes work.
        if is_chief:
            grid_path = os.path.join(out_dir, storage.GRID_PATTERN.format(epoch=epoch_index))
            display.save_image_grid(generator(fixed_noise, training=False).numpy(), grid_path)
            rows = [r for r in history if r["epoch"] != epoch_index] + [row]
            storage.write_csv(metrics_path, CSV_FIELDS, rows)
        checkpoints.save()

    train_seconds = 0.0
    budget_seconds = max_minutes * 60 if max_minutes is not None else math.inf
    last_checkpoint_time = time.monotonic()
    warned_collapse = False
    stopped_early = False

    with _StopSignals() as stop_signals:
        for epoch_index in range(start_epoch, epochs):
            progress_bar = None
            if verbose == 1:
                progress_bar = keras.utils.Progbar(steps_per_epoch, stateful_metrics=METRIC_NAMES,
                                                   interval=0.1 if sys.stdout.isatty() else 30.0)
            for step in range(int(step_in_epoch.numpy()), steps_per_epoch):
                step_start = time.perf_counter()
                real_images = next(batch_iterator)
                results = run_step(real_images)
                values = [float(results[name]) for name in METRIC_NAMES]
                seconds = time.perf_counter() - step_start
                train_seconds += seconds

                if not all(math.isfinite(value) for value in values[:2]):
                    _handle_divergence(checkpoints, generator, discriminator, out_dir, is_chief,
                                       epoch_index, step, dict(zip(METRIC_NAMES, values)))

                batch_size = _images_in_step(real_images, results)
                epoch_totals.assign_add(tf.constant(values + [seconds, batch_size], tf.float64))
                step_in_epoch.assign(step + 1)
                if progress_bar is not None:
                    progress_bar.update(step + 1, list(zip(METRIC_NAMES, values)))

                if stop_signals.signal_number is not None:
                    path = checkpoints.save()
                    name = signal.Signals(stop_signals.signal_number).name
                    message = (f"{name}: stopped at epoch {epoch_index} step {step + 1}/{steps_per_epoch}; "
                               f"checkpoint {path} saved; run the same command again to resume")
                    raise TrainingInterrupted(message, stop_signals.signal_number)
                if train_seconds >= budget_seconds:
                    stopped_early = True
                    break
                now = time.monotonic()
                if ((checkpoint_every_steps and (step + 1) % checkpoint_every_steps == 0)
                        or (checkpoint_every_minutes and now - last_checkpoint_time >= checkpoint_every_minutes * 60)):
                    if step + 1 < steps_per_epoch:  # the end of the epoch saves anyway
                        checkpoints.save()
                        last_checkpoint_time = now

            steps_done = int(step_in_epoch.numpy())
            row = finish_epoch_row(epoch_index, steps_done)
            if (evaluator is not None and evaluate_every and not stopped_early
                    and (epoch_index + 1) % evaluate_every == 0):
                row.update(evaluator.evaluate(generator, num_samples=evaluation_samples, seed=seed))
            if not stopped_early:
                epoch.assign(epoch_index + 1)
                step_in_epoch.assign(0)
                epoch_totals.assign(tf.zeros_like(epoch_totals))
            save_epoch_results(epoch_index, row)
            last_checkpoint_time = time.monotonic()
            history = [r for r in history if r["epoch"] != epoch_index] + [row]
            log(_format_row(row, epochs) + ("  (time budget reached mid-epoch)" if stopped_early else ""), flush=True)

            warning = _collapse_warning(history)
            if warning and not warned_collapse:
                log(warning, flush=True)
                warned_collapse = True
            if stopped_early:
                break

    if is_chief:
        _save_final_results(generator, discriminator, out_dir, history, log)
    return history


def _to_number(value):
    if value in (None, ""):
        return ""
    number = float(value)
    return int(number) if number.is_integer() and "." not in value else number


def _images_in_step(real_images, results):
    # Under a strategy, distributed_train_step counts the images of all replicas and workers.
    if "images" in results:
        return int(results["images"])
    return int(tf.shape(real_images)[0])


def _handle_divergence(checkpoints, generator, discriminator, out_dir, is_chief, epoch_index, step, values):
    """Restores the last good checkpoint, exports it as `.keras`, and raises TrainingDiverged."""
    where = f"epoch {epoch_index} step {step + 1}"
    losses = ", ".join(f"{name} {value:.4g}" for name, value in values.items())
    advice = "try a lower learning rate, --precision float32, or another --seed"
    if checkpoints.manager.latest_checkpoint is None:
        raise TrainingDiverged(f"losses became non-finite at {where} ({losses}) before any checkpoint "
                               f"was saved; existing files in {out_dir} are untouched; {advice}")
    restored = checkpoints.restore()
    if is_chief:
        storage.save_model(generator, os.path.join(out_dir, storage.GENERATOR_FILE))
        storage.save_model(discriminator, os.path.join(out_dir, storage.DISCRIMINATOR_FILE))
    raise TrainingDiverged(f"losses became non-finite at {where} ({losses}); the last good checkpoint "
                           f"{restored} is kept and exported to {storage.GENERATOR_FILE} and "
                           f"{storage.DISCRIMINATOR_FILE}; {advice}")


def _save_final_results(generator, discriminator, out_dir, history, log):
    storage.save_model(generator, os.path.join(out_dir, storage.GENERATOR_FILE))
    storage.save_model(discriminator, os.path.join(out_dir, storage.DISCRIMINATOR_FILE))
    if display.saved_epochs(out_dir):
        display.make_gif(out_dir)
    if history:
        display.plot_history(history, os.path.join(out_dir, storage.LOSS_PLOT))
    log(f"Saved {storage.GENERATOR_FILE}, {storage.DISCRIMINATOR_FILE}, {storage.PROGRESS_GIF} and "
        f"{storage.LOSS_PLOT} in {out_dir}", flush=True)


# ---------------------------------------------------------------------------- command line


def bounded_int(low, high):
    """Returns an argparse type: a whole number in [low, high]."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value
    return parse


def _number(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text}")
    return value


def positive_float(text):
    """argparse type: a finite number above 0."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def non_negative_float(text):
    """argparse type: a finite number, 0 or above."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def fraction(text):
    """argparse type: a number in [0, 1)."""
    value = _number(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def make_argument_parser():
    """Returns the command-line parser; every default is a constant at the top of this file."""
    parser = argparse.ArgumentParser(
        description="Train a DCGAN on Fashion-MNIST. Rerunning with the same --out-dir resumes.")
    parser.add_argument("--epochs", type=bounded_int(1, MAX_EPOCHS), default=EPOCHS,
                        help=f"total epochs, counting earlier runs in --out-dir (default {EPOCHS})")
    parser.add_argument("--batch-size", type=bounded_int(1, MAX_BATCH_SIZE), default=BATCH_SIZE,
                        help=f"images per step (default {BATCH_SIZE})")
    parser.add_argument("--latent-dim", type=bounded_int(1, MAX_LATENT_DIM), default=LATENT_DIM,
                        help=f"noise size (default {LATENT_DIM})")
    parser.add_argument("--out-dir", default=OUT_DIR, help=f"results and checkpoints (default {OUT_DIR})")
    parser.add_argument("--data-dir", default=None,
                        help=f"directory of the four Fashion-MNIST .gz files (default: ${data.DATA_DIR_VARIABLE}, "
                             f"then {data.SYSTEM_DATA_DIR}, then download with Keras)")
    parser.add_argument("--seed", type=bounded_int(0, 2**31 - 1), default=SEED,
                        help="random seed (default: drawn and logged)")
    parser.add_argument("--max-images", type=bounded_int(1, 10**9), default=None,
                        help="train on the first N images only (smoke runs)")
    parser.add_argument("--fresh", action="store_true", help="delete earlier results in --out-dir and start over")
    parser.add_argument("--max-minutes", type=positive_float, default=None,
                        help="stop cleanly after this many minutes of training")
    parser.add_argument("--precision", choices=devices.PRECISIONS, default=None,
                        help="default: mixed_bfloat16 on CPUs with bfloat16 instructions, "
                             "mixed_float16 on GPUs, else float32")
    parser.add_argument("--strategy", choices=devices.STRATEGIES, default="default",
                        help="mirrored: all local GPUs; multiworker: several machines via TF_CONFIG")
    parser.add_argument("--g-learning-rate", type=positive_float, default=GENERATOR_LEARNING_RATE)
    parser.add_argument("--d-learning-rate", type=positive_float, default=DISCRIMINATOR_LEARNING_RATE)
    parser.add_argument("--beta-1", type=fraction, default=BETA_1, help="Adam's beta_1")
    parser.add_argument("--label-smoothing", type=fraction, default=LABEL_SMOOTHING)
    parser.add_argument("--checkpoint-every-steps", type=bounded_int(0, 10**9), default=0,
                        help="also save a checkpoint every N steps (0: off)")
    parser.add_argument("--checkpoint-every-minutes", type=non_negative_float, default=CHECKPOINT_EVERY_MINUTES,
                        help=f"also save a checkpoint every M minutes (default {CHECKPOINT_EVERY_MINUTES}; 0: off)")
    parser.add_argument("--eval-every", type=bounded_int(0, MAX_EPOCHS), default=0,
                        help="measure FID, precision and recall every N epochs (evaluate.py; 0: off)")
    parser.add_argument("--eval-samples", type=bounded_int(100, 100_000), default=EVALUATION_SAMPLES,
                        help=f"generated images per evaluation (default {EVALUATION_SAMPLES})")
    parser.add_argument("--deterministic", action="store_true",
                        help="bit-identical results for the same --seed on the same machine (slower)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, only a line per epoch")
    return parser


def main(argv=None):
    """Runs training from the command line; returns the process exit code."""
    parser = make_argument_parser()
    args = parser.parse_args(argv)
    program = os.path.basename(sys.argv[0]) if argv is None else "train.py"
    try:
        if args.deterministic:
            if args.seed is None:
                raise ValueError("--deterministic needs --seed")
            tf.config.experimental.enable_op_determinism()
        strategy = devices.make_strategy(args.strategy)
        # The data order depends on the seed, so a resumed run must shuffle with the seed
        # of the run it continues, which its checkpoint holds.
        seed = args.seed
        if seed is None and not args.fresh:
            seed = stored_seed(args.out_dir)
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % 2**31)
        if args.strategy == "multiworker":
            # Every worker must shuffle alike, since each takes its share of every batch:
            # MultiWorkerMirroredStrategy starts a variable everywhere with the chief's value.
            with strategy.scope():
                seed = int(tf.Variable(seed, dtype=tf.int64, trainable=False).numpy())
        dataset = load_training_dataset(args.batch_size, args.data_dir, args.max_images, seed)
        evaluator = None
        if args.eval_every:
            import evaluate  # only when asked for: it loads the classifier and the test images

            evaluator = evaluate.Evaluator(data_dir=args.data_dir)
        with strategy.scope():
            generator_optimizer, discriminator_optimizer = models.make_optimizers(
                args.g_learning_rate, args.d_learning_rate, args.beta_1,
                loss_scaling=(devices.check_precision(args.precision) == "mixed_float16"))
        train(dataset, args.epochs, generator_optimizer=generator_optimizer,
              discriminator_optimizer=discriminator_optimizer, latent_dim=args.latent_dim,
              out_dir=args.out_dir, seed=seed, fresh=args.fresh, precision=args.precision,
              strategy=strategy, label_smoothing=args.label_smoothing, max_minutes=args.max_minutes,
              checkpoint_every_minutes=args.checkpoint_every_minutes,
              checkpoint_every_steps=args.checkpoint_every_steps, evaluator=evaluator,
              evaluate_every=args.eval_every, evaluation_samples=args.eval_samples,
              verbose=2 if args.quiet else 1)
    except (ValueError, FileNotFoundError) as error:
        print(f"{program}: error: {error}", file=sys.stderr)
        return 2
    except TrainingInterrupted as interruption:
        print(interruption, file=sys.stderr)
        return interruption.exit_code
    except (TrainingDiverged, storage.StorageError) as error:
        print(f"{program}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
