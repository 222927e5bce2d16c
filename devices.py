"""Which numbers and which devices training runs on: precision, distribution, threads.

Precision. "mixed_bfloat16" computes in bfloat16 and keeps variables, losses and the
optimizer state in float32; "mixed_float16" does the same in float16, with loss scaling
because float16 underflows; "float32" computes in float32. Which is fastest is measured,
not guessed (precision_probe.py); this module says which ones a device computes natively.

Distribution. "default" trains on one device. "mirrored" copies the models onto every
local GPU (`tf.distribute.MirroredStrategy`) and splits each batch between them;
"multiworker" does the same across machines (`tf.distribute.MultiWorkerMirroredStrategy`,
configured by the TF_CONFIG environment variable on every machine).

Everything that differs between one device and several lives here, so that the training
loop reads the same for both: which worker writes the results (`is_chief`), the noise of
each replica (`sample_noise`), running a step on every replica (`distribute_step`,
`distribute_batches`), and the decisions all workers must take alike (`agree`,
`from_chief`).
"""

import contextlib
import os

import keras
import tensorflow as tf

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
STRATEGIES = ("default", "mirrored", "multiworker")


def cpu_supports_bfloat16():
    """Returns True when this CPU has bfloat16 instructions (AVX512_BF16 or AMX-BF16).

    That says bfloat16 is computed natively, not that it is faster than float32: on some
    CPUs with these flags it is slower. precision_probe.py measures which is faster.
    """
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = cpuinfo.read()
    except OSError:
        return False  # not Linux: no cheap way to tell, so stay with float32
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _gpu_compute_capability():
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    details = tf.config.experimental.get_device_details(gpus[0])
    return details.get("compute_capability", (0, 0))


def native_precisions():
    """Returns the precisions this machine's training device computes natively, float32 first.

    GPU: float32, mixed_float16, and mixed_bfloat16 from compute capability 8.0 (Ampere) on.
    CPU: float32, and mixed_bfloat16 where the CPU has bfloat16 instructions.
    """
    capability = _gpu_compute_capability()
    if capability is not None:
        return ("float32", "mixed_float16") + (("mixed_bfloat16",) if tuple(capability) >= (8, 0) else ())
    return ("float32", "mixed_bfloat16") if cpu_supports_bfloat16() else ("float32",)


def emulation_warning(precision):
    """Returns a one-line warning when `precision` is only emulated here (slow), else None."""
    if precision in native_precisions():
        return None
    device = "this GPU" if _gpu_compute_capability() is not None else "this CPU"
    return (f"{device} has no {precision.replace('mixed_', '')} arithmetic of its own: --precision {precision} "
            "is emulated and will be slow; leave --precision out to use the fastest one")


def device_name():
    """Returns the training device's model name, e.g. "NVIDIA A100" or "AMD EPYC, family 26
    model 2 (2 cores)"."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return f"{cpu_name(cpuinfo.read())} ({os.cpu_count()} cores)"
    except OSError:
        return f"CPU ({os.cpu_count()} cores)"


def cpu_name(cpuinfo):
    """Returns the first processor's name in the text of /proc/cpuinfo, with its family and
    model numbers when they are listed.

    A virtual machine's CPU is often named only "AMD EPYC" or "Intel Xeon Processor", which
    covers generations whose fastest precision differs (an AMD Zen 4 and a Zen 5 both say
    "AMD EPYC"); the numbers tell them apart, so a measurement remembered on one is not
    taken for the other.
    """
    fields = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            break  # the end of the first processor's block
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or "CPU"
    if fields.get("cpu family") and fields.get("model"):
        name += f", family {fields['cpu family']} model {fields['model']}"
    return name


def check_precision(precision):
    """Returns `precision` if it is one of PRECISIONS.

    Raises:
        ValueError: it is not.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


@contextlib.contextmanager
def dtype_policy(precision):
    """Builds layers under a Keras dtype policy inside the block, then restores the old one.

    Keras reads the global policy when a layer is created, so models built inside the
    block keep the policy for their whole life (and in their `.keras` files).
    """
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def make_strategy(name="default"):
    """Returns the `tf.distribute.Strategy` called `name`.

    Raises:
        ValueError: not one of STRATEGIES, or "multiworker" without a TF_CONFIG.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--strategy multiworker needs the TF_CONFIG environment variable "
                             "(cluster addresses and this worker's index) on every worker")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")


def configure_threads(intra_op_threads=0, inter_op_threads=0):
    """Sets TensorFlow's thread pools; 0 lets TensorFlow choose. Must run before any op.

    Raises:
        ValueError: a negative thread count.
    """
    if intra_op_threads < 0 or inter_op_threads < 0:
        raise ValueError("thread counts must be 0 (automatic) or positive")
    tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
    tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)


# ---------------------------------------------------------------------------- several replicas


def is_chief(strategy):
    """Returns True for the one process that writes results.

    Under MultiWorkerMirroredStrategy every worker trains, but only the chief (worker 0
    when there is no "chief" task) writes results; with one process it is the chief.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    cluster = resolver.cluster_spec().as_dict()
    if "chief" in cluster:
        return resolver.task_type == "chief"
    return resolver.task_type == "worker" and resolver.task_id == 0


def worker_id(strategy):
    """Returns this worker's index in a multi-worker cluster, or 0."""
    resolver = getattr(strategy, "cluster_resolver", None)
    return int(resolver.task_id or 0) if resolver is not None and resolver.task_type else 0


def sample_noise(real_images, latent_dim, seed):
    """Draws standard-normal noise, one row per real image, from a counter-based RNG.

    The noise of the whole global batch is drawn from `seed` and every replica takes its
    own rows of it, so a step gives the same result on one device or split over several.

    Args:
        real_images: this replica's batch; only its size is used.
        latent_dim: noise size.
        seed: int64 tensor of shape (2,), different for every step.

    Returns:
        A float32 tensor of shape (batch, latent_dim).
    """
    local_batch_size = tf.shape(real_images)[0]
    replica_context = tf.distribute.get_replica_context()
    if replica_context is None or replica_context.num_replicas_in_sync == 1:
        return tf.random.stateless_normal([local_batch_size, latent_dim], seed=seed)
    batch_sizes = replica_context.all_gather(tf.reshape(local_batch_size, [1]), axis=0)
    offset = tf.reduce_sum(batch_sizes[:replica_context.replica_id_in_sync_group])
    global_noise = tf.random.stateless_normal([tf.reduce_sum(batch_sizes), latent_dim], seed=seed)
    return global_noise[offset:offset + local_batch_size]


@tf.function
def _run_on_every_replica(strategy, step_function, real_images, *step_arguments):
    per_replica_results = strategy.run(step_function, args=(real_images,) + step_arguments)
    results = {name: strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
               for name, value in per_replica_results.items()}
    # The images of every replica on every worker, for an honest images/s.
    per_replica_images = strategy.run(lambda images: tf.shape(images)[0], args=(real_images,))
    results["images"] = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica_images, axis=None)
    return results


def distribute_step(strategy, step_function):
    """Wraps a train step so that it runs on every replica of `strategy`.

    Args:
        step_function: a `tf.function` taking (real_images, *arguments) and returning a
            dict of scalars.

    Returns:
        `step(real_images, *arguments)`, returning `step_function`'s dict (averaged over
        replicas) plus "images", the number of images in the step on all replicas. On one
        device it is traced once for any batch size, so the short last batch of an epoch
        does not trace the step again.
    """
    if strategy.num_replicas_in_sync > 1:
        return lambda real_images, *arguments: _run_on_every_replica(strategy, step_function, real_images,
                                                                     *arguments)
    traced = []

    def step(real_images, *arguments):
        if not traced:
            step_function.get_concrete_function(
                tf.TensorSpec([None] + list(real_images.shape[1:]), real_images.dtype), *arguments)
            traced.append(True)
        results = dict(step_function(real_images, *arguments))
        results["images"] = tf.shape(real_images)[0]
        return results
    return step


def distribute_batches(strategy, batches):
    """Returns `batches` split between the replicas of `strategy` (unchanged on one device)."""
    if strategy.num_replicas_in_sync == 1:
        return batches
    # Every worker holds the whole (small) data set, so it is split by batch, not by file.
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(batches.with_options(options))


def check_batches_fit_replicas(strategy, dataset, steps_per_epoch):
    """Raises ValueError when the last batch of an epoch has fewer images than there are
    replicas: a replica given no image fails, and leaves the other workers waiting."""
    if strategy.num_replicas_in_sync == 1:
        return
    last_batch_size = int(dataset.skip(steps_per_epoch - 1).map(lambda images: tf.shape(images)[0])
                          .get_single_element())
    if last_batch_size < strategy.num_replicas_in_sync:
        raise ValueError(f"the last batch of an epoch holds {last_batch_size} image(s), fewer than the "
                         f"{strategy.num_replicas_in_sync} replicas; change the batch size or the number of images")


@tf.function
def _maximum_over_replicas(strategy, values):
    per_replica = strategy.run(lambda: tf.reshape(tf.identity(values), [1, -1]))
    return tf.reduce_max(strategy.gather(per_replica, axis=0), axis=0)


def agree(strategy, values):
    """Returns the element-wise maximum of a list of whole numbers over all workers.

    Decisions such as "stop now" or "save a checkpoint now" must be the same on every
    worker, since saving is collective; each worker contributes its own answer and all
    take the maximum: one worker's "yes" is everyone's. On one device it returns `values`.
    """
    if strategy.num_replicas_in_sync == 1:
        return [int(value) for value in values]
    maximum = _maximum_over_replicas(strategy, tf.constant([int(value) for value in values], tf.int64))
    return [int(value) for value in maximum.numpy()]


def from_chief(strategy, value):
    """Returns the chief's whole number `value` on every worker (`value` itself on one device).

    Every worker must shuffle alike and compute alike, since each takes its share of every
    batch: MultiWorkerMirroredStrategy starts a variable everywhere with the chief's value.
    """
    if strategy.num_replicas_in_sync == 1:
        return value
    with strategy.scope():
        return int(tf.Variable(value, dtype=tf.int64, trainable=False).numpy())
