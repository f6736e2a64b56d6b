"""The errors of checkpoint reading, recognising and loading."""


class CheckpointError(RuntimeError):
    """A checkpoint could not be used; the message names the file and the fix."""


class CheckpointRefused(CheckpointError):
    """The file asks the unpickler for something that could run code; nothing was run."""
