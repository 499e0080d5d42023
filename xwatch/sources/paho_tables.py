"""paho-mqtt's MQTT 5 property tables, built once instead of once per packet.

paho-mqtt 2.x decodes the properties of every MQTT 5 packet it receives into a new
``paho.mqtt.properties.Properties``, whose ``__init__`` builds three lookup tables
(the 7 type names, the 27 property names and the 27 property ids, each with its type and
the list of packet types it may appear in: about 60 new objects), and whose ``unpack``
starts with a ``clear`` that tries every one of the 27 names. For a PUBLISH that is about
half of what paho spends on a message, with the garbage it makes: a plain aiomqtt
subscriber took 6,400-7,700 messages a second over MQTT 5 on this 2-core machine, and
12,300-18,100 with the tables shared (``bench/end_to_end.py``'s subscriber, one day's
runs, the two alternating).

``install`` swaps in ``SharedTablesProperties``, a subclass that points at one set of
tables (built by paho's own ``__init__``, once; paho only ever reads them) and clears
only the properties that are set. Nothing else changes: the same class of object, the
same attributes, the same checks when a property is set, byte-identical packets. It is
installed where paho's decoders look the class up (``paho.mqtt._packet.Properties``), for
the whole process, by the MQTT source when it makes an MQTT 5 client. If paho's layout is
not the one this was written against (paho-mqtt 2.2), ``install`` does nothing and says
so: the source then runs at paho's own speed. Re-check when upgrading paho-mqtt.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

try:
    from paho.mqtt import _packet as _decoders
except ImportError:  # a paho without the module this was written against
    _decoders = None  # type: ignore[assignment]

_OWN_ATTRIBUTES = frozenset(("packetType", "types", "names", "properties"))
_TABLES = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]


class SharedTablesProperties(Properties):
    """paho's ``Properties`` with one shared set of lookup tables (read-only in paho)."""

    def __init__(self, packetType: int) -> None:  # paho's parameter name
        set_own = object.__setattr__
        set_own(self, "packetType", packetType)
        set_own(self, "types", _TABLES.types)
        set_own(self, "names", _TABLES.names)
        set_own(self, "properties", _TABLES.properties)

    def clear(self) -> None:
        """Remove every property set (paho's tries each of the 27 names)."""
        for name in [name for name in vars(self) if name not in _OWN_ATTRIBUTES]:
            delattr(self, name)


def _target() -> ModuleType | None:
    """paho's decoders' module, if it looks up ``Properties`` as paho 2.2's does."""
    decoders: Any = _decoders
    if decoders is None or not isinstance(getattr(decoders, "Properties", None), type):
        return None
    if not issubclass(decoders.Properties, Properties):
        return None
    return decoders  # type: ignore[no-any-return]


def install() -> bool:
    """Make paho decode properties with ``SharedTablesProperties``; whether it could
    (False: paho's layout is not the expected one, nothing was changed)."""
    target = _target()
    if target is None:
        return False
    target.Properties = SharedTablesProperties  # type: ignore[attr-defined]
    return True


def uninstall() -> None:
    """Back to paho's own ``Properties`` (for benchmarks that measure paho as released)."""
    target = _target()
    if target is not None:
        target.Properties = Properties  # type: ignore[attr-defined]


def installed() -> bool:
    """Whether paho decodes properties with ``SharedTablesProperties`` now."""
    target = _target()
    return target is not None and target.Properties is SharedTablesProperties
