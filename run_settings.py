"""The settings a run was started with, kept beside its checkpoints to check a resume.

Rerunning the same output directory resumes the run there. If the rerun asks for other
settings, a resume must not silently do something else: a step of a new batch size is not
a step of the old one, so the checkpoint's position "epoch 3, step 400" would point at the
wrong images. `compare` says, for each changed setting, whether the run can go on:

- the batch size or the number of batches an epoch: only at an epoch boundary, where the
  new epoch simply starts with the new batches; mid-epoch the resume is refused;
- learning rates, Adam's beta_1 and beta_2, label smoothing, precision, replicas, TensorFlow's
  version: the run goes on with the new values from here, and says what changed.

The seed, the noise size and the architecture never change within a run: the seed is
checked when it is chosen (cli.choose_seed), the others when the checkpoint is restored,
and the architecture's options (ARCHITECTURE) here too, before the restore
(`check_architecture`): the error then names the option that changed rather than a tensor
that does not fit, and a checkpoint of a D without spectral normalization, say, would
otherwise restore into one with it.
"""

import json
import os

import storage

# Changing these changes what "step N of the epoch" means.
STEP_DEFINING = ("batch_size", "steps_per_epoch")
# The options the models were built with: a run keeps them to the end.
ARCHITECTURE = ("generator_options", "discriminator_options")
# Records, not settings: why the precision was chosen (its measured speeds vary).
NOT_COMPARED = ("precision_choice",)
# Options that earlier versions did not record, with the values those versions always used,
# so that their runs resume with the same models.
UNRECORDED_ARCHITECTURE = {"generator_options": {"filters": [128, 64]},
                           "discriminator_options": {"filters": [64, 128], "head_convolutions": 0,
                                                     "head_filters": None, "minibatch_group_size": 4,
                                                     "pack": 1}}


def load(out_dir):
    """Returns the settings saved in `out_dir`, or None (a new run, or one of an earlier
    version of the project, which saved none). An unreadable file counts as none."""
    path = os.path.join(out_dir, storage.SETTINGS_FILE)
    try:
        with open(path) as file:
            settings = json.load(file)
    except (OSError, ValueError):
        return None
    return settings if isinstance(settings, dict) else None


def save(out_dir, settings):
    """Writes `settings` (a JSON-able dict) to `out_dir` atomically.

    Raises:
        StorageError: the file could not be written.
    """
    with storage.atomic_path(os.path.join(out_dir, storage.SETTINGS_FILE)) as temporary_path:
        with open(temporary_path, "w") as file:
            json.dump(settings, file, indent=2, sort_keys=True)
            file.write("\n")


def compare(previous, current, epoch, step_in_epoch):
    """Checks that a run saved with `previous` settings can go on with `current` ones.

    Args:
        previous: the saved settings, or None.
        current: the settings of this run.
        epoch, step_in_epoch: where the restored checkpoint stopped.

    Returns:
        A list of "name old -> new" strings, one per changed setting (empty when none).

    Raises:
        ValueError: the architecture changed, or a step-defining setting changed in the
            middle of an epoch.
    """
    if previous is None:
        return []
    current, previous = _comparable(previous, current)
    changes = {name: (previous[name], value) for name, value in current.items()
               if name in previous and name not in NOT_COMPARED and previous[name] != value}
    for name in ARCHITECTURE:
        if name in changes:
            raise ValueError(_architecture_change(name, *changes[name]))
    step_changes = {name: change for name, change in changes.items() if name in STEP_DEFINING}
    if step_changes and step_in_epoch > 0:
        described = ", ".join(f"{name} {old} -> {new}" for name, (old, new) in step_changes.items())
        raise ValueError(
            f"the run in this --out-dir stopped in the middle of epoch {epoch} (step {step_in_epoch} of "
            f"{previous['steps_per_epoch']} at batch size {previous['batch_size']}) and the batches have "
            f"changed ({described}): resume with the earlier --batch-size and --max-images to finish the "
            "epoch, then change them; or pass --fresh or another --out-dir")
    return [f"{name} {old} -> {new}" for name, (old, new) in changes.items()]


def check_architecture(previous, current):
    """Checks, before a checkpoint is restored, that `current` builds the models that the
    `previous` settings (None: a run that saved none) were trained with. A restore can only
    say which tensor does not fit; this names the option that changed.

    Raises:
        ValueError: an option of G or D differs.
    """
    if previous is None:
        return
    current, previous = _comparable(previous, current)
    for name in ARCHITECTURE:
        # A model given to train() ready-made records no options: the restore checks it.
        if isinstance(previous.get(name), dict) and isinstance(current.get(name), dict):
            if previous[name] != current[name]:
                raise ValueError(_architecture_change(name, previous[name], current[name]))


def _comparable(previous, current):
    """Returns (current, previous) as the file holds them (tuples become lists in JSON),
    with the options that earlier versions did not record filled in as they were."""
    current = json.loads(json.dumps(current))
    previous = dict(previous)
    for name, unrecorded in UNRECORDED_ARCHITECTURE.items():
        if isinstance(previous.get(name), dict):
            previous[name] = {**unrecorded, **previous[name]}
    return current, previous


def _architecture_change(name, old, new):
    """Returns the error message for models built with other options, naming each that changed."""
    if isinstance(old, dict) and isinstance(new, dict):
        described = ", ".join(f"{option} {old.get(option)} (now {new.get(option)})"
                              for option in sorted(set(old) | set(new)) if old.get(option) != new.get(option))
    else:
        described = f"{old} (now {new})"
    return (f"the run in this --out-dir was trained with {name} {described}: pass the same model flags "
            "to resume it, or --fresh or another --out-dir")
