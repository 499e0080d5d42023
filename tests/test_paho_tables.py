"""paho's MQTT 5 properties decoded with shared tables: the same objects as paho's own.

``paho_tables.install`` swaps the class paho's decoders build for every packet; these
tests decode the same packets with paho's class and with ours and compare what comes
out, property by property, and check the swap can be undone and refuses a paho it does
not know.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from paho.mqtt import _packet as paho_packet
from paho.mqtt.client import MQTTv5
from paho.mqtt.exception import MQTTException
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from xwatch.sources import mqtt, paho_tables
from xwatch.sources.paho_tables import SharedTablesProperties


@pytest.fixture(autouse=True)
def restore() -> Iterator[None]:
    """Each test leaves paho as it found it (other tests' sources install the tables)."""
    was = paho_tables.installed()
    yield
    if was:
        paho_tables.install()
    else:
        paho_tables.uninstall()


PROPERTY_SETS: list[dict[str, Any]] = [
    {},
    {"PayloadFormatIndicator": 1, "MessageExpiryInterval": 3600},
    {"ContentType": "application/json", "ResponseTopic": "a/b", "CorrelationData": b"\x00\x01"},
    {"UserProperty": [("brand", "acme"), ("brand", "globex"), ("lang", "ja")]},
    {"SubscriptionIdentifier": [7, 300], "TopicAlias": 4},
    {"ContentType": "テキスト", "UserProperty": [("ключ", "значение")]},
]


def publish_packet(properties: dict[str, Any]) -> bytes:
    """A PUBLISH's variable header and payload (after the fixed header), QoS 1."""
    packed: Any = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    for name, value in properties.items():
        setattr(packed, name, value)
    topic = b"xwatch/mentions/acme"
    packet: bytes = (
        struct.pack("!H", len(topic))
        + topic
        + struct.pack("!H", 17)
        + packed.pack()
        + b'{"id": "1", "text": "hello"}'
    )
    return packet


def set_on(properties: Properties) -> dict[str, Any]:
    """The properties set on an object, by name."""
    own = ("packetType", "types", "names", "properties")
    return {name: value for name, value in vars(properties).items() if name not in own}


def decode(packet: bytes) -> Any:
    return paho_packet.decode_publish(0x32, packet, MQTTv5)


@pytest.mark.parametrize("properties", PROPERTY_SETS, ids=lambda p: ",".join(p) or "none")
def test_a_publish_decodes_to_the_same_properties_as_with_pahos_own(
    properties: dict[str, Any],
) -> None:
    packet = publish_packet(properties)
    paho_tables.uninstall()
    theirs = decode(packet)
    assert paho_tables.install()
    ours = decode(packet)
    assert set_on(ours.properties) == set_on(theirs.properties) == properties
    assert ours.properties.json() == theirs.properties.json()
    assert str(ours.properties) == str(theirs.properties)
    assert ours.properties.pack() == theirs.properties.pack()
    assert (ours.topic, ours.mid, ours.payload) == (theirs.topic, theirs.mid, theirs.payload)
    assert type(theirs.properties) is Properties
    assert type(ours.properties) is SharedTablesProperties


def test_the_tables_are_built_once_and_setting_a_property_checks_as_pahos_does() -> None:
    one: Any = SharedTablesProperties(PacketTypes.PUBLISH)
    two: Any = SharedTablesProperties(PacketTypes.CONNECT)
    assert one.names is two.names and one.properties is two.properties
    theirs: Any = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    for properties in (one, theirs):
        with pytest.raises(MQTTException, match="does not apply to packet type"):
            properties.ReceiveMaximum = 10  # a CONNECT property
        with pytest.raises(MQTTException, match="must be one of"):
            properties.NoSuchProperty = 1
        properties.UserProperty = ("a", "1")
        properties.UserProperty = ("b", "2")  # user properties accumulate
    assert one.json() == theirs.json() == {"UserProperty": [("a", "1"), ("b", "2")]}
    two.ReceiveMaximum = 10  # and it is one of a CONNECT
    assert two.json() == {"ReceiveMaximum": 10}
    assert isinstance(one, Properties)


def test_clear_removes_every_property_and_nothing_else() -> None:
    properties: Any = SharedTablesProperties(PacketTypes.PUBLISH)
    properties.ContentType = "text/plain"
    properties.UserProperty = ("a", "1")
    properties.clear()
    assert properties.json() == {} and properties.isEmpty()
    assert properties.packetType == PacketTypes.PUBLISH
    properties.ContentType = "text/plain"  # the tables are still there
    assert properties.json() == {"ContentType": "text/plain"}


def test_install_can_be_undone_and_leaves_an_unknown_paho_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert paho_tables.install() and paho_tables.installed()
    paho_tables.uninstall()
    decoders: Any = paho_packet
    assert not paho_tables.installed()
    assert decoders.Properties.__name__ == "Properties"
    monkeypatch.setattr(paho_tables, "_decoders", None)  # a paho without paho.mqtt._packet
    assert not paho_tables.install() and not paho_tables.installed()
    monkeypatch.undo()
    monkeypatch.setattr(decoders, "Properties", dict)  # a decoder module of another shape
    assert not paho_tables.install()
    assert decoders.Properties is dict


def test_the_source_says_once_when_it_cannot_share_the_tables(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(paho_tables, "_decoders", None)
    mqtt._warn_paho_layout.cache_clear()
    with caplog.at_level(logging.WARNING, logger="xwatch.sources.mqtt"):
        mqtt._share_property_tables()
        mqtt._share_property_tables()
    mqtt._warn_paho_layout.cache_clear()
    assert [r.getMessage() for r in caplog.records] == [
        "paho-mqtt's layout is not the one xwatch knows (paho.mqtt._packet.Properties): "
        "MQTT 5 messages are decoded at paho's own speed (about half the rate)"
    ]
