"""The IDX loader on tiny files written here, corrupt ones included, and the tf.data pipeline."""

import gzip
import os

import numpy as np
import pytest
import tensorflow as tf

import data
from conftest import write_fashion_mnist, write_idx


def test_loads_tiny_files_with_right_shapes_and_types(tiny_data_dir):
    images, labels = data.load_fashion_mnist("train", tiny_data_dir)
    assert images.shape == (300, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (300,) and labels.dtype == np.uint8
    test_images, test_labels = data.load_fashion_mnist("test", tiny_data_dir)
    assert test_images.shape == (100, 28, 28) and len(test_labels) == 100


def test_round_trips_exact_pixels(tmp_path):
    directory = write_fashion_mnist(tmp_path / "d", 3, 2)
    pixels = np.arange(3 * 28 * 28, dtype=np.uint32).reshape(3, 28, 28) % 256
    write_idx(os.path.join(directory, data.FILE_NAMES["train"][0]), pixels)
    images, _ = data.load_fashion_mnist("train", directory)
    np.testing.assert_array_equal(images, pixels)


@pytest.mark.skipif(not os.path.isdir(data.SYSTEM_DATA_DIR), reason="Debian's dataset-fashion-mnist is not installed")
def test_loads_the_installed_data_set():
    images, labels = data.load_fashion_mnist("train", data.SYSTEM_DATA_DIR)
    assert images.shape == (60000, 28, 28)
    assert sorted(np.unique(labels)) == list(range(10))
    test_images, _ = data.load_fashion_mnist("test")
    assert test_images.shape == (10000, 28, 28)


def test_data_dir_order_argument_then_environment_then_system(tmp_path, monkeypatch):
    argument_dir = write_fashion_mnist(tmp_path / "argument", 5, 5)
    environment_dir = write_fashion_mnist(tmp_path / "environment", 7, 5)
    monkeypatch.setenv(data.DATA_DIR_VARIABLE, environment_dir)
    assert len(data.load_fashion_mnist("train", argument_dir)[0]) == 5
    assert len(data.load_fashion_mnist("train")[0]) == 7
    monkeypatch.delenv(data.DATA_DIR_VARIABLE)
    expected = data.SYSTEM_DATA_DIR if os.path.isdir(data.SYSTEM_DATA_DIR) else None
    assert data.resolve_data_dir() == expected


def test_missing_directory_is_an_error_not_a_download(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.load_fashion_mnist("train", str(tmp_path / "nowhere"))
    monkeypatch.setenv(data.DATA_DIR_VARIABLE, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="FASHION_MNIST_DIR"):
        data.load_fashion_mnist("train")


@pytest.fixture
def no_local_data(tmp_path, monkeypatch):
    """No --data-dir, no FASHION_MNIST_DIR and no system directory: only Keras is left."""
    monkeypatch.setattr(data, "SYSTEM_DATA_DIR", str(tmp_path / "no-system-data"))
    monkeypatch.delenv(data.DATA_DIR_VARIABLE, raising=False)
    return monkeypatch


def test_failed_download_says_where_it_looked_in_one_line(no_local_data):
    import keras

    def offline_load_data():
        raise Exception("URL fetch failure on https://example.invalid/x.gz: None -- "
                        "[Errno -3] Temporary failure in name resolution")

    no_local_data.setattr(keras.datasets.fashion_mnist, "load_data", offline_load_data)
    with pytest.raises(FileNotFoundError) as raised:
        data.load_fashion_mnist("train")
    message = str(raised.value)
    assert len(message.splitlines()) == 1
    for expected in (data.SYSTEM_DATA_DIR, "FASHION_MNIST_DIR", "--data-dir", "dataset-fashion-mnist",
                     "Temporary failure in name resolution", *data.FILE_NAMES["train"], *data.FILE_NAMES["test"]):
        assert expected in message


def test_interrupting_the_download_is_not_turned_into_an_error(no_local_data):
    import keras

    def interrupted_load_data():
        raise KeyboardInterrupt

    no_local_data.setattr(keras.datasets.fashion_mnist, "load_data", interrupted_load_data)
    with pytest.raises(KeyboardInterrupt):
        data.load_fashion_mnist("train")


def test_successful_download_returns_the_split_asked_for(no_local_data):
    import keras

    train_split = (np.zeros((3, 28, 28), np.uint8), np.zeros(3, np.uint8))
    test_split = (np.ones((2, 28, 28), np.uint8), np.ones(2, np.uint8))
    no_local_data.setattr(keras.datasets.fashion_mnist, "load_data", lambda: (train_split, test_split))
    images, labels = data.load_fashion_mnist("train")
    assert images is train_split[0] and labels is train_split[1]
    images, labels = data.load_fashion_mnist("test")
    assert images is test_split[0] and labels is test_split[1]


def test_missing_files_are_named(tmp_path):
    directory = write_fashion_mnist(tmp_path / "d", 5, 5)
    os.remove(os.path.join(directory, "t10k-labels-idx1-ubyte.gz"))
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.gz"):
        data.load_fashion_mnist("train", directory)
    with pytest.raises(FileNotFoundError, match="missing"):
        data.load_fashion_mnist("train", str(tmp_path))  # an empty directory


def test_truncated_gzip_is_rejected(tmp_path):
    directory = write_fashion_mnist(tmp_path / "d", 50, 5)
    path = os.path.join(directory, data.FILE_NAMES["train"][0])
    with open(path, "rb") as file:
        content = file.read()
    with open(path, "wb") as file:
        file.write(content[: len(content) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        data.load_fashion_mnist("train", directory)


def test_not_gzip_is_rejected(tmp_path):
    directory = write_fashion_mnist(tmp_path / "d", 5, 5)
    with open(os.path.join(directory, data.FILE_NAMES["train"][1]), "wb") as file:
        file.write(b"this is not gzip at all")
    with pytest.raises(ValueError, match="gzip"):
        data.load_fashion_mnist("train", directory)


def test_wrong_magic_number_is_rejected(tmp_path):
    directory = write_fashion_mnist(tmp_path / "d", 5, 5)
    # Labels where images should be: a valid IDX file of the wrong kind.
    write_idx(os.path.join(directory, data.FILE_NAMES["train"][0]), np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match="magic number 0x00000801"):
        data.load_fashion_mnist("train", directory)


def test_data_shorter_than_header_announces_is_rejected(tmp_path):
    directory = write_fashion_mnist(tmp_path / "d", 5, 5)
    header = bytes.fromhex("00000803") + (10).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    with gzip.open(os.path.join(directory, data.FILE_NAMES["train"][0]), "wb") as file:
        file.write(header + bytes(5 * 28 * 28))  # 5 images where the header says 10
    with pytest.raises(ValueError, match="truncated or corrupt"):
        data.load_fashion_mnist("train", directory)


def test_image_and_label_counts_must_agree(tmp_path):
    directory = write_fashion_mnist(tmp_path / "d", 5, 5)
    write_idx(os.path.join(directory, data.FILE_NAMES["train"][1]), np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match="5 images but .* 4 labels"):
        data.load_fashion_mnist("train", directory)


def test_wrong_image_size_is_rejected(tmp_path):
    directory = write_fashion_mnist(tmp_path / "d", 5, 5)
    write_idx(os.path.join(directory, data.FILE_NAMES["train"][0]), np.zeros((5, 32, 32), np.uint8))
    with pytest.raises(ValueError, match="shape"):
        data.load_fashion_mnist("train", directory)


def test_unknown_split_is_rejected(tiny_data_dir):
    with pytest.raises(ValueError, match="split"):
        data.load_fashion_mnist("validation", tiny_data_dir)


def test_pipeline_scales_shuffles_and_keeps_a_short_last_batch():
    images = np.arange(10, dtype=np.uint8)[:, None, None] * np.ones((10, 28, 28), np.uint8) * 25
    dataset = data.make_dataset(images, batch_size=4, seed=3)
    batches = list(dataset)
    assert [len(batch) for batch in batches] == [4, 4, 2]
    assert all(batch.dtype == tf.float32 and batch.shape[1:] == (28, 28, 1) for batch in batches)
    values = sorted(float(batch[i, 0, 0, 0]) for batch in batches for i in range(len(batch)))
    np.testing.assert_allclose(values, images[:, 0, 0] / 127.5 - 1, rtol=1e-6)  # every image once
    assert min(values) == -1.0
    first_epoch = np.concatenate([batch[:, 0, 0, 0] for batch in batches])
    second_epoch = np.concatenate([batch[:, 0, 0, 0] for batch in dataset])
    assert not np.array_equal(first_epoch, second_epoch)  # reshuffled every epoch


def test_pipeline_order_is_repeatable_with_a_seed():
    images = np.random.default_rng(0).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    first = [batch.numpy() for batch in data.make_dataset(images, 8, seed=5).repeat(2)]
    second = [batch.numpy() for batch in data.make_dataset(images, 8, seed=5).repeat(2)]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("batch_size", [0, -1, 11])
def test_pipeline_rejects_batch_sizes_outside_the_data(batch_size):
    with pytest.raises(ValueError, match="batch size"):
        data.make_dataset(np.zeros((10, 28, 28), np.uint8), batch_size)


def test_pipeline_rejects_no_images():
    with pytest.raises(ValueError):
        data.make_dataset(np.zeros((0, 28, 28), np.uint8), 1)
