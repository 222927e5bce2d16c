"""Which numbers and which devices training runs on: precision, distribution, threads.

Precision. "mixed_bfloat16" computes in bfloat16 and keeps variables, losses and the
optimizer state in float32. On CPUs with native bfloat16 instructions (AVX512_BF16 or AMX)
it is the fastest choice; "mixed_float16" is the fast choice on GPUs (with loss scaling,
because float16 underflows); "float32" is the safe choice everywhere else.

Distribution. "default" trains on one device. "mirrored" copies the models onto every
local GPU (`tf.distribute.MirroredStrategy`) and splits each batch between them;
"multiworker" does the same across machines (`tf.distribute.MultiWorkerMirroredStrategy`,
configured by the TF_CONFIG environment variable on every machine).
"""

import contextlib
import os

import keras
import tensorflow as tf

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
STRATEGIES = ("default", "mirrored", "multiworker")


def cpu_supports_bfloat16():
    """Returns True when this CPU has native bfloat16 arithmetic (AVX512_BF16 or AMX-BF16)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = cpuinfo.read()
    except OSError:
        return False  # not Linux: no cheap way to tell, so stay with float32
    return "avx512_bf16" in flags or "amx_bf16" in flags


def default_precision():
    """Returns the fastest precision that keeps image quality on this machine's devices."""
    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    if cpu_supports_bfloat16():
        return "mixed_bfloat16"
    return "float32"


def check_precision(precision):
    """Returns `precision`, or `default_precision()` for None.

    Raises:
        ValueError: not one of PRECISIONS.
    """
    if precision is None:
        return default_precision()
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
