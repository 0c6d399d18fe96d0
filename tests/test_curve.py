"""CURVE on the relay's public side, with real keys on loopback: an allowed client reads,
a client with another key and a plain client are refused and counted."""

from __future__ import annotations

import pytest
import zmq
from streams import RawPublisher, const_frame, wait_until

from sunspec import Receiver
from sunspec.curve import ClientKeys, ServerKeys, generate_keys
from sunspec.relay import Relay

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="libzmq without CURVE")


@pytest.fixture
def keys(tmp_path):
    """A relay key pair, an allowed client, and an intruder whose key is not allowed."""
    _, relay_secret = generate_keys(tmp_path / "relay", "relay")
    allowed = tmp_path / "allowed"
    client_public, client_secret = generate_keys(tmp_path / "client", "observer")
    _, intruder_secret = generate_keys(tmp_path / "intruder", "intruder")
    allowed.mkdir()
    (allowed / client_public.name).write_bytes(client_public.read_bytes())
    return {
        "server": ServerKeys.load(relay_secret, allowed),
        "relay_public": tmp_path / "relay" / "relay.key",
        "client": ClientKeys.load(client_secret, tmp_path / "relay" / "relay.key"),
        "intruder": ClientKeys.load(intruder_secret, tmp_path / "relay" / "relay.key"),
    }


@pytest.fixture
def relay_with_curve(keys):
    pub = RawPublisher()
    relay = Relay([pub.endpoint], ["tcp://127.0.0.1:*"], curve=keys["server"])
    relay.start()
    pub.wait_subscriber()
    yield pub, relay
    relay.stop()
    pub.close()


def test_allowed_key_receives_other_key_and_plain_client_are_refused(keys, relay_with_curve):
    pub, relay = relay_with_curve
    good = Receiver(endpoint=relay.endpoint(), curve=keys["client"])
    intruder = Receiver(endpoint=relay.endpoint(), curve=keys["intruder"])
    plain = Receiver(endpoint=relay.endpoint())
    with good, intruder, plain:
        assert wait_until(lambda: relay.status()["subscribers"] == 1)
        assert wait_until(lambda: relay.status()["auth_failures"] >= 1)
        assert wait_until(lambda: relay.status()["handshake_failures"] >= 1)
        for k in range(3):
            pub.send(const_frame(float(k)))
        assert wait_until(lambda: good.status()["frames_received"] == 3)
        assert intruder.status()["messages"] == 0
        assert plain.status()["messages"] == 0
    st = relay.status()
    assert st["curve"]
    assert st["streams"][0]["outputs"][0]["subscriptions"] == 1  # the allowed client only
    assert st["streams"][0]["outputs"][0]["forwarded"] == 3


def test_key_files_are_checked(keys, tmp_path):
    with pytest.raises(ValueError, match="no secret key"):
        ClientKeys.load(keys["relay_public"], keys["relay_public"])  # public half only
    with pytest.raises(ValueError, match="not a directory"):
        ServerKeys.load(tmp_path / "relay" / "relay.key_secret", tmp_path / "missing")
    with pytest.raises(OSError):
        ClientKeys.load(tmp_path / "nope.key_secret", keys["relay_public"])
