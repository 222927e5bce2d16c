"""Measures how good a generator's images are: FID, Inception Score, precision and recall.

All measurements look at images through the Fashion-MNIST classifier of classifier.py:

- FID (Frechet Inception Distance, Heusel et al. 2017): fit a Gaussian to the classifier
  features of the real test images and another to those of generated images, and measure
  the distance between the two. Lower is better; 0 means the same mean and covariance.
- Inception Score (Salimans et al. 2016), here with the classifier instead of Inception:
  high when each image is clearly one class and all classes appear. At most 10.
- Precision and recall (Kynkaanniemi et al. 2019): precision is the fraction of
  generated images that land near some real image in feature space (are they
  realistic?), recall the fraction of real images near some generated one (is all of the
  data covered?). "Near" means within the distance to the k-th nearest neighbour.
- The class histogram: the fraction of generated images the classifier puts in each
  class. A collapsed generator shows up as missing classes.

With `--inception`, it also computes the standard FID in the features of Inception-v3
(ImageNet weights), to compare with numbers in papers. That needs the weights file, from
the Keras cache, the internet, or `--inception-weights PATH`, and is slow on a CPU.

Usage:

    python evaluate.py OUT_DIR/generator.keras --num-samples 10000

From Python (the training loop does this every few epochs):

    evaluator = evaluate.Evaluator()                 # computes the real statistics once
    results = evaluator.evaluate(generator, num_samples=10000, seed=0)
    results["fid"], results["precision"], results["class_histogram"]
"""

import json
import os
import sys
import warnings

import keras
import numpy as np
import scipy.linalg
import tensorflow as tf

import classifier
import cli
import data
import models  # registers the project's own layers, so that its .keras files load

NUM_SAMPLES = 10000  # as many generated images as there are real test images
BATCH_SIZE = 500  # images per forward pass; bigger gains little on a CPU and costs memory
MAX_NUM_SAMPLES = 100_000  # catches typos: precision and recall cost grows with its square
MAX_BATCH_SIZE = 65_536  # catches typos, as training's limit does
PRECISION_RECALL_K = 3  # the k of Kynkaanniemi et al.; larger k makes the balls looser
DISTANCE_CHUNK_SIZE = 1000  # rows of a pairwise-distance block: 1000 x 10000 float32 is 40 MB
IMAGE_SHAPE = (28, 28, 1)

INCEPTION_WEIGHTS_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
INCEPTION_WEIGHTS_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/"
                         "inception_v3/" + INCEPTION_WEIGHTS_FILE)
INCEPTION_WEIGHTS_HASH = "bcbd6486424b2319ff4ef7d526e38f63"  # the md5 keras.applications checks
INCEPTION_IMAGE_SIZE = 299
INCEPTION_BATCH_SIZE = 50  # 50 x 299 x 299 x 3 float32 is 54 MB per batch


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# ----------------------------------------------------------------------------------------
# The generator.

def check_generator(model):
    """Checks that a model maps flat noise vectors to 28x28x1 images.

    Returns:
        The noise size, latent_dim.

    Raises:
        ValueError: the model has several inputs or outputs, its input is not (batch,
            latent_dim), or its output is not (batch, 28, 28, 1) (a discriminator's is
            (batch, 1)).
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"expected a keras.Model, got {type(model).__name__}")
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(f"model {model.name!r} has {len(model.inputs)} inputs and {len(model.outputs)} "
                         f"outputs; a generator has one of each")
    input_shape, output_shape = tuple(model.input_shape), tuple(model.output_shape)
    if tuple(output_shape[1:]) != IMAGE_SHAPE:
        raise ValueError(f"model {model.name!r} outputs shape {output_shape}, but a generator outputs "
                         f"images of shape (batch, 28, 28, 1); is this the generator?")
    if len(input_shape) != 2 or not input_shape[-1]:
        raise ValueError(f"model {model.name!r} takes inputs of shape {input_shape}, but a generator "
                         f"takes noise of shape (batch, latent_dim)")
    return int(input_shape[-1])


def load_generator(path):
    """Loads a generator saved as a `.keras` file (or legacy `.h5`).

    Returns:
        The `keras.Model`, not compiled.

    Raises:
        FileNotFoundError: there is no file at `path`.
        ValueError: the file is not a Keras model, or the model is not a generator (see
            `check_generator`).
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"generator file not found: {path}")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a directory; expected a generator saved as a .keras file")
    if not path.endswith((".keras", ".h5", ".hdf5")):
        # Keras would say the same in a paragraph; one sentence is enough here.
        raise ValueError(f"{path} is not a Keras model file; expected a .keras (or legacy .h5) file")
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras raises many types for files it cannot read.
        raise ValueError(f"{path} is not a Keras model file: {_first_line(error)}") from None
    check_generator(model)
    return model


def generate_images(generator, num_samples=NUM_SAMPLES, seed=0, batch_size=BATCH_SIZE):
    """Draws standard normal noise from a seeded NumPy random number generator and
    passes it through the generator.

    The same seed gives the same noise, so the same generator gives the same images.

    Returns:
        A float32 numpy array of shape (num_samples, 28, 28, 1).

    Raises:
        ValueError: `generator` is not a generator, or it produced NaN or infinite values.
    """
    return np.concatenate(list(generate_batches(generator, num_samples, seed, batch_size)))


def generate_batches(generator, num_samples=NUM_SAMPLES, seed=0, batch_size=BATCH_SIZE):
    """The images of `generate_images`, one batch at a time, so that memory holds one batch
    whatever `num_samples` is.

    The noise is drawn batch by batch from the same seeded generator, which gives the very
    numbers that one draw of all of it would: the batches, put together, are
    `generate_images(generator, num_samples, seed)`.

    Returns:
        An iterator of float32 numpy arrays of shape (batch, 28, 28, 1).

    Raises:
        ValueError: `generator` is not a generator (at once), or it produced NaN or
            infinite values (when that batch is reached).
    """
    latent_dim = check_generator(generator)
    random_numbers = np.random.default_rng(seed)

    def batches():
        for start in range(0, num_samples, batch_size):
            count = min(batch_size, num_samples - start)
            noise = random_numbers.standard_normal((count, latent_dim), dtype=np.float32)
            yield _generate(generator, noise)

    return batches()


def images_from_noise(generator, noise, batch_size=BATCH_SIZE):
    """Passes given noise vectors through the generator, `batch_size` at a time.

    Returns:
        A float32 numpy array of shape (len(noise), 28, 28, 1).

    Raises:
        ValueError: `generator` is not a generator, the noise is not of shape
            (count, latent_dim), or the generator produced NaN or infinite values.
    """
    latent_dim = check_generator(generator)
    noise = np.asarray(noise, dtype=np.float32)
    if noise.ndim != 2 or noise.shape[1] != latent_dim or len(noise) == 0:
        raise ValueError(f"expected noise of shape (count, {latent_dim}), got {noise.shape}")
    return np.concatenate([_generate(generator, noise[start:start + batch_size])
                           for start in range(0, len(noise), batch_size)])


def _generate(generator, noise):
    # training=False: BatchNorm uses its moving statistics, so an image depends only
    # on its own noise vector, not on the rest of the batch.
    images = generator(noise, training=False)
    # A generator saved under mixed_bfloat16 may compute in bfloat16.
    images = tf.cast(images, tf.float32).numpy()
    if not np.isfinite(images).all():
        raise ValueError("the generator produced NaN or infinite values")
    return images


# ----------------------------------------------------------------------------------------
# The measurements, on feature vectors and class probabilities.

def feature_statistics(features):
    """Returns (mean, covariance) of feature vectors of shape (N, D), in float64."""
    features = np.asarray(features, dtype=np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """The Frechet distance between the Gaussians N(mu1, sigma1) and N(mu2, sigma2).

        d^2 = |mu1 - mu2|^2 + trace(sigma1 + sigma2 - 2 sqrt(sigma1 sigma2))

    The matrix square root follows the reference implementations (TTUR, pytorch-fid):
    when it is not finite, or has a noticeable imaginary part (both happen for nearly
    singular covariances), it is recomputed with `eps` added to both diagonals; the tiny
    imaginary parts that rounding leaves are then dropped.

    Returns:
        The squared distance as a Python float (FID is this value, not its square root).

    Raises:
        ValueError: the shapes do not match, or the square root stays clearly complex.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f"mismatched shapes: means {mu1.shape} and {mu2.shape}, "
                         f"covariances {sigma1.shape} and {sigma2.shape}")
    difference = mu1 - mu2
    with warnings.catch_warnings():
        # Classifier features are ReLU outputs, and a unit that is never active makes a
        # covariance singular. sqrtm then warns that its result "might be inaccurate";
        # the checks below catch the cases where it is, as the reference code does.
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covariance_sqrt = scipy.linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covariance_sqrt).all() or not _nearly_real(covariance_sqrt):
            offset = np.eye(len(mu1)) * eps
            covariance_sqrt = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if not _nearly_real(covariance_sqrt):
        largest = np.max(np.abs(np.diagonal(covariance_sqrt).imag))
        raise ValueError(f"the covariance square root has an imaginary component of {largest:.3g}")
    covariance_sqrt = np.real(covariance_sqrt)
    return float(difference @ difference + np.trace(sigma1) + np.trace(sigma2)
                 - 2.0 * np.trace(covariance_sqrt))


def _nearly_real(matrix):
    return not np.iscomplexobj(matrix) or np.allclose(np.diagonal(matrix).imag, 0, atol=1e-3)


def inception_score(probabilities):
    """The Inception Score, exp(E_x KL(p(y|x) || p(y))), of class probabilities (N, C).

    Computed over all N samples at once, as TF-GAN's classifier_score does, not as the
    mean of 10 splits, so that it does not depend on how the samples are split.

    Returns:
        A Python float between 1 (every image the same class, or every image unsure) and C.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    marginal = probabilities.mean(axis=0, keepdims=True)
    # 0 * log 0 is 0; the tiny constant only keeps the logarithm finite.
    log_ratio = np.log(probabilities + 1e-12) - np.log(marginal + 1e-12)
    kl_divergences = np.sum(probabilities * log_ratio, axis=1)
    return float(np.exp(kl_divergences.mean()))


def _squared_distances(rows, columns):
    # |a - b|^2 = |a|^2 + |b|^2 - 2 a.b, one matrix multiply; rounding can make it
    # slightly negative, so clamp at zero.
    distances = (np.sum(rows ** 2, axis=1)[:, None] + np.sum(columns ** 2, axis=1)[None, :]
                 - 2.0 * rows @ columns.T)
    return np.maximum(distances, 0.0)


def nearest_neighbour_radii(features, k=PRECISION_RECALL_K):
    """For each feature vector, the squared distance to its k-th nearest other vector.

    Returns:
        A float32 array of shape (N,).

    Raises:
        ValueError: there are not more than k vectors.
    """
    # float32 halves the time of the matrix multiplies, and distances only get compared.
    features = np.asarray(features, dtype=np.float32)
    if len(features) <= k:
        raise ValueError(f"need more than k={k} samples for precision and recall, got {len(features)}")
    radii = []
    for start in range(0, len(features), DISTANCE_CHUNK_SIZE):
        distances = _squared_distances(features[start:start + DISTANCE_CHUNK_SIZE], features)
        # Index k, not k - 1: each vector is its own nearest neighbour, at distance 0.
        radii.append(np.partition(distances, k, axis=1)[:, k])
    return np.concatenate(radii)


def precision_recall(real_features, fake_features, k=PRECISION_RECALL_K, real_radii=None):
    """Improved precision and recall (Kynkaanniemi et al. 2019).

    Each set of feature vectors approximates its manifold by the union of balls around
    its vectors, each ball reaching the vector's k-th nearest neighbour. Precision is the
    fraction of fake vectors inside the real manifold, recall the fraction of real vectors
    inside the fake manifold. Distances are computed DISTANCE_CHUNK_SIZE rows at a time,
    so memory stays bounded for any number of samples.

    Args:
        real_features, fake_features: arrays of shape (N_real, D) and (N_fake, D).
        k: the neighbour that sets each ball's radius.
        real_radii: `nearest_neighbour_radii(real_features, k)`, if already computed.

    Returns:
        (precision, recall), two Python floats in [0, 1].

    Raises:
        ValueError: either set has k or fewer vectors.
    """
    real_features = np.asarray(real_features, dtype=np.float32)
    fake_features = np.asarray(fake_features, dtype=np.float32)
    if real_radii is None:
        real_radii = nearest_neighbour_radii(real_features, k)
    fake_radii = nearest_neighbour_radii(fake_features, k)
    fake_inside_real = np.zeros(len(fake_features), dtype=bool)
    real_inside_fake = np.zeros(len(real_features), dtype=bool)
    # One pass over the fake-vs-real distances answers both questions.
    for start in range(0, len(fake_features), DISTANCE_CHUNK_SIZE):
        stop = start + DISTANCE_CHUNK_SIZE
        distances = _squared_distances(fake_features[start:stop], real_features)
        fake_inside_real[start:stop] = np.any(distances <= real_radii[None, :], axis=1)
        real_inside_fake |= np.any(distances <= fake_radii[start:stop, None], axis=0)
    return float(fake_inside_real.mean()), float(real_inside_fake.mean())


def class_histogram(probabilities):
    """The fraction of samples whose most likely class is each class.

    Returns:
        A list of NUM_CLASSES Python floats that sum to 1.
    """
    predicted_classes = np.argmax(probabilities, axis=1)
    counts = np.bincount(predicted_classes, minlength=data.NUM_CLASSES)
    return (counts / counts.sum()).tolist()


# ----------------------------------------------------------------------------------------
# Inception-v3, optional.

def load_inception_model(weights_path=None):
    """Builds Inception-v3 without its top, average-pooled to 2048 features, with ImageNet weights.

    Args:
        weights_path: a local copy of INCEPTION_WEIGHTS_FILE. None takes the Keras cache
            (~/.keras/models), downloading the file there if it is missing.

    Returns:
        A `keras.Model` mapping images (batch, 299, 299, 3) in [-1, 1] to (batch, 2048).

    Raises:
        FileNotFoundError: `weights_path` does not exist, or the weights are not cached
            and cannot be downloaded (no internet).
        ValueError: the file does not hold Inception-v3 weights.
    """
    if weights_path is None:
        try:
            weights_path = keras.utils.get_file(INCEPTION_WEIGHTS_FILE, INCEPTION_WEIGHTS_URL,
                                                cache_subdir="models", file_hash=INCEPTION_WEIGHTS_HASH)
        except Exception as error:  # Keras wraps network failures in a bare Exception.
            raise FileNotFoundError(
                f"the Inception-v3 ImageNet weights are not cached and could not be downloaded "
                f"({_first_line(error)}); download {INCEPTION_WEIGHTS_URL} elsewhere and pass "
                f"--inception-weights PATH") from None
    elif not os.path.isfile(weights_path):
        raise FileNotFoundError(f"Inception-v3 weights file not found: {weights_path}")
    try:
        return keras.applications.InceptionV3(
            include_top=False, weights=weights_path, pooling="avg",
            input_shape=(INCEPTION_IMAGE_SIZE, INCEPTION_IMAGE_SIZE, 3))
    except Exception as error:  # a wrong file fails in h5py or in Keras, with many types
        raise ValueError(f"{weights_path} does not hold Inception-v3 (no top) weights: "
                         f"{_first_line(error)}") from None


def inception_features(inception_model, images):
    """Inception-v3 features of 28x28x1 images in [-1, 1].

    The images are resized to 299x299 and their one channel copied to three. [-1, 1] is
    already the input range of Keras's Inception-v3 (its preprocess_input maps to it).

    Returns:
        A float32 numpy array of shape (N, 2048).
    """
    features = []
    for start in range(0, len(images), INCEPTION_BATCH_SIZE):
        batch = tf.image.resize(images[start:start + INCEPTION_BATCH_SIZE],
                                (INCEPTION_IMAGE_SIZE, INCEPTION_IMAGE_SIZE), method="bilinear")
        batch = tf.tile(batch, (1, 1, 1, 3))
        features.append(np.asarray(inception_model(batch, training=False)))
    return np.concatenate(features)


# ----------------------------------------------------------------------------------------
# The evaluator: the real statistics once, then any number of evaluations.

class Evaluator:
    """Holds the classifier and the statistics of the real test images.

    Building it loads the classifier and passes the 10,000 test images through it once
    (a few seconds; with `inception=True`, also through Inception-v3, which is slow).
    Every `evaluate` call after that only needs the generated images.

    Args:
        data_dir: where the Fashion-MNIST files are; see `data.load_fashion_mnist`.
        batch_size: images per forward pass.
        classifier_weights: the classifier's weights file (default: the shipped one).
        inception: also compute FID with Inception-v3.
        inception_weights: a local Inception-v3 (no top) weights file, for offline use.
        k: the nearest neighbour of precision and recall.

    Raises:
        FileNotFoundError, ValueError: missing or bad data, classifier or Inception weights,
            or a batch size or k that is not a positive integer.
    """

    def __init__(self, data_dir=None, batch_size=BATCH_SIZE, classifier_weights=classifier.WEIGHTS_PATH,
                 inception=False, inception_weights=None, k=PRECISION_RECALL_K):
        for name, value in (("batch_size", batch_size), ("k", k)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.batch_size = batch_size
        self.k = k
        model = classifier.load_classifier(classifier_weights)
        # One model with two outputs: the features for FID, precision and recall, and the
        # logits for the Inception Score and the histogram.
        features_and_logits = keras.Model(
            model.input, [model.get_layer(classifier.FEATURES_LAYER_NAME).output, model.output])

        # Compiled once into a graph: about a third faster than calling the model eagerly.
        @tf.function(reduce_retracing=True)
        def classify_batch(images):
            features, logits = features_and_logits(images, training=False)
            return features, tf.nn.softmax(logits)

        self._classify_batch = classify_batch
        self._inception_model = load_inception_model(inception_weights) if inception else None

        test_images, _ = data.load_fashion_mnist("test", data_dir)
        real_images = data.scale_images(test_images).numpy()
        self.real_features, _ = self.classify(real_images)
        self.real_mu, self.real_sigma = feature_statistics(self.real_features)
        self.real_radii = nearest_neighbour_radii(self.real_features, k)
        if self._inception_model is not None:
            self.real_inception_mu, self.real_inception_sigma = feature_statistics(
                inception_features(self._inception_model, real_images))

    def classify(self, images):
        """Passes images (N, 28, 28, 1) in [-1, 1] through the classifier.

        Returns:
            (features, probabilities): float32 numpy arrays of shapes (N, 128) and (N, 10).
        """
        features, probabilities = [], []
        for start in range(0, len(images), self.batch_size):
            batch_features, batch_probabilities = self._classify_batch(images[start:start + self.batch_size])
            features.append(batch_features.numpy())
            probabilities.append(batch_probabilities.numpy())
        return np.concatenate(features), np.concatenate(probabilities)

    def evaluate_images(self, images):
        """Measures any images against the real test images.

        Args:
            images: an array of shape (N, 28, 28, 1) or (N, 28, 28) in [-1, 1], N > k.

        Returns:
            A dict with "fid", "inception_score", "precision", "recall" (floats),
            "class_histogram" (a list of 10 fractions summing to 1) and "num_samples";
            with Inception-v3 also "inception_fid".

        Raises:
            ValueError: the images have the wrong shape, are too few, or are not finite.
        """
        images = np.asarray(images, dtype=np.float32)
        if images.ndim == 3:
            images = images[..., None]
        if images.shape[1:] != IMAGE_SHAPE:
            raise ValueError(f"expected images of shape (N, 28, 28, 1), got {images.shape}")
        if len(images) <= self.k:
            raise ValueError(f"need more than k={self.k} images, got {len(images)}")
        if not np.isfinite(images).all():
            raise ValueError("the images contain NaN or infinite values")

        fake_features, probabilities = self.classify(images)
        fake_mu, fake_sigma = feature_statistics(fake_features)
        precision, recall = precision_recall(self.real_features, fake_features, self.k, self.real_radii)
        results = {
            "num_samples": len(images),
            "fid": frechet_distance(self.real_mu, self.real_sigma, fake_mu, fake_sigma),
            "inception_score": inception_score(probabilities),
            "precision": precision,
            "recall": recall,
            "class_histogram": class_histogram(probabilities),
        }
        if self._inception_model is not None:
            fake_inception_mu, fake_inception_sigma = feature_statistics(
                inception_features(self._inception_model, images))
            results["inception_fid"] = frechet_distance(
                self.real_inception_mu, self.real_inception_sigma, fake_inception_mu, fake_inception_sigma)
        return results

    def evaluate(self, generator, num_samples=NUM_SAMPLES, seed=0):
        """Generates `num_samples` images from seeded noise and measures them.

        Returns:
            The dict of `evaluate_images`. The same generator and seed give the same numbers.

        Raises:
            ValueError: `generator` is not a generator, num_samples is not more than k, or
                the generator produced NaN or infinite values.
        """
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples <= self.k:
            raise ValueError(f"num_samples must be an integer greater than k={self.k}, got {num_samples!r}")
        images = generate_images(generator, num_samples, seed, self.batch_size)
        return self.evaluate_images(images)


# ----------------------------------------------------------------------------------------
# Command line.

def format_results(results):
    """Returns the results as text, one measurement per line, for people to read."""
    lines = [
        f"samples:                    {results['num_samples']}",
        f"FID (classifier features):  {results['fid']:.3f}",
    ]
    if "inception_fid" in results:
        lines.append(f"FID (Inception-v3):         {results['inception_fid']:.3f}")
    lines += [
        f"Inception Score (classifier): {results['inception_score']:.3f}",
        f"precision (k={PRECISION_RECALL_K}):            {results['precision']:.3f}",
        f"recall (k={PRECISION_RECALL_K}):               {results['recall']:.3f}",
        "class histogram:",
    ]
    for class_name, fraction in zip(data.CLASS_NAMES, results["class_histogram"]):
        lines.append(f"  {class_name:<12} {fraction:6.1%}")
    return "\n".join(lines)


def make_argument_parser():
    """Returns the parser of the command line; `--help` shows every default."""
    parser = cli.make_parser(
        "evaluate.py",
        "Measure a generator's images: FID, Inception Score, precision and recall in the "
        "features of a Fashion-MNIST classifier, and the class histogram.")
    parser.add_argument("generator", help="the generator's .keras file")
    parser.add_argument("--num-samples", type=cli.bounded_int(PRECISION_RECALL_K + 1, MAX_NUM_SAMPLES),
                        default=NUM_SAMPLES, help="images to generate; the default is as many as there are test images")
    # A fixed default, unlike training's drawn one: two evaluations of one generator
    # should give the same numbers unless asked otherwise.
    cli.add_seed_argument(parser, default=0, help_text="seed of the noise; the same seed gives the same numbers")
    parser.add_argument("--data-dir", default=None,
                        help="directory holding the Fashion-MNIST .gz files (none: as data.py finds them)")
    parser.add_argument("--batch-size", type=cli.bounded_int(1, MAX_BATCH_SIZE), default=BATCH_SIZE,
                        help="images per forward pass")
    parser.add_argument("--classifier-weights", default=classifier.WEIGHTS_PATH,
                        help="the classifier's weights file; the default is the one shipped with the project")
    parser.add_argument("--inception", action="store_true",
                        help="also compute FID with Inception-v3 (needs its ImageNet weights; slow on a CPU)")
    parser.add_argument("--inception-weights", default=None, metavar="PATH",
                        help=f"a local {INCEPTION_WEIGHTS_FILE}, for --inception without internet "
                             "(none: the Keras cache or a download)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    return parser


def main(argv=None):
    """Evaluates the generator named on the command line and prints the results.

    Returns:
        0. Bad arguments or files end the process with one error line and exit code 2.
    """
    parser = make_argument_parser()
    args = parser.parse_args(argv)
    if args.inception_weights is not None and not args.inception:
        parser.error("--inception-weights needs --inception")
    seed = cli.choose_seed(args.seed)

    try:
        # The generator first: a wrong file should fail before the slower set-up.
        generator = load_generator(args.generator)
        evaluator = Evaluator(args.data_dir, args.batch_size, args.classifier_weights,
                              args.inception, args.inception_weights)
        results = evaluator.evaluate(generator, args.num_samples, seed)
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    if args.json:
        results["class_names"] = list(data.CLASS_NAMES)
        print(json.dumps(results))
    else:
        print(format_results(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
