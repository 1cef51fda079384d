"""What a resumed training run needs, beyond keras.callbacks.BackupAndRestore, to go on exactly as an
uninterrupted run would: the training set's slice order and the model's own random streams (dropout).

BackupAndRestore keeps the weights, the optimizer and the epoch. The seeded shuffle starts again from its first
order in a new process, and the dropout layers' seed states are not among the weights it saves; both are put
back here, so an interrupted and resumed run ends with an uninterrupted run's weights
(tests/test_train.py checks it).
"""

from __future__ import annotations

import json
from pathlib import Path

import keras

from brainseg.core.files import write_atomically

SEED_STATE = "seed_generator_state"  # the name Keras gives a layer's random-stream state variable


def backed_up_epochs(backup_dir: Path) -> int:
    """The epochs completed in a run's backup (0 for none): the epoch a resumed run goes on from.

    Read from the backup, not history.csv: the backup is written first at an epoch's end, so a run killed in
    between has one epoch more there.
    """
    metadata = Path(backup_dir) / "training_metadata.json"
    return int(json.loads(metadata.read_text())["epoch"]) if metadata.is_file() else 0


class RandomStateBackup(keras.callbacks.Callback):
    """Keeps the model's random-stream states (dropout's seed generators) beside the backup, per epoch.

    Put after BackupAndRestore in the callbacks: it restores, at the start of training, the states saved at the
    end of the epoch the backup holds. States are kept per epoch, so a run killed between the two callbacks'
    writes still finds the ones matching its backup.
    """

    def __init__(self, backup_dir: Path) -> None:
        super().__init__()
        self.path = Path(backup_dir) / "random_states.json"

    def _states(self) -> list:
        # In the model's layer order: their paths carry a per-process counter, so differ between invocations.
        return [v for v in self.model.variables if v.name == SEED_STATE]

    def _saved(self) -> dict:
        return json.loads(self.path.read_text()) if self.path.is_file() else {}

    def on_train_begin(self, logs=None) -> None:
        epoch = backed_up_epochs(self.path.parent)
        saved = self._saved().get(str(epoch))
        if epoch == 0 or saved is None:
            return
        states = self._states()
        if len(saved) != len(states):
            raise ValueError(f"{self.path} holds {len(saved)} random-stream states, the model has {len(states)}")
        for variable, value in zip(states, saved, strict=True):
            variable.assign(value)

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        if not self.path.parent.is_dir():  # BackupAndRestore, earlier in the list, has written the backup
            return
        saved = self._saved()
        saved[str(epoch + 1)] = [keras.ops.convert_to_numpy(v).tolist() for v in self._states()]
        write_atomically(self.path, lambda handle: handle.write(json.dumps(saved).encode()))
