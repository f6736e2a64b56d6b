"""How the command-line tools end on a user error: one ``error: ...`` message on stderr and
exit code 2, no traceback; programming errors keep theirs. Standard library only, so tools
that need no torch (the leaderboard) use it too."""
import sys

from .config_data import ConfigTextError

USER_ERRORS = (FileNotFoundError, IsADirectoryError, ConfigTextError)


def run_cli(main, argv=None, user_errors=()):
    """Run a tool's ``main(argv)`` and return what it returns; an exception of
    :data:`USER_ERRORS` or ``user_errors`` prints ``error: <message>`` and exits with 2."""
    try:
        return main(argv)
    except USER_ERRORS + tuple(user_errors) as err:
        print(f'error: {err}', file=sys.stderr, flush=True)
        sys.exit(2)
