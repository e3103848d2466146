"""What one capture alone tells: per conversation, request → response and response → next.

Without a second capture point nothing can be split across owners, but a single capture (the
guest's, typically) still shows each conversation (TCP connection, UDP 5-tuple): its requests
and responses (cut by the application protocol's headers where they are recognized,
:mod:`conversations.protocols`, else by turns), paired inside the conversation and never across
(:mod:`conversations.messages`). Two gaps follow per exchange:

* ``request_to_response_us``: last request byte → first response byte (the far side's time),
* ``response_to_next_us``: last response byte → the client's next request on the same
  conversation (the client's own delay — in a guest capture, the guest stack and the
  application acting on the response), when that gap is a delay, not idle time
  (:mod:`conversations.gaps`; idle gaps go to ``idle_us``).

"The black 0.1 second" shows here as a response that arrived and a ``response_to_next`` of
100 ms in a conversation that usually answers in a few. Gaps that the network explains
(retransmissions, zero windows …, :mod:`conversations.tcp_analysis`) carry that cause.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..model import LONE_INTERVALS, format_flow
from ..sources.packets import PacketColumns, head_bytes
from ..units import counted, format_duration
from . import anomalies
from .conversations import gaps, messages, protocols, tcp_analysis
from .match import FLOW_COLUMNS, first_transmissions, int_values
from .result import text_at, text_column

#: The two intervals of the lone view, named as merged intervals are (``<from>_to_<to>``);
#: defined with the table's columns in :mod:`model`.
INTERVALS: tuple[str, ...] = LONE_INTERVALS
#: What the reader must add to the capture the lone view is computed on (opt-in columns).
READ_OPTIONS: dict[str, object] = {"payload_head": protocols.HEAD_BYTES, "tcp_window": True}
#: Columns of :func:`exchanges`.
COLUMNS: tuple[str, ...] = (
    *FLOW_COLUMNS, "conversation", "rule", "t_request", "t_request_end", "t_response",
    "t_response_end", "t_next", "request_bytes", "response_bytes", "request_to_response_us",
    "response_to_next_us", "idle_us", "retransmissions", "request_frame", "response_frame",
    "response_end_frame", "response_last", "anomaly", "stall", "cause", "cause_detail",
    "stall_id", "stalled")

connection_ids = messages.conversation_ids


@dataclasses.dataclass
class FrameFacts:
    """What the lone view needs of a capture's frames beyond the segment table."""

    heads: pd.DataFrame
    """Frames with payload: ``frame``, ``head`` ((n, N) uint8 rows as an object-free array
    in ``attrs['bytes']``), ``head_len``."""
    tcp: pd.DataFrame
    """:func:`conversations.tcp_analysis.analyze_tcp` of the capture."""


def frame_facts(packets: pd.DataFrame | PacketColumns) -> FrameFacts:
    """Payload heads and TCP sequence analysis of a packet table read with
    :data:`READ_OPTIONS` (without those columns: none — every conversation is cut by turns,
    and no network cause is named); the table may be the reader's arrays (what ``analyze``
    reads: the heads are taken as they are, not through an Arrow column)."""
    if isinstance(packets, PacketColumns) and "payload_head" in packets.extra:
        head, have = packets.extra["payload_head"]
        frames = packets.values["frame"][have].astype(np.int64)
        heads = head[have]
        length = np.minimum(int_values(packets, "payload_len", 0, np.flatnonzero(have)),
                            heads.shape[1])
    elif not isinstance(packets, PacketColumns) and "payload_head" in packets.columns:
        have = packets["payload_head"].notna().to_numpy()
        frames = packets["frame"].to_numpy(np.int64)[have]
        heads = head_bytes(packets["payload_head"][have])
        length = np.minimum(pd.to_numeric(packets["payload_len"][have]).fillna(0)
                            .to_numpy(np.int64), heads.shape[1])
    else:
        frames = np.zeros(0, dtype=np.int64)
        heads = np.zeros((0, protocols.HEAD_BYTES), dtype=np.uint8)
        length = np.zeros(0, dtype=np.int64)
    table = pd.DataFrame({"frame": frames, "head_len": length})
    table.attrs["bytes"] = heads
    return FrameFacts(heads=table, tcp=tcp_analysis.analyze_tcp(packets))


def _marks(segments: pd.DataFrame, facts: FrameFacts | None) -> protocols.Marks:
    """The protocol marks of each segment, from its frame's payload head."""
    n = len(segments)
    head = np.zeros((n, protocols.HEAD_BYTES), dtype=np.uint8)
    length = np.zeros(n, dtype=np.int64)
    if facts is not None and len(facts.heads):
        where = _positions(facts.heads["frame"].to_numpy(np.int64),
                           segments["frame"].to_numpy(np.int64))
        ok = where >= 0
        head[ok] = facts.heads.attrs["bytes"][where[ok]]
        length[ok] = facts.heads["head_len"].to_numpy()[where[ok]]
    return protocols.recognize(head, length, segments["proto"].to_numpy(np.int64),
                               segments["sport"].to_numpy(np.int64),
                               segments["dport"].to_numpy(np.int64))


def _positions(frames: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Position of each wanted frame number in ``frames`` (-1: not there): a binary search
    when they ascend (a capture's, in file order), else a hash lookup."""
    if frames.size == 0:
        return np.full(wanted.size, -1, dtype=np.intp)
    if not (frames[1:] > frames[:-1]).all():
        return pd.Index(frames).get_indexer(wanted)
    at = np.minimum(np.searchsorted(frames, wanted), frames.size - 1)
    return np.where(frames[at] == wanted, at, -1)


def exchanges(segments: pd.DataFrame, fresh: np.ndarray | None = None,
              facts: FrameFacts | None = None) -> pd.DataFrame:
    """One row per request/response exchange of each conversation in one capture's segments.

    ``segments`` comes from :func:`match.assign_flows`; ``fresh`` is its
    :func:`match.first_transmissions` when the caller has it already; ``facts`` the capture's
    :func:`frame_facts` (without it: turns only, no network causes). Columns
    (:data:`COLUMNS`): the request's flow (client → server), ``conversation`` (id) and
    ``rule`` (how its messages were cut), times in epoch seconds of the capture's clock (NaN
    when absent), bytes, the two gaps and ``idle_us`` (a response → next gap that was idle
    time), ``retransmissions``, the frames of the request, of the response's first and last
    segments, ``response_last`` (row in ``segments`` of the response's last segment),
    ``anomaly`` (gap name or ''), ``stall``, ``cause`` and ``cause_detail`` (the network's
    share, ``model.CAUSES``), ``stall_id`` (anomalous gaps of one client that overlap are one
    stall) and ``stalled`` (the exchange where the stall sits: one per stall,
    :func:`conversations.gaps.stalls`). ``attrs['exchange_of_segment']``: each segment's row
    here (int64 bytes: immutable, so that pandas copies and compares attrs cheaply;
    :func:`exchange_of_segment` reads it).
    """
    if len(segments) == 0:
        return pd.DataFrame({c: [] for c in COLUMNS})
    if fresh is None:
        fresh = first_transmissions(segments)
    cut = messages.split(segments, fresh, _marks(segments, facts))
    out = cut.exchanges
    label, excess, idle = gaps.judge(out)
    out["idle_us"] = np.where(idle, out["response_to_next_us"], np.nan)
    out.loc[idle, "response_to_next_us"] = np.nan
    out["anomaly"] = _text(label)
    stall = np.full(len(out), "", dtype=object)
    flagged = label != ""
    stall[flagged] = anomalies.name_stall(np.asarray(excess)[flagged])
    out["stall"] = _text(stall)
    cause, detail = _network_causes(out, label, facts)
    out["cause"] = _text(cause)
    out["cause_detail"] = _text(detail)
    out["stall_id"], out["stalled"] = gaps.stalls(out, label)
    out = out[list(COLUMNS)]
    out.attrs["exchange_of_segment"] = cut.exchange_of_segment.astype(np.int64).tobytes()
    out.attrs["capture_holes"] = _capture_holes(out, facts).tobytes()
    return out


def _capture_holes(flows: pd.DataFrame, facts: FrameFacts | None) -> np.ndarray:
    """Per exchange, how many of its conversation's frames from its request on (to the next
    exchange's) follow a hole in their flow's bytes that no later frame fills: bytes the
    capture never held (:func:`.tcp_analysis.analyze_tcp`'s ``capture_hole``)."""
    count = np.zeros(len(flows), dtype=np.int64)
    tcp = None if facts is None else facts.tcp
    if tcp is None or "capture_hole" not in tcp.columns or len(flows) == 0:
        return count
    lost = tcp[tcp["capture_hole"].to_numpy(bool)]
    if len(lost) == 0:
        return count
    key = tcp_analysis.conversation_key(*(flows[c].to_numpy() for c in FLOW_COLUMNS[:4]))
    codes, _ = pd.factorize(np.concatenate([key, lost["conversation_key"].to_numpy()]))
    own, theirs = codes[:len(flows)].astype(np.int64), codes[len(flows):].astype(np.int64)
    start = flows["request_frame"].to_numpy(np.int64)
    order = np.lexsort((start, own))
    placed = (own[order] << 32) | start[order]
    at = np.searchsorted(placed, (theirs << 32) | lost["frame"].to_numpy(np.int64),
                         side="right") - 1
    mine = at >= 0
    mine[mine] = own[order][at[mine]] == theirs[mine]  # an exchange of its conversation
    np.add.at(count, order[at[mine]], 1)
    return count


def capture_holes(flows: pd.DataFrame) -> np.ndarray:
    """Per exchange of :func:`exchanges`: how many frames after a hole in the capture (bytes it
    did not hold) it spans (zeros when it has no record of them). Of the exchanges as made:
    rows taken out since (pandas keeps ``attrs`` on a slice) raise ``ValueError``."""
    raw = flows.attrs.get("capture_holes")
    if raw is None:
        return np.zeros(len(flows), dtype=np.int64)
    holes = np.frombuffer(raw, dtype=np.int64)
    if holes.size != len(flows):
        raise ValueError(f"capture holes are known for the {holes.size} exchanges as made, "
                         f"not for {len(flows)} of them")
    return holes


def holes_note(flows: pd.DataFrame, capture: str) -> str | None:
    """The sentence for the report when the capture missed frames inside exchanges."""
    holes = capture_holes(flows)
    hit = np.flatnonzero(holes)
    if hit.size == 0:
        return None
    first = flows.iloc[hit[0]]
    return (f"the {capture} capture lacks bytes inside {counted(hit.size, 'exchange')} "
            f"({counted(int(holes.sum()), 'frame')} after a hole in their flow's sequence "
            "numbers that no later frame fills: the capture dropped what came between, "
            f"Wireshark's tcp.analysis.lost_segment; the first in the exchange requested at frame "
            f"{int(first['request_frame'])}, "
            f"{format_flow(first['src'], first['sport'], first['dst'], first['dport'])}): "
            "their byte counts are what was captured, and a gap ending at a frame after a "
            "hole is an upper bound.")


def _text(values: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """``values.astype(str)`` as a text column, made from its non-empty rows only (the few
    anomalous exchanges: no fixed-width copy of every row, 17 ms a column of 300,000)."""
    values = np.asarray(values, dtype=object)
    rows = np.flatnonzero(values != "")
    return text_at(len(values), rows, values[rows].astype(str))


def _network_causes(flows: pd.DataFrame, label: np.ndarray, facts: FrameFacts | None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """For each anomalous gap: the TCP event inside it that explains it without Xen."""
    n = len(flows)
    start = np.full(n, -1, dtype=np.int64)
    end = np.full(n, -1, dtype=np.int64)
    server = label == "request_to_response"
    client = label == "response_to_next"
    start[server] = flows["request_end_ns"].to_numpy()[server]
    end[server] = flows["response_ns"].to_numpy()[server]
    start[client] = flows["response_end_ns"].to_numpy()[client]
    end[client] = flows["next_ns"].to_numpy()[client]
    if facts is None or not (server | client).any():
        return np.full(n, "", dtype=object), np.full(n, "", dtype=object)
    key = tcp_analysis.conversation_key(flows["src"].to_numpy(), flows["sport"].to_numpy(),
                                        flows["dst"].to_numpy(), flows["dport"].to_numpy())
    return tcp_analysis.explain_gaps(facts.tcp, key, start, end)


def exchange_of_segment(flows: pd.DataFrame) -> np.ndarray | None:
    """Per segment :func:`exchanges` was given: its exchange's row in ``flows`` (-1 none)."""
    raw = flows.attrs.get("exchange_of_segment")
    return None if raw is None else np.frombuffer(raw, dtype=np.int64)


def rules(flows: pd.DataFrame) -> dict[str, int]:
    """How many conversations were cut by each rule."""
    if len(flows) == 0:
        return {}
    per = flows.drop_duplicates("conversation")["rule"].value_counts()
    return {str(k): int(v) for k, v in per.items()}


def notes(flows: pd.DataFrame, *, limit: int = 5) -> list[str]:
    """Sentences for the report: per conversation, idle time, and the gaps that stand out."""
    out: list[str] = []
    if len(flows) == 0:
        return out
    grouped = flows.groupby("conversation", sort=False)
    for _, part in itertools.islice(grouped, limit):  # not every conversation's table
        first = part.iloc[0]
        server = np.nanmedian(part["request_to_response_us"]) if len(part) else np.nan
        client = part["response_to_next_us"].to_numpy(float)
        client_med = np.nanmedian(client) if np.isfinite(client).any() else np.nan
        idle = part["idle_us"].to_numpy(float)
        idle_text = (f", {counted(int(np.isfinite(idle).sum()), 'idle gap')} (total "
                     f"{format_duration(float(np.nansum(idle)))})"
                     if np.isfinite(idle).any() else "")
        out.append(
            f"{format_flow(first['src'], first['sport'], first['dst'], first['dport'])} "
            f"({first['rule']}): {counted(len(part), 'exchange')}, request → response median "
            f"{format_duration(server)}, response → next request median "
            f"{format_duration(client_med)}{idle_text}, "
            f"{counted(int(part['retransmissions'].sum()), 'retransmitted segment')}.")
    if len(flows.drop_duplicates("conversation")) > limit:
        counts = ", ".join(f"{rule} {n}" for rule, n in rules(flows).items())
        out.append(f"… {flows['conversation'].nunique()} conversations in all, cut by: {counts}.")
    flagged = flows[flows["anomaly"] != ""]
    if "stalled" in flows.columns and flows["stalled"].any():
        n_stalls = int(flows["stalled"].sum())
        out.append(f"{counted(len(flagged), 'exchange')} with gaps that stand out, in "
                   f"{counted(n_stalls, 'stall')} "
                   "(overlapping gaps of one client are one stall, counted on the exchange "
                   "whose response it had just been given).")
    for _, row in flagged.head(limit).iterrows():
        what = ("the far side took {} to respond" if row["anomaly"] == "request_to_response"
                else "the response arrived and the next request came {} later")
        gap = (row["request_to_response_us"] if row["anomaly"] == "request_to_response"
               else row["response_to_next_us"])
        stall = f" ({row['stall']})" if row["stall"] else ""
        cause = f"; the network's share: {row['cause_detail']}" if row["cause"] else ""
        out.append(f"{format_flow(row['src'], row['sport'], row['dst'], row['dport'])} at "
                   f"t={row['t_response']:.6f}: " + what.format(format_duration(gap)) + stall
                   + cause + ".")
    if len(flagged) > limit:
        out.append(f"… and {len(flagged) - limit} more exchanges with gaps that stand out.")
    return out


def explained_by(table: pd.DataFrame, flows: pd.DataFrame, fresh: np.ndarray,
                 inside: set[tuple[str, str]]) -> np.ndarray:
    """Per exchange: whether one of its own segments has a stage anomaly that lies inside its
    request → response (``inside``: (direction, stage or interval) pairs)."""
    out = np.zeros(len(flows), dtype=bool)
    exchange_of = exchange_of_segment(flows)
    if exchange_of is None or len(exchange_of) != fresh.size or not inside:
        return out
    of_row = exchange_of[fresh]
    label = table["anomaly"].to_numpy(object)
    rows = np.flatnonzero(label != "")  # the few labelled rows, not every row, compared
    way = table["direction"].iloc[rows].astype(str).to_numpy()
    hit = np.zeros(rows.size, dtype=bool)
    for direction, name in inside:
        hit |= (way == direction) & (label[rows] == name)
    rows = rows[hit]
    out[of_row[rows[of_row[rows] >= 0]]] = True
    return out


def _replaced(column: pd.Series, rows: np.ndarray, values: np.ndarray) -> object:
    """A text column with ``values`` at ``rows``: Arrow replaces them in the column as it is
    (a column of Python strings rebuilt took 20-30 ms per 600,000 rows)."""
    data = getattr(column.array, "_pa_array", None)
    if data is None or not pa.types.is_large_string(data.type) or data.null_count \
            or np.unique(rows).size != rows.size:  # not the table's own text; a row twice
        current = column.to_numpy(object).copy()
        current[rows] = values
        return text_column(current)
    # the column's few rows with text (the others are empty: zero lengths) that keep it,
    # laid out again with the new values by :func:`text_at` (Arrow's replace_with_mask
    # rebuilt every row: 60 ms a column of a million)
    data = data.combine_chunks()
    offsets = np.frombuffer(data.buffers()[1], dtype=np.int64)[
        data.offset:data.offset + len(data) + 1]
    replaced = np.zeros(len(column), dtype=bool)
    replaced[rows] = True
    kept = np.flatnonzero((offsets[1:] != offsets[:-1]) & ~replaced)
    text = data.take(pa.array(kept)).to_numpy(zero_copy_only=False)
    return text_at(len(column), np.concatenate([kept, rows]),
                   np.concatenate([np.asarray(text, dtype=object),
                                   np.asarray(values, dtype=object)]))


def _text_is(column: pd.Series, text: str) -> np.ndarray:
    """Which rows of a text column hold ``text``: compared by Arrow on the column as it is
    (not 600,000 Python strings made first)."""
    data = getattr(column.array, "_pa_array", None)
    if data is None:
        return np.asarray(column.to_numpy(object) == text, dtype=bool)
    return np.asarray(pc.fill_null(pc.equal(data, text), False).to_numpy(), dtype=bool)


def put_on_table(table: pd.DataFrame, flows: pd.DataFrame, fresh: np.ndarray,
                 explained: np.ndarray | None = None) -> None:
    """Put the lone view on the analysis table, and the table's stage anomalies on the
    exchanges they belong to.

    ``table`` has one row per first transmission of the segments ``flows`` was computed on
    (``fresh``). Each exchange's gaps (and their anomaly, stall and network cause) go on the
    row of its response's last segment; a stage anomaly on that row says more and is kept.
    Where the socket log timed the read, response → next request is split in two: the read
    (``socket_read``, judged as a stage) and the application's own work after it, which is
    no stage of the host's path — a long think time there is not a latency anomaly.
    ``flows`` gains ``stage_anomaly`` (the first stage anomaly among its rows) and its
    ``stalled`` takes those exchanges in: a stall counts once per exchange, whatever the
    sources. ``explained`` (per exchange, :func:`explained_by`): a request → response its
    own stage anomalies explain is not flagged again.
    """
    position = np.full(fresh.size, -1, dtype=np.int64)
    position[fresh] = np.arange(int(fresh.sum()))
    rows = position[flows["response_last"].to_numpy(np.int64)]
    ok = rows >= 0
    for name in INTERVALS:
        values = np.full(len(table), np.nan)
        values[rows[ok]] = flows[f"{name}_us"].to_numpy(float)[ok]
        table[name + "_us"] = values
    # the table's stage anomalies (a few rows): where they are, and their names there
    labelled = np.flatnonzero(~_text_is(table["anomaly"], ""))
    stage_label = table["anomaly"].iloc[labelled].to_numpy(object)
    kind = flows["anomaly"]
    flagged = ok & ~_text_is(kind, "")
    taken = np.zeros(len(table), dtype=bool)
    taken[labelled] = True
    flagged[ok] &= ~taken[rows[ok]]
    read_timed = np.isfinite(table["socket_read_us"].to_numpy(float)) \
        if "socket_read_us" in table.columns else np.zeros(len(table), dtype=bool)
    flagged[ok] &= ~(_text_is(kind, "response_to_next")[ok] & read_timed[rows[ok]])
    if explained is not None:   # the exchange's own stages hold the delay
        flagged &= ~(_text_is(kind, "request_to_response") & explained)
    updates = {"anomaly": flows["anomaly"], "stall": flows["stall"]}
    if "cause" in table.columns:
        updates.update(cause=flows["cause"], cause_detail=flows["cause_detail"])
    picked = np.flatnonzero(flagged)
    for column, values in updates.items():
        table[column] = _replaced(table[column], rows[picked],
                                  values.iloc[picked].to_numpy(str))
    # the stage anomalies of other sources, per exchange
    exchange_of = exchange_of_segment(flows)
    stage = np.full(len(flows), "", dtype=object)
    if exchange_of is not None and len(exchange_of) == fresh.size:
        of_row = exchange_of[fresh][labelled]
        hit = (of_row >= 0) & ~np.isin(stage_label, list(INTERVALS))
        first = pd.Series(stage_label[hit]).groupby(of_row[hit]).first()
        stage[first.index.to_numpy()] = first.to_numpy()
    flows["stage_anomaly"] = _text(stage)
    flows["stalled"] = flows["stalled"].to_numpy(bool) | (stage != "")
