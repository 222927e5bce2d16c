"""Bad input: every case ends with one clear line (exit code 2 from the command line,
ValueError or FileNotFoundError from Python) and leaves earlier results untouched.

Cases, command line (`python train.py ...`):
  1. --epochs zero, negative, non-numeric, absurdly large
  2. --batch-size zero, negative, non-numeric, absurdly large
  3. --latent-dim zero, negative, non-numeric, absurdly large
  4. --max-images zero, or larger than the data
  5. --batch-size larger than the data
  6. --data-dir missing, empty, holding one of the four files, a truncated .gz, a wrong
     magic number, image and label counts that disagree
  7. --out-dir that is a file, or not writable
  8. --out-dir holding a checkpoint for another latent size, or another architecture
  9. --deterministic without --seed; an unknown --precision or --strategy;
     --strategy multiworker without TF_CONFIG; --max-minutes zero, negative, NaN or a word;
     --checkpoint-every-minutes negative; --label-smoothing outside [0, 1)
Python:
  10. train() with bad epochs (in test_train.py), and each data case above through
      data.load_fashion_mnist (in test_data.py)
  11. display_image() for an epoch that does not exist, or an empty directory
  12. evaluate.py on a file that is not a Keras generator (in test_evaluate.py)
"""

import hashlib
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import data
import display
import storage
import train
from conftest import REPO_ROOT, write_fashion_mnist, write_idx


def _snapshot(directory):
    """Maps every file below `directory` to a hash of its content."""
    result = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as file:
                result[os.path.relpath(path, directory)] = hashlib.sha256(file.read()).hexdigest()
    return result


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A tiny finished training run (1 epoch) whose files must survive every bad call."""
    root = tmp_path_factory.mktemp("finished")
    data_dir = write_fashion_mnist(root / "data")
    out_dir = str(root / "out")
    assert train.main(["--epochs", "1", "--batch-size", "100", "--data-dir", data_dir,
                       "--out-dir", out_dir, "--seed", "0", "--quiet"]) == 0
    return data_dir, out_dir


def _run_main(argv, capsys):
    """Runs train.main in this process; returns (exit code, stderr lines)."""
    try:
        code = train.main(argv)
    except SystemExit as exit_request:  # argparse's own errors
        code = exit_request.code
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return code, lines


def _assert_one_clear_error(code, lines, expected_text):
    assert code == 2
    assert lines, "no error message"
    assert not any("Traceback" in line for line in lines)
    assert "error:" in lines[-1] and expected_text in lines[-1], lines[-1]


@pytest.mark.parametrize("flag, value, expected", [
    ("--epochs", "0", "must be between 1 and"),
    ("--epochs", "-3", "must be between 1 and"),
    ("--epochs", "ten", "expected a whole number"),
    ("--epochs", "100000000", "must be between 1 and"),
    ("--batch-size", "0", "must be between 1 and"),
    ("--batch-size", "-1", "must be between 1 and"),
    ("--batch-size", "1.5", "expected a whole number"),
    ("--batch-size", "99999999", "must be between 1 and"),
    ("--latent-dim", "0", "must be between 1 and"),
    ("--latent-dim", "-100", "must be between 1 and"),
    ("--latent-dim", "big", "expected a whole number"),
    ("--latent-dim", "1000000", "must be between 1 and"),
    ("--max-images", "0", "must be between 1 and"),
    ("--max-minutes", "-1", "must be a positive number"),
    ("--max-minutes", "nan", "expected a finite number"),
    ("--max-minutes", "0", "must be a positive number"),
    ("--max-minutes", "never", "expected a number"),
    ("--checkpoint-every-minutes", "-5", "must be 0 or more"),
    ("--label-smoothing", "1.5", "must be in [0, 1)"),
    ("--beta-2", "1", "must be in [0, 1)"),
    ("--ema-half-life", "0", "must be a positive number"),
    ("--ema-half-life", "-40000", "must be a positive number"),
    ("--ema-half-life", "inf", "expected a finite number"),
    ("--ema-warmup", "-0.1", "must be in [0, 1)"),
    ("--ema-warmup", "2", "must be in [0, 1)"),
    ("--augment", "flip", "unknown augmentation flip"),
    ("--r1-weight", "-1", "must be 0 or more"),
    ("--lr-half-life", "-10", "must be a positive number"),
    ("--lr-half-life", "0", "must be a positive number"),
    ("--lr-half-life", "0min", "must be a positive number of minutes"),
    ("--lr-half-life", "infmin", "must be a positive number of minutes"),
    ("--lr-half-life", "21m", "expected epochs (as 12), minutes of training (as 21min) or none"),
    ("--lr-min-half-life", "0", "must be a positive number"),
    ("--lr-min-half-life", "-8", "must be a positive number"),
    ("--lr-min-half-life", "eight", "expected a number"),
    ("--r1-weight", "nan", "expected a finite number"),
    ("--r1-interval", "0", "must be between 1 and"),
    ("--generator-upsampling", "bilinear", "invalid choice"),
    ("--generator-filters", "128", "expected two or three positive whole numbers"),
    ("--generator-filters", "128,64,32,16", "expected two or three positive whole numbers"),
    ("--generator-filters", "128,64,0", "expected two or three positive whole numbers"),
    ("--discriminator-filters", "64,0", "expected two positive whole numbers"),
    ("--discriminator-filters", "wide", "expected two comma-separated whole numbers"),
    ("--generator-extra-convolutions", "-1", "must be between 0 and"),
    ("--discriminator-extra-convolutions", "two", "expected a whole number"),
    ("--discriminator-head-convolutions", "-1", "must be between 0 and"),
    ("--discriminator-head-filters", "0", "must be between 1 and"),
    ("--minibatch-group-size", "0", "must be between 1 and"),
    ("--pack", "0", "must be between 1 and"),
    ("--augment", "translation,zoom", "unknown augmentation zoom"),
    ("--precision", "float8", "invalid choice"),
    ("--strategy", "tpu", "invalid choice"),
])
def test_bad_flag_values(flag, value, expected, finished_run, capsys):
    data_dir, out_dir = finished_run
    before = _snapshot(out_dir)
    code, lines = _run_main([flag, value, "--data-dir", data_dir, "--out-dir", out_dir], capsys)
    _assert_one_clear_error(code, lines, expected)
    assert flag in lines[-1]
    assert _snapshot(out_dir) == before


def test_max_images_larger_than_the_data(finished_run, capsys):
    data_dir, out_dir = finished_run
    before = _snapshot(out_dir)
    code, lines = _run_main(["--max-images", "301", "--data-dir", data_dir, "--out-dir", out_dir], capsys)
    _assert_one_clear_error(code, lines, "--max-images must be between 1 and the 300 training images")
    assert _snapshot(out_dir) == before


def test_batch_size_larger_than_the_data(finished_run, capsys):
    data_dir, out_dir = finished_run
    before = _snapshot(out_dir)
    code, lines = _run_main(["--batch-size", "301", "--data-dir", data_dir, "--out-dir", out_dir], capsys)
    _assert_one_clear_error(code, lines, "batch size must be between 1 and the number of images (300)")
    assert _snapshot(out_dir) == before


def _break_missing(directory):
    shutil.rmtree(directory)


def _break_empty(directory):
    for name in os.listdir(directory):
        os.remove(os.path.join(directory, name))


def _break_one_of_four(directory):
    for name in data.FILE_NAMES["train"][1:] + data.FILE_NAMES["test"]:
        os.remove(os.path.join(directory, name))


def _break_truncated(directory):
    path = os.path.join(directory, data.FILE_NAMES["train"][0])
    with open(path, "rb") as file:
        content = file.read()
    with open(path, "wb") as file:
        file.write(content[:1000])


def _break_magic(directory):
    write_idx(os.path.join(directory, data.FILE_NAMES["train"][0]), np.zeros((300, 28, 28)), magic=0x00000903)


def _break_counts(directory):
    write_idx(os.path.join(directory, data.FILE_NAMES["train"][1]), np.zeros(299))


@pytest.mark.parametrize("break_directory, expected", [
    (_break_missing, "does not exist"),
    (_break_empty, "missing: train-images-idx3-ubyte.gz"),
    (_break_one_of_four, "missing: train-labels-idx1-ubyte.gz"),
    (_break_truncated, "truncated or corrupt"),
    (_break_magic, "magic number 0x00000903"),
    (_break_counts, "300 images but train-labels-idx1-ubyte.gz holds 299 labels"),
])
def test_bad_data_directories(break_directory, expected, finished_run, tmp_path, capsys):
    _, out_dir = finished_run
    data_dir = write_fashion_mnist(tmp_path / "data")
    break_directory(data_dir)
    before = _snapshot(out_dir)
    code, lines = _run_main(["--data-dir", data_dir, "--out-dir", out_dir, "--fresh"], capsys)
    _assert_one_clear_error(code, lines, expected)
    assert _snapshot(out_dir) == before  # not even --fresh deletes anything on bad input


def test_out_dir_that_is_a_file(finished_run, tmp_path, capsys):
    data_dir, _ = finished_run
    path = tmp_path / "results.txt"
    path.write_text("keep me")
    code, lines = _run_main(["--data-dir", data_dir, "--out-dir", str(path)], capsys)
    _assert_one_clear_error(code, lines, "is not a directory")
    assert path.read_text() == "keep me"


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory that cannot be written: a read-only tmpfs as root, chmod otherwise."""
    directory = tmp_path / "read-only"
    directory.mkdir()
    if os.geteuid() != 0:
        directory.chmod(0o500)
        yield str(directory)
        directory.chmod(0o700)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(directory)],
                             capture_output=True).returncode == 0
    if not mounted:
        pytest.skip("root without mount permission: cannot make a read-only directory")
    yield str(directory)
    subprocess.run(["umount", str(directory)], check=True)


def test_out_dir_that_is_not_writable(finished_run, read_only_dir, capsys):
    data_dir, _ = finished_run
    code, lines = _run_main(["--data-dir", data_dir, "--out-dir", os.path.join(read_only_dir, "run")], capsys)
    _assert_one_clear_error(code, lines, "cannot write to --out-dir")


def test_checkpoint_for_another_latent_size(finished_run, capsys):
    data_dir, out_dir = finished_run
    before = _snapshot(out_dir)
    code, lines = _run_main(["--epochs", "2", "--latent-dim", "64", "--data-dir", data_dir,
                             "--out-dir", out_dir, "--batch-size", "100"], capsys)
    _assert_one_clear_error(code, lines, "latent dim 100, not 64: pass --latent-dim 100")
    assert _snapshot(out_dir) == before


def test_checkpoint_for_another_architecture(finished_run, capsys):
    data_dir, out_dir = finished_run
    before = _snapshot(out_dir)
    code, lines = _run_main(["--epochs", "2", "--data-dir", data_dir, "--out-dir", out_dir,
                             "--batch-size", "100", "--generator-filters", "32,16"], capsys)
    # Named before the restore is tried: the option that changed, not a tensor.
    _assert_one_clear_error(code, lines, "trained with generator_options filters [128, 64] (now [32, 16])")
    assert _snapshot(out_dir) == before


def test_checkpoint_for_another_architecture_without_recorded_settings(finished_run, tmp_path, capsys):
    # A run that recorded no settings (an earlier version's) is checked by the restore.
    data_dir, finished_dir = finished_run
    out_dir = str(tmp_path / "out")
    shutil.copytree(finished_dir, out_dir)
    os.remove(os.path.join(out_dir, storage.SETTINGS_FILE))
    before = _snapshot(out_dir)
    code, lines = _run_main(["--epochs", "2", "--data-dir", data_dir, "--out-dir", out_dir,
                             "--batch-size", "100", "--generator-filters", "32,16"], capsys)
    _assert_one_clear_error(code, lines, "does not fit these models")
    assert _snapshot(out_dir) == before


@pytest.mark.parametrize("run_flags", [[], ["--hour"]], ids=["default", "hour"])
def test_a_run_of_the_version_before_the_discriminator_head_names_the_flags_to_resume_it(
        finished_run, tmp_path, capsys, run_flags):
    # D gained a head, --hour's first (HOUR in train.py) and then the default's (models.py);
    # their earlier runs had none.
    data_dir, _ = finished_run
    out_dir = str(tmp_path / "run")
    common = run_flags + ["--max-images", "64", "--data-dir", data_dir, "--out-dir", out_dir, "--seed", "0",
                          "--precision", "float32", "--quiet"]
    assert train.main(common + ["--epochs", "1", "--discriminator-head-convolutions", "0"]) == 0
    capsys.readouterr()
    before = _snapshot(out_dir)
    code, lines = _run_main(common + ["--epochs", "2"], capsys)
    _assert_one_clear_error(code, lines, "discriminator_options head_convolutions 0 (now 1), head_filters None "
                                         "(now 32): pass the same model flags")
    assert _snapshot(out_dir) == before
    assert train.main(common + ["--epochs", "2", "--discriminator-head-convolutions", "0"]) == 0


def test_deterministic_needs_a_seed(finished_run, capsys):
    data_dir, out_dir = finished_run
    code, lines = _run_main(["--deterministic", "--data-dir", data_dir, "--out-dir", out_dir], capsys)
    _assert_one_clear_error(code, lines, "--deterministic needs --seed")


def test_multiworker_needs_tf_config(finished_run, monkeypatch, capsys):
    data_dir, out_dir = finished_run
    monkeypatch.delenv("TF_CONFIG", raising=False)
    code, lines = _run_main(["--strategy", "multiworker", "--data-dir", data_dir, "--out-dir", out_dir], capsys)
    _assert_one_clear_error(code, lines, "TF_CONFIG")


def test_display_image_for_a_missing_epoch_names_the_saved_ones(finished_run):
    _, out_dir = finished_run
    with pytest.raises(ValueError, match=r"no grid for epoch 7 .* saved epochs: 0"):
        display.display_image(7, out_dir=out_dir)


def test_display_image_in_an_empty_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no epoch grids"):
        display.display_image(0, out_dir=str(tmp_path))


def test_the_real_command_line_exits_2_with_one_line_and_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "train.py", "--data-dir", str(tmp_path / "nowhere"),
                             "--out-dir", str(tmp_path / "out")],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"train.py: error: data directory given by --data-dir does not exist: {tmp_path / 'nowhere'}")
    assert not os.path.exists(tmp_path / "out")


def test_help_lists_the_flags():
    result = subprocess.run([sys.executable, "train.py", "--help"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for flag in ("--epochs", "--batch-size", "--latent-dim", "--out-dir", "--data-dir", "--seed",
                 "--max-images", "--fresh", "--max-minutes", "--precision", "--strategy"):
        assert flag in result.stdout
