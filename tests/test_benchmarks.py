"""The benchmark scripts still run against the project's current API (they are not run in
full here: that takes minutes to hours and belongs to benchmarks/, not to pass/fail tests)."""

import functools
import os
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT

sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))

import models  # noqa: E402
import profile_step  # noqa: E402
import quality  # noqa: E402
import throughput  # noqa: E402


@pytest.mark.parametrize("module", [profile_step, quality, throughput])
def test_help_shows_every_default(module):
    parser = module.make_argument_parser()
    options = [action for action in parser._actions if action.dest != "help"]
    assert parser.format_help().count("(default:") == len(options)


def test_the_quality_benchmarks_default_run_takes_a_step(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (64, 28, 28), dtype=np.uint8)
    args = quality.make_argument_parser().parse_args(["--seed", "0", "--batch-size", "32", "--precision", "float32"])
    step, generators, dataset = quality.make_default_run(images, args)
    assert np.isfinite(step(next(iter(dataset))))
    assert list(generators) == [""] and generators[""]().output_shape == (None, 28, 28, 1)


def test_the_quality_benchmark_evaluates_every_generator_of_a_run_and_the_baseline():
    images = np.random.default_rng(0).integers(0, 256, (64, 28, 28), dtype=np.uint8)
    args = quality.make_argument_parser().parse_args(
        ["--seed", "0", "--batch-size", "32", "--precision", "float32", "--ema-half-lives", "1000,5000",
         "--show-trained"])
    step, generators, dataset = quality.make_default_run(images, args)
    assert list(generators) == ["", "ema 5000", "trained G"]
    step(next(iter(dataset)))
    trained, averaged = generators["trained G"](), generators[""]()
    assert trained is not averaged and averaged.output_shape == (None, 28, 28, 1)
    # The baseline is today's default before issue 11: the trained G itself, batch 64.
    step, generators, dataset = quality.make_baseline_run(images, args)
    assert list(generators) == [""] and next(iter(dataset)).shape[0] == 64
    assert generators[""]().count_params() == models.make_generator_model(extra_convolutions=0).count_params()
    # It keeps the default's noise size whatever the run under test asks for.
    args.latent_dim = 16
    assert quality.make_baseline_run(images, args)[1][""]().input_shape == (None, models.LATENT_DIM)


def test_the_quality_benchmark_averages_with_every_warm_up_of_one_run():
    images = np.random.default_rng(0).integers(0, 256, (64, 28, 28), dtype=np.uint8)
    args = quality.make_argument_parser().parse_args(
        ["--seed", "0", "--batch-size", "32", "--precision", "float32", "--ema-half-lives", "1000,5000",
         "--ema-warmup", "0.5,0", "--show-trained"])
    step, generators, dataset = quality.make_default_run(images, args)
    assert list(generators) == ["", "ema 1000 warm-up 0", "ema 5000 warm-up 0.5", "ema 5000 warm-up 0",
                                "trained G"]
    initial = [weight.numpy() for weight in generators["trained G"]().trainable_weights]
    step(next(iter(dataset)))

    def moved_towards_trained(label):
        # The fraction of the way from G's start to G after the step that the average went.
        averaged = [weight.numpy() for weight in generators[label]().trainable_weights]
        trained = [weight.numpy() for weight in generators["trained G"]().trainable_weights]
        return (sum(np.sum((a - i) * (t - i)) for a, i, t in zip(averaged, initial, trained))
                / sum(np.sum((t - i) ** 2) for i, t in zip(initial, trained)))

    # 32 images with the half-life capped at half of them: beta = 0.25. Without a warm-up
    # the half-lives of 1000 and 5000 images hold the start: beta = 0.978 and 0.996.
    assert moved_towards_trained("") == pytest.approx(0.75, abs=1e-3)
    assert moved_towards_trained("ema 5000 warm-up 0.5") == pytest.approx(0.75, abs=1e-3)
    assert moved_towards_trained("ema 1000 warm-up 0") == pytest.approx(1 - 0.5 ** (32 / 1000), abs=1e-3)
    assert moved_towards_trained("ema 5000 warm-up 0") == pytest.approx(1 - 0.5 ** (32 / 5000), abs=1e-3)


@pytest.fixture
def built_optimizers(monkeypatch):
    """The list of the optimizers models.make_optimizers builds while the test runs."""
    optimizers = []
    make_optimizers = models.make_optimizers

    def recording_make_optimizers(*arguments, **keywords):
        optimizers.extend(make_optimizers(*arguments, **keywords))
        return tuple(optimizers[-2:])

    monkeypatch.setattr(models, "make_optimizers", recording_make_optimizers)
    return optimizers


def test_the_quality_benchmark_trains_the_issue_11_variants(built_optimizers, monkeypatch):
    discriminators = []
    make_discriminator_model = models.make_discriminator_model

    @functools.wraps(make_discriminator_model)  # the precision's cache key reads its defaults
    def recording_make_discriminator_model(**options):
        discriminators.append(make_discriminator_model(**options))
        return discriminators[-1]

    monkeypatch.setattr(models, "make_discriminator_model", recording_make_discriminator_model)
    images = np.random.default_rng(0).integers(0, 256, (64, 28, 28), dtype=np.uint8)
    args = quality.make_argument_parser().parse_args(
        ["--seed", "0", "--batch-size", "32", "--precision", "float32", "--generator-upsampling", "resize",
         "--generator-extra-convolutions", "1", "--discriminator-extra-convolutions", "1", "--minibatch-stddev",
         "--spectral-norm", "--r1-weight", "1", "--r1-interval", "2", "--lr-half-life", "1", "--show-trained",
         "--beta-2", "0.99", "--latent-dim", "16", "--discriminator-head-convolutions", "1",
         "--minibatch-group-size", "8", "--pack", "2"])
    step, generators, dataset = quality.make_default_run(images, args)
    assert [layer.group_size for layer in discriminators[-1].layers
            if isinstance(layer, models.MinibatchStandardDeviation)] == [8]
    assert [layer.pack for layer in discriminators[-1].layers if isinstance(layer, models.Pack)] == [2]
    assert generators["trained G"]().input_shape == (None, 16)
    assert [float(optimizer.beta_2) for optimizer in built_optimizers] == pytest.approx([0.99, 0.99])
    batches = iter(dataset.repeat())
    assert all(np.isfinite(step(next(batches))) for _ in range(3))
    layer_types = [type(layer).__name__ for layer in generators["trained G"]().layers]
    assert "UpSampling2D" in layer_types and "Conv2DTranspose" not in layer_types


# 6 seconds at 32 images/s are 192 images, 3 epochs; a floor above that replaces it.
@pytest.mark.parametrize("floor_flags, half_life_epochs", [
    ([], 3), (["--lr-min-half-life", "6"], 6), (["--lr-min-half-life", "2"], 3)])
def test_the_quality_benchmark_counts_a_half_life_in_minutes_at_the_clock_rate(built_optimizers, capsys,
                                                                               floor_flags, half_life_epochs):
    images = np.random.default_rng(0).integers(0, 256, (64, 28, 28), dtype=np.uint8)
    args = quality.make_argument_parser().parse_args(
        ["--seed", "0", "--batch-size", "32", "--precision", "float32", "--lr-half-life", "0.1min",
         "--clock-rate", "32", *floor_flags])
    step, generators, dataset = quality.make_default_run(images, args)
    batches = iter(dataset.repeat())
    for _ in range(5):  # the fifth step is the first of epoch 2 (64 images an epoch)
        step(next(batches))
    # Epoch 2 trains at 0.5 ** (2 / half-life).
    decay = 0.5 ** (2 / half_life_epochs)
    rates = [float(optimizer.learning_rate.numpy()) for optimizer in built_optimizers]
    assert rates == pytest.approx([args.g_learning_rate * decay, args.d_learning_rate * decay])
    with pytest.raises(SystemExit) as raised:
        quality.main(["--lr-half-life", "21min", "--configs", "default"])
    assert raised.value.code == 2
    assert "--lr-half-life in minutes needs --clock-rate" in capsys.readouterr().err


class _FakeEvaluator:
    def __init__(self):
        self.calls = []

    def evaluate(self, generator, num_samples, seed):
        self.calls.append(generator)
        return {"fid": 1.0, "precision": 0.5, "recall": 0.5, "inception_score": 2.0}


def test_the_quality_benchmarks_clock_rate_counts_images_not_seconds():
    batches = [np.zeros((10, 28, 28, 1), np.float32)] * 100
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(np.stack(batches))
    evaluator = _FakeEvaluator()
    generators = {"": lambda: "averaged", "trained G": lambda: "trained"}
    # 10 images a step at a nominal 60 images/s: the 1-minute mark is at step 360.
    records = quality.measure("x", (lambda images: 0.0, generators, dataset), 1.0, evaluator, 200, 0, clock_rate=60)
    assert [record["steps"] for record in records] == [360, 360]
    assert [record["config"] for record in records] == ["x", "x (trained G)"]
    assert evaluator.calls == ["averaged", "trained"]


def test_the_quality_benchmark_saves_every_evaluated_generator_with_its_minutes(tmp_path):
    import keras
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices(np.zeros((100, 10, 28, 28, 1), np.float32))
    averaged = models.make_generator_model(latent_dim=8, filters=(8, 4), extra_convolutions=0)
    trained = models.make_generator_model(latent_dim=8, filters=(8, 4), extra_convolutions=0)
    generators = {"": lambda: averaged, "trained G": lambda: trained}
    quality.measure("default", (lambda images: 0.0, generators, dataset), 1.5, _FakeEvaluator(), 200, 0,
                    clock_rate=60, save_dir=str(tmp_path))
    # Marks at 1 minute and at the 1.5-minute budget, each generator saved at each.
    assert sorted(os.listdir(tmp_path)) == ["default_1.5min.keras", "default_1min.keras",
                                            "default_trained_G_1.5min.keras", "default_trained_G_1min.keras"]
    loaded = keras.saving.load_model(str(tmp_path / "default_trained_G_1.5min.keras"))
    noise = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    np.testing.assert_allclose(loaded(noise, training=False), trained(noise, training=False), atol=1e-6)


def test_an_interrupted_quality_benchmark_keeps_the_marks_it_measured(tmp_path, monkeypatch):
    import json

    import tensorflow as tf

    def fake_run(images, args):
        # 10 images a step, counted at 60 images/s: the 1-minute mark is at step 360 and
        # the 2-minute mark would be at 720, but Ctrl-C comes at step 500.
        steps = []

        def step(real_images):
            steps.append(1)
            if len(steps) == 500:
                raise KeyboardInterrupt
            return 0.0

        dataset = tf.data.Dataset.from_tensor_slices(np.zeros((10, 10, 28, 28, 1), np.float32))
        generator = models.make_generator_model(latent_dim=8, filters=(8, 4), extra_convolutions=0)
        return step, {"": lambda: generator}, dataset

    monkeypatch.setattr(quality.data, "load_fashion_mnist", lambda split, data_dir=None: (np.zeros((10, 28, 28)), None))
    monkeypatch.setattr(quality.evaluate, "Evaluator", lambda data_dir=None: _FakeEvaluator())
    monkeypatch.setitem(quality.CONFIGURATIONS, "default", fake_run)
    with pytest.raises(KeyboardInterrupt):
        quality.main(["--configs", "default", "--minutes", "5", "--clock-rate", "60", "--out-dir", str(tmp_path)])
    with open(tmp_path / "quality.json") as file:
        results = json.load(file)
    assert [(record["config"], record["steps"]) for record in results["records"]] == [("default", 360)]
    assert results["settings"]["minutes"] == 5.0
    assert os.path.getsize(tmp_path / "quality.png") > 0
    assert sorted(os.listdir(tmp_path)) == ["default_1min.keras", "quality.json", "quality.png"]  # no partial files


def test_the_throughput_benchmark_builds_and_steps_every_configuration():
    import data

    images = np.random.default_rng(0).integers(0, 256, (512, 28, 28), dtype=np.uint8)
    configurations = throughput.build_configurations(images, data, ("float32",))
    assert [c["name"][:3] for c in configurations] == ["(a)", "(b)", "(c)", "(d)", "(e)"]
    for configuration in configurations:
        configuration["run"]()
        configuration["wait"]()
        assert configuration["flops_per_image"] > 0
