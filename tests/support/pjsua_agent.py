"""A PJSIP phone (pjsua2) driven by JSON lines on stdin; events as JSON lines on stdout.

Runs as its own process (support/pjsua.py starts it): pjsua2's Endpoint is a
per-process singleton with its own threads. Everything pjsua2 is done on the
main thread, which polls libHandleEvents(); a reader thread only queues
commands. pjsip's own output goes to stderr: fd 1 is pointed there and the
protocol uses a private duplicate of the original stdout.

Commands (each may carry "id", echoed in its "ok"/"error" reply):
  {"cmd": "register", "registrar": "sip:127.0.0.1:PORT", "user": U, "domain": D,
   "password": P, "transport": "udp"|"tcp"|"tls", "expires": N, "acc": NAME,
   "ca": CA_PEM (tls: verify the server against it)}
  {"cmd": "unregister", "acc": NAME}
  {"cmd": "reregister", "acc": NAME}   (refresh now, same Call-ID: a phone that retries)
  {"cmd": "call", "uri": "sip:bob@D", "acc": NAME}          -> {"event": "ok", "call": N}
  {"cmd": "answer", "call": N, "code": 200}
  {"cmd": "hangup", "call": N, "code": 603}
  {"cmd": "reinvite", "call": N}                            (a re-INVITE with a new offer)
  {"cmd": "quit", "unregister": true}   (false: exit at once, no network activity)
Events:
  {"event": "ready", "udp_port": N, "tcp_port": N}
  {"event": "reg_state", "acc": NAME, "code": 200, "reason": "OK", "active": true, "expires": N,
   "warning": the response's Warning value or null}
  {"event": "incoming_call", "call": N, "acc": NAME, "from": ..., "to": ...}
  {"event": "call_state", "call": N, "state": "CONFIRMED", "code": 200, "reason": "OK"}
  {"event": "tsx", "call": N, "method": "INVITE", "role": "uac"|"uas", "code": 200}
      (a transaction of the call got its final response)
  {"event": "instant_message", "acc": NAME, "from": ..., "content_type": ..., "body": ...}
  {"event": "ok" | "error", "id": ..., ...}, {"event": "bye"} before exiting.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import threading
import traceback
from typing import Any

import pjsua2 as pj

_proto_out = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)  # whatever pjsip prints lands on stderr, not in the protocol
_emit_lock = threading.Lock()


def emit(event: str, **fields: Any) -> None:
    line = json.dumps({"event": event, **fields})
    with _emit_lock:
        _proto_out.write(line + "\n")
        _proto_out.flush()


class Phone:
    def __init__(self, log_level: int, bind: str) -> None:
        self.bind = bind
        self.ep = pj.Endpoint()
        self.ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0  # callbacks run in libHandleEvents, on our thread
        cfg.uaConfig.mainThreadOnly = False
        cfg.uaConfig.userAgent = "regswitch-tests-pjsua2"
        cfg.logConfig.level = log_level
        cfg.logConfig.consoleLevel = log_level
        cfg.medConfig.noVad = True
        self.ep.libInit(cfg)
        self.ep.audDevManager().setNullDev()  # no sound card
        self.transports: dict[str, int] = {}
        self.ports: dict[str, int] = {}
        for name, kind in (("udp", pj.PJSIP_TRANSPORT_UDP), ("tcp", pj.PJSIP_TRANSPORT_TCP)):
            tcfg = pj.TransportConfig()
            tcfg.port = 0
            tcfg.boundAddress = bind
            tid = self.ep.transportCreate(kind, tcfg)
            self.transports[name] = tid
            self.ports[name] = int(self.ep.transportGetInfo(tid).localName.split(":")[-1])
        self.ep.libStart()
        self.accounts: dict[str, Account] = {}
        self.calls: dict[int, Call] = {}

    def account(self, name: str) -> Account:
        if name not in self.accounts:
            raise KeyError(f"no account {name!r}")
        return self.accounts[name]

    def tls_transport(self, ca: str | None, verify: bool) -> int:
        """A TLS client transport, made on first use (the wheel bundles OpenSSL)."""
        if "tls" not in self.transports:
            tcfg = pj.TransportConfig()
            tcfg.port = 0
            tcfg.boundAddress = self.bind
            if ca:
                tcfg.tlsConfig.CaListFile = ca
            tcfg.tlsConfig.verifyServer = verify
            tid = self.ep.transportCreate(pj.PJSIP_TRANSPORT_TLS, tcfg)
            self.transports["tls"] = tid
            self.ports["tls"] = int(self.ep.transportGetInfo(tid).localName.split(":")[-1])
        return self.transports["tls"]

    def register(self, cmd: dict[str, Any]) -> dict[str, Any]:
        name = cmd.get("acc", "default")
        transport = cmd.get("transport", "udp")
        if transport == "tls":
            self.tls_transport(cmd.get("ca"), bool(cmd.get("verify", cmd.get("ca") is not None)))
        registrar = cmd["registrar"]
        if transport != "udp" and "transport=" not in registrar:
            registrar += f";transport={transport}"
        acfg = pj.AccountConfig()
        acfg.idUri = f"sip:{cmd['user']}@{cmd['domain']}"
        acfg.regConfig.registrarUri = registrar
        acfg.regConfig.timeoutSec = int(cmd.get("expires", 300))
        acfg.regConfig.retryIntervalSec = 0  # no automatic retries: tests decide
        acfg.regConfig.registerOnAdd = True
        acfg.sipConfig.transportId = self.transports[transport]
        proxy = cmd.get("proxy")
        if proxy:
            acfg.sipConfig.proxies.append(proxy)
        if cmd.get("password") is not None:
            acfg.sipConfig.authCreds.append(
                pj.AuthCredInfo(
                    "digest", "*", cmd.get("auth_user", cmd["user"]), 0, cmd["password"]
                )
            )
        acfg.natConfig.sipOutboundUse = 1 if cmd.get("outbound", False) else 0
        acfg.natConfig.contactRewriteUse = 0
        acfg.natConfig.viaRewriteUse = 0
        acfg.mediaConfig.transportConfig.boundAddress = self.bind
        # no re-INVITE of its own after an answer with several codecs: a test's
        # re-INVITEs would meet it in glare (491)
        acfg.mediaConfig.lockCodecEnabled = False
        if name in self.accounts:
            self.accounts.pop(name).shutdown()
        acc = Account(self, name)
        acc.create(acfg)
        self.accounts[name] = acc
        return {"acc": name}

    def unregister(self, cmd: dict[str, Any]) -> dict[str, Any]:
        self.account(cmd.get("acc", "default")).setRegistration(False)
        return {}

    def reregister(self, cmd: dict[str, Any]) -> dict[str, Any]:
        self.account(cmd.get("acc", "default")).setRegistration(True)
        return {}

    def call(self, cmd: dict[str, Any]) -> dict[str, Any]:
        acc = self.account(cmd.get("acc", "default"))
        call = Call(self, acc)
        prm = pj.CallOpParam(True)
        call.makeCall(cmd["uri"], prm)
        cid = call.getId()
        self.calls[cid] = call
        return {"call": cid}

    def answer(self, cmd: dict[str, Any]) -> dict[str, Any]:
        prm = pj.CallOpParam()
        prm.statusCode = int(cmd.get("code", 200))
        self.calls[int(cmd["call"])].answer(prm)
        return {}

    def hangup(self, cmd: dict[str, Any]) -> dict[str, Any]:
        prm = pj.CallOpParam()
        if "code" in cmd:
            prm.statusCode = int(cmd["code"])
        self.calls[int(cmd["call"])].hangup(prm)
        return {}

    def reinvite(self, cmd: dict[str, Any]) -> dict[str, Any]:
        self.calls[int(cmd["call"])].reinvite(pj.CallOpParam(True))
        return {}

    def shutdown(self, network: bool) -> None:
        """network=False skips unregistering and the wait for it (~1 s)."""
        self.calls.clear()
        if network:
            for acc in self.accounts.values():
                acc.shutdown()
        self.accounts.clear()
        self.ep.libDestroy(0 if network else pj.PJSUA_DESTROY_NO_NETWORK)


class Account(pj.Account):  # type: ignore[misc]
    def __init__(self, phone: Phone, name: str) -> None:
        super().__init__()
        self.phone = phone
        self.name = name

    def onRegState(self, prm: Any) -> None:  # pjsua2's callback name
        info = self.getInfo()
        whole = str(prm.rdata.wholeMsg or "")
        warning = next(
            (line.split(":", 1)[1].strip() for line in whole.splitlines()
             if line.lower().startswith("warning:")),
            None,
        )
        emit(
            "reg_state",
            acc=self.name,
            code=int(prm.code),
            reason=str(prm.reason),
            active=bool(info.regIsActive),
            expires=int(prm.expiration),
            warning=warning,
        )

    def onInstantMessage(self, prm: Any) -> None:  # pjsua2's callback name
        emit(
            "instant_message",
            acc=self.name,
            **{"from": str(prm.fromUri)},
            content_type=str(prm.contentType),
            body=str(prm.msgBody),
        )

    def onIncomingCall(self, prm: Any) -> None:
        call = Call(self.phone, self, prm.callId)
        info = call.getInfo()
        self.phone.calls[info.id] = call
        emit(
            "incoming_call",
            call=info.id,
            acc=self.name,
            **{"from": info.remoteUri},
            to=info.localUri,
        )


class Call(pj.Call):  # type: ignore[misc]
    def __init__(self, phone: Phone, acc: Account, call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(acc, call_id)
        self.phone = phone

    def onCallState(self, prm: Any) -> None:
        info = self.getInfo()
        emit(
            "call_state",
            call=info.id,
            state=info.stateText,
            code=int(info.lastStatusCode),
            reason=str(info.lastReason),
            # the Reason header (RFC 3326) of the request that caused it, e.g. a BYE
            # (PJSIP shows only "Normal call clearing" for a BYE, whatever it says)
            sip_reason=_reason_header(prm.e),
        )

    def onCallTsxState(self, prm: Any) -> None:
        if prm.e.type != pj.PJSIP_EVENT_TSX_STATE:
            return
        tsx = prm.e.body.tsxState.tsx
        code = int(tsx.statusCode)
        # once per transaction: a non-2xx final leaves it Completed (Terminated
        # only after Timer D), a 2xx to INVITE terminates it at once
        final = tsx.state == pj.PJSIP_TSX_STATE_COMPLETED or (
            tsx.state == pj.PJSIP_TSX_STATE_TERMINATED and 200 <= code < 300
        )
        if not final:
            return
        emit(
            "tsx",
            call=self.getId(),
            method=str(tsx.method),
            role="uac" if tsx.role == pj.PJSIP_ROLE_UAC else "uas",
            code=code,
        )


def _reason_header(event: Any) -> str | None:
    if event.type != pj.PJSIP_EVENT_TSX_STATE or event.body.tsxState.type != pj.PJSIP_EVENT_RX_MSG:
        return None
    for line in str(event.body.tsxState.src.rdata.wholeMsg).split("\r\n")[1:]:
        if not line:
            break
        name, _, value = line.partition(":")
        if name.strip().lower() == "reason":
            return value.strip()
    return None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--log-level", type=int, default=int(os.environ.get("PJSUA_LOG", "1")))
    parser.add_argument("--bind", default="127.0.0.1")
    args = parser.parse_args()

    commands: queue.Queue[dict[str, Any] | None] = queue.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            try:
                commands.put(json.loads(line))
            except json.JSONDecodeError as exc:
                emit("error", message=f"bad JSON: {exc}")
        commands.put(None)  # stdin closed: the test process is gone

    threading.Thread(target=read_stdin, daemon=True).start()
    phone = Phone(args.log_level, args.bind)
    emit("ready", udp_port=phone.ports["udp"], tcp_port=phone.ports["tcp"])
    handlers = {
        "register": phone.register,
        "unregister": phone.unregister,
        "reregister": phone.reregister,
        "call": phone.call,
        "answer": phone.answer,
        "hangup": phone.hangup,
        "reinvite": phone.reinvite,
    }
    running = True
    network_shutdown = True
    while running:
        phone.ep.libHandleEvents(20)
        while True:
            try:
                cmd = commands.get_nowait()
            except queue.Empty:
                break
            if cmd is None or cmd.get("cmd") == "quit":
                running = False
                network_shutdown = bool(cmd and cmd.get("unregister", True))
                break
            name = cmd.get("cmd", "")
            try:
                result = handlers[name](cmd)
                emit("ok", id=cmd.get("id"), cmd=name, **result)
            except Exception as exc:  # report, keep the phone alive
                traceback.print_exc()
                emit("error", id=cmd.get("id"), cmd=name, message=f"{type(exc).__name__}: {exc}")
    phone.shutdown(network_shutdown)
    emit("bye")
    return 0


if __name__ == "__main__":
    sys.exit(main())
