"""Conversations of one capture: where each request and response begins and ends.

This layer sits between matching (segments with flow ids, ``match.py``) and the lone view
(``lone.py``). It imports numpy and pandas only; its inputs are the segment table and, per
frame, the opt-in reader columns (``payload_head``, ``tcp_window``: ``packets.read_packets``).

* :mod:`.protocols`: request and response headers recognized in the first payload bytes
  (HTTP/1.x, DNS, memcached text and binary, Redis RESP, TLS records);
* :mod:`.messages`: segments → messages → exchanges, per conversation (TCP connection, UDP
  5-tuple), never across, pipelined requests paired in order;
* :mod:`.gaps`: delay versus idle, judged against the same conversation (or its kind);
* :mod:`.tcp_analysis`: the network's share — retransmissions, RTO back-off, zero windows,
  window-full stalls, duplicate and delayed ACKs — from our own sequence analysis.
* :mod:`.codes`: rows numbered by their distinct combination of columns (kinds, connections).

Layer: part of the pipeline (:mod:`xentrace_cli.pipeline`); imports the shared modules and
``pipeline.match`` and ``pipeline.anomalies`` only.
"""
