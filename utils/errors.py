"""Errors a user can fix. Entry points print them as one line and exit non-zero, never as a traceback."""

import functools
import sys


class UserError(Exception):
    """Bad input from the user: a path, a file's contents, a config value, a checkpoint."""


class DataError(UserError):
    """A dataset file or folder is missing or malformed. The message names the file and the cause."""


class ConfigError(UserError):
    """A config key is unknown, has the wrong type, or asks for something this machine cannot do."""


class CheckpointError(UserError):
    """A checkpoint cannot be read, or does not fit the model it is loaded into."""


class NonFiniteError(UserError):
    """NaN or Inf where finite numbers are needed: weights of a checkpoint, input coordinates, features."""


class OutputError(UserError):
    """A file or folder of the run cannot be written: disk full, read-only folder, a path under a regular file."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM stopped the script; the message says what was kept and how to continue. The exit status
    is the shell's convention for a death by that signal (128 + its number: 130, 143). Like KeyboardInterrupt it
    is not an Exception, so that no `except Exception` on the way (a dataset reporting a bad file, say)
    mistakes it for an error of its own."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


def exit_on_user_error(main):
    """Wrap a script's main(): a UserError becomes `error: <message>` on stderr and exit status 2. SIGINT and
    SIGTERM become Interrupted (exit status 130 / 143), whose message says what was kept."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        from utils.signals import StopSignals  # it raises Interrupted, defined here

        try:
            with StopSignals():
                return main(*args, **kwargs)
        except KeyboardInterrupt:  # SIGINT where no handler of ours could be installed (not the main thread)
            print("error: interrupted by SIGINT", file=sys.stderr)
            raise SystemExit(130) from None
        except (UserError, Interrupted) as error:
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(getattr(error, "exit_code", 2)) from None

    return wrapper
