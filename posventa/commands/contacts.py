"""CLI: ``posventa contacts export ID`` (everything held about a contact, as JSON on
stdout) and ``posventa contacts erase ID`` (a privacy request; asks for confirmation
unless ``--yes``). They work on the database directly, as the API does."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from posventa.commands import open_parts
from posventa.core.config import Config


async def _with_contacts(config: Config, work: Callable[[Any], Awaitable[Any]]) -> Any:
    async with open_parts(config) as parts:
        return await work(parts.contacts)


def _id_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", type=int, metavar="ID", help="the contact's id (the contact page shows it)")


def run_export(args: argparse.Namespace, config: Config) -> int:
    document = asyncio.run(_with_contacts(config, lambda contacts: contacts.export(args.id)))
    json.dump(document, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")
    return 0


def _erase_args(p: argparse.ArgumentParser) -> None:
    _id_arg(p)
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--by", metavar="NAME", help="who asks (recorded in the history; default: your login name)")


def run_erase(args: argparse.Namespace, config: Config) -> int:
    who = (args.by or getpass.getuser() or "cli")[:120]

    async def preview(contacts: Any) -> dict[str, Any]:
        return await contacts.get(args.id)

    contact = asyncio.run(_with_contacts(config, preview))
    if not args.yes:
        print(f"Erase contact #{contact['id']} {contact['name'] or ''}: its messages, case texts, attachments and "
              "identities are deleted for good; survey scores stay, anonymised.", file=sys.stderr)
        print(f"Type the contact id ({contact['id']}) to confirm: ", end="", file=sys.stderr, flush=True)
        answer = sys.stdin.readline().strip()
        if answer != str(contact["id"]):
            print("posventa: not confirmed; nothing was erased", file=sys.stderr)
            return 1
    result = asyncio.run(_with_contacts(config, lambda contacts: contacts.erase(args.id, actor=f"cli:{who}")))
    files = result["files_deleted"]
    print(f"contact #{result['id']} erased ({files} {'file' if files == 1 else 'files'} deleted)")
    return 0


COMMANDS = {
    ("contacts", "export"): ("print everything held about a contact as JSON (a privacy request)", _id_arg, run_export),
    ("contacts", "erase"): ("erase a contact (a privacy request; asks for confirmation)", _erase_args, run_erase),
}
