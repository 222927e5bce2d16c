"""Nothing lost: signals, kill -9 at any moment, corrupt checkpoints, NaN, a full disk,
and bit-identical reruns. The tests start real training processes on tiny data."""

import errno
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import imageio.v3 as iio
import keras
import numpy as np
import pytest
import tensorflow as tf

import controller
import data
import display
import models
import run_history
import storage
import train
from conftest import REPO_ROOT, write_fashion_mnist

STEPS_PER_EPOCH = 6  # --max-images 300 --batch-size 50


def _command(data_dir, out_dir, *extra):
    return [sys.executable, "-u", os.path.join(REPO_ROOT, "train.py"), "--data-dir", data_dir,
            "--out-dir", out_dir, "--max-images", "300", "--batch-size", "50", "--seed", "0",
            "--quiet", *extra]


def _start(command):
    return subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_line(process, text, timeout=120):
    """Reads the process's stdout until a line containing `text`; returns the lines read."""
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return lines
    process.kill()
    raise AssertionError(f"never printed {text!r}; got {lines}; stderr: {process.stderr.read()}")


def _check_complete_run(out_dir, epochs):
    """Asserts a finished run of `epochs` epochs: consistent CSV and every file loads."""
    rows = storage.read_csv(os.path.join(out_dir, storage.METRICS_CSV))
    assert [int(row["epoch"]) for row in rows] == list(range(epochs))
    assert all(int(row["steps"]) == STEPS_PER_EPOCH for row in rows)
    assert display.saved_epochs(out_dir) == list(range(epochs))
    for epoch in range(epochs):
        assert iio.imread(os.path.join(out_dir, storage.GRID_PATTERN.format(epoch=epoch))).ndim == 2
    assert iio.imread(os.path.join(out_dir, storage.PROGRESS_GIF), index=None).shape[0] == epochs
    generator = keras.models.load_model(os.path.join(out_dir, storage.GENERATOR_FILE))
    assert generator(tf.zeros([1, train.LATENT_DIM])).shape == (1, 28, 28, 1)
    keras.models.load_model(os.path.join(out_dir, storage.DISCRIMINATOR_FILE))
    latest = tf.train.latest_checkpoint(os.path.join(out_dir, storage.CHECKPOINT_DIR))
    assert int(tf.train.load_variable(latest, "epoch/.ATTRIBUTES/VARIABLE_VALUE")) == epochs
    assert not [name for name in os.listdir(out_dir) if ".partial" in name]


@pytest.mark.parametrize("signal_number, exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_a_checkpoint_and_the_rerun_resumes(signal_number, exit_code, tiny_data_dir, tmp_path):
    out_dir = str(tmp_path / "run")
    process = _start(_command(tiny_data_dir, out_dir, "--epochs", "1000"))
    _wait_for_line(process, "epoch   0/1000")
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == exit_code, stderr
    last_line = stderr.strip().splitlines()[-1]
    assert "checkpoint" in last_line and "run the same command again to resume" in last_line
    assert "Traceback" not in stderr
    stopped_at = int(tf.train.load_variable(tf.train.latest_checkpoint(os.path.join(out_dir, "checkpoints")),
                                            "epoch/.ATTRIBUTES/VARIABLE_VALUE"))
    assert stopped_at >= 1

    epochs = stopped_at + 1
    result = subprocess.run(_command(tiny_data_dir, out_dir, "--epochs", str(epochs)), cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Resuming from" in result.stdout
    _check_complete_run(out_dir, epochs)


KILLER = textwrap.dedent("""
    # Runs train.py's main(), but SIGKILLs itself at the N-th call of a chosen function:
    #   replace           os.replace: a result file is written under its temporary name, not yet renamed
    #   checkpoint-index  TensorFlow's checkpoint index update: a checkpoint's data is written, not yet listed
    #   train-step        just after a train step, before its bookkeeping: mid-epoch
    import os, signal, sys
    sys.path.insert(0, {repo!r})
    import controller, train
    from tensorflow.python.checkpoint import checkpoint_management
    target, count = sys.argv[1], int(sys.argv[2])
    calls = [0]

    def killing(original):
        def wrapper(*args, **kwargs):
            calls[0] += 1
            if calls[0] == count:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(*args, **kwargs)
        return wrapper

    if target == "replace":
        os.replace = killing(os.replace)
    elif target == "checkpoint-index":
        checkpoint_management.update_checkpoint_state_internal = killing(
            checkpoint_management.update_checkpoint_state_internal)
    else:
        controller.Controller.record = killing(controller.Controller.record)
    sys.exit(train.main(sys.argv[3:]))
""")


def test_kill_9_at_many_points_loses_nothing_but_recent_work(tiny_data_dir, tmp_path):
    killer = tmp_path / "killer.py"
    killer.write_text(KILLER.format(repo=REPO_ROOT))
    out_dir = str(tmp_path / "run")
    epochs = 4
    command = _command(tiny_data_dir, out_dir, "--epochs", str(epochs), "--checkpoint-every-steps", "2")
    arguments = command[3:]
    # Kill points spread over the run: mid-epoch, mid-save of a grid / CSV / checkpoint /
    # final model, and while writing the GIF at the very end.
    kill_points = [("train-step", 4), ("replace", 1), ("checkpoint-index", 2), ("replace", 2),
                   ("train-step", 9), ("checkpoint-index", 3), ("replace", 4), ("replace", 3)]
    for target, count in kill_points:
        result = subprocess.run([sys.executable, str(killer), target, str(count)] + arguments,
                                cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
        assert result.returncode in (-signal.SIGKILL, 0), result.stderr
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    _check_complete_run(out_dir, epochs)


def test_corrupt_newest_checkpoint_falls_back_to_the_previous_one(tiny_images_dir_and_run):
    data_dir, out_dir = tiny_images_dir_and_run
    checkpoint_dir = os.path.join(out_dir, "checkpoints")
    newest = tf.train.latest_checkpoint(checkpoint_dir)
    data_file = [name for name in os.listdir(checkpoint_dir)
                 if name.startswith(os.path.basename(newest) + ".data")][0]
    with open(os.path.join(checkpoint_dir, data_file), "r+b") as file:
        file.seek(100)
        file.write(b"\xff" * 2000)
    result = subprocess.run(_command(data_dir, out_dir, "--epochs", "3"), cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"checkpoint {newest} is unreadable" in result.stderr
    assert "trying the one before it" in result.stderr
    assert "Resuming from" in result.stdout and "epoch 1, step 0" in result.stdout
    _check_complete_run(out_dir, 3)


@pytest.fixture
def tiny_images_dir_and_run(tiny_data_dir, tmp_path):
    """A finished 2-epoch run on tiny data, with two checkpoints."""
    out_dir = str(tmp_path / "run")
    result = subprocess.run(_command(tiny_data_dir, out_dir, "--epochs", "2"), cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return tiny_data_dir, out_dir


def _dataset_with_nan_after(images, good_batches, batch_size=50):
    scaled = images[..., None].astype(np.float32) / 127.5 - 1
    scaled[good_batches * batch_size:] = np.nan
    return tf.data.Dataset.from_tensor_slices(scaled).batch(batch_size)


def test_nan_stops_training_and_keeps_the_last_good_state(tmp_path):
    images, _ = data.load_fashion_mnist("train", write_fashion_mnist(tmp_path / "data"))
    out_dir = str(tmp_path / "run")
    with pytest.raises(controller.TrainingDiverged, match="non-finite at epoch 0 step 4") as raised:
        train.train(_dataset_with_nan_after(images, 3), 5, out_dir=out_dir, seed=0,
                    checkpoint_every_steps=2, verbose=0)
    assert "last good checkpoint" in str(raised.value)
    latest = tf.train.latest_checkpoint(os.path.join(out_dir, "checkpoints"))
    assert int(tf.train.load_variable(latest, "step_in_epoch/.ATTRIBUTES/VARIABLE_VALUE")) == 2
    generator = keras.models.load_model(os.path.join(out_dir, storage.GENERATOR_FILE))
    weights = np.concatenate([weight.ravel() for weight in generator.get_weights()])
    assert np.all(np.isfinite(weights))


def test_nan_before_any_checkpoint_touches_no_files(tmp_path):
    images, _ = data.load_fashion_mnist("train", write_fashion_mnist(tmp_path / "data"))
    out_dir = tmp_path / "run"
    out_dir.mkdir()
    (out_dir / "generator.keras").write_text("an older model")
    with pytest.raises(controller.TrainingDiverged, match="before any checkpoint"):
        train.train(_dataset_with_nan_after(images, 0), 5, out_dir=str(out_dir), seed=0, verbose=0)
    assert (out_dir / "generator.keras").read_text() == "an older model"


def test_nan_from_the_command_line_exits_non_zero_with_one_line(tmp_path, monkeypatch, capsys):
    images, _ = data.load_fashion_mnist("train", write_fashion_mnist(tmp_path / "data"))
    monkeypatch.setattr(train, "load_training_dataset", lambda *args: _dataset_with_nan_after(images, 1))
    code = train.main(["--out-dir", str(tmp_path / "run"), "--seed", "0", "--quiet", "--epochs", "2"])
    error_lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert error_lines[-1].startswith("train.py: error: losses became non-finite at epoch 0 step 2")


def test_collapse_warning_needs_several_epochs_of_d_winning_and_g_loss_rising():
    def rows(d_fake, g_loss):
        return [{"epoch": i, "d_fake": f, "g_loss": g} for i, (f, g) in enumerate(zip(d_fake, g_loss))]

    assert run_history.collapse_warning(rows([0.01, 0.02, 0.01], [3.0, 4.0, 5.0])).startswith("warning:")
    assert run_history.collapse_warning(rows([0.01, 0.02], [3.0, 4.0])) is None  # too few epochs
    assert run_history.collapse_warning(rows([0.01, 0.2, 0.01], [3.0, 4.0, 5.0])) is None  # G fought back
    assert run_history.collapse_warning(rows([0.01, 0.02, 0.01], [5.0, 4.0, 3.0])) is None  # G improving


def test_collapse_warning_is_logged_once(tmp_path, monkeypatch, capsys):
    images, _ = data.load_fashion_mnist("train", write_fashion_mnist(tmp_path / "data"))
    monkeypatch.setattr(run_history, "collapse_warning", lambda history: "warning: collapse" if len(history) >= 2 else None)
    train.train(data.make_dataset(images, 100, seed=0), 4, out_dir=str(tmp_path / "run"), seed=0, verbose=2)
    assert capsys.readouterr().out.count("warning: collapse") == 1


def test_deterministic_runs_are_bit_identical(tiny_data_dir, tmp_path):
    histories, weights = [], []
    for name in ("first", "second"):
        out_dir = str(tmp_path / name)
        result = subprocess.run(_command(tiny_data_dir, out_dir, "--epochs", "2", "--deterministic"),
                                cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        rows = storage.read_csv(os.path.join(out_dir, storage.METRICS_CSV))
        histories.append([[row[name] for name in run_history.METRIC_NAMES] for row in rows])
        weights.append(keras.models.load_model(os.path.join(out_dir, storage.GENERATOR_FILE)).get_weights())
    assert histories[0] == histories[1]  # the CSV's decimal strings, to the last digit
    for first, second in zip(*weights):
        np.testing.assert_array_equal(first, second)


def test_failed_write_is_reported_and_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "metrics.csv"
    path.write_text("epoch\n0\n")

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(storage.csv, "DictWriter", full_disk)
    with pytest.raises(storage.StorageError, match="could not write .*metrics.csv: no space left on device"):
        storage.write_csv(str(path), ["epoch"], [{"epoch": 1}])
    assert path.read_text() == "epoch\n0\n"
    assert os.listdir(tmp_path) == ["metrics.csv"]  # no temporary file left behind


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs with room for one checkpoint of the default models, not two.

    Sized from the models, so that the test still fills the disk when their size changes.
    """
    parameters = models.make_generator_model().count_params() + models.make_discriminator_model().count_params()
    checkpoint_megabytes = 3 * 4 * parameters / 2**20  # float32 weights and Adam's two moments
    size = f"size={math.ceil(1.5 * checkpoint_megabytes)}m"
    directory = tmp_path / "small-disk"
    directory.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", size, "tmpfs", str(directory)], capture_output=True)
    if result.returncode != 0:
        pytest.skip("cannot mount a tmpfs here; test_failed_write_is_reported_and_leaves_the_old_file simulates it")
    yield str(directory)
    subprocess.run(["umount", str(directory)], check=True)


def test_full_disk_is_reported_and_the_previous_checkpoint_stays_usable(tiny_data_dir, small_disk, tmp_path):
    out_dir = os.path.join(small_disk, "run")
    result = subprocess.run(_command(tiny_data_dir, out_dir, "--epochs", "3"), cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert "no space left on device" in last_line and "Traceback" not in result.stderr
    assert last_line.startswith("train.py: error: could not")

    # Moved to a disk with room, the run resumes from the last checkpoint that was written.
    roomy_dir = str(tmp_path / "moved")
    shutil.copytree(out_dir, roomy_dir)
    result = subprocess.run(_command(tiny_data_dir, roomy_dir, "--epochs", "3"), cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Resuming from" in result.stdout
    _check_complete_run(roomy_dir, 3)
