"""Property test over message sequences (issue 11, item 3), through real sockets on 127.0.0.1.

Hypothesis plans what one or two senders (a restart) send: each seq is delivered, dropped,
duplicated, delivered late, or spoilt in a way found before or after its header is read;
stray frames of another geometry and sender_id come in between; optional keys go bad; an
end-of-sequence message may follow. The expected counts come from the plan and the rules of
docs/PROTOCOL.md, and must hold exactly, with every row's contents and the thread alive.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streams import TAG0, WINDOW, RawPublisher, const_frame
from test_receiver_accounting import settled

from sunspec import Receiver, protocol

ACTIONS = ["ok", "ok", "ok", "drop", "dup", "late", "nonfinite", "size", "keys"]
BAD_OPTIONAL = {"beam": 2**64, "pols": "XX", "navg": 0}


def message(value: float, sender_id: str, seq: int, nchan: int = 64, bad_key: str | None = None,
            **extra) -> list[bytes]:
    frame = const_frame(value, nchan=nchan)
    h = protocol.make_header(nbeam=1, nchan=nchan, npol=4, time_tag=TAG0,
                             t_end_tag=TAG0 + (seq + 1) * WINDOW, sender_id=sender_id, seq=seq,
                             timestamp=1.75e9 + seq, beam=3, **extra)
    if bad_key:
        h[bad_key] = BAD_OPTIONAL[bad_key]
    return [bytes(p) for p in protocol.encode(frame, h)]


class Plan:
    """What is sent, and what the receiver must then report."""

    def __init__(self) -> None:
        self.sends: list[list[bytes]] = []
        self.rows: list[tuple[float, int]] = []
        self.senders: dict[str, Counter] = {}
        self.rejected: Counter = Counter()
        self.keys_ignored = 0
        self.ends = 0

    def count(self, sender_id: str, **kw: int) -> None:
        self.senders.setdefault(sender_id, Counter()).update(kw)


def build(plans, ends, strays, bad_keys) -> Plan:
    p = Plan()
    for k, actions in enumerate(plans):
        sid = "AB"[k]
        actions = list(actions)
        actions[-1] = "ok"  # the last frame of each sender resolves any stray before it
        if k == 0:
            actions[0] = "ok"  # the first sender's span starts at the first seq we hear
        delivered: set[int] = set()
        seq = 0
        while seq < len(actions):
            a = actions[seq]
            order = [seq]
            if a == "late" and seq + 1 < len(actions) and actions[seq + 1] == "ok":
                order = [seq + 1, seq]  # seq + 1 overtakes seq
            elif a == "late":
                a = "ok"
            for s in order:
                value = 1000.0 * (k + 1) + s
                bad = bad_keys[s % len(bad_keys)] if a in ("ok", "late") else None
                msg = message(value, sid, s, bad_key=bad)
                if a == "drop":
                    continue
                delivered.add(s)
                if a == "nonfinite":
                    frame = const_frame(value, nchan=64)
                    frame[0, 3, 0] = np.nan
                    msg[2] = frame.tobytes()
                elif a == "size":
                    msg[2] = msg[2][:-4]
                elif a == "keys":  # a bad key that labels the rows, header otherwise readable
                    h = json.loads(msg[1])
                    h["chan_bw"] = -1.0
                    msg[1] = json.dumps(h).encode()
                p.sends.append(msg)
                p.count(sid, messages=1)
                if a in ("nonfinite", "size", "keys"):
                    p.rejected[a] += 1
                    p.count(sid, rejected=1)
                    continue
                p.rows.append((value, s))
                p.count(sid, rows=1)
                p.keys_ignored += bad is not None
                if a == "dup":
                    p.sends.append(msg)
                    p.count(sid, messages=1, duplicates=1)
            seq += len(order)
        end = len(actions) if ends[k] else max(delivered) + 1
        p.count(sid, span=end, lost=end - len(delivered))  # every span starts at seq 0
        if ends[k]:
            p.sends.append(protocol.encode_end(sid, len(actions)))
            p.ends += 1
            p.count(sid, seq_end=len(actions))
    for j, (where, seq) in enumerate(strays):
        sid = f"stray{j}"
        # never first (it would make the first ring), never after the last frame
        last_frame = max(i for i, m in enumerate(p.sends) if m[0] == b"data")
        if last_frame == 0:
            break
        p.sends.insert(1 + where % last_frame, message(-1.0, sid, seq, nchan=32))
        p.rejected["unconfirmed"] += 1
        p.count(sid, messages=1, rejected=1, span=seq + 1, lost=seq)
    return p


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(plans=st.lists(st.lists(st.sampled_from(ACTIONS), min_size=1, max_size=12), min_size=1,
                      max_size=2),
       ends=st.lists(st.booleans(), min_size=2, max_size=2),
       strays=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 5)), max_size=3),
       bad_keys=st.lists(st.sampled_from([None, None, *BAD_OPTIONAL]), min_size=1, max_size=5))
def test_every_message_is_a_row_or_a_named_count(plans, ends, strays, bad_keys):
    plan = build(plans, ends, strays, bad_keys)
    pub = RawPublisher(nodrop=True)
    r = Receiver(endpoint=pub.endpoint, buffer_length=1000, rcvhwm=10_000, confirm_frames=2)
    try:
        r.start()
        pub.wait_subscriber()
        for parts in plan.sends:
            pub.send_parts(parts)
        s = settled(r, len(plan.sends))
        # every message once: a row, a named rejection, a duplicate or an end of sequence
        assert s["frames_received"] == len(plan.rows)
        assert {k: v for k, v in s["rejected"].items() if v} == dict(plan.rejected)
        assert s["duplicates"] == sum(c["duplicates"] for c in plan.senders.values())
        assert s["sequence_ends"] == plan.ends and s["geometry_pending"] == 0
        assert s["keys_ignored"] == plan.keys_ignored
        # per sender: messages = rows + rejected + duplicates; messages - duplicates + lost = span
        for sid, c in plan.senders.items():
            got = s["senders"][sid]
            want = {"messages": c["messages"], "rows": c["rows"], "rejected": c["rejected"],
                    "duplicates": c["duplicates"], "pending": 0, "lost": c["lost"],
                    "span": c["span"], "seq_end": c["seq_end"] or None}
            assert {k: got[k] for k in want} == want, sid
        assert s["lost"] == sum(c["lost"] for c in plan.senders.values())
        assert s["restarts"] == len(plan.senders) - 1 and s["geometry_changes"] == 0
        # rows exact, in arrival order
        rows = r.get_latest(1000)
        values = np.array([v for v, _ in plan.rows], np.float32)
        np.testing.assert_array_equal(rows.data, np.repeat(values[:, None], 32, axis=1))
        assert rows.seq.tolist() == [q for _, q in plan.rows]
        assert r.running
        json.dumps(r.stream_info, allow_nan=False)
    finally:
        r.stop()
        pub.close()
    assert not r.running
