"""Fixtures shared by the test modules: a hand-made publisher and receivers following it.

A module (or test) sets their arguments with markers: ``pytest.mark.publisher(**kwargs)`` for
:class:`streams.RawPublisher`, ``pytest.mark.receiver(**kwargs)`` for the defaults of the
receivers ``receiver_for`` makes; ``pub`` also takes indirect parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from streams import RawPublisher

from sunspec import Receiver


def _marked(request: pytest.FixtureRequest, name: str) -> dict[str, Any]:
    marker = request.node.get_closest_marker(name)
    return dict(marker.kwargs) if marker is not None else {}


@pytest.fixture
def pub(request: pytest.FixtureRequest) -> Iterator[RawPublisher]:
    p = RawPublisher(**{**_marked(request, "publisher"), **getattr(request, "param", {})})
    yield p
    p.close()


@pytest.fixture
def receiver_for(pub: RawPublisher, request: pytest.FixtureRequest
                 ) -> Iterator[Callable[..., Receiver]]:
    """Makes started receivers of ``pub`` (each waited for until it has subscribed)."""
    defaults = _marked(request, "receiver")
    made: list[Receiver] = []

    def make(**kw: Any) -> Receiver:
        r = Receiver(endpoint=pub.endpoint, **{**defaults, **kw})
        made.append(r)
        r.start()
        pub.wait_subscriber()
        return r

    yield make
    for r in made:
        r.stop()


@pytest.fixture
def rx(receiver_for: Callable[..., Receiver]) -> Receiver:
    """One started receiver of ``pub``."""
    return receiver_for()
