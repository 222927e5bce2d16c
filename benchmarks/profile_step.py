"""Where the time of one default training step goes, on this machine.

    python benchmarks/profile_step.py                      # the precision the project chooses
    python benchmarks/profile_step.py --precision float32

Times the parts of `train.train_step` on the project's default models and batch size,
each as a tf.function of its own, in alternation (a block of steps of each part in turn,
repeated; the median block counts):

  pipeline        next() on the training tf.data iterator, alone
  call overhead   a tf.function that takes the step's arguments and does nothing
  G forward       generator(noise, training=True)
  forward         G forward, then D on the real and on the generated batch
  + gradients     the forward with both tapes, and both gradients
  full step       train.train_step itself: the above plus both Adam updates

Differences between consecutive parts give the backward pass and the Adam updates. Each
compute part's arithmetic rate is set against a matmul roof measured in the same
precision (benchmarks/throughput.py's estimate: 2 FLOPs a multiply-add, backward about
twice the forward).
"""

import os
import sys

# Hide TensorFlow's C++ start-up chatter; real errors still reach the user.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# benchmarks/ is a plain folder: make the project's modules importable from the repository root.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, REPO_ROOT)
sys.path.insert(0, BENCHMARKS_DIR)

import statistics  # noqa: E402
import time  # noqa: E402

import cli  # noqa: E402
import devices  # noqa: E402

ROUNDS = 7  # alternating rounds; the median ignores a few noisy ones
SECONDS_PER_BLOCK = 1.0  # each part runs about this long per round
NUM_IMAGES = 4096  # the pipeline's images: enough that batches differ


def make_parts(precision, batch_size, images):
    """Builds the timed parts; returns a list of (name, function, forward-pass multiples)."""
    import tensorflow as tf

    import data
    import models
    import throughput
    import train

    with devices.dtype_policy(precision):
        generator = models.make_generator_model()
        discriminator = models.make_discriminator_model()
    generator_optimizer, discriminator_optimizer = models.make_optimizers(loss_scaling=(precision == "mixed_float16"))
    generator_optimizer.build(generator.trainable_variables)
    discriminator_optimizer.build(discriminator.trainable_variables)
    noise_seed = tf.Variable(0, dtype=tf.int64, trainable=False)
    batches = iter(data.make_dataset(images, batch_size, seed=0).repeat())
    real_images = next(batches)
    noise = tf.random.normal([batch_size, models.LATENT_DIM])
    arguments = (real_images, generator, discriminator, generator_optimizer, discriminator_optimizer, noise_seed)

    @tf.function
    def call_overhead(real_images, generator, discriminator, generator_optimizer, discriminator_optimizer, seed):
        return {"d_loss": tf.cast(seed, tf.float32)}

    @tf.function
    def generator_forward(noise):
        return {"d_loss": tf.reduce_sum(generator(noise, training=True))}

    @tf.function
    def forward(noise, real_images):
        fake_logits = discriminator(generator(noise, training=True), training=True)
        real_logits = discriminator(real_images, training=True)
        return {"d_loss": models.discriminator_loss(real_logits, fake_logits) + models.generator_loss(fake_logits)}

    @tf.function
    def forward_and_gradients(noise, real_images):
        with tf.GradientTape() as generator_tape, tf.GradientTape() as discriminator_tape:
            fake_logits = discriminator(generator(noise, training=True), training=True)
            real_logits = discriminator(real_images, training=True)
            discriminator_loss = models.discriminator_loss(real_logits, fake_logits)
            generator_loss = models.generator_loss(fake_logits)
        gradients = (generator_tape.gradient(generator_loss, generator.trainable_variables)
                     + discriminator_tape.gradient(discriminator_loss, discriminator.trainable_variables))
        return {"d_loss": tf.add_n([tf.reduce_sum(tf.cast(g, tf.float32)) for g in gradients])}

    flops_per_image = throughput.training_flops_per_image(generator, discriminator) / 3  # one forward pass
    parts = [
        ("pipeline", lambda: {"d_loss": tf.reduce_sum(next(batches))}, 0),
        ("call overhead", lambda: call_overhead(*arguments), 0),
        ("G forward", lambda: generator_forward(noise), None),
        ("forward", lambda: forward(noise, real_images), 1),
        ("+ gradients", lambda: forward_and_gradients(noise, real_images), 3),
        ("full step", lambda: train.train_step(*arguments), 3),
    ]
    generator_flops = 2.0 * throughput.forward_multiply_adds(generator)
    return parts, flops_per_image, generator_flops


def time_block(function, steps):
    start = time.perf_counter()
    for _ in range(steps):
        result = function()
    float(result["d_loss"])  # wait for the last step
    return (time.perf_counter() - start) / steps


def make_argument_parser():
    """Returns the parser of the command line; `--help` shows every default."""
    parser = cli.make_parser("profile_step.py", "Time the parts of one default training step.")
    parser.add_argument("--precision", choices=devices.PRECISIONS, default=None,
                        help="none: the precision the project measures as fastest here")
    parser.add_argument("--data-dir", default=None,
                        help="directory of the Fashion-MNIST .gz files (none: as data.py finds them)")
    return parser


def main(argv=None):
    """Runs the profile and prints the breakdown; returns the exit code."""
    args = make_argument_parser().parse_args(argv)
    import tensorflow as tf

    import data
    import precision_probe
    import throughput
    import train

    try:
        images, _ = data.load_fashion_mnist("train", args.data_dir)
    except (ValueError, FileNotFoundError) as error:
        return cli.report("profile_step.py", error)
    choice = precision_probe.decide(args.precision, train.train_step, train.BATCH_SIZE, log=None)
    precision, batch_size = choice.precision, train.BATCH_SIZE
    print(f"TensorFlow {tf.__version__}, {devices.device_name()}; {choice.describe()}; batch {batch_size}")
    roof = throughput.measure_matmul_roof(tf.float32 if precision == "float32" else
                                          (tf.float16 if precision == "mixed_float16" else tf.bfloat16), 5)
    print(f"Matmul roof in {precision}: {roof:.0f} GFLOP/s", flush=True)

    parts, flops_per_image, generator_flops = make_parts(precision, batch_size, images[:NUM_IMAGES])
    steps = {}
    for name, function in [(name, function) for name, function, _ in parts]:
        seconds = time_block(function, 3)  # warm-up: trace and optimize
        seconds = time_block(function, 3)
        steps[name] = max(3, round(SECONDS_PER_BLOCK / seconds))
    timings = {name: [] for name, _, _ in parts}
    for round_index in range(ROUNDS):
        for name, function, _ in parts:
            timings[name].append(time_block(function, steps[name]))
        print(f"  round {round_index + 1}/{ROUNDS}", flush=True)

    milliseconds = {name: 1000 * statistics.median(values) for name, values in timings.items()}
    full = milliseconds["full step"]
    print()
    print(f"{'part':16} {'ms/step':>8} {'% of step':>9} {'GFLOP/s':>8} {'% roof':>7}")
    for name, _, forward_multiples in parts:
        if forward_multiples is None:
            flops = generator_flops * batch_size
        else:
            flops = forward_multiples * flops_per_image * batch_size
        rate = flops / (milliseconds[name] / 1000) / 1e9 if flops else 0
        print(f"{name:16} {milliseconds[name]:>8.2f} {100 * milliseconds[name] / full:>8.0f}% "
              f"{rate:>8.0f} {100 * rate / roof:>6.0f}%")
    print()
    print(f"backward (gradients - forward):     {milliseconds['+ gradients'] - milliseconds['forward']:.2f} ms")
    print(f"Adam updates (full step - gradients): {full - milliseconds['+ gradients']:.2f} ms")
    print(f"images/s of the step alone: {batch_size / full * 1000:.0f}; "
          f"with the pipeline: {batch_size / (full + milliseconds['pipeline']) * 1000:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
