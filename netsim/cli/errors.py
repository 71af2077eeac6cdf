"""The one error type the CLI prints as a sentence (no traceback): something the user can fix."""


class UserError(Exception):
    pass
