"""--strategy mirrored and multiworker, proved on CPUs: no GPU and no second machine needed.

Two logical CPU devices stand in for two GPUs, and two local processes talking over
loopback stand in for two machines.
"""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import numpy as np
import tensorflow as tf

import train
from conftest import REPO_ROOT, write_fashion_mnist

# One thread per TensorFlow pool in the processes these tests start: the machines running
# the tests may have few cores, and two workers share them.
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "2"}

# Runs in a fresh interpreter: logical devices can only be configured before TensorFlow
# initializes its devices, which has long happened in the pytest process.
EQUIVALENCE_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import devices
    import models
    import train

    STEPS = 2
    LATENT_DIM = 16
    # float32 throughout (the default Keras policy, never switched here): under
    # mixed_bfloat16, the default on CPUs with bfloat16 instructions, the rounding of
    # 8-bit mantissas would drown the differences this test looks for.
    assert keras.mixed_precision.global_policy().name == "float32"
    keras.utils.set_random_seed(0)
    initial = (models.make_generator_model(LATENT_DIM).get_weights(),
               models.make_discriminator_model().get_weights())
    images = tf.random.stateless_uniform([16, 28, 28, 1], seed=[1, 2], minval=-1, maxval=1)

    def run(strategy):
        # The same initial weights, batch and noise seed under each strategy; models built
        # inside the scope, as train() builds them (so G's BatchNorm is synchronized there).
        with strategy.scope():
            generator = models.make_generator_model(LATENT_DIM)
            discriminator = models.make_discriminator_model()
            generator.set_weights(initial[0])
            discriminator.set_weights(initial[1])
            generator_optimizer, discriminator_optimizer = models.make_optimizers()
            generator_optimizer.build(generator.trainable_variables)
            discriminator_optimizer.build(discriminator.trainable_variables)
            noise_seed = tf.Variable(123, dtype=tf.int64, trainable=False)
        arguments = (generator, discriminator, generator_optimizer, discriminator_optimizer, noise_seed, 0.0)
        steps = []
        for _ in range(STEPS):
            if strategy.num_replicas_in_sync > 1:
                batch = next(iter(strategy.experimental_distribute_dataset(
                    tf.data.Dataset.from_tensors(images))))
                results = devices.distribute_step(strategy, train.train_step)(batch, *arguments)
            else:
                results = train.train_step(images, *arguments)
            steps.append({
                "losses": {name: float(value) for name, value in results.items()},
                # All weights, BatchNorm's moving statistics included.
                "weights": [w.tolist() for w in generator.get_weights() + discriminator.get_weights()],
            })
        return steps, strategy.num_replicas_in_sync

    one_device, _ = run(tf.distribute.get_strategy())
    mirrored, replicas = run(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
    json.dump({"replicas": replicas, "one_device": one_device, "mirrored": mirrored,
               "initial": [w.tolist() for w in initial[0] + initial[1]]}, sys.stdout)
""")


def _differences(first, second):
    """Returns the absolute differences of two lists of weights, flattened into one array."""
    return np.concatenate([np.abs(np.asarray(a) - np.asarray(b)).ravel() for a, b in zip(first, second)])


def test_mirrored_over_two_devices_takes_the_same_steps_as_one_device(tmp_path):
    script = tmp_path / "equivalence.py"
    script.write_text(EQUIVALENCE_SCRIPT)
    result = subprocess.run([sys.executable, str(script), REPO_ROOT], cwd=str(tmp_path),
                            env={**os.environ, **QUIET_ENV}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["replicas"] == 2

    for step, (alone, split) in enumerate(zip(report["one_device"], report["mirrored"])):
        for name, value in alone["losses"].items():
            assert abs(value - split["losses"][name]) < 1e-5, (step, name, value, split["losses"][name])
        # Adam moves every weight by about the learning rate (5e-4) per step whatever the
        # gradient's size. After the first step the two runs agree to ~1e-7: unsynchronized
        # BatchNorm in G would differ there by ~4e-4 (sign flips). By the second, float32
        # summation order changes the elements whose gradient is tiny, where Adam's
        # g / sqrt(v) is sensitive: with the default D about 140 of 614,000 weights (0.02%)
        # by more than 5e-5, the largest by ~1.7e-4, a third of one step.
        differences = _differences(alone["weights"], split["weights"])
        if step == 0:
            assert differences.max() < 1e-6, f"step 1: weights differ by {differences.max()}"
        else:
            assert differences.max() < 5e-4, f"step {step + 1}: weights differ by {differences.max()}"
            assert np.mean(differences > 5e-5) < 1e-3, \
                f"step {step + 1}: {np.mean(differences > 5e-5):.2%} of the weights differ by more than 5e-5"
    # The comparison is not vacuous: training moved the weights by much more than that.
    assert _differences(report["initial"], report["one_device"][0]["weights"]).max() > 1e-4


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_workers(tmp_path, *flags):
    """Starts two training workers on loopback; returns (processes, their output directories)."""
    data_dir = write_fashion_mnist(tmp_path / "fashion-mnist")
    cluster = {"worker": [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]}
    # One output directory per worker, as on two machines without a shared disk.
    out_dirs = [tmp_path / "chief", tmp_path / "worker1"]
    workers = []
    for index, out_dir in enumerate(out_dirs):
        config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        command = [sys.executable, os.path.join(REPO_ROOT, "train.py"), "--strategy", "multiworker",
                   "--max-images", "200", "--batch-size", "50", "--data-dir", data_dir,
                   "--out-dir", str(out_dir), "--seed", "0", "--quiet", "--precision", "float32", *flags]
        workers.append(subprocess.Popen(command, cwd=str(tmp_path), env={**os.environ, **QUIET_ENV, "TF_CONFIG": config},
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return workers, out_dirs


def _wait_for_workers(workers, timeout=240):
    """Returns each worker's (stdout, stderr); kills them all if one hangs past `timeout`."""
    outputs = []
    try:
        for worker in workers:
            outputs.append(worker.communicate(timeout=timeout))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.communicate()
    return outputs


def test_two_workers_train_an_epoch_and_only_the_chief_writes_results(tmp_path):
    workers, out_dirs = _start_workers(tmp_path, "--epochs", "1")
    outputs = _wait_for_workers(workers)
    for index, (worker, (stdout, stderr)) in enumerate(zip(workers, outputs)):
        assert worker.returncode == 0, f"worker {index}:\n{stdout}\n{stderr[-3000:]}"
    assert "2 replica(s)" in outputs[0][0]

    chief_dir, worker_dir = out_dirs
    for name in ("image_at_epoch_0000.png", "metrics.csv", "generator.keras", "discriminator.keras"):
        assert os.path.getsize(chief_dir / name) > 0, name
    with open(chief_dir / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["epoch"] for row in rows] == ["0"]
    assert rows[0]["steps"] == "4"  # 200 images in global batches of 50
    assert os.listdir(chief_dir / "checkpoints")
    # Worker 1 saves its own copy of each checkpoint (saving is a collective operation, and
    # a resumed run restores it from there) but writes no results.
    assert set(os.listdir(worker_dir)) <= {".worker_1_checkpoints"}, os.listdir(worker_dir)


def test_two_workers_resume_a_half_life_in_minutes_from_the_chiefs_metrics(tmp_path):
    # Only the chief writes metrics.csv, so worker 1 resumes with no first-epoch speed of its
    # own: it must take the chief's schedule, not fail alone and leave the chief waiting.
    flags = ("--lr-half-life", "0.01min")
    for epochs in ("1", "2"):
        workers, (chief_dir, worker_dir) = _start_workers(tmp_path, "--epochs", epochs, *flags)
        outputs = _wait_for_workers(workers)
        for index, (worker, (stdout, stderr)) in enumerate(zip(workers, outputs)):
            assert worker.returncode == 0, f"epochs {epochs}, worker {index}:\n{stdout}\n{stderr[-3000:]}"
    assert not os.path.exists(worker_dir / "metrics.csv")
    assert "The learning rates halve every 0.01 minutes of training" in outputs[0][0]
    with open(chief_dir / "metrics.csv", newline="") as file:
        assert [row["epoch"] for row in csv.DictReader(file)] == ["0", "1"]


def test_mirrored_strategy_trains_on_a_machine_with_one_device(tiny_data_dir, tmp_path):
    # MirroredStrategy on a machine without GPUs mirrors onto the one CPU: one replica.
    out_dir = tmp_path / "run"
    code = train.main(["--strategy", "mirrored", "--epochs", "1", "--max-images", "100", "--batch-size", "50",
                       "--data-dir", tiny_data_dir, "--out-dir", str(out_dir), "--seed", "0", "--quiet",
                       "--precision", "float32"])
    assert code == 0
    assert os.path.getsize(out_dir / "generator.keras") > 0
    with open(out_dir / "metrics.csv", newline="") as file:
        assert [row["steps"] for row in csv.DictReader(file)] == ["2"]


def _newest_checkpoint(directory):
    return os.path.basename(tf.train.latest_checkpoint(str(directory)))


def test_two_workers_agree_when_to_checkpoint_and_when_the_budget_is_spent(tmp_path):
    # A checkpoint every 0.3 seconds and a budget of 15 seconds of steps: each worker's own
    # clock would decide at different steps, and a collective save that one worker skips
    # hangs the other. Agreed decisions make both save together and stop at the same step.
    # Batches of 10 make 20 steps an epoch, so that an epoch's steps outlast the interval
    # however fast or busy the machine is, and checkpoints fall mid-epoch.
    workers, (chief_dir, worker_dir) = _start_workers(
        tmp_path, "--epochs", "1000", "--batch-size", "10", "--checkpoint-every-minutes", "0.005",
        "--max-minutes", "0.25")
    outputs = _wait_for_workers(workers)
    for index, (worker, (stdout, stderr)) in enumerate(zip(workers, outputs)):
        assert worker.returncode == 0, f"worker {index}:\n{stdout}\n{stderr[-3000:]}"
    assert "time budget reached" in outputs[0][0]
    assert _newest_checkpoint(chief_dir / "checkpoints") == _newest_checkpoint(worker_dir / ".worker_1_checkpoints")
    # More checkpoints than epochs: the time-based ones happened, mid-epoch, on both workers.
    with open(chief_dir / "metrics.csv", newline="") as file:
        epochs = len(list(csv.DictReader(file)))
    assert int(_newest_checkpoint(chief_dir / "checkpoints").split("-")[-1]) > epochs


def test_a_signal_to_one_worker_stops_both_at_the_same_step(tmp_path):
    workers, (chief_dir, worker_dir) = _start_workers(tmp_path, "--epochs", "1000")
    chief, other = workers
    # Both are training once the chief has logged an epoch; then only worker 1 is told to stop.
    while "epoch   0/1000" not in chief.stdout.readline():
        assert chief.poll() is None, chief.stderr.read()[-3000:]
    other.send_signal(signal.SIGTERM)
    outputs = _wait_for_workers(workers)
    assert other.returncode == 143, outputs[1][1][-3000:]
    assert chief.returncode == 143, outputs[0][1][-3000:]
    assert "SIGTERM: stopped at epoch" in outputs[0][1] and "SIGTERM: stopped at epoch" in outputs[1][1]
    assert _newest_checkpoint(chief_dir / "checkpoints") == _newest_checkpoint(worker_dir / ".worker_1_checkpoints")
