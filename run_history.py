"""The run's history: one row of metrics per epoch, in metrics.csv, and what it tells.

Each row holds the epoch's mean losses, D's mean output on real images, D(x), and on
generated ones, D(G(z)), its training seconds, images/s and median step (the speed of a
typical step, untouched by the first step's tracing or a busy minute), and, for epochs
that were evaluated, FID, Inception Score, precision and recall. The file is rewritten
atomically after every epoch, before the checkpoint that marks the epoch as done, so it
never lists an epoch that a resumed run would train again.
"""

import os
import statistics

import storage

METRIC_NAMES = ("d_loss", "g_loss", "d_real", "d_fake")  # what train_step returns
CSV_FIELDS = ("epoch", "steps", "d_loss", "g_loss", "d_real", "d_fake", "seconds",
              "images_per_second", "median_step_seconds", "fid", "inception_score", "precision", "recall")

# D(G(z)) below this for this many epochs in a row, with g_loss rising, is the classic
# failure where D wins outright and G stops learning.
COLLAPSE_D_FAKE = 0.05
COLLAPSE_EPOCHS = 3


def _to_number(text):
    if text in (None, ""):
        return ""
    number = float(text)
    return int(number) if number.is_integer() and "." not in text else number


def read(out_dir, before_epoch):
    """Returns the rows of `out_dir`'s metrics.csv for epochs before `before_epoch`, as numbers.

    Rows of later epochs belong to work the checkpoint has not seen completed, which a
    resumed run redoes.
    """
    rows = storage.read_csv(os.path.join(out_dir, storage.METRICS_CSV))
    rows = [{name: _to_number(value) for name, value in row.items()} for row in rows]
    return [row for row in rows if row["epoch"] < before_epoch]


def write(out_dir, rows):
    """Writes `rows` to `out_dir`'s metrics.csv atomically.

    Raises:
        StorageError: the file could not be written.
    """
    storage.write_csv(os.path.join(out_dir, storage.METRICS_CSV), CSV_FIELDS, rows)


def replace_row(rows, row):
    """Returns `rows` with `row` in place of any row of the same epoch, in epoch order."""
    return sorted([old for old in rows if old["epoch"] != row["epoch"]] + [row], key=lambda r: r["epoch"])


def epoch_row(epoch, steps, totals, step_seconds=()):
    """Returns the row of an epoch from its sums (see checkpoints.TOTALS) over `steps` steps
    and the `step_seconds` of the steps this process timed (a resumed epoch: only those
    after the resume; none: no median)."""
    row = {"epoch": epoch, "steps": steps}
    row.update({name: totals[name] / steps for name in METRIC_NAMES})
    row["seconds"] = totals["seconds"]
    row["images_per_second"] = totals["images"] / max(totals["seconds"], 1e-9)
    row["median_step_seconds"] = statistics.median(step_seconds) if len(step_seconds) else ""
    return row


def epoch_seconds(row, steps_per_epoch):
    """Returns how long an epoch of `steps_per_epoch` steps trains at the speed of `row`'s
    typical step, its median (a row of a file written before the median was: its mean)."""
    median = row.get("median_step_seconds")
    step_seconds = median if median not in (None, "") else row["seconds"] / row["steps"]
    return step_seconds * steps_per_epoch


def format_row(row, epochs):
    """Returns the one log line of an epoch."""
    line = (f"epoch {int(row['epoch']):>3}/{epochs}  d_loss {row['d_loss']:.3f}  g_loss {row['g_loss']:.3f}  "
            f"D(x) {row['d_real']:.3f}  D(G(z)) {row['d_fake']:.3f}  "
            f"{row['seconds']:.1f} s  {row['images_per_second']:.0f} img/s")
    if row.get("fid") not in (None, ""):
        line += f"  FID {row['fid']:.2f}"
    return line


def collapse_warning(rows):
    """Returns a warning when D has won outright for COLLAPSE_EPOCHS epochs, else None."""
    recent = rows[-COLLAPSE_EPOCHS:]
    if len(recent) < COLLAPSE_EPOCHS:
        return None
    d_fake = [float(row["d_fake"]) for row in recent]
    g_loss = [float(row["g_loss"]) for row in recent]
    if max(d_fake) < COLLAPSE_D_FAKE and g_loss[-1] > g_loss[0]:
        return (f"warning: for {COLLAPSE_EPOCHS} epochs D has rejected nearly every generated image "
                f"(D(G(z)) < {COLLAPSE_D_FAKE}) while g_loss rose: G is getting too little signal. "
                "Try --label-smoothing 0.1, a lower --d-learning-rate, or --fresh with another --seed.")
    return None
