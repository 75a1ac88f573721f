"""The ``posventa`` subcommands other than ``serve`` and ``db upgrade``: presentation
(argparse arguments, rich tables and progress bars, exit statuses) over the parts the
composition root builds. One module a command group:

- ``kb``: ``kb sync``, ``kb search``;
- ``surveys``: ``import sales``, ``import catalog``, ``surveys tick``, ``demo``;
- ``users``: ``users add|passwd|list|totp-off`` (console users);
- ``contacts``: ``contacts export|erase`` (privacy requests);
- ``calendars``: ``calendars list|show`` (business hours in effect).

Each exports ``COMMANDS``: (group, name) → (help, add_arguments, run); ``cli.py`` mounts
them. ``run(args, config)`` gets the loaded config, with logging already set up, and
builds what it needs from ``open_parts(config)`` (the composition root's one builder).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

from posventa.core.config import Config

if TYPE_CHECKING:
    from posventa.service import Parts

#: The modules ``cli.py`` mounts, in this package.
MODULES = ("kb", "surveys", "users", "contacts", "calendars")


def open_parts(config: Config) -> AbstractAsyncContextManager[Parts]:
    """``service.command_parts``: what a command works with, the schema checked first.
    Imported when a command runs: ``service`` pulls in the whole service, ``--help``
    need not."""
    from posventa.service import command_parts

    return command_parts(config)
