"""The one exception type the workflow reports to users without a traceback."""


class SoftError(Exception):
    """A problem the user can fix: bad input, a wrong config value, a missing file.

    The message must name the file, line or config key at fault. Scripts catch this,
    print the message alone and exit non-zero; anything else is a bug and keeps its
    traceback.
    """
