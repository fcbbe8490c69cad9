"""The one error type users see: a one-line message naming the problem and the fix."""


class GanforgeError(Exception):
    """Bad input or an unusable state. The CLI prints ``error: <message>`` and exits 2."""
