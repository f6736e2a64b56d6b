"""How the command-line tools end on a user error: one ``error: ...`` message on stderr and
exit code 2, no traceback; programming errors keep theirs. Standard library only, so tools
that need no torch (the leaderboard) use it too."""
import os
import os.path as osp
import sys

from .config_data import ConfigTextError


class UnwritableFolder(OSError):
    """A folder a tool must write cannot be created or written into; the message names the
    option, the path, the cause and the fix."""


def check_writable_folder(path, name):
    """Raise :class:`UnwritableFolder` when a tool could not create and write the folder
    ``path`` given by option ``name``: a part of the path is a file, or the nearest existing
    folder is read-only (a read-only file system, another user's folder). Nothing is
    created."""
    existing = osp.abspath(path)
    while not osp.lexists(existing):
        existing = osp.dirname(existing)
    if not osp.isdir(existing):
        raise UnwritableFolder(f'{name} {path}: {existing} is a file, not a directory; pass a '
                               'directory (it is created when missing)')
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UnwritableFolder(f'{name} {path}: cannot write in {existing} (read-only or not '
                               f'yours); pass a {name} you can write to')


USER_ERRORS = (FileNotFoundError, IsADirectoryError, UnwritableFolder, ConfigTextError)


def run_cli(main, argv=None, user_errors=()):
    """Run a tool's ``main(argv)`` and return what it returns; an exception of
    :data:`USER_ERRORS` or ``user_errors`` prints ``error: <message>`` and exits with 2."""
    try:
        return main(argv)
    except USER_ERRORS + tuple(user_errors) as err:
        print(f'error: {err}', file=sys.stderr, flush=True)
        sys.exit(2)
