"""Watching a run: TensorBoard logs that match metrics.csv and continue on resume without a
step twice, and a loss plot and GIF that are up to date after every epoch."""

import io
import os

import imageio.v3 as iio
import numpy as np
import pytest

import checkpoints
import controller
import data
import display
import run_history
import storage
import summaries
import train
from event_files import read_summaries, steps

TINY_BATCH = 64  # 300 images: 5 steps an epoch


@pytest.fixture(scope="module")
def tiny_images():
    images, _ = data.load_fashion_mnist("train") if os.path.isdir(data.SYSTEM_DATA_DIR) else (
        np.random.default_rng(0).integers(0, 256, (300, 28, 28), dtype=np.uint8), None)
    return images[:300]


def _train(images, epochs, out_dir, **options):
    return train.train(data.make_dataset(images, TINY_BATCH, seed=0), epochs, out_dir=out_dir, verbose=0, **options)


def _check_logs_match_the_csv(out_dir, epochs):
    """Every metrics.csv column is a curve with one point per epoch, and each epoch's grid is
    the picture of that step."""
    scalars, images = read_summaries(os.path.join(out_dir, storage.TENSORBOARD_DIR))
    rows = storage.read_csv(os.path.join(out_dir, storage.METRICS_CSV))
    assert [int(row["epoch"]) for row in rows] == list(range(epochs))
    for column in run_history.METRIC_NAMES + ("seconds", "images_per_second"):
        entries = scalars[summaries.SCALAR_TAGS[column]]
        assert steps(entries) == list(range(epochs)), column  # each step once, in order
        # The event files hold float32; the CSV the float64 it was computed in.
        np.testing.assert_allclose([value for _, value in entries], [float(row[column]) for row in rows],
                                   rtol=1e-6, err_msg=column)
    assert steps(images[summaries.GRID_TAG]) == list(range(epochs))
    for epoch, png in images[summaries.GRID_TAG]:
        np.testing.assert_array_equal(iio.imread(io.BytesIO(png)),
                                      iio.imread(os.path.join(out_dir, storage.GRID_PATTERN.format(epoch=epoch))))
    return scalars


def test_tensorboard_logs_match_metrics_csv_and_resumed_runs_continue_them(tiny_images, tmp_path):
    out_dir = str(tmp_path / "run")
    _train(tiny_images, 2, out_dir, seed=0)
    _check_logs_match_the_csv(out_dir, 2)
    # The time budget runs out in the middle of epoch 2: its partial row is in the CSV,
    # but not in TensorBoard, because the resumed run trains the epoch again.
    _train(tiny_images, 4, out_dir, max_minutes=1e-9)
    assert [row["steps"] for row in storage.read_csv(os.path.join(out_dir, storage.METRICS_CSV))] == ["5", "5", "1"]
    assert steps(read_summaries(os.path.join(out_dir, storage.TENSORBOARD_DIR))[0]["losses/d_loss"]) == [0, 1]
    _train(tiny_images, 4, out_dir)
    _check_logs_match_the_csv(out_dir, 4)
    # An event file for each run that finished an epoch: TensorBoard reads them as one
    # run's curves.
    assert len(os.listdir(os.path.join(out_dir, storage.TENSORBOARD_DIR))) == 2


class Killed(Exception):
    """Stands in for kill -9: the run stops on the spot, and no cleanup code runs."""


def test_run_killed_before_the_checkpoint_that_ends_an_epoch_logs_no_step_twice(tiny_images, tmp_path,
                                                                                 monkeypatch):
    # Epoch 1's row reaches metrics.csv, then the run dies before the checkpoint that marks
    # the epoch done. The resumed run trains epoch 1 again and logs it once.
    out_dir = str(tmp_path / "run")
    original_save = checkpoints.Checkpoints.save
    saves = []

    def save_then_die(self):
        saves.append(None)
        if len(saves) == 2:  # the checkpoint at the end of epoch 1
            raise Killed()
        return original_save(self)

    monkeypatch.setattr(checkpoints.Checkpoints, "save", save_then_die)
    with pytest.raises(Killed):
        _train(tiny_images, 3, out_dir, seed=0)
    monkeypatch.undo()
    assert [row["epoch"] for row in storage.read_csv(os.path.join(out_dir, storage.METRICS_CSV))] == ["0", "1"]
    assert steps(read_summaries(os.path.join(out_dir, storage.TENSORBOARD_DIR))[0]["losses/d_loss"]) == [0]

    _train(tiny_images, 3, out_dir)
    _check_logs_match_the_csv(out_dir, 3)


def test_evaluated_epochs_log_fid_precision_and_recall(tiny_images, tmp_path):
    class FakeEvaluator:
        def evaluate(self, generator, num_samples, seed):
            return {"fid": 123.5, "inception_score": 2.5, "precision": 0.25, "recall": 0.75}

    out_dir = str(tmp_path / "run")
    _train(tiny_images, 2, out_dir, seed=0, evaluator=FakeEvaluator(), evaluate_every=2)
    scalars = _check_logs_match_the_csv(out_dir, 2)
    assert scalars["quality/fid"] == [(1, 123.5)]  # only the evaluated epoch
    assert scalars["quality/precision"] == [(1, 0.25)] and scalars["quality/recall"] == [(1, 0.75)]


class Interrupted(Exception):
    pass


def test_loss_plot_and_gif_are_up_to_date_after_every_epoch(tiny_images, tmp_path, monkeypatch):
    # The run stops abruptly in epoch 2, before finish(): the plot and the GIF it left
    # behind already show epochs 0 and 1.
    out_dir = str(tmp_path / "run")
    original_record = controller.Controller.record

    def record_until_epoch_2(self, results):
        if self.epoch == 2:
            raise Interrupted()
        return original_record(self, results)

    monkeypatch.setattr(controller.Controller, "record", record_until_epoch_2)
    with pytest.raises(Interrupted):
        _train(tiny_images, 5, out_dir, seed=0)
    assert not os.path.exists(os.path.join(out_dir, storage.GENERATOR_FILE))  # finish() never ran
    frames = iio.imread(os.path.join(out_dir, storage.PROGRESS_GIF), index=None)
    assert frames.shape[0] == 2
    plot = iio.imread(os.path.join(out_dir, storage.LOSS_PLOT))
    assert plot.ndim == 3 and plot.shape[:2] == (600, 700)
    assert not [name for name in os.listdir(out_dir) if ".partial" in name]  # written atomically


def test_fresh_deletes_the_earlier_logs(tiny_images, tmp_path):
    out_dir = str(tmp_path / "run")
    _train(tiny_images, 2, out_dir, seed=0)
    _train(tiny_images, 1, out_dir, seed=0, fresh=True)
    _check_logs_match_the_csv(out_dir, 1)


def test_without_tensorboard_training_goes_on_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(summaries, "tensorboard_installed", lambda: False)
    writer = summaries.EpochSummaries(str(tmp_path / "logs"))
    writer.write({"epoch": 0, "d_loss": 1.0}, np.zeros((4, 4), dtype=np.uint8))
    writer.close()
    assert "pip install tensorboard" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "logs")


def test_a_run_with_nothing_left_to_train_writes_no_event_file(tiny_images, tmp_path):
    out_dir = str(tmp_path / "run")
    _train(tiny_images, 1, out_dir, seed=0)
    _train(tiny_images, 1, out_dir)
    assert len(os.listdir(os.path.join(out_dir, storage.TENSORBOARD_DIR))) == 1
    assert display.saved_epochs(out_dir) == [0]
