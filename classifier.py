"""A small Fashion-MNIST classifier whose features evaluate.py measures images with.

FID and the Inception Score were defined with Inception-v3, an ImageNet network that
expects 299x299 colour photos. For 28x28 grayscale images the common practice (TF-GAN
did it for MNIST) is to use a classifier trained on the data set itself: its
penultimate layer, named "features" here, gives the feature vectors for FID and for
precision and recall, and its softmax gives the class probabilities for the Inception
Score and the class histogram.

The project ships the trained weights (fashion_classifier.weights.h5, about 0.6 MB), so
every user measures with the same network. To retrain them, reproducibly:

    python classifier.py

Usage from Python:

    model = classifier.load_classifier()    # the shipped weights
    logits = model(images, training=False)  # images: float32 (N, 28, 28, 1) in [-1, 1]
"""

import os
import sys
import time
import warnings

import keras
import numpy as np
import tensorflow as tf

import cli
import data

# ----------------------------------------------------------------------------------------
# Hyperparameters of the classifier and its training.
FILTERS = (32, 64, 64, 128, 64)  # channels of the five conv blocks: enough for >92% test accuracy, few enough to train in minutes
STRIDES = (1, 2, 1, 2, 2)  # 28 -> 14 -> 7 -> 4 with strided convs, so the costly blocks run on small maps
FEATURE_WIDTH = 128  # width of the "features" layer: enough to separate 10 classes, small enough for a stable 128x128 covariance from 10,000 images
DROPOUT_RATE = 0.25  # before and after the feature layer; without it the net overfits the training set within a few epochs
EPOCHS = 6  # test accuracy levels off after about five epochs; six take 4 to 8 minutes on 2 CPU cores
BATCH_SIZE = 128  # a common default; large enough for efficient CPU matrix multiplies, small enough for many steps per epoch
LEARNING_RATE = 2e-3  # Adam's peak rate; cosine decay brings it to zero, so a short run still ends well converged
SEED = 0  # fixes initial weights, dropout masks and shuffling, so retraining gives the same weights
# ----------------------------------------------------------------------------------------
MAX_EPOCHS, MAX_BATCH_SIZE = 1000, 60_000  # catch typos: a batch holds at most the training set

WEIGHTS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fashion_classifier.weights.h5")
FEATURES_LAYER_NAME = "features"


def make_classifier_model(filters=FILTERS, strides=STRIDES, feature_width=FEATURE_WIDTH,
                          dropout_rate=DROPOUT_RATE):
    """Builds the classifier: images (batch, 28, 28, 1) in [-1, 1] -> logits (batch, 10).

    Conv-BatchNorm-ReLU blocks down to 4x4x64, flattened, then a Dense layer named
    "features" (the feature vector evaluate.py uses) and a Dense layer of 10 logits.
    The model computes in float32 whatever the global dtype policy, so its features do
    not depend on whether the GAN trains in mixed precision.

    Returns:
        A `keras.Model` named "fashion_classifier".
    """
    images = keras.Input(shape=(28, 28, 1), name="image")
    x = images
    for block_filters, block_strides in zip(filters, strides):
        # No bias: the BatchNorm that follows has its own offset.
        x = keras.layers.Conv2D(block_filters, 3, strides=block_strides, padding="same",
                                use_bias=False, dtype="float32")(x)
        x = keras.layers.BatchNormalization(dtype="float32")(x)
        x = keras.layers.ReLU(dtype="float32")(x)
    # Flattening keeps where things are (a sleeve, a heel), which global average pooling
    # would throw away; the last block's few channels keep the Dense layer below small.
    x = keras.layers.Flatten(dtype="float32")(x)
    x = keras.layers.Dropout(dropout_rate, dtype="float32")(x)
    features = keras.layers.Dense(feature_width, activation="relu", dtype="float32",
                                  name=FEATURES_LAYER_NAME)(x)
    x = keras.layers.Dropout(dropout_rate, dtype="float32")(features)
    logits = keras.layers.Dense(data.NUM_CLASSES, dtype="float32", name="logits")(x)
    return keras.Model(images, logits, name="fashion_classifier")


def load_classifier(weights_path=WEIGHTS_PATH):
    """Builds the classifier and loads trained weights into it.

    Returns:
        The `keras.Model` of `make_classifier_model()` with the weights of `weights_path`.

    Raises:
        FileNotFoundError: the weights file does not exist.
        ValueError: the file does not hold weights of this architecture.
    """
    if not os.path.isfile(weights_path):
        raise FileNotFoundError(
            f"classifier weights not found: {weights_path}; run `python classifier.py` to train them")
    model = make_classifier_model()
    try:
        with warnings.catch_warnings():
            # A wrong file makes Keras warn once per layer before it fails; the error
            # below says the same in one line.
            warnings.simplefilter("ignore", UserWarning)
            model.load_weights(weights_path)
    except Exception as error:  # Keras raises several types for a wrong or corrupt file.
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{weights_path} does not hold this classifier's weights ({first_line})") from None
    return model


def train_classifier(epochs=EPOCHS, batch_size=BATCH_SIZE, learning_rate=LEARNING_RATE,
                     seed=SEED, data_dir=None, verbose=2):
    """Trains the classifier on the 60,000 training images, reproducibly.

    Fixing the seed and turning on op determinism makes two runs on the same machine and
    TensorFlow version give bit-identical weights. This is global TensorFlow state, which
    is fine for the one-off command that calls this function.

    Returns:
        (model, test_accuracy): the trained `keras.Model` and its accuracy on the 10,000
        test images, which the training never sees.

    Raises:
        ValueError: epochs, batch_size or learning_rate is not positive.
    """
    if epochs <= 0 or batch_size <= 0 or learning_rate <= 0:
        raise ValueError(f"epochs, batch size and learning rate must be positive, got "
                         f"{epochs}, {batch_size}, {learning_rate}")
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()

    train_images, train_labels = data.load_fashion_mnist("train", data_dir)
    test_images, test_labels = data.load_fashion_mnist("test", data_dir)
    train_dataset = (tf.data.Dataset.from_tensor_slices((train_images, train_labels.astype(np.int32)))
                     .shuffle(len(train_images), seed=seed, reshuffle_each_iteration=True)
                     .batch(batch_size)
                     .map(lambda images, labels: (data.scale_images(images), labels))
                     .prefetch(tf.data.AUTOTUNE))

    model = make_classifier_model()
    steps = epochs * int(np.ceil(len(train_images) / batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    # The dataset shuffles itself with the seed; shuffle=False stops Keras warning about it.
    model.fit(train_dataset, epochs=epochs, shuffle=False, verbose=verbose)
    _, test_accuracy = model.evaluate(data.scale_images(test_images), test_labels.astype(np.int32),
                                      batch_size=500, verbose=0)
    return model, float(test_accuracy)


def make_argument_parser():
    """Returns the parser of the command line; `--help` shows every default."""
    parser = cli.make_parser(
        "classifier.py",
        "Train the Fashion-MNIST classifier whose features evaluate.py uses, write its weights "
        "and print its test accuracy.")
    parser.add_argument("--epochs", type=cli.bounded_int(1, MAX_EPOCHS), default=EPOCHS,
                        help="passes over the training set")
    parser.add_argument("--batch-size", type=cli.bounded_int(1, MAX_BATCH_SIZE), default=BATCH_SIZE,
                        help="images per training step")
    parser.add_argument("--learning-rate", type=cli.positive_float, default=LEARNING_RATE,
                        help="peak Adam learning rate, decayed to zero over the run")
    # A fixed default: retraining should give the shipped weights again.
    cli.add_seed_argument(parser, default=SEED,
                          help_text="seed of the initial weights, dropout and shuffling")
    parser.add_argument("--data-dir", default=None,
                        help="directory holding the Fashion-MNIST .gz files (none: as data.py finds them)")
    parser.add_argument("--out", default=WEIGHTS_PATH,
                        help="weights file to write; must end in .weights.h5; the default is the shipped file")
    return parser


def main(argv=None):
    """Trains the classifier as the command line asks and writes its weights.

    Returns:
        0. Bad arguments or data end the process with one error line and exit code 2.
    """
    parser = make_argument_parser()
    args = parser.parse_args(argv)
    if not args.out.endswith(".weights.h5"):
        parser.error(f"--out must end in .weights.h5, got {args.out}")
    seed = cli.choose_seed(args.seed)

    start = time.time()
    try:
        model, test_accuracy = train_classifier(args.epochs, args.batch_size, args.learning_rate,
                                                seed, args.data_dir)
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    # Save from an uncompiled copy: a compiled model's weights file also holds the
    # optimizer's state, which would triple its size for nothing.
    inference_model = make_classifier_model()
    inference_model.set_weights(model.get_weights())
    inference_model.save_weights(args.out)
    print(f"test accuracy: {test_accuracy:.4f}")
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB) in {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
