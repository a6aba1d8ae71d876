"""User-facing errors: one clear line (what, where, how to fix), never a traceback."""


class ShopsimError(Exception):
    """An error caused by the user's input or configuration.

    The CLI prints ``error: <message>`` on one line and exits with a non-zero code. The message
    says what is wrong, where (file, column, row) and how to fix it.
    """
