"""The one base class for errors a user can act on.

Bad input, a refused download, a missing key, a typo in params.yaml: each error's
message already names the file, line, field, key or URL. The command line prints
that message alone and exits non-zero; anything else is a bug and keeps its traceback.
"""


class PipelineError(Exception):
    """An actionable failure; the message says what is wrong and where."""
