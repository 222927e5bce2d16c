"""fit.py with the Keras callbacks: resuming after an interruption, stopping on NaN, the
metrics CSV and the TensorBoard logs, on tiny data."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import display
import fit
import models
import storage
from event_files import read_summaries, steps

# Keras's own saving code triggers this NumPy 2 deprecation; it is not about this project.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _arguments(data_dir, out_dir, epochs):
    return ["--epochs", str(epochs), "--max-images", "300", "--batch-size", "64", "--data-dir", data_dir,
            "--out-dir", out_dir]


class Interrupted(Exception):
    """Stands in for Ctrl-C or a killed process, after an epoch has ended."""


class InterruptAfterEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise Interrupted()


def _with_extra_callback(monkeypatch, callback):
    # After fit's own callbacks, as a kill after the end of the epoch would strike.
    make_callbacks = fit.make_callbacks
    monkeypatch.setattr(fit, "make_callbacks", lambda *args, **kwargs: make_callbacks(*args, **kwargs) + [callback])


def test_rerun_after_an_interruption_resumes_from_the_next_epoch(tiny_data_dir, tmp_path, monkeypatch, capsys):
    out_dir = str(tmp_path / "fit")
    _with_extra_callback(monkeypatch, InterruptAfterEpoch(1))
    with pytest.raises(Interrupted):
        fit.main(_arguments(tiny_data_dir, out_dir, 4) + ["--seed", "7"])
    monkeypatch.undo()
    rows_before = storage.read_csv(os.path.join(out_dir, storage.METRICS_CSV))
    assert [row["epoch"] for row in rows_before] == ["0", "1"]
    assert os.path.isdir(os.path.join(out_dir, storage.BACKUP_DIR))
    assert not os.path.exists(os.path.join(out_dir, storage.GENERATOR_FILE))
    capsys.readouterr()

    # The same command without --seed: the run keeps its seed and goes on at epoch 2.
    assert fit.main(_arguments(tiny_data_dir, out_dir, 4)) == 0
    output = capsys.readouterr().out
    assert "Epoch 3/4" in output and "Epoch 1/4" not in output and "Epoch 2/4" not in output
    rows = storage.read_csv(os.path.join(out_dir, storage.METRICS_CSV))
    assert [row["epoch"] for row in rows] == ["0", "1", "2", "3"]
    assert rows[:2] == rows_before
    assert all(np.isfinite(float(row[name])) for row in rows for name in ("d_loss", "g_loss", "loss"))
    assert display.saved_epochs(out_dir) == [0, 1, 2, 3]
    assert os.path.getsize(os.path.join(out_dir, storage.PROGRESS_GIF)) > 0
    generator = keras.models.load_model(os.path.join(out_dir, storage.GENERATOR_FILE))
    assert generator(np.zeros((1, models.LATENT_DIM), np.float32)).shape == (1, 28, 28, 1)
    # A finished run deletes its backup: the next run starts over.
    assert not os.path.exists(os.path.join(out_dir, storage.BACKUP_DIR))

    # TensorBoard's curves continue over the interruption, each epoch once, with the CSV's values.
    scalars, _ = read_summaries(os.path.join(out_dir, storage.TENSORBOARD_DIR))
    for name in ("d_loss", "g_loss", "d_real", "d_fake"):
        entries = scalars[f"epoch_{name}"]
        assert steps(entries) == [0, 1, 2, 3], name
        np.testing.assert_allclose([value for _, value in entries], [float(row[name]) for row in rows], rtol=1e-6)


def test_another_seed_for_an_interrupted_run_is_refused(tiny_data_dir, tmp_path, monkeypatch, capsys):
    out_dir = str(tmp_path / "fit")
    _with_extra_callback(monkeypatch, InterruptAfterEpoch(0))
    with pytest.raises(Interrupted):
        fit.main(_arguments(tiny_data_dir, out_dir, 3) + ["--seed", "1"])
    monkeypatch.undo()
    capsys.readouterr()
    assert fit.main(_arguments(tiny_data_dir, out_dir, 3) + ["--seed", "2"]) == 2
    assert "started with seed 1, not 2" in capsys.readouterr().err
    # --fresh drops the backup and starts a new run, with a new CSV.
    assert fit.main(_arguments(tiny_data_dir, out_dir, 1) + ["--seed", "2", "--fresh"]) == 0
    assert [row["epoch"] for row in storage.read_csv(os.path.join(out_dir, storage.METRICS_CSV))] == ["0"]


class PoisonGeneratorAfterEpoch(keras.callbacks.Callback):
    """Sets G's weights to NaN at the end of an epoch, so that the next step's losses are NaN."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            for variable in self.model.generator.trainable_variables:
                variable.assign(np.full(variable.shape, np.nan, dtype=variable.dtype))


def test_nan_stops_training_with_one_line_and_keeps_the_last_good_epoch(tiny_data_dir, tmp_path, monkeypatch,
                                                                         capsys):
    out_dir = str(tmp_path / "fit")
    _with_extra_callback(monkeypatch, PoisonGeneratorAfterEpoch(0))
    assert fit.main(_arguments(tiny_data_dir, out_dir, 3) + ["--seed", "0"]) == 1
    error_lines = capsys.readouterr().err.strip().splitlines()
    assert error_lines[-1].startswith("fit.py: error: losses became non-finite")
    assert "NaN or Inf loss encountered at batch 0" in error_lines[-1]
    # Stopped at the first step of epoch 1: no row, grid or model of it.
    assert [row["epoch"] for row in storage.read_csv(os.path.join(out_dir, storage.METRICS_CSV))] == ["0"]
    assert display.saved_epochs(out_dir) == [0]
    assert not os.path.exists(os.path.join(out_dir, storage.GENERATOR_FILE))
    # The backup of epoch 0, from before the poison, is kept, and finite.
    gan = fit.DCGAN(models.make_generator_model(), models.make_discriminator_model())
    gan.compile(*models.make_optimizers())
    gan.load_weights(os.path.join(out_dir, storage.BACKUP_DIR, "latest.weights.h5"))
    assert all(np.all(np.isfinite(weight)) for weight in gan.generator.get_weights())
    assert int(gan.generator_optimizer.iterations) == 5  # 300 images in batches of 64


def test_nan_in_the_data_stops_a_python_fit_at_that_batch(tmp_path):
    images = np.random.default_rng(0).uniform(-1, 1, (128, 28, 28, 1)).astype(np.float32)
    images[64:] = np.nan  # batches 2 and 3 of 32
    gan = fit.DCGAN(models.make_generator_model(), models.make_discriminator_model())
    gan.compile(*models.make_optimizers())
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(32)
    with pytest.raises(RuntimeError, match="NaN or Inf loss encountered at batch 2"):
        gan.fit(dataset, epochs=3, verbose=0, callbacks=fit.make_callbacks(str(tmp_path)))
    assert int(gan.generator_optimizer.iterations) == 3  # the NaN batch was the last step
    assert storage.read_csv(os.path.join(tmp_path, storage.METRICS_CSV)) == []  # no epoch finished
    assert display.saved_epochs(str(tmp_path)) == []
