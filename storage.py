"""Where training writes its files, and how: every file is written atomically.

A file is first written under a temporary name in its own directory and then renamed
over the real name with `os.replace`, which is atomic on POSIX and Windows. A crash,
`kill -9` or a full disk therefore leaves either the old file or the new one, never half
of one that the next run would trip over.

Layout of an output directory (default OUT_DIR):
    image_at_epoch_0000.png ...   one grid of the fixed noise batch per epoch
    metrics.csv                   one row per epoch
    losses.png                    loss and D-output curves (and FID, when evaluated)
    progress.gif                  all epoch grids in order
    generator.keras               the final models
    discriminator.keras
    run_settings.json             the settings of the run, compared when it is resumed
    checkpoints/                  tf.train.CheckpointManager: models, optimizers, counters
    logs/                         TensorBoard event files: each epoch's metrics and grid
    backup/                       fit.py only: keras.callbacks.BackupAndRestore's state
"""

import contextlib
import csv
import errno
import glob
import os
import shutil
import tempfile

OUT_DIR = "training_output"  # relative, so a run never writes outside the directory it starts in
GRID_PATTERN = "image_at_epoch_{epoch:04d}.png"
GRID_GLOB = "image_at_epoch_*.png"
METRICS_CSV = "metrics.csv"
LOSS_PLOT = "losses.png"
PROGRESS_GIF = "progress.gif"
GENERATOR_FILE = "generator.keras"
DISCRIMINATOR_FILE = "discriminator.keras"
CHECKPOINT_DIR = "checkpoints"
SETTINGS_FILE = "run_settings.json"
TENSORBOARD_DIR = "logs"  # `tensorboard --logdir OUT_DIR/logs`
BACKUP_DIR = "backup"  # fit.py's resume state, kept by keras.callbacks.BackupAndRestore
WORKER_CHECKPOINT_PATTERN = ".worker_{worker}_checkpoints"  # a non-chief worker's copy
WORKER_CHECKPOINT_GLOB = ".worker_*_checkpoints"


class StorageError(OSError):
    """A file could not be written; the message says which, why, and what is still intact."""


def describe_os_error(error):
    """Returns a short human reason for an OSError, spelling out a full disk."""
    if getattr(error, "errno", None) == errno.ENOSPC:
        return "no space left on device"
    return error.strerror or str(error)


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; on success renames it over `path`.

    The temporary name keeps the file's extension, since some writers (Keras, imageio)
    choose the format from it. On any error the temporary file is removed, `path` is left
    as it was, and an OSError from the write becomes a StorageError naming `path`.

    Raises:
        StorageError: the file could not be written or renamed.
    """
    directory, name = os.path.split(os.path.abspath(path))
    stem, extension = os.path.splitext(name)
    descriptor, temporary_path = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".partial{extension}", dir=directory)
    os.close(descriptor)
    try:
        yield temporary_path
        # mkstemp creates the file private (0600); give it the permissions of a normal file.
        os.chmod(temporary_path, 0o666 & ~_current_umask())
        os.replace(temporary_path, path)
    except OSError as error:
        raise StorageError(f"could not write {path}: {describe_os_error(error)}") from error
    finally:
        if os.path.exists(temporary_path):
            os.remove(temporary_path)


def remove_partial_files(directory):
    """Deletes temporary files that a killed run left behind in `directory`; returns their names.

    Only names of the form atomic_path() creates (".NAME.RANDOM.partial.EXT") are touched.
    """
    removed = []
    for path in glob.glob(os.path.join(directory, ".*.partial*")):
        if os.path.isfile(path):
            os.remove(path)
            removed.append(os.path.basename(path))
    return removed


def _current_umask():
    umask = os.umask(0)
    os.umask(umask)
    return umask


def write_csv(path, fieldnames, rows):
    """Writes `rows` (dicts) to a CSV file atomically; returns nothing.

    Raises:
        StorageError: the file could not be written.
    """
    with atomic_path(path) as temporary_path:
        with open(temporary_path, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=fieldnames, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
            file.flush()
            os.fsync(file.fileno())


def read_csv(path):
    """Returns the rows of a CSV file as a list of dicts, or [] when it does not exist."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def save_model(model, path):
    """Saves a Keras model to a `.keras` file atomically.

    Raises:
        StorageError: the file could not be written.
    """
    with atomic_path(path) as temporary_path:
        model.save(temporary_path)


def prepare_out_dir(out_dir):
    """Creates the output directory if needed and checks that files can be written in it.

    Returns:
        The absolute path of the directory.

    Raises:
        ValueError: the path is a file, or the directory cannot be created or written.
    """
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"--out-dir {out_dir} exists and is not a directory")
    try:
        os.makedirs(out_dir, exist_ok=True)
        # Creating and removing a probe file is the only reliable test: os.access() says
        # yes to root on a read-only file system.
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as error:
        raise ValueError(f"cannot write to --out-dir {out_dir}: {describe_os_error(error)}") from None
    return out_dir


def remove_results(out_dir):
    """Deletes the files a run wrote in `out_dir` (for --fresh), and no others."""
    paths = glob.glob(os.path.join(out_dir, GRID_GLOB))
    paths += [os.path.join(out_dir, name) for name in (METRICS_CSV, LOSS_PLOT, PROGRESS_GIF, GENERATOR_FILE,
                                                         DISCRIMINATOR_FILE, SETTINGS_FILE)]
    for path in paths:
        if os.path.isfile(path):
            os.remove(path)
    directories = [os.path.join(out_dir, name) for name in (CHECKPOINT_DIR, TENSORBOARD_DIR)]
    directories += glob.glob(os.path.join(out_dir, WORKER_CHECKPOINT_GLOB))
    for directory in directories:
        shutil.rmtree(directory, ignore_errors=True)
