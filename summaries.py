"""TensorBoard logs of a training run: each epoch's metrics as curves, its grid as a picture.

While a run trains, TensorBoard shows what metrics.csv holds, as curves that grow after
every epoch, and the epoch grids on a slider:

    pip install tensorboard          # in requirements.txt
    tensorboard --logdir training_output/logs

The step of every summary is the epoch, counted from 0 as in metrics.csv. The scalars are
the columns of metrics.csv: the losses, D(x) and D(G(z)), seconds and images/s, and FID,
Inception Score, precision and recall for the epochs that were evaluated.

Each epoch is logged once. controller.py writes an epoch's summaries only after the
checkpoint that marks the epoch as done, so an epoch that a resumed run trains again (the
run was killed before that checkpoint, or its time budget ran out mid-epoch) was never
logged, and a resumed run continues the same curves without a second point at any step.
(Only when the newest checkpoint is unreadable, and the run falls back to the one before
it, is an epoch logged again; TensorBoard's data server then shows the newer point.)
"""

import importlib.util
import sys

import numpy as np
import tensorflow as tf

import storage

# Columns of metrics.csv and their tags. The part before the slash is the section that
# TensorBoard groups the curves in.
SCALAR_TAGS = {
    "d_loss": "losses/d_loss",
    "g_loss": "losses/g_loss",
    "d_real": "discriminator/d_real",
    "d_fake": "discriminator/d_fake",
    "images_per_second": "speed/images_per_second",
    "seconds": "speed/seconds",
    "fid": "quality/fid",
    "inception_score": "quality/inception_score",
    "precision": "quality/precision",
    "recall": "quality/recall",
}
GRID_TAG = "samples/epoch_grid"


def tensorboard_installed():
    """Returns True when the tensorboard package is importable: tf.summary needs it to
    write scalars and images."""
    return importlib.util.find_spec("tensorboard") is not None


class EpochSummaries:
    """Writes one run's per-epoch summaries into `log_dir`.

    Nothing is written until the first epoch is: a run that trains no epoch (it was
    already complete) leaves no empty event file behind. Without the tensorboard package
    the writes are skipped, after one warning on stderr.

    Args:
        log_dir: the directory of the event files, created when first needed.
    """

    def __init__(self, log_dir):
        self.log_dir = log_dir
        self._writer = None
        self.enabled = tensorboard_installed()
        if not self.enabled:
            print("warning: the tensorboard package is not installed (pip install tensorboard), so this run "
                  "writes no TensorBoard logs; metrics.csv and losses.png have the same numbers",
                  file=sys.stderr, flush=True)

    def write(self, row, grid=None):
        """Logs one epoch: the numbers of its metrics row and, if given, its grid.

        Args:
            row: a row of metrics.csv (run_history.epoch_row): "epoch" and the columns of
                SCALAR_TAGS; empty or missing columns (FID when not evaluated) are skipped.
            grid: the epoch grid as a uint8 array (height, width), or None.

        Raises:
            StorageError: the log directory could not be made or written. (A full disk is
                not reported here: TensorFlow's writer drops what does not fit without an
                error, and the run's next checkpoint or CSV write reports the full disk.)
        """
        if not self.enabled:
            return
        try:
            if self._writer is None:
                self._writer = tf.summary.create_file_writer(self.log_dir)
            with self._writer.as_default(step=int(row["epoch"])):
                for column, tag in SCALAR_TAGS.items():
                    if row.get(column) not in (None, ""):
                        tf.summary.scalar(tag, float(row[column]))
                if grid is not None:
                    tf.summary.image(GRID_TAG, np.asarray(grid, dtype=np.uint8)[np.newaxis, :, :, np.newaxis])
            # The writer buffers for up to two minutes; a kill -9 would lose that, so flush
            # now, while the epoch's checkpoint is fresh.
            self._writer.flush()
        except (tf.errors.OpError, OSError) as error:
            reason = storage.describe_os_error(error) if isinstance(error, OSError) else error.message
            raise storage.StorageError(f"could not write the TensorBoard logs in {self.log_dir}: "
                                       f"{reason.splitlines()[0] if reason else type(error).__name__}") from None

    def close(self):
        """Flushes and closes the event file, if one was opened."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
