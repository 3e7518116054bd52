"""The kit's error for bad user input: printed by the command line without a traceback."""


class UnetlibError(Exception):
    """Bad input or a missing/corrupt file; the message names the file and the fix."""
