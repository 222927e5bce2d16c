"""The benchmark scripts still run against the project's current API (they are not run in
full here: that takes minutes to hours and belongs to benchmarks/, not to pass/fail tests)."""

import os
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT

sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))

import profile_step  # noqa: E402
import quality  # noqa: E402
import throughput  # noqa: E402


@pytest.mark.parametrize("module", [profile_step, quality, throughput])
def test_help_shows_every_default(module):
    parser = module.make_argument_parser()
    options = [action for action in parser._actions if action.dest != "help"]
    assert parser.format_help().count("(default:") == len(options)


def test_the_quality_benchmarks_default_run_takes_a_step(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (64, 28, 28), dtype=np.uint8)
    args = quality.make_argument_parser().parse_args(["--seed", "0", "--batch-size", "32", "--precision", "float32"])
    step, generator, dataset = quality.make_default_run(images, args)
    assert np.isfinite(step(next(iter(dataset))))
    assert generator.output_shape == (None, 28, 28, 1)


def test_the_throughput_benchmark_builds_and_steps_every_configuration():
    import data

    images = np.random.default_rng(0).integers(0, 256, (512, 28, 28), dtype=np.uint8)
    configurations = throughput.build_configurations(images, data, ("float32",))
    assert [c["name"][:3] for c in configurations] == ["(a)", "(b)", "(c)"]
    for configuration in configurations:
        configuration["run"]()
        configuration["wait"]()
        assert configuration["flops_per_image"] > 0
