"""The train step, the training loop, resuming, display and the fit() path, on tiny data."""

import os
import re
import subprocess
import sys

import imageio.v3 as iio
import keras
import numpy as np
import PIL.Image
import pytest
import tensorflow as tf

import cli
import controller
import data
import devices
import display
import fit
import generate
import models
import run_history
import run_settings
import storage
import train
from conftest import REPO_ROOT

TINY_BATCH = 64


@pytest.fixture(scope="module")
def tiny_images():
    images, _ = data.load_fashion_mnist("train") if os.path.isdir(data.SYSTEM_DATA_DIR) else (
        np.random.default_rng(0).integers(0, 256, (300, 28, 28), dtype=np.uint8), None)
    return images[:300]


def _weights(model):
    return [variable.numpy().copy() for variable in model.trainable_variables]


@pytest.mark.parametrize("pack", [1, 3])  # 3: D judges packs of images, the last one filled up
def test_one_step_changes_both_models_and_returns_finite_metrics(pack):
    generator = models.make_generator_model(latent_dim=16)
    discriminator = models.make_discriminator_model(pack=pack)
    generator_optimizer, discriminator_optimizer = models.make_optimizers()
    # train_step is one tf.function for all models; it may create variables only on its
    # first trace, so optimizer slots are built first, as train() does.
    generator_optimizer.build(generator.trainable_variables)
    discriminator_optimizer.build(discriminator.trainable_variables)
    before_generator, before_discriminator = _weights(generator), _weights(discriminator)
    real_images = tf.random.uniform([8, 28, 28, 1], -1, 1)
    results = train.train_step(real_images, generator, discriminator, generator_optimizer,
                               discriminator_optimizer, tf.constant(0, tf.int64))
    assert set(results) == {"d_loss", "g_loss", "d_real", "d_fake"}
    assert all(np.isfinite(float(value)) for value in results.values())
    assert 0 < float(results["d_real"]) < 1 and 0 < float(results["d_fake"]) < 1
    for before, model in ((before_generator, generator), (before_discriminator, discriminator)):
        changed = [not np.array_equal(old, new) for old, new in zip(before, _weights(model))]
        assert all(changed), f"{model.name}: some variables did not move"
    assert int(generator_optimizer.iterations) == 1 and int(discriminator_optimizer.iterations) == 1


def _one_step_from(seed, iteration, r1_weight, r1_interval=2):
    """D's weights after one step from weights drawn from `seed`, at optimizer step `iteration`."""
    keras.utils.set_random_seed(seed)
    generator, discriminator = models.make_generator_model(latent_dim=16), models.make_discriminator_model()
    generator_optimizer, discriminator_optimizer = models.make_optimizers()
    generator_optimizer.build(generator.trainable_variables)
    discriminator_optimizer.build(discriminator.trainable_variables)
    for optimizer in (generator_optimizer, discriminator_optimizer):
        optimizer.iterations.assign(iteration)
    real_images = tf.random.stateless_uniform([8, 28, 28, 1], [seed, 1], -1, 1)
    train.train_step(real_images, generator, discriminator, generator_optimizer, discriminator_optimizer,
                     tf.constant(0, tf.int64), r1_weight=r1_weight, r1_interval=r1_interval)
    return _weights(discriminator), _weights(generator)


def test_the_r1_penalty_changes_d_only_on_every_intervalth_step():
    plain_discriminator, plain_generator = _one_step_from(3, 0, r1_weight=0.0)
    penalized_discriminator, penalized_generator = _one_step_from(3, 0, r1_weight=10.0)
    assert any(not np.allclose(a, b) for a, b in zip(plain_discriminator, penalized_discriminator))
    for a, b in zip(plain_generator, penalized_generator):  # G's update never sees R1
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # Step 1 with an interval of 2: lazy regularization skips it.
    plain_discriminator, _ = _one_step_from(3, 1, r1_weight=0.0)
    skipped_discriminator, _ = _one_step_from(3, 1, r1_weight=10.0)
    for a, b in zip(plain_discriminator, skipped_discriminator):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_variant_models_and_r1_train_resume_and_refuse_another_architecture(tiny_images, tmp_path):
    out_dir = str(tmp_path)
    variant = dict(generator_options=dict(upsampling="resize", extra_convolutions=1),
                   discriminator_options=dict(minibatch_stddev=True, spectral_norm=True, head_convolutions=1,
                                              head_filters=None),
                   r1_weight=1.0, r1_interval=2)
    train.train(data.make_dataset(tiny_images, TINY_BATCH, seed=8), 1, out_dir=out_dir, seed=8, verbose=0, **variant)
    history = train.train(data.make_dataset(tiny_images, TINY_BATCH, seed=8), 2, out_dir=out_dir, verbose=0, **variant)
    assert [row["epoch"] for row in history] == [0, 1]
    assert all(np.isfinite(row["d_loss"]) for row in history)
    settings = run_settings.load(out_dir)
    assert settings["r1_weight"] == 1.0 and settings["discriminator_options"]["spectral_norm"] is True
    assert settings["discriminator_options"]["head_convolutions"] == 1
    saved = keras.models.load_model(os.path.join(out_dir, "generator.keras"))
    assert "UpSampling2D" in [type(layer).__name__ for layer in saved.layers]
    # The same run without spectral normalization is another D, though its checkpoint
    # would restore into it: refused, not half-restored.
    with pytest.raises(ValueError, match="trained with discriminator_options"):
        train.train(data.make_dataset(tiny_images, TINY_BATCH, seed=8), 3, out_dir=out_dir, verbose=0,
                    **{**variant, "discriminator_options": dict(minibatch_stddev=True, head_convolutions=1)})
    # The head's width spelled out as D's own is the same model and resumes; another is not.
    same_head = dict(minibatch_stddev=True, spectral_norm=True, head_convolutions=1,
                     head_filters=train.DISCRIMINATOR_FILTERS[-1])
    history = train.train(data.make_dataset(tiny_images, TINY_BATCH, seed=8), 3, out_dir=out_dir, verbose=0,
                          **{**variant, "discriminator_options": same_head})
    assert [row["epoch"] for row in history] == [0, 1, 2]
    assert run_settings.load(out_dir)["discriminator_options"]["head_filters"] is None
    with pytest.raises(ValueError, match=r"trained with discriminator_options head_filters None \(now 8\)"):
        train.train(data.make_dataset(tiny_images, TINY_BATCH, seed=8), 4, out_dir=out_dir, verbose=0,
                    **{**variant, "discriminator_options": {**same_head, "head_filters": 8}})
    # The minibatch feature's groups are part of D: another size is another model.
    assert run_settings.load(out_dir)["discriminator_options"]["minibatch_group_size"] == 4
    with pytest.raises(ValueError, match=r"minibatch_group_size 4 \(now 2\)"):
        train.train(data.make_dataset(tiny_images, TINY_BATCH, seed=8), 4, out_dir=out_dir, verbose=0,
                    **{**variant, "discriminator_options": {**same_head, "minibatch_group_size": 2}})


def test_a_packed_discriminator_trains_resumes_and_refuses_another_pack(tiny_images, tmp_path):
    out_dir = str(tmp_path)
    packed = dict(discriminator_options=dict(filters=(8, 16), pack=3))
    # 300 images in batches of 64: the last batch, 44 images, is no multiple of 3.
    train.train(data.make_dataset(tiny_images, TINY_BATCH, seed=8), 1, out_dir=out_dir, seed=8, verbose=0, **packed)
    history = train.train(data.make_dataset(tiny_images, TINY_BATCH, seed=8), 2, out_dir=out_dir, verbose=0, **packed)
    assert [row["epoch"] for row in history] == [0, 1]
    assert all(np.isfinite(row["d_loss"]) and np.isfinite(row["g_loss"]) for row in history)
    assert run_settings.load(out_dir)["discriminator_options"]["pack"] == 3
    saved = keras.models.load_model(os.path.join(out_dir, "discriminator.keras"))
    assert saved(tiny_images[:6, :, :, None].astype("float32") / 127.5 - 1).shape == (2, 1)
    with pytest.raises(ValueError, match=r"trained with discriminator_options pack 3 \(now 1\)"):
        train.train(data.make_dataset(tiny_images, TINY_BATCH, seed=8), 3, out_dir=out_dir, verbose=0,
                    discriminator_options=dict(filters=(8, 16)))


def test_other_widths_train_and_resume_and_runs_of_earlier_versions_resume_with_the_default_widths(
        tiny_images, tmp_path, capsys):
    # G with a third width: a layer at 28x28 (models.py).
    narrow = dict(generator_options=dict(filters=(16, 8, 4)), discriminator_options=dict(filters=(8, 16)))
    narrow_dir = str(tmp_path / "narrow")
    train.train(data.make_dataset(tiny_images, TINY_BATCH, seed=8), 1, out_dir=narrow_dir, seed=8, verbose=0, **narrow)
    # Given as tuples again, though run_settings.json holds lists: the same models, resumed.
    history = train.train(data.make_dataset(tiny_images, TINY_BATCH, seed=8), 2, out_dir=narrow_dir, verbose=0,
                          **narrow)
    assert [row["epoch"] for row in history] == [0, 1]
    assert run_settings.load(narrow_dir)["generator_options"]["filters"] == [16, 8, 4]
    saved = keras.models.load_model(os.path.join(narrow_dir, "generator.keras"))
    assert saved.get_layer(index=1).units == 7 * 7 * 16  # the Dense projection to 7x7x16
    assert [layer for layer in saved.layers if isinstance(layer, keras.layers.Conv2D)][-1].kernel.shape == (3, 3, 4, 1)

    # Earlier versions recorded no widths and no head: their runs had the default widths
    # and no head, and resume without one.
    old_dir = str(tmp_path / "old")
    headless = dict(discriminator_options=dict(head_convolutions=0))
    train.train(data.make_dataset(tiny_images, TINY_BATCH, seed=8), 1, out_dir=old_dir, seed=8, verbose=2, **headless)
    settings = run_settings.load(old_dir)
    for name in ("generator_options", "discriminator_options"):
        del settings[name]["filters"]
    del settings["discriminator_options"]["head_convolutions"]
    del settings["discriminator_options"]["head_filters"]
    del settings["discriminator_options"]["minibatch_group_size"]
    del settings["discriminator_options"]["pack"]
    run_settings.save(old_dir, settings)
    with pytest.raises(ValueError, match=r"head_convolutions 0 \(now 1\), head_filters None \(now 32\)"):
        train.train(data.make_dataset(tiny_images, TINY_BATCH, seed=8), 2, out_dir=old_dir, verbose=0)
    capsys.readouterr()
    history = train.train(data.make_dataset(tiny_images, TINY_BATCH, seed=8), 2, out_dir=old_dir, verbose=2,
                          **headless)
    assert [row["epoch"] for row in history] == [0, 1]
    assert "Settings changed" not in capsys.readouterr().out
    # ... but not with other widths.
    current = {**settings, "generator_options": {**settings["generator_options"], "filters": (32, 16)}}
    with pytest.raises(ValueError, match="trained with generator_options"):
        run_settings.compare(settings, current, 1, 0)


def test_the_learning_rates_halve_every_half_life_epochs_also_across_a_resume(tiny_images, tmp_path):
    def run(epochs):
        generator_optimizer, discriminator_optimizer = models.make_optimizers(1e-3, 4e-4)
        train.train(data.make_dataset(tiny_images, TINY_BATCH, seed=9), epochs, out_dir=str(tmp_path), seed=9,
                    verbose=0, generator_optimizer=generator_optimizer, discriminator_optimizer=discriminator_optimizer,
                    learning_rate_half_life=2.0)
        return float(generator_optimizer.learning_rate.numpy()), float(discriminator_optimizer.learning_rate.numpy())

    # Epoch e trains at 0.5 ** (e / 2) of the initial rates: epoch 0 at 1, epoch 2 at 0.5.
    assert run(1) == pytest.approx((1e-3, 4e-4))
    assert run(3) == pytest.approx((0.5e-3, 2e-4))
    assert run_settings.load(str(tmp_path))["learning_rate_half_life"] == 2.0
    with pytest.raises(ValueError, match="half-life must be a positive number of epochs"):
        train.train(data.make_dataset(tiny_images, TINY_BATCH, seed=9), 4, out_dir=str(tmp_path), verbose=0,
                    learning_rate_half_life=0)


def test_a_half_life_in_minutes_follows_the_first_epochs_speed_also_across_a_resume(tiny_images, tmp_path, capsys):
    out_dir, minutes = str(tmp_path), 0.5

    def run(epochs):
        generator_optimizer, discriminator_optimizer = models.make_optimizers(1e-3, 4e-4)
        train.train(data.make_dataset(tiny_images, TINY_BATCH, seed=9), epochs, out_dir=out_dir, seed=9, verbose=2,
                    generator_optimizer=generator_optimizer, discriminator_optimizer=discriminator_optimizer,
                    learning_rate_half_life=None, learning_rate_half_life_minutes=minutes)
        return float(generator_optimizer.learning_rate.numpy()), float(discriminator_optimizer.learning_rate.numpy())

    # Epoch 0 measures the speed, at the initial rates.
    assert run(1) == pytest.approx((1e-3, 4e-4))
    assert "halve every" not in capsys.readouterr().out
    # The resumed run takes the speed from epoch 0's row in metrics.csv, not from its own
    # epochs, and from its median step, not its mean: a made-up median making an epoch 6
    # seconds long turns 30 seconds of training into 5 epochs, though the whole epoch is
    # made to have taken 60 seconds (the first step's tracing, a busy minute).
    history = run_history.read(out_dir, 1)
    # The median leaves out the first step's tracing, which dominates so tiny an epoch's mean.
    assert 0 < history[0]["median_step_seconds"] < history[0]["seconds"] / history[0]["steps"]
    history[0]["median_step_seconds"] = 6.0 / history[0]["steps"]
    history[0]["seconds"] = 60.0
    run_history.write(out_dir, history)
    assert run(3) == pytest.approx((1e-3 * 0.5 ** (2 / 5), 4e-4 * 0.5 ** (2 / 5)))
    logged = capsys.readouterr().out
    assert logged.count("halve every 0.5 minutes of training: every 5 epochs, 6.0 s each at the median step of epoch "
                        "0 (the whole epoch took 60.0 s)") == 1, logged
    settings = run_settings.load(out_dir)
    assert settings["learning_rate_half_life"] is None and settings["learning_rate_half_life_minutes"] == minutes

    # Without metrics.csv there is no speed to resume the schedule with.
    os.remove(os.path.join(out_dir, storage.METRICS_CSV))
    with pytest.raises(ValueError, match="holds 3 epochs but no metrics.csv rows"):
        run(4)


def test_a_half_life_in_minutes_is_held_to_its_least_epochs(tiny_images, tmp_path, capsys):
    out_dir, minutes = str(tmp_path), 0.5

    def run(epochs, at_least):
        generator_optimizer, discriminator_optimizer = models.make_optimizers(1e-3, 4e-4)
        train.train(data.make_dataset(tiny_images, TINY_BATCH, seed=9), epochs, out_dir=out_dir, seed=9, verbose=2,
                    generator_optimizer=generator_optimizer, discriminator_optimizer=discriminator_optimizer,
                    learning_rate_half_life=None, learning_rate_half_life_minutes=minutes,
                    learning_rate_min_half_life=at_least)
        return float(generator_optimizer.learning_rate.numpy()), float(discriminator_optimizer.learning_rate.numpy())

    assert run(1, 8.0) == pytest.approx((1e-3, 4e-4))
    # Half a minute at a made-up 6 seconds an epoch is 5 epochs, fewer than 8: every 8.
    history = run_history.read(out_dir, 1)
    history[0]["median_step_seconds"] = 6.0 / history[0]["steps"]
    history[0]["seconds"] = 60.0
    run_history.write(out_dir, history)
    assert run(3, 8.0) == pytest.approx((1e-3 * 0.5 ** (2 / 8), 4e-4 * 0.5 ** (2 / 8)))
    logged = capsys.readouterr().out
    assert logged.count("halve every 0.5 minutes of training: every 5 epochs, 6.0 s each at the median step of epoch "
                        "0 (the whole epoch took 60.0 s); but no faster than every 8 epochs, so every 8") == 1, logged
    assert run_settings.load(out_dir)["learning_rate_min_half_life"] == 8.0
    # A floor below the minutes' epochs changes nothing; the resume says the setting changed.
    assert run(4, 2.0) == pytest.approx((1e-3 * 0.5 ** (3 / 5), 4e-4 * 0.5 ** (3 / 5)))
    assert "learning_rate_min_half_life 8.0 -> 2.0" in capsys.readouterr().out
    for bad in (0.0, -8.0):
        with pytest.raises(ValueError, match=f"least half-life must be a positive number of epochs, got {bad}"):
            run(5, bad)


def test_an_epochs_typical_speed_is_its_median_step():
    totals = {"d_loss": 4.0, "g_loss": 8.0, "d_real": 2.0, "d_fake": 1.0, "seconds": 5.6, "images": 128.0}
    row = run_history.epoch_row(0, 4, totals, [0.1, 0.2, 5.0, 0.3])  # a slow first step
    assert row["median_step_seconds"] == pytest.approx(0.25) and row["seconds"] == 5.6
    assert run_history.epoch_seconds(row, 10) == pytest.approx(2.5)
    # A row from before the median was recorded, or of an epoch this process timed no step
    # of: the mean step.
    assert run_history.epoch_row(0, 4, totals)["median_step_seconds"] == ""
    assert run_history.epoch_seconds(dict(row, median_step_seconds=""), 10) == pytest.approx(14.0)
    assert run_history.epoch_seconds({"seconds": 5.6, "steps": 4}, 10) == pytest.approx(14.0)


@pytest.mark.parametrize("half_lives, message", [
    ((2.0, 10.0), "given twice, 2.0 epochs and 10.0 minutes"),
    ((None, -1.0), "must be a positive number of minutes, got -1.0"),
    ((None, 0.0), "must be a positive number of minutes, got 0.0"),
])
def test_bad_half_lives_in_minutes_are_refused(tiny_images, tmp_path, half_lives, message):
    epochs_half_life, minutes_half_life = half_lives
    with pytest.raises(ValueError, match=message):
        train.train(data.make_dataset(tiny_images, TINY_BATCH), 1, out_dir=str(tmp_path), verbose=0,
                    learning_rate_half_life=epochs_half_life, learning_rate_half_life_minutes=minutes_half_life)
    assert not os.listdir(tmp_path)  # refused before anything was written


def test_the_learning_rate_decay_is_on_by_default_and_none_turns_it_off():
    parser = train.make_argument_parser()
    assert parser.parse_args([]).lr_half_life == cli.HalfLife(train.LEARNING_RATE_HALF_LIFE, "epochs")
    assert train.LEARNING_RATE_HALF_LIFE > 0
    off = parser.parse_args(["--lr-half-life", "none"]).lr_half_life
    assert off.epochs is None and off.minutes is None
    assert parser.parse_args(["--lr-half-life", "20"]).lr_half_life.epochs == 20.0
    in_minutes = parser.parse_args(["--lr-half-life", "21min"]).lr_half_life
    assert in_minutes.minutes == 21.0 and in_minutes.epochs is None


def test_noise_differs_between_steps_and_follows_the_seed():
    images = tf.zeros([4, 28, 28, 1])
    first = devices.sample_noise(images, 10, tf.constant([7, 0], tf.int64))
    assert first.shape == (4, 10)
    np.testing.assert_array_equal(first, devices.sample_noise(images, 10, tf.constant([7, 0], tf.int64)))
    assert not np.array_equal(first, devices.sample_noise(images, 10, tf.constant([7, 1], tf.int64)))


def test_training_writes_grids_checkpoint_models_gif_csv_and_plot(tiny_images, tmp_path):
    out_dir = str(tmp_path / "run")
    dataset = data.make_dataset(tiny_images, TINY_BATCH, seed=1)
    history = train.train(dataset, 2, out_dir=out_dir, seed=1, verbose=0)

    assert [row["epoch"] for row in history] == [0, 1]
    assert all(row["steps"] == 5 for row in history)  # 300 images / 64 = 4 full batches + 1 short
    for name in ("image_at_epoch_0000.png", "image_at_epoch_0001.png", "metrics.csv", "losses.png",
                 "progress.gif", "generator.keras", "discriminator.keras"):
        assert os.path.getsize(os.path.join(out_dir, name)) > 0, name
    assert tf.train.latest_checkpoint(os.path.join(out_dir, "checkpoints"))

    rows = storage.read_csv(os.path.join(out_dir, "metrics.csv"))
    assert [row["epoch"] for row in rows] == ["0", "1"]
    assert all(np.isfinite(float(row[name])) for row in rows for name in run_history.METRIC_NAMES)
    assert float(rows[0]["images_per_second"]) > 0

    generator = keras.models.load_model(os.path.join(out_dir, "generator.keras"))
    assert generator(tf.zeros([2, train.LATENT_DIM])).shape == (2, 28, 28, 1)
    discriminator = keras.models.load_model(os.path.join(out_dir, "discriminator.keras"))
    assert discriminator(tf.zeros([2, 28, 28, 1])).shape == (2, 1)

    grid = iio.imread(os.path.join(out_dir, "image_at_epoch_0001.png"))
    assert grid.dtype == np.uint8 and grid.shape == (2 * (8 * 30 + 2),) * 2
    frames = iio.imread(os.path.join(out_dir, "progress.gif"), index=None)
    assert frames.shape[0] == 2

    # The epoch grid is the generator applied to the stored fixed noise, in inference mode.
    fixed_noise = tf.train.load_variable(tf.train.latest_checkpoint(os.path.join(out_dir, "checkpoints")),
                                         "fixed_noise/.ATTRIBUTES/VARIABLE_VALUE")
    assert fixed_noise.shape == (train.NUM_EXAMPLES_TO_GENERATE, train.LATENT_DIM)
    expected = display.images_to_grid(generator(fixed_noise, training=False).numpy())
    assert np.abs(expected.astype(int) - grid.astype(int)).max() <= 1

    # display_image: epochs count from 0, so EPOCHS - 1 is the last one.
    image = display.display_image(1, out_dir=out_dir)
    assert isinstance(image, PIL.Image.Image) and image.size == grid.shape[::-1]
    np.testing.assert_array_equal(np.asarray(display.display_image(out_dir=out_dir)), grid)
    with pytest.raises(ValueError, match="saved epochs: 0, 1"):
        display.display_image(5, out_dir=out_dir)


def test_rerun_resumes_and_trains_only_the_missing_epochs(tiny_images, tmp_path):
    out_dir = str(tmp_path / "run")
    train.train(data.make_dataset(tiny_images, TINY_BATCH, seed=2), 2, out_dir=out_dir, seed=2, verbose=0)
    first_grid = iio.imread(os.path.join(out_dir, "image_at_epoch_0000.png"))

    generator_optimizer, discriminator_optimizer = models.make_optimizers()
    history = train.train(data.make_dataset(tiny_images, TINY_BATCH, seed=2), 3, out_dir=out_dir,
                          generator_optimizer=generator_optimizer,
                          discriminator_optimizer=discriminator_optimizer, verbose=0)
    assert [row["epoch"] for row in history] == [0, 1, 2]
    # The optimizer state came back: its step counter continues from epoch 2's first step.
    assert int(generator_optimizer.iterations) == 3 * 5
    assert [row["epoch"] for row in storage.read_csv(os.path.join(out_dir, "metrics.csv"))] == ["0", "1", "2"]
    np.testing.assert_array_equal(iio.imread(os.path.join(out_dir, "image_at_epoch_0000.png")), first_grid)
    assert display.saved_epochs(out_dir) == [0, 1, 2]

    # Nothing left to do: the models are kept, nothing is retrained.
    history = train.train(data.make_dataset(tiny_images, TINY_BATCH, seed=2), 3, out_dir=out_dir, verbose=0)
    assert len(history) == 3


def _dataset_as_in_a_new_process(images, seed):
    # tf.data combines a shuffle's seed with TensorFlow's global seed, which train() sets;
    # a new process starts without one, and so does this dataset.
    tf.random.set_seed(None)
    return data.make_dataset(images, TINY_BATCH, seed=seed)


def test_resumed_run_matches_an_uninterrupted_one(tiny_images, tmp_path):
    # Stop after the first step of epoch 1 (time budget), then resume as a new process
    # would (new dataset, new models): every epoch's metrics match a run that never stopped.
    straight = train.train(_dataset_as_in_a_new_process(tiny_images, 3), 2,
                           out_dir=str(tmp_path / "straight"), seed=3, verbose=0)
    interrupted_dir = str(tmp_path / "interrupted")
    train.train(_dataset_as_in_a_new_process(tiny_images, 3), 1, out_dir=interrupted_dir, seed=3, verbose=0)
    train.train(_dataset_as_in_a_new_process(tiny_images, 3), 2, out_dir=interrupted_dir,
                max_minutes=1e-9, verbose=0)
    partial = storage.read_csv(os.path.join(interrupted_dir, "metrics.csv"))
    assert [row["steps"] for row in partial] == ["5", "1"]
    resumed = train.train(_dataset_as_in_a_new_process(tiny_images, 3), 2, out_dir=interrupted_dir, verbose=0)
    assert [row["steps"] for row in resumed] == [5, 5]
    for name in run_history.METRIC_NAMES:
        np.testing.assert_allclose([row[name] for row in resumed], [row[name] for row in straight], rtol=1e-5)


def test_short_last_batch_trains_without_retracing(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, (10, 28, 28), dtype=np.uint8)
    traces_before = train.train_step.experimental_get_tracing_count()
    # The precision probe, measuring again here, traces a step of its own, not this one.
    history = train.train(data.make_dataset(images, 4, seed=0), 1, out_dir=str(tmp_path), seed=0,
                          remeasure_precision=True, verbose=0)
    assert history[0]["steps"] == 3  # 4 + 4 + 2 images
    assert train.train_step.experimental_get_tracing_count() - traces_before == 1


def test_max_minutes_stops_cleanly_and_saves_everything(tiny_images, tmp_path):
    out_dir = str(tmp_path)
    history = train.train(data.make_dataset(tiny_images, TINY_BATCH, seed=4), 50, out_dir=out_dir,
                          seed=4, max_minutes=1e-9, verbose=0)
    assert len(history) == 1 and history[0]["steps"] == 1
    for name in ("image_at_epoch_0000.png", "generator.keras", "discriminator.keras", "progress.gif"):
        assert os.path.exists(os.path.join(out_dir, name))


def test_fresh_starts_over(tiny_images, tmp_path):
    out_dir = str(tmp_path)
    train.train(data.make_dataset(tiny_images, TINY_BATCH, seed=5), 2, out_dir=out_dir, seed=5, verbose=0)
    history = train.train(data.make_dataset(tiny_images, TINY_BATCH, seed=5), 1, out_dir=out_dir,
                          seed=5, fresh=True, verbose=0)
    assert [row["epoch"] for row in history] == [0]
    assert display.saved_epochs(out_dir) == [0]


def test_checkpoint_for_another_latent_dim_is_refused_and_files_kept(tiny_images, tmp_path):
    out_dir = str(tmp_path)
    train.train(data.make_dataset(tiny_images, TINY_BATCH, seed=6), 1, out_dir=out_dir, seed=6, verbose=0)
    before = {name: os.path.getmtime(os.path.join(out_dir, name)) for name in os.listdir(out_dir)}
    with pytest.raises(ValueError, match="latent dim 100, not 32"):
        train.train(data.make_dataset(tiny_images, TINY_BATCH, seed=6), 2, out_dir=out_dir, latent_dim=32, verbose=0)
    assert {name: os.path.getmtime(os.path.join(out_dir, name)) for name in os.listdir(out_dir)} == before


def test_checkpoint_of_another_architecture_is_refused(tiny_images, tmp_path):
    out_dir = str(tmp_path)
    train.train(data.make_dataset(tiny_images, TINY_BATCH, seed=7), 1, out_dir=out_dir, seed=7, verbose=0)
    other_generator = models.make_generator_model(filters=(32, 16))
    with pytest.raises(ValueError, match="does not fit these models"):
        train.train(data.make_dataset(tiny_images, TINY_BATCH, seed=7), 2, out_dir=out_dir,
                    generator=other_generator, discriminator=models.make_discriminator_model(), verbose=0)


@pytest.mark.parametrize("epochs", [0, -1, 2.5, "3", True])
def test_train_rejects_bad_epochs(tiny_images, tmp_path, epochs):
    with pytest.raises(ValueError, match="epochs"):
        train.train(data.make_dataset(tiny_images, TINY_BATCH), epochs, out_dir=str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_fit_path_trains_with_the_same_step_and_saves_grids(tiny_images, tmp_path):
    generator = models.make_generator_model()
    discriminator = models.make_discriminator_model()
    gan = fit.DCGAN(generator, discriminator, seed=0)
    gan.compile(*models.make_optimizers())
    before = _weights(generator)
    history = gan.fit(data.make_dataset(tiny_images, TINY_BATCH, seed=0), epochs=2, verbose=0,
                      callbacks=[fit.GridMonitor(str(tmp_path))])
    assert set(history.history) >= set(run_history.METRIC_NAMES)
    assert all(np.isfinite(history.history["d_loss"]))
    assert not np.array_equal(before[0], _weights(generator)[0])
    assert display.saved_epochs(str(tmp_path)) == [0, 1]
    assert display.make_gif(str(tmp_path)).endswith("progress.gif")


def test_notebook_resume_after_a_kernel_restart_continues_the_runs_data_order(tiny_data_dir, tmp_path):
    # In a notebook the dataset is made again after a restart, without a seed, and the
    # user's own code may have set TensorFlow's global seed: the batches must still be
    # those the interrupted run would have seen.
    def notebook_dataset():
        return train.load_training_dataset(TINY_BATCH, tiny_data_dir, max_images=300)

    straight = train.train(notebook_dataset(), 2, out_dir=str(tmp_path / "straight"), seed=8, verbose=0)
    out_dir = str(tmp_path / "notebook")
    train.train(notebook_dataset(), 1, out_dir=out_dir, seed=8, verbose=0)
    train.train(notebook_dataset(), 2, out_dir=out_dir, max_minutes=1e-9, verbose=0)  # one step of epoch 1
    tf.random.set_seed(1234)  # the restarted kernel's own seed
    resumed = train.train(notebook_dataset(), 2, out_dir=out_dir, verbose=0)
    assert [row["steps"] for row in resumed] == [5, 5]
    for name in run_history.METRIC_NAMES:
        np.testing.assert_allclose([row[name] for row in resumed], [row[name] for row in straight], rtol=1e-5)


def test_run_settings_are_recorded(tiny_images, tmp_path):
    train.train(data.make_dataset(tiny_images, TINY_BATCH), 1, out_dir=str(tmp_path), seed=9, verbose=0)
    settings = run_settings.load(str(tmp_path))
    assert settings["batch_size"] == TINY_BATCH and settings["steps_per_epoch"] == 5
    assert settings["seed"] == 9 and settings["latent_dim"] == train.LATENT_DIM
    assert settings["generator_learning_rate"] == train.GENERATOR_LEARNING_RATE
    assert settings["beta_1"] == train.BETA_1 and settings["label_smoothing"] == train.LABEL_SMOOTHING
    assert settings["beta_2"] == pytest.approx(train.BETA_2)


def test_another_batch_size_at_an_epoch_boundary_continues_and_says_so(tiny_images, tmp_path, capsys):
    out_dir = str(tmp_path)
    train.train(data.make_dataset(tiny_images, TINY_BATCH), 1, out_dir=out_dir, seed=10, verbose=2)
    capsys.readouterr()
    history = train.train(data.make_dataset(tiny_images, 100), 2, out_dir=out_dir, verbose=2)
    assert [row["steps"] for row in history] == [5, 3]  # 300 images: 5 batches of 64, then 3 of 100
    assert "batch_size 64 -> 100" in capsys.readouterr().out
    assert run_settings.load(out_dir)["batch_size"] == 100


def test_another_batch_size_mid_epoch_is_refused_and_files_kept(tiny_images, tmp_path):
    out_dir = str(tmp_path)
    train.train(data.make_dataset(tiny_images, TINY_BATCH), 2, out_dir=out_dir, seed=11, max_minutes=1e-9, verbose=0)
    before = {name: os.path.getmtime(os.path.join(out_dir, name)) for name in os.listdir(out_dir)}
    with pytest.raises(ValueError, match=r"middle of epoch 0 \(step 1 of 5 at batch size 64\).*batch_size 64 -> 100"):
        train.train(data.make_dataset(tiny_images, 100), 2, out_dir=out_dir, verbose=0)
    assert {name: os.path.getmtime(os.path.join(out_dir, name)) for name in os.listdir(out_dir)} == before


def test_a_new_learning_rate_replaces_the_checkpoints(tiny_images, tmp_path, capsys):
    out_dir = str(tmp_path)
    train.train(data.make_dataset(tiny_images, TINY_BATCH), 1, out_dir=out_dir, seed=12, verbose=0)
    generator_optimizer, discriminator_optimizer = models.make_optimizers(generator_learning_rate=1e-4)
    train.train(data.make_dataset(tiny_images, TINY_BATCH), 2, out_dir=out_dir, verbose=2,
                generator_optimizer=generator_optimizer, discriminator_optimizer=discriminator_optimizer)
    # The checkpoint held 5e-4; the run goes on with the rate it was given (decayed for
    # epoch 1 by the default half-life), and says so.
    expected = train.decayed_learning_rate(1e-4, 1, train.LEARNING_RATE_HALF_LIFE)
    assert float(generator_optimizer.learning_rate.numpy()) == pytest.approx(expected)
    assert "generator_learning_rate 0.0005 -> 0.0001" in capsys.readouterr().out


def test_another_seed_for_a_resumed_run_is_refused(tiny_images, tmp_path):
    train.train(data.make_dataset(tiny_images, TINY_BATCH), 1, out_dir=str(tmp_path), seed=13, verbose=0)
    with pytest.raises(ValueError, match="started with seed 13, not 14"):
        train.train(data.make_dataset(tiny_images, TINY_BATCH), 2, out_dir=str(tmp_path), seed=14, verbose=0)


def test_a_checkpoint_of_an_earlier_version_resumes(tiny_images, tmp_path):
    # Earlier versions wrote these names and no run_settings.json: the format is the names.
    generator, discriminator = models.make_generator_model(), models.make_discriminator_model()
    generator_optimizer, discriminator_optimizer = models.make_optimizers()
    generator_optimizer.build(generator.trainable_variables)
    discriminator_optimizer.build(discriminator.trainable_variables)
    old_checkpoint = tf.train.Checkpoint(
        generator=generator, discriminator=discriminator, generator_optimizer=generator_optimizer,
        discriminator_optimizer=discriminator_optimizer, epoch=tf.Variable(1, dtype=tf.int64),
        step_in_epoch=tf.Variable(0, dtype=tf.int64), epoch_totals=tf.Variable(tf.zeros([6], tf.float64)),
        noise_seed=tf.Variable(77, dtype=tf.int64),
        fixed_noise=tf.Variable(tf.random.normal([train.NUM_EXAMPLES_TO_GENERATE, train.LATENT_DIM])))
    tf.train.CheckpointManager(old_checkpoint, str(tmp_path / "checkpoints"), max_to_keep=3).save()

    history = train.train(data.make_dataset(tiny_images, TINY_BATCH), 2, out_dir=str(tmp_path), verbose=0)
    assert [row["epoch"] for row in history] == [1]
    assert run_settings.load(str(tmp_path))["seed"] == 77
    checkpoint = tf.train.latest_checkpoint(str(tmp_path / "checkpoints"))
    assert int(tf.train.load_variable(checkpoint, "epoch/.ATTRIBUTES/VARIABLE_VALUE")) == 2


def _scaled(images):
    return images[..., None].astype(np.float32) / 127.5 - 1


@pytest.mark.parametrize("make_dataset, expected", [
    (lambda images: tf.data.Dataset.from_tensor_slices((_scaled(images), np.zeros(len(images)))).batch(64),
     r"images and labels\?\).*dataset.map\(lambda images, labels: images\)"),
    (lambda images: tf.data.Dataset.from_tensor_slices(images[..., None].astype(np.float32)).batch(64),
     r"as if still in \[0, 255\].*images / 127.5 - 1"),
    (lambda images: tf.data.Dataset.from_tensor_slices(images[..., None].astype(np.float32) / 255).batch(64),
     r"as if scaled to \[0, 1\].*images \* 2 - 1"),
    (lambda images: tf.data.Dataset.from_tensor_slices(images[..., None]).batch(64), r"pixels are uint8"),
    (lambda images: tf.data.Dataset.from_tensor_slices(_scaled(images)[..., 0]).batch(64), r"no channel axis"),
    (lambda images: tf.data.Dataset.from_tensor_slices(_scaled(images)), r"not batches: pass dataset.batch"),
    (lambda images: tf.data.Dataset.from_tensor_slices(tf.image.resize(_scaled(images), [32, 32])).batch(64),
     r"batches of shape \(None, 32, 32, 1\)"),
    (lambda images: tf.data.Dataset.from_tensor_slices(_scaled(images)).batch(64).repeat(), r"finite"),
])
def test_a_dataset_got_wrong_is_refused_with_the_fix(make_dataset, expected, tiny_images, tmp_path):
    with pytest.raises(ValueError, match=expected):
        train.train(make_dataset(tiny_images), 1, out_dir=str(tmp_path / "run"), verbose=0)
    assert os.listdir(tmp_path) == []


IMPORT_SCRIPT = """
import os, sys
sys.path.insert(0, sys.argv[1])
import matplotlib
matplotlib.use("svg")  # a user's own choice, as a notebook makes one
import keras
import cli, controller, data, devices, display, evaluate, fit, generate, models, run_history, run_settings
import summaries, train
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
display.plot_history([{"epoch": 0, "d_loss": 1, "g_loss": 1, "d_real": 0.5, "d_fake": 0.5}], "losses.png")
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
assert keras.mixed_precision.global_policy().name == "float32"
print("unchanged")
"""


def test_importing_the_modules_changes_no_global_state(tmp_path):
    environment = {name: value for name, value in os.environ.items() if name != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-c", IMPORT_SCRIPT, REPO_ROOT], capture_output=True, text=True,
                            env=environment, timeout=300, cwd=str(tmp_path))
    assert result.returncode == 0 and "unchanged" in result.stdout, result.stderr[-3000:]


@pytest.mark.parametrize("module", [train, fit, generate])
def test_help_shows_every_default(module):
    parser = module.make_argument_parser()
    options = [action for action in parser._actions if action.dest != "help"]
    assert parser.format_help().count("(default:") == len(options)


def test_the_run_says_how_long_it_expects_to_take(tiny_images, tmp_path, monkeypatch, capsys):
    import precision_probe

    measured = precision_probe.Choice("float32", {"float32": 64.0}, "measured")
    monkeypatch.setattr(precision_probe, "decide", lambda *arguments, **keywords: measured)
    train.train(data.make_dataset(tiny_images[:256], 64, seed=0), 3, out_dir=str(tmp_path), seed=0, verbose=2)
    assert ("Expected: about 12 seconds of training for 768 images at the 64 img/s measured for float32"
            in capsys.readouterr().out)
    # A resumed run counts only what is left; a time budget shorter than that is named.
    train.train(data.make_dataset(tiny_images[:256], 64, seed=0), 100, out_dir=str(tmp_path), verbose=2,
                max_minutes=0.01)
    assert ("Expected: 0.01 minutes of training (the --max-minutes budget), about 38 of the 24,832 images asked "
            "at the 64 img/s measured for float32 (a busy machine trains fewer); all of them would take about "
            "6 minutes: the same command run again goes on" in capsys.readouterr().out)
    # An asked precision is not timed, but a speed measured here before still counts.
    asked = precision_probe.Choice("float32", {"float32": 64.0}, "asked")
    monkeypatch.setattr(precision_probe, "decide", lambda *arguments, **keywords: asked)
    train.train(data.make_dataset(tiny_images[:256], 64, seed=0), 3, out_dir=str(tmp_path / "asked"), seed=0,
                verbose=2)
    assert ("Expected: about 12 seconds of training for 768 images at the 64 img/s measured earlier on this "
            "machine for float32" in capsys.readouterr().out)
    # One minute is "1 minute": the slowest CPU's budget line reads as a sentence.
    slow = precision_probe.Choice("float32", {"float32": 1.0}, "measured")
    monkeypatch.setattr(precision_probe, "decide", lambda *arguments, **keywords: slow)
    train.train(data.make_dataset(tiny_images[:256], 64, seed=0), 3, out_dir=str(tmp_path / "slow"), seed=0,
                verbose=2, max_minutes=1)
    assert ("Expected: 1 minute of training (the --max-minutes budget), about 60 of the 768 images asked at the "
            "1 img/s measured for float32 (a busy machine trains fewer); all of them would take about 13 minutes"
            in capsys.readouterr().out)


def test_each_epoch_says_how_long_the_rest_takes_at_the_runs_own_speed(tiny_images, tmp_path, monkeypatch, capsys):
    import precision_probe

    # A speed remembered from an earlier run may be stale (measured while the machine was
    # busy): the first line says where it comes from, the epoch lines use this run's speed.
    remembered = precision_probe.Choice("float32", {"float32": 64.0}, "remembered")
    monkeypatch.setattr(precision_probe, "decide", lambda *arguments, **keywords: remembered)
    train.train(data.make_dataset(tiny_images[:256], 64, seed=0), 3, out_dir=str(tmp_path), seed=0, verbose=2)
    output = capsys.readouterr().out
    assert "at the 64 img/s measured earlier on this machine for float32" in output
    epoch_lines = [line for line in output.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 3 and "left" not in epoch_lines[-1]
    # The epochs left train at the speed of the epoch just trained (the first epoch, which
    # traces the step, is slower than the second): two epochs like the first, then one like
    # the second.
    for line, epochs_left in zip(epoch_lines, (2, 1)):
        epoch_seconds = float(re.search(r"  ([0-9.]+) s  ", line).group(1))
        seconds_left = int(re.search(r"about (\d+) seconds? of training left$", line).group(1))
        assert abs(seconds_left - epochs_left * epoch_seconds) <= 1.0, line


def test_hour_makes_the_hours_settings_the_defaults_and_given_flags_still_win():
    default, hour = train.parse_arguments([]), train.parse_arguments(["--hour"])
    assert not default.hour and default.max_minutes == train.MAX_MINUTES and default.epochs == train.EPOCHS
    assert default.generator_filters == train.GENERATOR_FILTERS
    assert hour.hour and {name: getattr(hour, name) for name in train.HOUR} == train.HOUR
    assert hour.batch_size == train.BATCH_SIZE  # what HOUR does not name stays the default
    given = train.parse_arguments(["--max-minutes", "5", "--hour", "--generator-filters", "64,32"])
    assert given.max_minutes == 5.0 and given.generator_filters == (64, 32)
    assert given.discriminator_filters == train.HOUR["discriminator_filters"]


def test_the_default_run_has_a_time_budget_that_none_lifts(tiny_data_dir, tmp_path, monkeypatch):
    budgets = []

    class Stop(Exception):
        pass

    def record_the_budget(*arguments, max_minutes, **keywords):
        budgets.append(max_minutes)
        raise Stop

    monkeypatch.setattr(controller, "Controller", record_the_budget)
    for flags, budget in (([], train.MAX_MINUTES), (["--max-minutes", "none"], None),
                          (["--max-minutes", "None"], None), (["--max-minutes", "2.5"], 2.5)):
        with pytest.raises(Stop):
            train.main(["--data-dir", tiny_data_dir, "--out-dir", str(tmp_path / "out"), *flags])
        assert budgets.pop() == budget, flags
    # train() in a notebook has the command's default too.
    with pytest.raises(Stop):
        train.train(train.load_training_dataset(data_dir=tiny_data_dir, max_images=64), 1, out_dir=str(tmp_path))
    assert budgets == [train.MAX_MINUTES]


def test_an_hour_run_trains_the_hours_models_and_records_its_settings(tiny_data_dir, tmp_path):
    out_dir = str(tmp_path / "hour")
    assert train.main(["--hour", "--epochs", "1", "--max-images", "64", "--data-dir", tiny_data_dir,
                       "--out-dir", out_dir, "--seed", "0", "--precision", "float32", "--quiet"]) == 0
    settings = run_settings.load(out_dir)
    assert settings["generator_options"]["filters"] == [192, 96, 32]
    assert settings["discriminator_options"]["filters"] == [96, 192]
    assert settings["discriminator_options"]["head_convolutions"] == 1
    assert settings["discriminator_options"]["head_filters"] == 32
    assert settings["learning_rate_half_life"] is None and settings["learning_rate_half_life_minutes"] == 21.0
    assert settings["learning_rate_min_half_life"] == 6.0
    assert settings["ema_half_life_images"] == 200_000.0
    assert settings["r1_weight"] == 0.1 and settings["r1_interval"] == train.R1_INTERVAL
    generator = keras.models.load_model(os.path.join(out_dir, storage.GENERATOR_FILE))
    assert generator.output_shape == (None, 28, 28, 1)
    assert any(layer.output.shape[1:] == (28, 28, 32) for layer in generator.layers)


# Each shipped generator is made by one command (pretrained/README.md): the default run for
# generator.keras, --hour for hour_generator.keras. When the models those commands build
# change, the file must be trained again, or it would no longer show what the command makes.
SHIPPED_GENERATOR_FILTERS = {
    "generator.keras": train.GENERATOR_FILTERS,
    "hour_generator.keras": train.HOUR["generator_filters"],
}


@pytest.mark.parametrize("file_name", sorted(SHIPPED_GENERATOR_FILTERS))
def test_each_shipped_generator_has_the_architecture_its_command_builds_today(file_name):
    shipped = keras.models.load_model(os.path.join(REPO_ROOT, "pretrained", file_name))
    built = models.make_generator_model(filters=SHIPPED_GENERATOR_FILTERS[file_name])
    assert [tuple(layer.output.shape) for layer in shipped.layers] == [tuple(layer.output.shape)
                                                                      for layer in built.layers]
    assert shipped.count_params() == built.count_params()
