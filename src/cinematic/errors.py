"""The one exception type for mistakes a user can make (a missing file, a bad config value, ...).

The CLI turns a `UserError` into one paragraph on stderr and exit status 2; anything else is a bug
and keeps its traceback.
"""


class UserError(Exception):
    """A problem the user can fix: the message names the file or key and says what to do."""
