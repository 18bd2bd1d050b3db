#!/usr/bin/python3
"""TTFT and TPOT as the packets on the loopback show them, to split a client's error from
the server's lateness.

  wire_timing.py CAPTURE.pcap PORT TOKENS

CAPTURE is `tcpdump -i lo -s 0 --time-stamp-precision=nano -w CAPTURE tcp port PORT`
taken while a client streamed chat completions from `llmring mock` on PORT. For each
request, in vLLM's definitions but stamped by the kernel instead of the client:
  start   the client's SYN for a connection's first request, else its POST segment
          (both kinds are also reported apart)
  first   the server's segment carrying the role chunk (the first event with a choice)
  last    the server's segment carrying the finish_reason chunk (the last one)
  TTFT = first - start, TPOT = (last - first) / (TOKENS - 1).
A client's own figure minus this one is what the client added; this one minus what the
mock was told is the mock's lateness. Prints one JSON object. Stdlib only.
"""
import json
import struct
import sys


def packets(path):
    with open(path, "rb") as f:
        hdr = f.read(24)
        magic = struct.unpack("<I", hdr[:4])[0]
        if magic == 0xA1B23C4D:
            scale, end = 1e-9, "<"
        elif magic == 0xA1B2C3D4:
            scale, end = 1e-6, "<"
        else:
            raise SystemExit(f"{path}: not a little-endian pcap (magic {magic:#x})")
        linktype = struct.unpack(end + "I", hdr[20:24])[0]
        l2 = {1: 14, 113: 16, 0: 4}.get(linktype)
        if l2 is None:
            raise SystemExit(f"{path}: link type {linktype} not handled")
        while True:
            ph = f.read(16)
            if len(ph) < 16:
                return
            sec, frac, incl, _ = struct.unpack(end + "IIII", ph)
            data = f.read(incl)
            yield sec + frac * scale, data[l2:]


def main():
    path, port, tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    conns = {}     # client port -> [SYN or None, POST, first, last]
    syn = {}       # client port -> SYN time, until its first request
    done = []      # (start, first, last)
    for ts, ip in packets(path):
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
            continue
        ihl = (ip[0] & 15) * 4
        tcp = ip[ihl:]
        sport, dport = struct.unpack(">HH", tcp[:4])
        off = (tcp[12] >> 4) * 4
        flags = tcp[13]
        payload = tcp[off:]
        if dport == port:  # client to server
            if flags & 0x02 and not flags & 0x10:  # SYN: the first one, a retransmit
                syn.setdefault(sport, ts)           # after a full backlog is the server's
            elif payload.startswith(b"POST"):
                cur = conns.get(sport)
                conns[sport] = [syn.pop(sport, None), ts, None, None]
        elif sport == port and payload:
            cur = conns.get(dport)
            if not cur:
                continue
            if cur[1] is None:
                continue
            if cur[2] is None and b'"role":"assistant"' in payload:
                cur[2] = ts
            if cur[2] is not None and b'"finish_reason":"' in payload:
                cur[3] = ts
                done.append(tuple(cur))
                conns[dport] = [None, None, None, None]

    def mean(xs):
        return sum(xs) / len(xs) if xs else None

    ttft = [(f - (s if s is not None else p)) * 1e3 for s, p, f, _ in done]
    print(json.dumps({
        "requests": len(done),
        "wire_ttft_ms_mean": mean(ttft),
        "wire_tpot_ms_mean": mean([(l - f) * 1e3 / (tokens - 1) for _, _, f, l in done]),
        # split by connection: a new one's TTFT starts at its SYN, a reused one's at POST
        "new_conn_requests": sum(1 for d in done if d[0] is not None),
        "new_conn_ttft_ms_mean": mean([t for t, d in zip(ttft, done) if d[0] is not None]),
        "new_conn_syn_to_post_ms_mean": mean([(p - s) * 1e3 for s, p, _, _ in done
                                              if s is not None]),
        "reused_conn_ttft_ms_mean": mean([t for t, d in zip(ttft, done) if d[0] is None]),
    }))


if __name__ == "__main__":
    main()
