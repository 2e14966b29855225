"""Micro-benchmark: what a registrar / B2BUA does with one message, regswitch vs sippy.

Not a test. Run:  .venv-run/bin/python bench/parse.py [--seconds 0.5] [--reps 5]

For each message the work is: parse the datagram, read what a registrar
reads (top Via branch, From tag, To URI, Call-ID, CSeq, Contact URI and its
expires, the Authorization parameters), build the 200 OK (for REGISTER with
the Contact;expires line and a Date header) and serialise it to bytes.
sippy (PyPI `sippy`, the Sippy B2BUA's SIP stack; the `bench` extra) does the
same work through its own API in the same run; the two are interleaved over
several repetitions, timed in CPU seconds of this process (a busy neighbour
on a shared machine stretches wall time, not ours), and the ratio is the
median of the per-repetition ratios.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from common import save_json

from regswitch.sip.headers import parse_auth
from regswitch.sip.message import Request
from regswitch.sip.parse import parse_message
from regswitch.sip.serialise import response_for, serialise

REGISTER = (
    b"REGISTER sip:sip.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.168.1.23:5060;branch=z9hG4bK1491280923;rport\r\n"
    b'From: "Alice" <sip:1001@sip.example.com>;tag=1702923912\r\n'
    b'To: "Alice" <sip:1001@sip.example.com>\r\n'
    b"Call-ID: 0_1376409126@192.168.1.23\r\n"
    b"CSeq: 2 REGISTER\r\n"
    b"Contact: <sip:1001@192.168.1.23:5060>;reg-id=1;"
    b'+sip.instance="<urn:uuid:00000000-0000-1000-8000-00156522b2a7>"\r\n'
    b'Authorization: Digest username="1001", realm="sip.example.com", '
    b'nonce="AAAAAGWBx5SAbmkO3rGmY0GA-2l0dbv5", uri="sip:sip.example.com", '
    b'response="4c8d8b1e1a2b1d93b4e6ba2a9f3c6e21", algorithm=MD5, '
    b'cnonce="0a4f113b", qop=auth, nc=00000001\r\n'
    b"Max-Forwards: 70\r\n"
    b"User-Agent: Yealink SIP-T46S 66.86.0.15\r\n"
    b"Expires: 3600\r\n"
    b"Allow: INVITE, ACK, OPTIONS, CANCEL, BYE, SUBSCRIBE, NOTIFY, INFO, REFER, UPDATE\r\n"
    b"Supported: path, outbound, gruu\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

SDP = (
    b"v=0\r\n"
    b"o=- 20518 0 IN IP4 192.168.1.23\r\n"
    b"s=SDP data\r\n"
    b"c=IN IP4 192.168.1.23\r\n"
    b"t=0 0\r\n"
    b"m=audio 11796 RTP/AVP 0 8 18 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:18 G729/8000\r\n"
    b"a=fmtp:18 annexb=no\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\n"
    b"a=ptime:20\r\n"
    b"a=sendrecv\r\n"
)

INVITE = (
    b"INVITE sip:1002@sip.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.168.1.23:5060;branch=z9hG4bK2056398823;rport\r\n"
    b'From: "Alice" <sip:1001@sip.example.com>;tag=3581209212\r\n'
    b"To: <sip:1002@sip.example.com>\r\n"
    b"Call-ID: 1929347012@192.168.1.23\r\n"
    b"CSeq: 2 INVITE\r\n"
    b"Contact: <sip:1001@192.168.1.23:5060>\r\n"
    b'Authorization: Digest username="1001", realm="sip.example.com", '
    b'nonce="AAAAAGWBx5SAbmkO3rGmY0GA-2l0dbv5", uri="sip:1002@sip.example.com", '
    b'response="9b1c3e5c0d1e4b6fa7c8d9e0f1a2b3c4", algorithm=MD5, '
    b'cnonce="7e31a0c2", qop=auth, nc=00000002\r\n'
    b"Content-Type: application/sdp\r\n"
    b"Allow: INVITE, ACK, OPTIONS, CANCEL, BYE, SUBSCRIBE, NOTIFY, INFO, REFER, UPDATE\r\n"
    b"Max-Forwards: 70\r\n"
    b"User-Agent: Yealink SIP-T46S 66.86.0.15\r\n"
    b"Supported: replaces, timer\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n"
    b"\r\n" + SDP
)

DATE = "Sat, 25 Nov 2023 15:04:05 GMT"


def regswitch_register(data: bytes) -> bytes:
    msg = parse_message(data)
    assert isinstance(msg, Request)
    branch = msg.top_via.branch
    from_tag = msg.from_.tag
    aor = msg.to.uri
    call_id = msg.call_id
    cseq = msg.cseq.seq
    contact = msg.contacts[0]
    curi = contact.uri
    expires = contact.expires
    if expires is None:
        expires = msg.expires
    auth = msg.headers.get("authorization")
    assert auth is not None
    _scheme, params = parse_auth(auth)
    assert branch and from_tag and aor.user and call_id and cseq and curi.host and params["nonce"]
    resp = response_for(msg, 200, to_tag="a6c85cf")
    resp.headers.add("Contact", f"<{contact.uri_text}>;expires={expires or 3600}")
    resp.headers.add("Date", DATE)
    return serialise(resp)


def regswitch_invite(data: bytes) -> bytes:
    msg = parse_message(data)
    assert isinstance(msg, Request)
    branch = msg.top_via.branch
    from_tag = msg.from_.tag
    aor = msg.to.uri
    call_id = msg.call_id
    cseq = msg.cseq.seq
    curi = msg.contacts[0].uri
    auth = msg.headers.get("authorization")
    assert auth is not None
    _scheme, params = parse_auth(auth)
    assert branch and from_tag and aor.user and call_id and cseq and curi.host and params["nonce"]
    assert len(msg.body) == len(SDP)
    resp = response_for(msg, 200, to_tag="a6c85cf", body=msg.body)
    resp.headers.add("Contact", "<sip:1002@192.168.1.24:5060>")
    resp.headers.add("Content-Type", "application/sdp")
    return serialise(resp)


def _sippy_funcs() -> tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]] | None:
    try:
        from sippy.SipContact import SipContact
        from sippy.SipGenericHF import SipGenericHF
        from sippy.SipHeader import SipHeader
        from sippy.SipRequest import SipRequest
    except ImportError:
        return None

    def read(req: Any) -> tuple[Any, Any]:
        branch = req.getHFBody("via").getBranch()
        from_tag = req.getHFBody("from").getTag()
        aor = req.getHFBody("to").getUrl()
        call_id = str(req.getHFBody("call-id"))
        cseq = req.getHFBody("cseq").getCSeqNum()
        contact = req.getHFBody("contact")
        curi = contact.getUrl()
        auth = req.getHFBody("authorization")
        assert branch and from_tag and aor.username and call_id and cseq and curi.host
        assert auth.nonce
        return contact, curi

    def register(data: bytes) -> bytes:
        req = SipRequest(data.decode())
        contact, _ = read(req)
        expires = contact.getUri().getParam("expires")
        if expires is None:
            expires = req.getHFBody("expires").getNum()
        resp = req.genResponse(200, "OK")
        resp.getHFBody("to").setTag("a6c85cf")
        rcontact = SipContact(address=contact.getUri().getCopy())
        rcontact.getUri().setParam("expires", str(expires or 3600))
        resp.appendHeader(SipHeader(name="contact", body=rcontact))
        resp.appendHeader(SipHeader(name="date", body=SipGenericHF(DATE, "Date")))
        return str(resp).encode()

    def invite(data: bytes) -> bytes:
        req = SipRequest(data.decode())
        read(req)
        body = req.getBody()
        assert body is not None
        resp = req.genResponse(200, "OK", body=body)
        resp.getHFBody("to").setTag("a6c85cf")
        resp.appendHeader(SipHeader("Contact: <sip:1002@192.168.1.24:5060>"))
        return str(resp).encode()

    return register, invite


def _rate(func: Callable[[bytes], bytes], data: bytes, seconds: float) -> float:
    """Messages per CPU second of `func(data)` over about `seconds` of CPU.

    CPU time of this process, not wall time: on a shared machine a neighbour
    taking the core stretches wall time but not ours.
    """
    n = 0
    batch = 200
    gc.collect()
    start = time.process_time()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            func(data)
        n += batch
        now = time.process_time()
        if now >= deadline:
            return n / (now - start)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=0.5, help="time per measurement")
    ap.add_argument("--reps", type=int, default=5, help="interleaved repetitions")
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args(argv)
    results: list[dict[str, object]] = []

    cases: list[tuple[str, bytes, Callable[[bytes], bytes], Callable[[bytes], bytes] | None]] = []
    sippy = _sippy_funcs()
    if sippy is None:
        print("sippy not installed (pip install -e '.[bench]'): regswitch only", file=sys.stderr)
    cases.append(("REGISTER", REGISTER, regswitch_register, sippy[0] if sippy else None))
    cases.append(("INVITE+SDP", INVITE, regswitch_invite, sippy[1] if sippy else None))

    for name, data, ours, theirs in cases:
        ours(data)  # warm caches, fail fast if broken
        if theirs is not None:
            theirs(data)
        our_rates: list[float] = []
        their_rates: list[float] = []
        ratios: list[float] = []
        for _ in range(args.reps):
            our_rates.append(_rate(ours, data, args.seconds))
            if theirs is not None:
                their_rates.append(_rate(theirs, data, args.seconds))
                ratios.append(our_rates[-1] / their_rates[-1])
        ours_best, ours_med = max(our_rates), statistics.median(our_rates)
        line = (
            f"{name:<11} regswitch {ours_med:>9,.0f}/s (best {ours_best:,.0f}/s, "
            f"{1e6 / ours_med:5.1f} us)"
        )
        if their_rates:
            theirs_med = statistics.median(their_rates)
            line += (
                f" | sippy {theirs_med:>8,.0f}/s ({1e6 / theirs_med:5.1f} us)"
                f" | ratio {statistics.median(ratios):4.2f}x"
            )
        print(line, flush=True)
        results.append({
            "message": name, "regswitch_per_s": ours_med,
            "sippy_per_s": statistics.median(their_rates) if their_rates else None,
            "ratio": statistics.median(ratios) if ratios else None,
        })  # fmt: skip
    save_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
