"""generate.py: images, grids, array files and latent walks from generators this project saved,
and one line with exit code 2, before anything is written, for every kind of bad input."""

import math
import os
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest

import data
import devices
import display
import evaluate
import generate
import models
import train
from conftest import REPO_ROOT

# Keras's own saving code triggers this NumPy 2 deprecation; it is not about this project.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """Untrained default models saved as .keras files: a generator in every precision
    training uses, and a discriminator."""
    directory = tmp_path_factory.mktemp("models")
    paths = {}
    for precision in devices.PRECISIONS:
        with devices.dtype_policy(precision):
            generator = models.make_generator_model()
        paths[precision] = str(directory / f"generator_{precision}.keras")
        generator.save(paths[precision])
    paths["discriminator"] = str(directory / "discriminator.keras")
    models.make_discriminator_model().save(paths["discriminator"])
    return paths


@pytest.fixture(scope="module")
def generator(saved_models):
    return generate.load_generator(saved_models["float32"])


def test_pngs_are_the_images_of_evaluate_and_the_same_seed_gives_the_same_pictures(generator, tmp_path):
    paths = generate.save_images(generator, 5, str(tmp_path / "first"), seed=3)
    assert [os.path.basename(path) for path in paths] == [f"image_00000{index}.png" for index in range(5)]
    pictures = np.stack([iio.imread(path) for path in paths])
    assert pictures.shape == (5, 28, 28) and pictures.dtype == np.uint8
    np.testing.assert_array_equal(pictures, display.to_pixels(evaluate.generate_images(generator, 5, seed=3)[..., 0]))
    again = [iio.imread(path) for path in generate.save_images(generator, 5, str(tmp_path / "again"), seed=3)]
    np.testing.assert_array_equal(np.stack(again), pictures)
    other = [iio.imread(path) for path in generate.save_images(generator, 5, str(tmp_path / "other"), seed=4)]
    assert not np.array_equal(np.stack(other), pictures)


def test_grid_is_square_ish_and_made_like_the_epoch_grids(generator, tmp_path):
    path = generate.save_grid(generator, 10, str(tmp_path), seed=0)
    assert os.path.basename(path) == generate.GRID_FILE
    grid = iio.imread(path)
    columns = math.ceil(math.sqrt(10))  # 4 columns, 3 rows
    assert grid.shape == (2 * (3 * 30 + 2), 2 * (columns * 30 + 2))
    np.testing.assert_array_equal(grid, display.images_to_grid(evaluate.generate_images(generator, 10, seed=0),
                                                                columns=columns))
    assert os.listdir(tmp_path) == [generate.GRID_FILE]  # written atomically: no temporary file left


def test_npz_holds_uint8_images_and_batching_changes_nothing(generator, tmp_path):
    # 1,100 images in batches of 500 (500, 500, 100), then in one batch of 1,100.
    path = generate.save_npz(generator, 1100, str(tmp_path / "batched"), seed=1, batch_size=500)
    with np.load(path) as arrays:
        images, seed = arrays["images"], int(arrays["seed"])
    assert images.shape == (1100, 28, 28) and images.dtype == np.uint8 and seed == 1
    with np.load(generate.save_npz(generator, 1100, str(tmp_path / "whole"), seed=1, batch_size=1100)) as arrays:
        # The same noise; only the rounding of another batch shape may move a pixel by one.
        assert np.abs(arrays["images"].astype(int) - images).max() <= 1
    np.testing.assert_array_equal(images[:7], display.to_pixels(evaluate.generate_images(generator, 7, seed=1)[..., 0]))


def test_generate_batches_hold_one_batch_at_a_time_and_add_up_to_generate_images(generator):
    batches = list(evaluate.generate_batches(generator, 1100, seed=2, batch_size=500))
    assert [len(batch) for batch in batches] == [500, 500, 100]
    np.testing.assert_array_equal(np.concatenate(batches), evaluate.generate_images(generator, 1100, seed=2))


def test_slerp_keeps_the_endpoints_and_the_norm():
    start, end = np.zeros(4), np.zeros(4)
    start[0], end[1] = 2.0, 2.0  # orthogonal, of equal norm
    path = generate.slerp(start, end, np.linspace(0, 1, 5))
    np.testing.assert_allclose(path[0], start, atol=1e-6)
    np.testing.assert_allclose(path[-1], end, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(path, axis=1), 2.0, rtol=1e-6)  # a line would dip to 1.41
    # Parallel vectors: the arc is the line between them, without dividing by zero.
    np.testing.assert_allclose(generate.slerp(start, 3 * start, [0.5])[0], 2 * start, rtol=1e-6)


def test_latent_walk_passes_through_the_seeds_images_and_loops(generator, tmp_path):
    gif_path, strip_path = generate.save_latent_walk(generator, 3, str(tmp_path), steps=4, seed=5)
    frames = generate.latent_walk(generator, 3, steps=4, seed=5)
    assert frames.shape == (12, 28, 28, 1)
    # Every `steps` frames the walk reaches the next point: the seed's images 0, 1 and 2.
    np.testing.assert_allclose(frames[::4], evaluate.generate_images(generator, 3, seed=5), atol=1e-5)
    assert iio.imread(gif_path, index=None).shape[0] == 12
    strip = iio.imread(strip_path)
    assert strip.shape == (2 * (3 * 30 + 2), 2 * (4 * 30 + 2))  # a row from each point to the next
    np.testing.assert_array_equal(strip, display.images_to_grid(frames, columns=4))
    # Same seed, same pictures.
    again_gif, again_strip = generate.save_latent_walk(generator, 3, str(tmp_path / "again"), steps=4, seed=5)
    np.testing.assert_array_equal(iio.imread(again_strip), strip)
    np.testing.assert_array_equal(iio.imread(again_gif, index=None), iio.imread(gif_path, index=None))


@pytest.mark.parametrize("precision", devices.PRECISIONS)
def test_generators_of_every_precision_generate_float32_images(saved_models, precision, tmp_path):
    generator = generate.load_generator(saved_models[precision])
    images = evaluate.generate_images(generator, 3, seed=0)
    assert images.dtype == np.float32 and images.shape == (3, 28, 28, 1)
    assert np.all(np.abs(images) <= 1.0)
    assert generate.main([saved_models[precision], "--grid", "--num-images", "4", "--out-dir", str(tmp_path)]) == 0
    assert iio.imread(os.path.join(tmp_path, generate.GRID_FILE)).shape == (2 * 62, 2 * 62)


def test_a_generator_that_train_py_saved_works_from_the_command_line(tiny_data_dir, tmp_path, capsys):
    dataset = train.load_training_dataset(64, tiny_data_dir, max_images=300, seed=0)
    train.train(dataset, 1, out_dir=str(tmp_path / "run"), seed=0, verbose=0)
    generator_path = str(tmp_path / "run" / "generator.keras")
    out_dir = str(tmp_path / "generated")
    assert generate.main([generator_path, "--num-images", "3", "--out-dir", out_dir]) == 0
    assert sorted(os.listdir(out_dir)) == ["image_000000.png", "image_000001.png", "image_000002.png"]
    assert generate.main([generator_path, "--npz", "--num-images", "3", "--out-dir", out_dir]) == 0
    assert generate.main([generator_path, "--interpolate", "2", "--steps", "3", "--out-dir", out_dir]) == 0
    assert iio.imread(os.path.join(out_dir, generate.WALK_GIF), index=None).shape[0] == 6
    output = capsys.readouterr().out
    assert "Wrote 3 images" in output and generate.WALK_STRIP in output


# ----------------------------------------------------------------------------------------
# Bad input: one line, exit code 2, nothing written.

def _assert_one_line_error(capsys, expected_text):
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("generate.py: error:") and expected_text in lines[0], lines[0]


@pytest.mark.parametrize("make_input, expected_text", [
    (lambda tmp_path, models_: str(tmp_path / "missing.keras"), "not found"),
    (lambda tmp_path, models_: str(tmp_path), "is a directory"),
    (lambda tmp_path, models_: _write(tmp_path / "notes.txt", "hello"), "not a Keras model file"),
    (lambda tmp_path, models_: _write(tmp_path / "fake.keras", "not a zip"), "not a Keras model file"),
    (lambda tmp_path, models_: models_["discriminator"], "is this the generator?"),
])
def test_a_file_that_is_not_a_generator_is_one_line_and_exit_2(make_input, expected_text, saved_models,
                                                               tmp_path, capsys):
    out_dir = tmp_path / "out"
    assert generate.main([make_input(tmp_path, saved_models), "--out-dir", str(out_dir)]) == 2
    _assert_one_line_error(capsys, expected_text)
    assert not out_dir.exists()


def _write(path, text):
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("arguments, expected_text", [
    (["--num-images", "0"], "--num-images"),
    (["--num-images", "-5"], "--num-images"),
    (["--num-images", str(10**7)], "must be between 1 and 1000000"),
    (["--num-images", "many"], "expected a whole number"),
    (["--grid", "--num-images", "20000"], "--grid holds at most 10000"),
    (["--grid", "--npz"], "not allowed with argument"),
    (["--interpolate", "1"], "--interpolate"),
    (["--steps", "0"], "--steps"),
    (["--seed", "-1"], "--seed"),
])
def test_bad_numbers_are_one_line_and_exit_2(arguments, expected_text, saved_models, tmp_path, capsys):
    out_dir = tmp_path / "out"
    with pytest.raises(SystemExit) as raised:
        generate.main([saved_models["float32"], "--out-dir", str(out_dir)] + arguments)
    assert raised.value.code == 2
    _assert_one_line_error(capsys, expected_text)
    assert not out_dir.exists()


def test_an_output_path_that_is_a_file_is_one_line_and_exit_2(saved_models, tmp_path, capsys):
    out_file = tmp_path / "results"
    out_file.write_text("keep me")
    for mode in ([], ["--grid"], ["--npz"], ["--interpolate", "2"]):
        assert generate.main([saved_models["float32"], "--out-dir", str(out_file)] + mode) == 2
        _assert_one_line_error(capsys, "is not a directory")
    assert out_file.read_text() == "keep me"


def test_without_the_shipped_generator_one_line_says_how_to_make_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(generate, "PRETRAINED_GENERATOR", str(tmp_path / "pretrained" / "generator.keras"))
    assert generate.main(["--out-dir", str(tmp_path / "out")]) == 2
    _assert_one_line_error(capsys, "python train.py --seed 0")
    assert not (tmp_path / "out").exists()
    with pytest.raises(FileNotFoundError, match="pretrained/README.md"):
        generate.load_generator()


def test_the_shipped_generator_is_the_default(saved_models, tmp_path, monkeypatch):
    monkeypatch.setattr(generate, "PRETRAINED_GENERATOR", saved_models["float32"])
    assert generate.main(["--num-images", "2", "--out-dir", str(tmp_path)]) == 0
    assert sorted(os.listdir(tmp_path)) == ["image_000000.png", "image_000001.png"]


@pytest.mark.parametrize("call, expected_text", [
    (lambda generator, out: generate.save_images(generator, 0, out), "num_images"),
    (lambda generator, out: generate.save_images(generator, True, out), "num_images"),
    (lambda generator, out: generate.save_npz(generator, generate.MAX_NUM_IMAGES + 1, out), "num_images"),
    (lambda generator, out: generate.save_grid(generator, generate.MAX_GRID_IMAGES + 1, out), "grid"),
    (lambda generator, out: generate.save_latent_walk(generator, 1, out), "num_points"),
    (lambda generator, out: generate.save_latent_walk(generator, 2, out, steps=0), "steps"),
    (lambda generator, out: generate.save_grid(models.make_discriminator_model(), 4, out), "is this the generator"),
])
def test_python_functions_raise_value_error_and_write_nothing(call, expected_text, generator, tmp_path):
    out_dir = str(tmp_path / "out")
    with pytest.raises(ValueError, match=expected_text):
        call(generator, out_dir)
    assert not os.path.exists(out_dir)


def test_command_line_end_to_end(saved_models, tmp_path):
    # A real process: the script's own start-up, exit codes and stderr, with no traceback.
    out_dir = str(tmp_path / "out")
    result = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "generate.py"), saved_models["float32"],
                             "--grid", "--num-images", "16", "--out-dir", out_dir],
                            capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert iio.imread(os.path.join(out_dir, generate.GRID_FILE)).shape == (2 * 122, 2 * 122)
    result = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "generate.py"), saved_models["discriminator"],
                             "--out-dir", str(tmp_path / "bad")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("generate.py: error: model 'discriminator' outputs")
    assert not (tmp_path / "bad").exists()


def test_fashion_mnist_data_is_not_needed(generator, tmp_path, monkeypatch):
    # Generating needs the generator only: no data set, no classifier.
    monkeypatch.setattr(data, "load_fashion_mnist", lambda *args, **kwargs: pytest.fail("data was loaded"))
    generate.save_grid(generator, 4, str(tmp_path))
