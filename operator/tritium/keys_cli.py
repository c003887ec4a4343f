"""`tritium keys create --id ID`: a new API key and the line that accepts it.

The key is printed once, on the first line, and kept nowhere: only its hash goes into the
Secret (second line, ``ID:SHA256HEX``, the format dataplane/security/apikeys.py reads). A lost key is
replaced, never recovered. Add the line to the Secret's key to accept the key; delete it to revoke.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from tritium.cli import UsageError


def cmd_keys_create(args: argparse.Namespace) -> int:
    from tritium.dataplane.security.apikeys import KeyFileError, entry, new_key

    key = new_key()
    try:
        line = entry(args.id, key)
    except KeyFileError as exc:
        raise UsageError(str(exc)) from None
    sys.stdout.write(f"{key}\n{line}\n")
    sys.stderr.write("the key (first line) is shown only now; add the second line to the Secret "
                     "named by spec.security.apiKeysSecretRef\n")
    return 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser("keys", help="API keys for spec.security.apiKeysSecretRef")
    keys = p.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    c = keys.add_parser("create", help="print a new key (line 1, shown once) and its Secret entry (line 2)")
    c.add_argument("--id", required=True, help="the key's id: in metrics and logs instead of the key")
    c.set_defaults(func=cmd_keys_create)
