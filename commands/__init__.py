"""The ``posventa`` subcommands other than ``serve`` and ``db upgrade``: presentation
(argparse arguments, rich tables and progress bars, exit statuses) over the parts the
composition root builds. One module a command group:

- ``kb``: ``kb sync``, ``kb search``;
- ``surveys``: ``import sales``, ``import catalog``, ``surveys tick``, ``demo``;
- ``users``: ``users add|passwd|list|totp-off`` (console users);
- ``contacts``: ``contacts export|erase`` (privacy requests).

Each exports ``COMMANDS``: (group, name) → (help, add_arguments, run); ``cli.py`` mounts
them. ``run(args, config)`` gets the loaded config, with logging already set up.
"""

#: The modules ``cli.py`` mounts, in this package.
MODULES = ("kb", "surveys", "users", "contacts")
