"""The one exception type of the library, at the bottom of every layer.

Every module raises :class:`SaePaperError` for a problem with the user's input or environment,
so the CLI and the book runner can tell it from a bug; it lives apart from the package's
``__init__`` so that importing it pulls in nothing else.
"""


class SaePaperError(Exception):
    """A problem with the user's input or environment, explained in one line.

    The CLI prints these as ``error: <message>`` and exits with status 2;
    anything else is a bug and keeps its traceback.
    """


class BackendFailure(SaePaperError):
    """An explainer's, simulator's or classifier's call failed or returned output that cannot be used (counted
    by the autointerp scorers, never scored as 0). Here, not in ``analysis.autointerp.backends``, so that the
    modules those backends build on can raise it too."""
