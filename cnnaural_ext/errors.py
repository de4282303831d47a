"""The exception raised for user mistakes (bad input, missing files, out-of-range options).

The CLI turns a CnnauralError into one line on stderr and a non-zero exit; anything else is a bug.
"""


class CnnauralError(ValueError):
    """A user-facing error: the message says what is wrong and what to do."""
