"""When to stop and when to save: signals, the time budget and the checkpoint cadence.

After every step the run asks `Schedule.after_step()` three questions: did SIGINT or
SIGTERM arrive, is the time budget spent, is a mid-epoch checkpoint due? Under a
multi-worker strategy each worker answers them alone (the signal reached one machine,
clocks differ), but saving a checkpoint is a collective operation: a worker that saves
while another steps on waits forever. So the answers are agreed by every worker after
every step (`devices.agree`: the element-wise maximum over workers), and every worker
acts on the same answer at the same step.
"""

import math
import signal
import sys
import threading
import time

import devices


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on SIGINT or SIGTERM after saving a checkpoint.

    `exit_code` is the shell convention 128 + signal number: 130 for Ctrl-C, 143 for SIGTERM.
    """

    def __init__(self, message, signal_number):
        super().__init__(message)
        self.exit_code = 128 + signal_number


class StopSignals:
    """Turns SIGINT and SIGTERM into a request that the loop honours after the current step.

    A second signal while the first is pending gives up on saving and stops at once.
    Handlers can only be installed from the main thread; elsewhere this does nothing.
    """

    def __init__(self):
        self.signal_number = None
        self._previous_handlers = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signal_number in (signal.SIGINT, signal.SIGTERM):
                self._previous_handlers[signal_number] = signal.signal(signal_number, self._handle)
        return self

    def _handle(self, signal_number, frame):
        if self.signal_number is not None:
            raise KeyboardInterrupt("second interrupt: stopping without saving")
        self.signal_number = signal_number
        print(f"\n{signal.Signals(signal_number).name} received: saving a checkpoint after this step "
              "(send it again to stop at once)", file=sys.stderr, flush=True)

    def __exit__(self, *exception_info):
        for signal_number, handler in self._previous_handlers.items():
            signal.signal(signal_number, handler)
        self._previous_handlers.clear()
        return False


class Decision:
    """What every worker does after a step: `signal_number` (0: none) means save and stop
    with TrainingInterrupted; `budget_spent` means stop at the end of this step; `save`
    means save a mid-epoch checkpoint."""

    def __init__(self, signal_number, budget_spent, save):
        self.signal_number = int(signal_number)
        self.budget_spent = bool(budget_spent)
        self.save = bool(save)


class Schedule:
    """The time budget and the checkpoint cadence of a run, agreed across workers.

    Args:
        strategy: the run's `tf.distribute.Strategy`.
        stop_signals: a `StopSignals` that is active while training.
        max_minutes: minutes of training (summed step times) after which to stop; None: no limit.
        checkpoint_every_minutes, checkpoint_every_steps: mid-epoch checkpoint intervals;
            0 turns one off.
    """

    def __init__(self, strategy, stop_signals, max_minutes=None, checkpoint_every_minutes=0,
                 checkpoint_every_steps=0):
        self.strategy = strategy
        self.stop_signals = stop_signals
        self.budget_seconds = max_minutes * 60 if max_minutes is not None else math.inf
        self.checkpoint_every_seconds = checkpoint_every_minutes * 60
        self.checkpoint_every_steps = checkpoint_every_steps
        self.train_seconds = 0.0
        self.last_checkpoint_time = time.monotonic()

    def checkpoint_saved(self):
        """Restarts the checkpoint clock (called after every checkpoint, end of epoch included)."""
        self.last_checkpoint_time = time.monotonic()

    def after_step(self, step_seconds, steps_done):
        """Returns the `Decision` after a step of `step_seconds` that made `steps_done` steps
        of this epoch; every worker gets the same one."""
        self.train_seconds += step_seconds
        seconds_since_checkpoint = time.monotonic() - self.last_checkpoint_time
        local_answers = [
            self.stop_signals.signal_number or 0,
            self.train_seconds >= self.budget_seconds,
            bool(self.checkpoint_every_steps and steps_done % self.checkpoint_every_steps == 0)
            or bool(self.checkpoint_every_seconds and seconds_since_checkpoint >= self.checkpoint_every_seconds),
        ]
        return Decision(*devices.agree(self.strategy, local_answers))
