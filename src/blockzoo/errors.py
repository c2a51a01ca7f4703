"""blockzoo's one error hierarchy: every error blockzoo raises on purpose derives from :class:`BlockzooError`.

The CLI prints a :class:`BlockzooError` as one ``error:`` line (exit status 2; 1 for :class:`NonFiniteLossError`,
which is a result of training, not a bad input) and anything else as an internal error (exit status 1).

- :class:`ConfigError` (also a ``ValueError``): a bad argument or option value (``num_classes=-1``,
  ``se(reduction=0)``, ``--lr inf``); the message names the argument and what is accepted.
- :class:`UnknownNameError` (also a ``KeyError``): an unregistered block, model, slot or dataset name, with close
  matches.
- :class:`IncompatibleBlockError` (also a ``ValueError``): a block that does not fit a slot of a model.
- :class:`InputShapeError` (also a ``ValueError``): a tensor of the wrong rank, channel count or spatial size at
  forward time; the message names the expected shape and, for models, the stage that would be too small.
- :class:`DataError`, :class:`CheckpointError` (also ``RuntimeError``): a dataset or checkpoint file that is
  missing, corrupt or does not match; the message says what to do.
- :class:`NonFiniteLossError` (``blockzoo.train``): the training loss became NaN/inf.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["BlockzooError", "ConfigError", "UnknownNameError", "IncompatibleBlockError", "InputShapeError",
           "DataError", "CheckpointError"]


class BlockzooError(Exception):
    """Base class of blockzoo's user-facing errors."""


class ConfigError(BlockzooError, ValueError):
    """A bad argument or option value; the message names it and the accepted values."""


class UnknownNameError(BlockzooError, KeyError):
    def __init__(self, kind: str, name: str, known: Iterable[str], hint: str = ""):
        known = sorted(known)
        close = difflib.get_close_matches(str(name), known, n=5, cutoff=0.5)
        msg = f"unknown {kind} {name!r}."
        if close:
            msg += f" Did you mean: {', '.join(close)}?"
        msg += hint or f" Run `blockzoo list {kind}s` to see all {len(known)} registered {kind}s."
        super().__init__(msg)
        self.name, self.close = name, close

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class IncompatibleBlockError(BlockzooError, ValueError):
    """A block cannot be used in the requested slot/position; raised when the model is built."""


class InputShapeError(BlockzooError, ValueError):
    """A tensor of the wrong rank, channel count or spatial size reached a model or block."""


class DataError(BlockzooError, RuntimeError):
    """A dataset is missing, corrupt, unknown or mis-specified. The message always says what to do about it."""


class CheckpointError(BlockzooError, RuntimeError):
    """A checkpoint/weights file is missing, corrupt, truncated or does not match the model/optimizer.

    The message names the file and what to do about it."""
