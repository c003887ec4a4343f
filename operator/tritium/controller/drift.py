"""Is what runs what the operator applied? A pure comparison of a desired child with the live one.

The operator owns its children: a hand edit of a field it sets (an image, a label, a line of
config.pbtxt) must be put back. The live object carries much more than the operator wrote
(server defaults, status, other managers' fields), so only the fields of the desired object are
compared: the live object is read through the desired one's shape. Fields the operator does not
set are never drift, which keeps the comparison free of false alarms (a false alarm would be a
write on every reconcile).

Lists whose items carry a ``name`` (containers, env, ports, volumes) are matched by name, as
server-side apply merges them; an item someone else added is theirs, not drift. Quantities are
compared by value ("1000m" and "1" are one CPU), since the API server may store another spelling,
and a zero value (false, 0, "") the server leaves out, as Go's omitempty does, is no drift.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

_QUANTITY = re.compile(r"^([+-]?[0-9.]+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")
_FACTORS = {
    None: Decimal(1), "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30), "Ti": Decimal(2**40),
    "Pi": Decimal(2**50), "Ei": Decimal(2**60), "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"), "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
# Where the API server rewrites quantities into its canonical form.
_QUANTITY_PARENTS = frozenset({"requests", "limits", "capacity", "allocatable", "sizeLimit"})


def _quantity(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return Decimal(str(value))
    if not isinstance(value, str):
        return None
    match = _QUANTITY.match(value.strip())
    if not match:
        return None
    try:
        return Decimal(match.group(1)) * _FACTORS[match.group(2)]
    except InvalidOperation:
        return None


def _same_scalar(want: Any, have: Any, in_quantities: bool) -> bool:
    if want == have and type(want) is type(have):
        return True
    if in_quantities:
        a, b = _quantity(want), _quantity(have)
        return a is not None and a == b
    return False


def _is_zero(value: Any) -> bool:
    return value is False or (not isinstance(value, bool) and value in (0, "", {}, []))


def differences(desired: Any, live: Any, path: str = "", key: str = "", parent: str = "") -> list[str]:
    """The paths where ``live`` does not hold what ``desired`` says (empty: no drift).

    ``key`` is the key ``desired`` sits under and ``parent`` the key of the map holding it
    (quantities sit under requests/limits).
    """
    if desired is None:
        return []
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return [path or "."]
        out: list[str] = []
        for name, value in desired.items():
            if value is None:
                continue
            sub = f"{path}.{name}"
            if name not in live:
                if _is_zero(value):
                    continue  # Go's omitempty: false, 0, "", {} and [] are stored as absent
                out.append(sub)
                continue
            out.extend(differences(value, live[name], sub, name, key))
        return out
    if isinstance(desired, list):
        if not isinstance(live, list):
            return [] if not desired and live is None else [path]
        if desired and all(isinstance(d, dict) and "name" in d for d in desired):
            by_name = {item.get("name"): item for item in live if isinstance(item, dict)}
            out = []
            for item in desired:
                if item["name"] not in by_name:
                    out.append(f"{path}[{item['name']}]")
                else:
                    out.extend(differences(item, by_name[item["name"]], f"{path}[{item['name']}]", key, parent))
            return out
        if len(desired) != len(live):
            return [path]
        out = []
        for i, (want, have) in enumerate(zip(desired, live, strict=True)):
            out.extend(differences(want, have, f"{path}[{i}]", key, parent))
        return out
    return [] if _same_scalar(desired, live, parent in _QUANTITY_PARENTS) else [path]
