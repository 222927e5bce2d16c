"""The run's state on disk: what a checkpoint holds, and saving and restoring it safely.

A checkpoint holds everything a run needs to continue exactly where it stopped:

    generator, discriminator                    the weights (BatchNorm statistics included)
    generator_optimizer, discriminator_optimizer  Adam's moments, step counters, learning rates
    epoch            epochs completed
    step_in_epoch    steps done in the current epoch
    epoch_totals     sums over the current epoch so far: the four metrics, seconds, images
    noise_seed       the run's seed: with the optimizer's step counter it seeds each step's noise
    fixed_noise      the noise batch behind every epoch grid
    averaged_generator, averaged_images   the average of G's weights and the images it
                     has seen (averaging.py), when the run averages

These names are the checkpoint's format: checkpoints written by earlier versions of the
project use the same names and still resume.

`tf.train.CheckpointManager` keeps the newest CHECKPOINTS_TO_KEEP checkpoints. TensorFlow
writes each one under a temporary name and updates its index file atomically, so a crash
leaves the previous checkpoint intact; a corrupt newest one falls back to the one before.
"""

import sys

import tensorflow as tf

import storage

CHECKPOINTS_TO_KEEP = 3  # older ones are the fallback when the newest is corrupt
TOTALS = ("d_loss", "g_loss", "d_real", "d_fake", "seconds", "images")  # epoch_totals, in order


def _variable_key(name):
    return f"{name}/.ATTRIBUTES/VARIABLE_VALUE"


def read_newest(directory, name):
    """Returns the value of the variable `name` (for example "noise_seed") in the newest
    checkpoint in `directory`, or None when there is none or it cannot be read (restoring
    reports that, and falls back to an older checkpoint)."""
    latest = tf.train.latest_checkpoint(directory)
    if latest is None:
        return None
    try:
        return tf.train.load_variable(latest, _variable_key(name))
    except (tf.errors.OpError, ValueError):
        return None


def stored_seed(directory):
    """Returns the seed of the run whose checkpoints are in `directory`, or None if there are none."""
    seed = read_newest(directory, "noise_seed")
    return None if seed is None else int(seed)


class Checkpoints:
    """The variables of a run's state, and its checkpoints in `directory`.

    Create it inside the strategy's scope: its counters are variables that every replica
    shares.
    """

    def __init__(self, directory, generator, discriminator, generator_optimizer, discriminator_optimizer,
                 seed, num_fixed_noise, extra_objects=None):
        self.directory = directory
        latent_dim = generator.input_shape[-1]
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        # Sums, not means, so that a run resumed mid-epoch still logs the whole epoch's averages.
        self.epoch_totals = tf.Variable(tf.zeros([len(TOTALS)], tf.float64), trainable=False)
        self.noise_seed = tf.Variable(seed, dtype=tf.int64, trainable=False)
        self.fixed_noise = tf.Variable(
            tf.random.stateless_normal([num_fixed_noise, latent_dim], seed=[seed, -1]), trainable=False)
        required = dict(generator=generator, discriminator=discriminator, generator_optimizer=generator_optimizer,
                        discriminator_optimizer=discriminator_optimizer, epoch=self.epoch,
                        step_in_epoch=self.step_in_epoch, epoch_totals=self.epoch_totals,
                        noise_seed=self.noise_seed, fixed_noise=self.fixed_noise)
        # Objects a run added later (the averaged generator): saved from now on, and
        # restored when the checkpoint has them; `restore` says which were missing.
        self.extra_objects = dict(extra_objects or {})
        self.checkpoint = tf.train.Checkpoint(**required, **self.extra_objects)
        self._required_checkpoint = tf.train.Checkpoint(**required)
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=CHECKPOINTS_TO_KEEP)

    def position(self):
        """Returns (epochs completed, steps done in the current epoch) as Python ints."""
        # .numpy(), because int() refuses the mirrored variables of a multi-replica strategy.
        return int(self.epoch.numpy()), int(self.step_in_epoch.numpy())

    def totals(self):
        """Returns the current epoch's sums as a dict keyed by TOTALS."""
        return dict(zip(TOTALS, self.epoch_totals.numpy().tolist()))

    def check_latent_dim(self):
        """Raises ValueError when the newest checkpoint was made for another noise size."""
        saved_noise = read_newest(self.directory, "fixed_noise")
        latent_dim = self.fixed_noise.shape[-1]
        if saved_noise is not None and saved_noise.shape[-1] != latent_dim:
            raise ValueError(
                f"{self.directory} holds a checkpoint for latent dim {saved_noise.shape[-1]}, not {latent_dim}: "
                f"pass --latent-dim {saved_noise.shape[-1]} to resume it, or --fresh or another --out-dir")

    def restore(self):
        """Restores the newest readable checkpoint, falling back to older ones.

        Returns:
            The path restored, or None when there is no checkpoint. `self.missing_extras`
            then names the extra objects the checkpoint did not hold (they keep their
            values).

        Raises:
            ValueError: a checkpoint exists but holds a different architecture.
            StorageError: checkpoints exist but none can be read.
        """
        candidates = list(reversed(self.manager.checkpoints))
        self.missing_extras = []
        for path in candidates:
            try:
                saved = {name.split("/")[0] for name, _ in tf.train.list_variables(path)}
                self.missing_extras = [name for name in self.extra_objects if name not in saved]
                checkpoint = self._required_checkpoint if self.missing_extras else self.checkpoint
                checkpoint.restore(path).assert_existing_objects_matched()
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

        Under a multi-worker strategy saving is collective: every worker must call it at
        the same step.

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

    @property
    def latest(self):
        """The path of the newest checkpoint, or None."""
        return self.manager.latest_checkpoint
