"""The bookkeeping of a training run: everything around the GAN's loop that keeps it alive.

train.py holds the lesson: the step and the loop over epochs and batches. This module is
what makes that loop survive and resume, the way TF Model Garden's Controller runs a
Trainer's steps: it checks the data, chooses the seed, restores the newest checkpoint
(checkpoints.py), compares the run's settings with those it resumes (run_settings.py),
feeds the batches from where the checkpoint stopped, counts every step into the epoch's
sums, stops on a NaN loss, on a signal or when the time budget is spent, and saves
checkpoints on a schedule agreed by all workers (stopping.py). After each epoch it writes
the grid, the metrics row (run_history.py) and a checkpoint, in that order, so that a crash
in between only redoes work; then the epoch's TensorBoard summaries (summaries.py), the
loss plot and the GIF; at the end, the `.keras` models.

    run = controller.Controller(train_step, dataset, epochs, out_dir="training_output")
    with run.scope():                                   # devices, precision, seeded weights
        generator, discriminator = ...
    run.start(generator, discriminator, generator_optimizer, discriminator_optimizer,
              generator_average=generator_average)
    with run.catching_stop_signals():
        for epoch in run.epochs():
            for real_images in run.batches():
                results = run.step(real_images, ...)
                generator_average.update(results["images"])
                run.record(results)
            run.save_grid(generator_average.generator()(run.fixed_noise, training=False))
            run.end_epoch(generator_average.generator())
    history = run.finish(generator_average.generator(), discriminator)
"""

import contextlib
import math
import os
import signal
import sys
import time

import keras
import numpy as np
import tensorflow as tf

import checkpoints
import cli
import data
import devices
import display
import models
import precision_probe
import run_history
import run_settings
import stopping
import storage
import summaries

CHECKPOINT_EVERY_MINUTES = 5.0  # a kill -9 loses at most this much work
EVALUATION_SAMPLES = 10_000  # generated images per FID, as many as the real test images
MAX_EPOCHS = 100_000  # catches typing mistakes (an extra zero or two) before hours are spent


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint and `.keras` files were kept."""


def _duration(seconds):
    """Returns `seconds` in words: "23 minutes", or "40 seconds" under a minute."""
    number, unit = (round(seconds / 60), "minute") if seconds >= 60 else (round(max(seconds, 0)), "second")
    return f"{number} {unit}" + ("" if number == 1 else "s")


class Controller:
    """Runs the bookkeeping of one training run in `out_dir`.

    Args:
        step_function: the train step, a `tf.function` taking (real_images, *arguments)
            and returning a dict with the METRIC_NAMES of run_history.py; `step` runs it.
        dataset: a `tf.data.Dataset` of float32 image batches (batch, 28, 28, 1) in [-1, 1],
            one epoch long. One made by `data.make_dataset` is shuffled from the run's
            seed, so a resumed run sees the batches an uninterrupted one would have.
        epochs: total number of epochs, counting those done in earlier runs.
        out_dir: where grids, metrics, checkpoints and the final models are written.
        seed: seeds weights, noise, data order and the fixed noise; None takes the seed of
            the run being resumed, or draws one and logs it.
        precision: "float32", "mixed_bfloat16" or "mixed_float16"; None measures which is
            fastest here (precision_probe.py) for the project's models of `latent_dim`.
        latent_dim, generator_options, discriminator_options: the noise size and the
            keyword arguments of models.make_generator_model / make_discriminator_model
            (None: the defaults), for the precision probe to time models like the run's.
        remeasure_precision: measure the precision even if it was measured here before.
        strategy: a `tf.distribute.Strategy`; None trains on one device.
        fresh: delete this project's earlier results in `out_dir` and start over.
        max_minutes: stop cleanly, saving everything, after this many minutes of training.
        checkpoint_every_minutes, checkpoint_every_steps: mid-epoch checkpoint intervals
            (0 turns one off); a checkpoint is also saved at the end of every epoch.
        evaluator, evaluate_every, evaluation_samples: an object with
            `evaluate(generator, num_samples, seed)` returning a dict with "fid" (see
            evaluate.py), called every `evaluate_every` epochs on that many samples.
        verbose: 0 silent, 1 progress bar and a line per epoch, 2 the line only.

    Raises:
        ValueError: bad arguments or a dataset training cannot use (data.check_training_dataset).
    """

    def __init__(self, step_function, dataset, epochs, *, out_dir=storage.OUT_DIR, seed=None, precision=None,
                 latent_dim=models.LATENT_DIM, generator_options=None, discriminator_options=None,
                 remeasure_precision=False, strategy=None, fresh=False,
                 max_minutes=None, checkpoint_every_minutes=CHECKPOINT_EVERY_MINUTES,
                 checkpoint_every_steps=0, evaluator=None, evaluate_every=0,
                 evaluation_samples=EVALUATION_SAMPLES, verbose=1):
        if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or not 1 <= epochs <= MAX_EPOCHS:
            raise ValueError(f"epochs must be an integer between 1 and {MAX_EPOCHS}, got {epochs!r}")
        if max_minutes is not None and not max_minutes > 0:
            raise ValueError(f"max_minutes must be positive, got {max_minutes}")
        self.steps_per_epoch, self.batch_size = data.check_training_dataset(dataset)
        self.strategy = strategy or tf.distribute.get_strategy()
        devices.check_batches_fit_replicas(self.strategy, dataset, self.steps_per_epoch)
        self.out_dir = storage.prepare_out_dir(out_dir)
        self.total_epochs = int(epochs)
        self.fresh = fresh
        self.options = dict(max_minutes=max_minutes, checkpoint_every_minutes=checkpoint_every_minutes,
                            checkpoint_every_steps=checkpoint_every_steps)
        self.evaluator, self.evaluate_every, self.evaluation_samples = evaluator, evaluate_every, evaluation_samples
        self.verbose = verbose
        self.log = print if verbose else (lambda *args, **kwargs: None)
        self.is_chief = devices.is_chief(self.strategy)
        # Before the run seeds and builds anything: the probe draws on Keras' random state.
        self.precision_choice = precision_probe.decide(precision, step_function, self.batch_size, latent_dim,
                                                       remeasure_precision, log=self.log if self.is_chief else None,
                                                       generator_options=generator_options,
                                                       discriminator_options=discriminator_options)
        # Every worker computes in the chief's precision.
        self.precision = devices.PRECISIONS[devices.from_chief(
            self.strategy, devices.PRECISIONS.index(self.precision_choice.precision))]
        self.step = devices.distribute_step(self.strategy, step_function)
        # Every worker takes part in saving (a collective operation), but only the chief's
        # copy lands in the checkpoint directory; the others keep theirs apart.
        checkpoint_dir = (storage.CHECKPOINT_DIR if self.is_chief
                          else storage.WORKER_CHECKPOINT_PATTERN.format(worker=devices.worker_id(self.strategy)))
        self.checkpoint_dir = os.path.join(self.out_dir, checkpoint_dir)

        stored_seed = None if fresh else checkpoints.stored_seed(self.checkpoint_dir)
        self.seed = devices.from_chief(self.strategy, cli.choose_seed(seed, stored_seed, log=self.log))
        # The data order is the run's: shuffled from its seed, as in a new process.
        tf.random.set_seed(None)
        reshuffled = data.reshuffled(dataset, self.seed)
        self.dataset = dataset if reshuffled is None else reshuffled

    @contextlib.contextmanager
    def scope(self):
        """Builds models inside: on the run's devices, in its precision, weights from its seed."""
        keras.utils.set_random_seed(self.seed)
        with self.strategy.scope(), devices.dtype_policy(self.precision):
            yield

    def start(self, generator, discriminator, generator_optimizer, discriminator_optimizer,
              num_fixed_noise=64, generator_average=None, **settings):
        """Restores the newest checkpoint in `out_dir`, or begins a new run.

        Args:
            generator, discriminator, generator_optimizer, discriminator_optimizer: what
                the checkpoint holds, built in `scope()`.
            num_fixed_noise: images in each epoch grid.
            generator_average: an `averaging.GeneratorAverage` of G for the checkpoint to
                hold too; a run that diverges exports its averaged generator.
            **settings: more settings of the run to record (such as label_smoothing).

        Raises:
            ValueError: the checkpoint in `out_dir` is of other models, or stopped
                mid-epoch with other batches (see run_settings.compare).
            StorageError: checkpoints exist but none is readable.
        """
        with self.strategy.scope():
            # Keras builds optimizer slots lazily; building them now lets a checkpoint
            # restore them, and lets the step (a tf.function) run without creating variables.
            generator_optimizer.build(generator.trainable_variables)
            discriminator_optimizer.build(discriminator.trainable_variables)
            self.checkpoints = checkpoints.Checkpoints(
                self.checkpoint_dir, generator, discriminator, generator_optimizer, discriminator_optimizer,
                self.seed, num_fixed_noise,
                extra_objects=generator_average.checkpoint_objects() if generator_average is not None else None)
        self.noise_seed, self.fixed_noise = self.checkpoints.noise_seed, self.checkpoints.fixed_noise
        self._models = (generator, discriminator)
        self._generator_average = generator_average
        self._pictures_written = False  # end_epoch or finish brings the GIF and loss plot up to date
        self._epochs_of_training = None  # epochs_of_training's answer, once the first epoch has one
        if self.is_chief:
            storage.remove_partial_files(self.out_dir)
            if self.fresh:
                storage.remove_results(self.out_dir)
        optimizers = (generator_optimizer, discriminator_optimizer)
        # A checkpoint holds the learning rates too; this run's are the ones asked for.
        learning_rates = [float(optimizer.learning_rate.numpy()) for optimizer in optimizers]
        restored, previous_settings = None, None
        if not self.fresh:
            self.checkpoints.check_latent_dim()
            previous_settings = run_settings.load(self.out_dir)
            if self.checkpoints.latest is not None:
                run_settings.check_architecture(previous_settings, settings)
            restored = self.checkpoints.restore()
            if restored and self.checkpoints.missing_extras:
                # A checkpoint of an earlier version, or of a run without averaging.
                generator_average.reset()
                self.log(f"{restored} holds no averaged generator: the average starts from its G", flush=True)
        for optimizer, learning_rate in zip(optimizers, learning_rates):
            optimizer.learning_rate = learning_rate
        self.start_epoch, start_step = self.checkpoints.position()

        # A mixed_float16 run wraps Adam in a LossScaleOptimizer; its betas are the inner Adam's.
        adam = getattr(generator_optimizer, "inner_optimizer", generator_optimizer)
        current = {
            "batch_size": self.batch_size, "steps_per_epoch": self.steps_per_epoch,
            "latent_dim": int(generator.input_shape[-1]), "seed": self.seed, "precision": self.precision,
            "precision_choice": self.precision_choice.describe(),
            "replicas": int(self.strategy.num_replicas_in_sync), "tensorflow": tf.__version__,
            "generator_learning_rate": float(f"{learning_rates[0]:.6g}"),
            "discriminator_learning_rate": float(f"{learning_rates[1]:.6g}"),
            "beta_1": float(adam.beta_1), "beta_2": float(adam.beta_2),
            **settings}
        changes = run_settings.compare(previous_settings if restored else None, current,
                                       self.start_epoch, start_step)
        if self.is_chief:
            run_settings.save(self.out_dir, current)
        self.history = run_history.read(self.out_dir, self.start_epoch)

        if restored:
            self.log(f"Resuming from {restored}: epoch {self.start_epoch}, step {start_step} (seed {self.seed})",
                     flush=True)
        if changes:
            self.log(f"Settings changed since the last run, going on with the new ones: {'; '.join(changes)}",
                     flush=True)
        if self.start_epoch >= self.total_epochs:
            self.log(f"{self.out_dir} already holds {self.start_epoch} epochs; pass a larger epochs to train more, "
                     "or fresh=True")
        else:
            self.log(f"Training epochs {self.start_epoch}-{self.total_epochs - 1}: {self.steps_per_epoch} steps an "
                     f"epoch, precision {self.precision}, {self.strategy.num_replicas_in_sync} replica(s), "
                     f"seed {self.seed}", flush=True)
            expected = self._expected_duration(start_step)
            if expected:
                self.log(expected, flush=True)
        # One iterator over all remaining epochs, fast-forwarded to where the checkpoint
        # stopped: with a dataset of data.make_dataset(), the very batches an
        # uninterrupted run would have seen.
        batches = self.dataset.repeat().skip(self.start_epoch * self.steps_per_epoch + start_step)
        self._batch_iterator = iter(devices.distribute_batches(self.strategy, batches))
        # TensorBoard's logs, the chief's like every result file; end_epoch writes them.
        self._summaries = (summaries.EpochSummaries(os.path.join(self.out_dir, storage.TENSORBOARD_DIR))
                           if self.is_chief else None)

    @contextlib.contextmanager
    def catching_stop_signals(self):
        """Inside, SIGINT and SIGTERM make the loop save a checkpoint after the current step,
        then raise stopping.TrainingInterrupted."""
        with stopping.StopSignals() as stop_signals:
            self._schedule = stopping.Schedule(self.strategy, stop_signals, **self.options)
            yield

    def epochs(self):
        """Yields the numbers of the epochs still to train, ending early when the time
        budget is spent."""
        self._stopped_early = False
        self._warned_collapse = False
        self._grid = None  # the current epoch's grid, once save_grid made it
        for epoch in range(self.start_epoch, self.total_epochs):
            self.epoch = epoch
            self._step_seconds = []  # of each step this process trains, for the epoch's median
            self._progress_bar = None
            if self.verbose == 1:
                self._progress_bar = keras.utils.Progbar(self.steps_per_epoch, stateful_metrics=run_history.METRIC_NAMES,
                                                         interval=0.1 if sys.stdout.isatty() else 30.0)
            yield epoch
            if self._stopped_early:
                return

    def batches(self):
        """Yields this epoch's batches of real images still to train; `record` each step's results."""
        for self._step in range(self.checkpoints.position()[1], self.steps_per_epoch):
            self._step_start = time.perf_counter()
            yield next(self._batch_iterator)
            if self._stopped_early:
                return

    def record(self, results):
        """Counts a step's results into the epoch, then acts on what every worker agreed:
        stop on a signal (after a checkpoint), stop when the budget is spent, or save a
        mid-epoch checkpoint when one is due.

        Args:
            results: the step's dict: the METRIC_NAMES of run_history.py and "images".

        Raises:
            TrainingDiverged: a loss is NaN or infinite (the last good checkpoint is kept).
            stopping.TrainingInterrupted: a signal arrived (a checkpoint was saved first).
        """
        step_seconds = time.perf_counter() - self._step_start
        self._step_seconds.append(step_seconds)
        values = {name: float(results[name]) for name in run_history.METRIC_NAMES}
        if not (math.isfinite(values["d_loss"]) and math.isfinite(values["g_loss"])):
            self._stop_diverged(values)
        self.checkpoints.epoch_totals.assign_add(
            tf.constant([values[name] for name in run_history.METRIC_NAMES] + [step_seconds, float(results["images"])],
                        tf.float64))
        steps_done = self._step + 1
        self.checkpoints.step_in_epoch.assign(steps_done)
        if self._progress_bar is not None:
            self._progress_bar.update(steps_done, list(values.items()))

        decision = self._schedule.after_step(step_seconds, steps_done)
        if decision.signal_number:
            path = self._save_checkpoint()
            name = signal.Signals(decision.signal_number).name
            raise stopping.TrainingInterrupted(
                f"{name}: stopped at epoch {self.epoch} step {steps_done}/{self.steps_per_epoch}; checkpoint {path} "
                "saved; run the same command again to resume", decision.signal_number)
        if decision.budget_spent:
            self._stopped_early = True
        elif decision.save and steps_done < self.steps_per_epoch:  # the end of the epoch saves anyway
            self._save_checkpoint()

    def save_grid(self, images):
        """Saves the epoch's grid of generated images in [-1, 1] (the chief only); end_epoch
        also shows it in TensorBoard."""
        if self.is_chief:
            self._grid = display.images_to_grid(np.asarray(images))
            display.save_picture(self._grid, os.path.join(self.out_dir, storage.GRID_PATTERN.format(epoch=self.epoch)))

    def end_epoch(self, generator):
        """Writes the epoch's metrics row (with FID when due), saves a checkpoint, then the
        epoch's TensorBoard summaries and the loss plot and GIF of the run so far; logs a line."""
        steps_done = self.checkpoints.position()[1]
        row = run_history.epoch_row(self.epoch, steps_done, self.checkpoints.totals(), self._step_seconds)
        if (self.evaluator is not None and self.evaluate_every and not self._stopped_early
                and (self.epoch + 1) % self.evaluate_every == 0):
            row.update(self.evaluator.evaluate(generator, num_samples=self.evaluation_samples, seed=self.seed))
        if not self._stopped_early:
            self.checkpoints.epoch.assign(self.epoch + 1)
            self.checkpoints.step_in_epoch.assign(0)
            self.checkpoints.epoch_totals.assign(tf.zeros_like(self.checkpoints.epoch_totals))
        self.history = run_history.replace_row(self.history, row)
        # The row is written before the checkpoint that marks the epoch as done, so a crash
        # in between only redoes work.
        if self.is_chief:
            run_history.write(self.out_dir, self.history)
        self._save_checkpoint()
        if self.is_chief:
            # TensorBoard gets an epoch only once the checkpoint marks it done: an epoch that
            # a resumed run trains again was never logged, so no step is logged twice.
            if not self._stopped_early:
                self._summaries.write(row, self._grid)
            # The pictures of the run so far, after every epoch, so that an interrupted run
            # has them too. The GIF is rebuilt from all grids: about 0.6 s at 100 epochs.
            self._write_pictures()
        self._grid = None
        if self._stopped_early:
            ending = "  (time budget reached mid-epoch; the same command run again goes on)"
        elif self.epoch + 1 < self.total_epochs:
            ending = f"  about {self._time_left(row['images_per_second'])} of training left"
        else:
            ending = ""
        self.log(run_history.format_row(row, self.total_epochs) + ending, flush=True)
        warning = run_history.collapse_warning(self.history)
        if warning and not self._warned_collapse:
            self.log(warning, flush=True)
            self._warned_collapse = True

    def finish(self, generator, discriminator):
        """Exports the models as `.keras` files, the progress GIF and the loss plot (the chief
        only), and closes the TensorBoard logs. The GIF and the plot are written after every
        epoch too; here they are also made for a run that had no epoch left to train.

        Returns:
            The history: one dict per epoch in `out_dir`, earlier runs included.
        """
        if self._summaries is not None:
            self._summaries.close()
        if self.is_chief:
            self._export_models(generator, discriminator)
            if not self._pictures_written:
                self._write_pictures()
            self.log(f"Saved {storage.GENERATOR_FILE}, {storage.DISCRIMINATOR_FILE}, {storage.PROGRESS_GIF} and "
                     f"{storage.LOSS_PLOT} in {self.out_dir}", flush=True)
        return self.history

    def epochs_of_training(self, minutes, at_least=None):
        """Returns how many epochs `minutes` of training take at the speed of the run's first
        epoch, to 0.01 epochs, but no fewer than `at_least` epochs (None: no floor), or None
        while that epoch trains; works it out and logs it once.

        The speed is that of the first epoch's typical step, its median from its row in
        metrics.csv, timed as the --max-minutes budget times steps: the first step's tracing
        or a minute of other work on the machine does not shorten the run's whole schedule.
        A resumed run, even on another machine, keeps the schedule it started with, and
        every worker takes the chief's (only the chief writes metrics.csv: another worker
        may resume with none).

        Raises:
            ValueError: epochs are done but the chief's metrics.csv lists none to take the
                speed from.
        """
        if self._epochs_of_training is not None:
            return max(self._epochs_of_training, at_least or 0)
        if self.epoch == 0:
            return None
        hundredths = 0  # none known here
        if self.history:
            first = self.history[0]
            epoch_seconds = run_history.epoch_seconds(first, self.steps_per_epoch)
            hundredths = round(cli.HalfLife(minutes, "minutes").in_epochs(epoch_seconds) * 100)
        # Every worker joins the chief's broadcast, rows or none: one that raised here alone
        # would leave the others waiting in it.
        hundredths = devices.from_chief(self.strategy, hundredths)
        if not hundredths:
            raise ValueError(f"{self.out_dir} holds {self.epoch} epochs but no {storage.METRICS_CSV} rows to "
                             "measure their speed: give the learning rate's half-life in epochs to resume")
        self._epochs_of_training = hundredths / 100
        if self.history:
            floor = ""
            if at_least is not None and self._epochs_of_training < at_least:
                floor = f"; but no faster than every {at_least:g} epochs, so every {at_least:g}"
            self.log(f"The learning rates halve every {minutes:g} minutes of training: every "
                     f"{self._epochs_of_training:g} epochs, {epoch_seconds:.1f} s each at the median step of epoch "
                     f"{first['epoch']} (the whole epoch took {first['seconds']:.1f} s){floor}", flush=True)
        return max(self._epochs_of_training, at_least or 0)

    def _expected_duration(self, start_step):
        """Returns a line saying how long the training left should take, from the speed the
        precision probe measured or remembered, or None when it has none (a precision was
        given, and never measured on this machine)."""
        rate = self.precision_choice.images_per_second.get(self.precision)
        if not rate:
            return None
        # A remembered speed was measured by an earlier run, perhaps while the machine was
        # busier or idler than now: the epoch lines give this run's own estimate.
        measured = "measured" if self.precision_choice.how == "measured" else "measured earlier on this machine"
        steps_left = (self.total_epochs - self.start_epoch) * self.steps_per_epoch - start_step
        images_left = steps_left * self.batch_size
        minutes = images_left / rate / 60
        budget = self.options["max_minutes"]
        if budget and budget < minutes:
            unit = "minute" if budget == 1 else "minutes"
            return (f"Expected: {budget:g} {unit} of training (the --max-minutes budget), about "
                    f"{budget * 60 * rate:,.0f} of the {images_left:,} images asked at the {rate:.0f} img/s "
                    f"{measured} for {self.precision} (a busy machine trains fewer); all of them would take "
                    f"about {_duration(minutes * 60)}: the same command run again goes on, or --max-minutes none "
                    "trains them in one go")
        return (f"Expected: about {_duration(minutes * 60)} of training for {images_left:,} images at the "
                f"{rate:.0f} img/s {measured} for {self.precision} (a busy machine takes longer)")

    def _time_left(self, images_per_second):
        """Returns, in words, how long the epochs after the current one should train at
        `images_per_second`, the speed of the epoch just trained (within the time budget, if
        any). Unlike an average over the whole run, it follows a change in the machine's load
        from one epoch to the next."""
        steps_left = (self.total_epochs - self.epoch - 1) * self.steps_per_epoch
        seconds_left = steps_left * self.batch_size / max(images_per_second, 1e-9)
        return _duration(min(seconds_left, self._schedule.budget_seconds - self._schedule.train_seconds))

    def _write_pictures(self):
        if display.saved_epochs(self.out_dir):
            display.make_gif(self.out_dir)
        if self.history:
            display.plot_history(self.history, os.path.join(self.out_dir, storage.LOSS_PLOT))
        self._pictures_written = True

    def _save_checkpoint(self):
        path = self.checkpoints.save()
        self._schedule.checkpoint_saved()
        return path

    def _export_models(self, generator, discriminator):
        storage.save_model(generator, os.path.join(self.out_dir, storage.GENERATOR_FILE))
        storage.save_model(discriminator, os.path.join(self.out_dir, storage.DISCRIMINATOR_FILE))

    def _stop_diverged(self, values):
        where = f"epoch {self.epoch} step {self._step + 1}"
        losses = ", ".join(f"{name} {value:.4g}" for name, value in values.items())
        advice = "try a lower learning rate, --precision float32, or another --seed"
        if self.checkpoints.latest is None:
            raise TrainingDiverged(f"losses became non-finite at {where} ({losses}) before any checkpoint "
                                   f"was saved; existing files in {self.out_dir} are untouched; {advice}")
        restored = self.checkpoints.restore()
        if self.is_chief:
            generator, discriminator = self._models
            if self._generator_average is not None:
                generator = self._generator_average.generator()
            self._export_models(generator, discriminator)
        raise TrainingDiverged(f"losses became non-finite at {where} ({losses}); the last good checkpoint "
                               f"{restored} is kept and exported to {storage.GENERATOR_FILE} and "
                               f"{storage.DISCRIMINATOR_FILE}; {advice}")
