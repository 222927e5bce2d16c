"""Fashion-MNIST: find the files, read and check them, and feed them to training.

The data set is four gzip-compressed IDX files, the same ones Keras downloads:

    train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz
    t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz

`load_fashion_mnist()` looks for them, in this order, in
  1. the `data_dir` argument (`--data-dir` on the command line),
  2. the directory named by the environment variable FASHION_MNIST_DIR,
  3. /usr/share/datasets/fashion-mnist (Debian's package `dataset-fashion-mnist`),
and only when none of these is given or present does it call
`keras.datasets.fashion_mnist.load_data()`, which downloads the files once; if that
fails too (no network), a FileNotFoundError says where the files were looked for.
A directory that is named (1 or 2) but unusable is an error, never a silent fallback.
"""

import gzip
import os
import struct
import weakref
import zlib

import numpy as np
import tensorflow as tf

SYSTEM_DATA_DIR = "/usr/share/datasets/fashion-mnist"
DATA_DIR_VARIABLE = "FASHION_MNIST_DIR"

FILE_NAMES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
IMAGE_SIZE = 28
# An IDX magic number is two zero bytes, a type code (0x08 = unsigned byte) and the
# number of dimensions: 3 for images (count, rows, columns), 1 for labels (count).
IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
NUM_CLASSES = 10
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def read_idx(path, expected_magic):
    """Reads one gzip-compressed IDX file of unsigned bytes.

    Returns:
        A uint8 array of shape (count,) for labels or (count, rows, columns) for images.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not gzip, is truncated, has the wrong magic number, or
            holds fewer or more bytes than its header announces.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Fashion-MNIST file not found: {path}")
    try:
        with gzip.open(path, "rb") as compressed:
            raw = compressed.read()
    except (OSError, EOFError, zlib.error) as error:
        raise ValueError(f"{path} is not a readable gzip file (truncated or corrupt?): {error}") from None
    if len(raw) < 4:
        raise ValueError(f"{path} is too short to be an IDX file ({len(raw)} bytes)")
    (magic,) = struct.unpack(">I", raw[:4])
    if magic != expected_magic:
        raise ValueError(
            f"{path} has magic number 0x{magic:08x}, expected 0x{expected_magic:08x} "
            f"({'images' if expected_magic == IMAGES_MAGIC else 'labels'}); wrong or corrupt file")
    num_dimensions = magic & 0xFF
    header_size = 4 + 4 * num_dimensions
    if len(raw) < header_size:
        raise ValueError(f"{path} is truncated inside its header")
    shape = struct.unpack(f">{num_dimensions}I", raw[4:header_size])
    expected_size = header_size + int(np.prod(shape))
    if len(raw) != expected_size:
        raise ValueError(
            f"{path} holds {len(raw) - header_size} data bytes but its header announces shape "
            f"{shape} ({expected_size - header_size} bytes); the file is truncated or corrupt")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


def resolve_data_dir(data_dir=None):
    """Picks the directory to read Fashion-MNIST from.

    Returns:
        A directory path, or None when no local copy exists and Keras should download it.

    Raises:
        FileNotFoundError: a directory was named (argument or FASHION_MNIST_DIR) but does not exist.
    """
    for source, candidate in (("--data-dir", data_dir), (DATA_DIR_VARIABLE, os.environ.get(DATA_DIR_VARIABLE))):
        if candidate:
            if not os.path.isdir(candidate):
                raise FileNotFoundError(f"data directory given by {source} does not exist: {candidate}")
            return candidate
    if os.path.isdir(SYSTEM_DATA_DIR):
        return SYSTEM_DATA_DIR
    return None


def load_fashion_mnist(split="train", data_dir=None):
    """Loads one split of Fashion-MNIST as uint8 arrays.

    Args:
        split: "train" (60,000 images) or "test" (10,000 images).
        data_dir: a directory holding the four IDX `.gz` files; see the module docstring
            for where the loader looks when this is None.

    Returns:
        (images, labels): uint8 arrays of shapes (N, 28, 28) and (N,).

    Raises:
        ValueError: unknown split, or a file is corrupt, truncated or inconsistent.
        FileNotFoundError: the directory or one of its files is missing.
    """
    if split not in FILE_NAMES:
        raise ValueError(f"split must be one of {sorted(FILE_NAMES)}, got {split!r}")
    directory = resolve_data_dir(data_dir)
    if directory is None:
        return _download_with_keras(split)

    images_name, labels_name = FILE_NAMES[split]
    missing = [name for name in FILE_NAMES["train"] + FILE_NAMES["test"]
               if not os.path.isfile(os.path.join(directory, name))]
    if missing:
        raise FileNotFoundError(
            f"{directory} does not hold the Fashion-MNIST files; missing: {', '.join(missing)}")
    images = read_idx(os.path.join(directory, images_name), IMAGES_MAGIC)
    labels = read_idx(os.path.join(directory, labels_name), LABELS_MAGIC)
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"{images_name} holds images of shape {images.shape[1:]}, expected (28, 28)")
    if len(images) != len(labels):
        raise ValueError(
            f"{directory}: {images_name} holds {len(images)} images but {labels_name} holds "
            f"{len(labels)} labels")
    if len(images) == 0:
        raise ValueError(f"{directory}: {images_name} holds no images")
    return images, labels


def _download_with_keras(split):
    """Returns one split from Keras's copy, which it downloads on first use.

    Raises:
        FileNotFoundError: the download failed (no network, say); the one-line message
            says where the files were looked for and how to provide them.
    """
    # Imported here so that importing this module never touches the network code path.
    import keras

    try:
        (train_images, train_labels), (test_images, test_labels) = keras.datasets.fashion_mnist.load_data()
    except Exception as error:  # Keras raises a plain Exception for a failed fetch, else OSError.
        # Exception, not BaseException: Ctrl-C during the download still interrupts.
        text = str(error).strip()
        reason = text.splitlines()[0] if text else type(error).__name__
        raise FileNotFoundError(
            f"Fashion-MNIST not found: --data-dir: not given; ${DATA_DIR_VARIABLE}: not set; "
            f"the system directory {SYSTEM_DATA_DIR}: absent; the Keras download: failed ({reason}). "
            f"Install Debian's package dataset-fashion-mnist, or pass --data-dir DIR (or set "
            f"{DATA_DIR_VARIABLE}=DIR) where DIR holds {', '.join(FILE_NAMES['train'] + FILE_NAMES['test'])}"
        ) from None
    if split == "train":
        return train_images, train_labels
    return test_images, test_labels


def scale_images(images):
    """Maps uint8 pixels in [0, 255] to float32 in [-1, 1], the range of the generator's tanh.

    Returns:
        A float32 tensor of shape (..., 28, 28, 1).
    """
    images = tf.cast(images, tf.float32) / 127.5 - 1.0
    return tf.expand_dims(images, -1)


def make_dataset(images, batch_size, seed=None):
    """Builds the training pipeline: shuffled, batched, scaled to [-1, 1], prefetched.

    The uint8 images are held once in memory (the cache) and the pipeline shuffles
    *indices* and gathers each batch. Iterating the dataset again reshuffles; with a seed,
    the sequence of epoch orders is the same every run. Because only indices are
    shuffled, `dataset.repeat().skip(n)` reaches any step of any epoch in milliseconds,
    which is how an interrupted run resumes on exactly the batch it stopped at.

    Args:
        images: uint8 array of shape (N, 28, 28).
        batch_size: images per batch; the last batch of an epoch may be smaller.
        seed: shuffle seed, or None for a different order every run.

    Returns:
        A `tf.data.Dataset` of float32 batches of shape (batch, 28, 28, 1).

    Raises:
        ValueError: no images, wrong shape, or a batch size outside 1..N.
    """
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"expected images of shape (N, 28, 28), got {images.shape}")
    num_images = len(images)
    if num_images == 0:
        raise ValueError("there are no images to train on")
    if not 1 <= batch_size <= num_images:
        raise ValueError(f"batch size must be between 1 and the number of images ({num_images}), got {batch_size}")
    return _indexed_dataset(tf.constant(images, dtype=tf.uint8), batch_size, seed)


# How each dataset of make_dataset() was made, so that `reshuffled` can make it again with
# another seed. Weak keys: a dataset the user drops is forgotten here too.
_RECIPES = weakref.WeakKeyDictionary()


def _indexed_dataset(images, batch_size, seed):
    num_images = int(images.shape[0])
    dataset = tf.data.Dataset.range(num_images)
    dataset = dataset.shuffle(num_images, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    dataset = dataset.map(lambda indices: scale_images(tf.gather(images, indices)),
                          num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    dataset = dataset.prefetch(tf.data.AUTOTUNE)
    _RECIPES[dataset] = (images, batch_size)
    return dataset


def reshuffled(dataset, seed):
    """Returns `dataset` shuffled from `seed`, if make_dataset() made it; else None.

    The training loop calls this with the run's seed, so that the order of the batches
    is the run's, whatever seed (or none) the dataset was made with: a run resumed from a
    notebook, where `load_training_dataset()` is called again without a seed, sees the
    batches an uninterrupted run would have seen. Same images, same batch size.

    The order depends on TensorFlow's global seed as well as on `seed` (tf.data combines
    the two): callers clear the global seed first (`tf.random.set_seed(None)`), as in a
    new process, so that the order depends on `seed` alone.
    """
    recipe = _RECIPES.get(dataset)
    if recipe is None:
        return None
    images, batch_size = recipe
    return _indexed_dataset(images, batch_size, seed)


def check_training_dataset(dataset):
    """Checks cheaply (its type and first batch) that `dataset` holds what training needs.

    Returns:
        (steps_per_epoch, batch_size): the number of batches and the size of the first.

    Raises:
        ValueError: the message names the fix for the usual mistakes: (images, labels)
            pairs, unbatched images, no channel axis, another image size, pixels in
            [0, 255] or [0, 1] instead of the generator's [-1, 1], or no known length.
    """
    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError(f"dataset must be a tf.data.Dataset of image batches, got {type(dataset).__name__}")
    spec = dataset.element_spec
    if not isinstance(spec, tf.TensorSpec):
        raise ValueError("the dataset yields pairs or other structures (images and labels?), but a GAN trains "
                         "on images alone: pass dataset.map(lambda images, labels: images)")
    shape, image_shape = tuple(spec.shape), (IMAGE_SIZE, IMAGE_SIZE)
    if shape in (image_shape, image_shape + (1,)):
        raise ValueError(f"the dataset yields single images of shape {shape}, not batches: pass "
                         "dataset.batch(BATCH_SIZE)")
    if len(shape) == 3 and shape[1:] == image_shape:
        raise ValueError("the dataset's images have no channel axis, (batch, 28, 28): add it with "
                         "dataset.map(lambda images: images[..., tf.newaxis])")
    if len(shape) != 4 or shape[1:] != image_shape + (1,):
        raise ValueError(f"the dataset yields batches of shape {shape}, but the models need (batch, 28, 28, 1)")
    steps_per_epoch = int(dataset.cardinality())
    if steps_per_epoch <= 0:
        raise ValueError("dataset must have a known, finite, non-zero number of batches per epoch (one epoch, "
                         "not repeated; see tf.data.experimental.assert_cardinality)")
    first_batch = next(iter(dataset.take(1)))
    if not spec.dtype.is_floating:
        raise ValueError(f"the dataset's pixels are {spec.dtype.name}; scale them to float32 in [-1, 1], "
                         "the range of the generator's tanh: images / 127.5 - 1 (data.scale_images)")
    low, high = float(tf.reduce_min(first_batch)), float(tf.reduce_max(first_batch))
    if high > 1.0 + 1e-3:
        raise ValueError(f"the dataset's pixels reach {high:g}, as if still in [0, 255]; scale them to [-1, 1], "
                         "the range of the generator's tanh: images / 127.5 - 1 (data.scale_images)")
    if low >= 0.0:
        raise ValueError(f"the dataset's pixels lie in [{low:g}, {high:g}], as if scaled to [0, 1]; scale them to "
                         "[-1, 1], the range of the generator's tanh: images * 2 - 1")
    return steps_per_epoch, int(first_batch.shape[0])
