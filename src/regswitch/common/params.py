"""System parameters (docs/behaviour.md §2): specs, validation, live values and change events.

VOS3000's names are the canonical ones. Values are kept as canonical strings
("On"/"Off", "3600") and as typed values for the hot path (`params.values`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ON_WORDS = {"on", "true", "1", "yes"}
OFF_WORDS = {"off", "false", "0", "no"}


class ParamError(ValueError):
    """A parameter name or value was refused; nothing changed."""


@dataclass(frozen=True, slots=True)
class ParamSpec:
    name: str
    default: str
    kind: str  # "switch" | "int" | "choice" | "text"
    meaning: str
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()

    def canonical(self, raw: object) -> str:
        """Validate `raw` and return its canonical string form."""
        text = str(raw).strip() if not isinstance(raw, bool) else ("On" if raw else "Off")
        if self.kind == "switch":
            if text.lower() in ON_WORDS:
                return "On"
            if text.lower() in OFF_WORDS:
                return "Off"
            raise ParamError(f"{self.name} must be On or Off, not {text!r}")
        if self.kind == "int":
            try:
                number = int(text)
            except ValueError:
                raise ParamError(f"{self.name} must be an integer, not {text!r}") from None
            if self.minimum is not None and number < self.minimum:
                raise ParamError(f"{self.name} must be at least {self.minimum}")
            if self.maximum is not None and number > self.maximum:
                raise ParamError(f"{self.name} must be at most {self.maximum}")
            return str(number)
        if self.kind == "choice":
            for choice in self.choices:
                if text.lower() == choice.lower():
                    return choice
            raise ParamError(f"{self.name} must be one of {', '.join(self.choices)}, not {text!r}")
        if not text or len(text) > 200 or not text.isprintable():
            raise ParamError(f"{self.name} must be 1-200 printable characters")
        return text

    def typed(self, canonical: str) -> Any:
        if self.kind == "switch":
            return canonical == "On"
        if self.kind == "int" or (self.kind == "choice" and canonical.isdigit()):
            return int(canonical)
        return canonical


SPECS: tuple[ParamSpec, ...] = (
    ParamSpec(
        "SS_ENDPOINT_REGISTER_REPLACE",
        "On",
        "switch",
        "On: a REGISTER from a new device replaces the old registration and kicks its calls. "
        "Off: it is rejected and the old registration stays until it expires.",
    ),
    ParamSpec(
        "SS_ENDPOINT_EXPIRE",
        "3600",
        "int",
        "Longest registration interval granted (s); longer requests are granted this.",
        1,
        604800,
    ),
    ParamSpec(
        "SS_ENDPOINT_MIN_EXPIRE",
        "60",
        "int",
        "Shorter non-zero requests get 423 Interval Too Brief with Min-Expires (s).",
        1,
        86400,
    ),
    ParamSpec(
        "REGISTER_REPLACE_KEEP_CALLS",
        "Off",
        "switch",
        "With replace On: Off kicks the replaced binding's calls (VOS3000); On lets them run "
        "to their natural end.",
    ),
    ParamSpec("SS_SIP_NAT_KEEP_ALIVE", "On", "switch", "Send keepalives to endpoints behind NAT."),
    ParamSpec(
        "NAT_KEEP_ALIVE_ALL", "Off", "switch",
        "On: keepalives go to every binding, not only to those behind NAT (source differs "
        "from the contact).",
    ),
    ParamSpec(
        "SS_SIP_NAT_KEEP_ALIVE_PERIOD",
        "30",
        "int",
        "Seconds between NAT keepalives.",
        5,
        3600,
    ),
    ParamSpec(
        "SS_SIP_NAT_KEEP_ALIVE_MESSAGE",
        "OPTIONS",
        "text",
        "OPTIONS (a reply proves the device alive), CRLF (double-CRLF ping), or any other text "
        "sent as a raw UDP payload (e.g. HELLO).",
    ),
    ParamSpec(
        "REGISTER_REPLACE_REJECT_CODE",
        "403",
        "choice",
        "Reply code for a REGISTER refused by replace Off: 403 (final), 486 or 503 "
        "(with Retry-After).",
        choices=("403", "486", "503"),
    ),
    ParamSpec(
        "REGISTER_REPLACE_IF_UNREACHABLE",
        "On",
        "switch",
        "With replace Off, a new device may still take over when the old binding is "
        "unreachable (no answer to keepalives or to one 2 s OPTIONS probe).",
    ),
    ParamSpec(
        "REGISTER_FLAP_LIMIT",
        "5",
        "int",
        "Replacements of one account within REGISTER_FLAP_WINDOW that count as flapping.",
        1,
        10000,
    ),
    ParamSpec(
        "REGISTER_FLAP_WINDOW",
        "60",
        "int",
        "Flapping detection window (s).",
        1,
        86400,
    ),
    ParamSpec(
        "REGISTER_FLAP_HOLD",
        "300",
        "int",
        "While flapping, further replacements of the account are refused for this long (s).",
        0,
        86400,
    ),
    ParamSpec(
        "REGISTER_FLOOD_LIMIT",
        "200",
        "int",
        "Unauthenticated requests per source within REGISTER_FLOOD_WINDOW before the source "
        "is blocked: requests refused before authentication, challenges not answered with "
        "valid credentials, failed credentials. A source is an IPv4 address or an IPv6 "
        "prefix (FLOOD_IPV6_PREFIX).",
        1,
        10_000_000,
    ),
    ParamSpec(
        "REGISTER_AUTHENTICATED_LIMIT",
        "5000",
        "int",
        "Authenticated requests per source within REGISTER_FLOOD_WINDOW before the source is "
        "blocked: the much higher ceiling that lets an office of phones behind one address "
        "register together.",
        1,
        10_000_000,
    ),
    ParamSpec("REGISTER_FLOOD_WINDOW", "10", "int", "Flood counting window (s).", 1, 3600),
    ParamSpec(
        "AUTH_FAIL_LIMIT",
        "20",
        "int",
        "Failed authentications of one account from one source within REGISTER_FLOOD_WINDOW "
        "before that account is refused from that source for FLOOD_BLOCK_TIME (other "
        "accounts of the source are still served).",
        1,
        1_000_000,
    ),
    ParamSpec(
        "FLOOD_IPV6_PREFIX",
        "64",
        "int",
        "IPv6 sources are counted per prefix of this length (one host holds a whole /64).",
        32,
        128,
    ),
    ParamSpec(
        "REGISTER_THIRD_PARTY_CONTACTS",
        "Off",
        "switch",
        "On: a REGISTER not behind NAT may register a contact at another IP address than its "
        "source (registration on behalf of another device); INVITEs and keepalives then go "
        "there. Off: such contacts are refused with 403.",
    ),
    ParamSpec(
        "REGISTER_IP_AUTH_UDP_CHANGES",
        "Confirm",
        "choice",
        "Accounts authenticated by address alone (allowed networks, no password), over UDP, "
        "where a source address can be forged. Confirm: a removal, a replace or a move of a "
        "binding first needs one OPTIONS to the source answered (2 s). Refuse: such changes "
        "only over TCP or TLS (403 over UDP); refreshes and first registrations pass.",
        choices=("Confirm", "Refuse"),
    ),
    ParamSpec(
        "AUTH_ALGORITHMS",
        "MD5",
        "choice",
        "Digest challenges offered, in this order. MD5 alone is the compatible default: some "
        "phones (baresip and other libre-based ones) answer no challenge when offered two, and "
        "many answer only the first. SHA-256 is an opt-in; SHA-256 first follows RFC 8760's "
        "preference order.",
        choices=("MD5", "MD5,SHA-256", "SHA-256,MD5", "SHA-256"),
    ),
    ParamSpec(
        "FLOOD_BLOCK_TIME",
        "300",
        "int",
        "How long a flooding source stays blocked (s).",
        1,
        86400,
    ),
    ParamSpec(
        "CALLS_REQUIRE_REGISTRATION",
        "On",
        "switch",
        "On: an account places calls only from a source that holds one of its current "
        "registrations (or from its allowed networks), else 403 Not registered; every call is "
        "then tied to that registration, so a kick or delete ends it. Off: any authenticated "
        "source may call.",
    ),
    ParamSpec(
        "EVENT_RETENTION_DAYS",
        "30",
        "int",
        "Events older than this many days are deleted (in small batches, every minute).",
        1,
        36500,
    ),
    ParamSpec(
        "CDR_RETENTION_DAYS",
        "400",
        "int",
        "CDRs that started more than this many days ago are deleted (in small batches, "
        "every minute).",
        1,
        36500,
    ),
    ParamSpec(
        "HEP_CAPTURE",
        "On",
        "switch",
        "Copy every SIP message to the HEP collector (configuration `hep`); no effect without one.",
    ),
    # --- kick wars and telling the kicked device (README "Why was I signed out?")
    ParamSpec(
        "REGISTER_KICKED_REFUSE_TIME",
        "3600",
        "int",
        "A refresh of a replaced registration (its Call-ID) is refused with 403 and an "
        "explanation, instead of kicking the newcomer back, until the old registration would "
        "have expired and at least this long (s). A fresh registration (new Call-ID) is not.",
        0,
        604800,
    ),
    ParamSpec(
        "REGISTER_PINGPONG_LIMIT",
        "4",
        "int",
        "Replacements between the same two devices of one account within "
        "REGISTER_PINGPONG_WINDOW that count as a ping-pong (held like flapping).",
        1,
        10000,
    ),
    ParamSpec(
        "REGISTER_PINGPONG_WINDOW", "7200", "int", "Ping-pong detection window (s).", 60, 604800
    ),
    ParamSpec(
        "REGISTER_PINGPONG_HOLD",
        "3600",
        "int",
        "While ping-ponging, further replacements of the account are refused for this long (s); "
        "0: only evented.",
        0,
        604800,
    ),
    ParamSpec(
        "REGISTER_REPLACE_NOTIFY_OLD",
        "Off",
        "choice",
        "MESSAGE: before a registration is replaced, send the old device a SIP MESSAGE "
        "(text/plain, REGISTER_REPLACE_NOTIFY_TEXT) through its flow. Off: tell it nothing "
        "(VOS3000).",
        choices=("Off", "MESSAGE"),
    ),
    ParamSpec(
        "REGISTER_REPLACE_NOTIFY_TEXT",
        "Signed out: {account} registered from {new_ip} ({new_agent}) at {time}",
        "text",
        "Text of that MESSAGE. Placeholders: {account} {new_ip} {new_source} {new_agent} "
        "{new_contact} {old_source} {time} {datetime}.",
    ),
    # --- the reg event package (RFC 3680; README "The reg event package")
    ParamSpec(
        "REG_EVENT_MAX_PER_ACCOUNT",
        "10",
        "int",
        "reg event subscriptions (SUBSCRIBE Event: reg) per account on this node; 0 refuses "
        "them all.",
        0,
        1000,
    ),
    ParamSpec(
        "REG_EVENT_MAX_TOTAL", "10000", "int", "reg event subscriptions in total on this node.",
        0, 1_000_000,
    ),
    ParamSpec(
        "REG_EVENT_MIN_EXPIRES",
        "60",
        "int",
        "Shorter non-zero reg subscriptions get 423 Interval Too Brief with Min-Expires (s).",
        1,
        86400,
    ),
    ParamSpec(
        "REG_EVENT_MAX_EXPIRES",
        "3600",
        "int",
        "Longest reg subscription granted (s); longer requests are granted this.",
        1,
        86400,
    ),
    ParamSpec(
        "REG_EVENT_TRUSTED_NETWORKS",
        "none",
        "text",
        "Comma-separated CIDRs whose SUBSCRIBEs to any account's reg events need no "
        "credentials (application servers); none: every subscriber authenticates as the account.",
    ),
    # --- credential sharing (README "Credential-sharing detector")
    ParamSpec(
        "SHARING_MAX_SOURCES",
        "3",
        "int",
        "An account registering from more distinct source networks (or +sip.instance values) "
        "than this within SHARING_WINDOW is suspected of a shared password.",
        1,
        1000,
    ),
    ParamSpec(
        "SHARING_WINDOW", "3600", "int", "Credential-sharing detection window (s).", 60, 604800
    ),
    ParamSpec(
        "SHARING_MAX_KICKS",
        "5",
        "int",
        "An account kicked (replaced) more than this within SHARING_WINDOW is suspected too.",
        1,
        10000,
    ),
    ParamSpec(
        "SHARING_ACTION",
        "none",
        "choice",
        "none: only event and flag the account. lock: also refuse new registrations of the "
        "account for SHARING_LOCK_TIME; the device holding it keeps its registration.",
        choices=("none", "lock"),
    ),
    ParamSpec(
        "SHARING_LOCK_TIME", "3600", "int", "How long a suspected account stays locked (s).",
        1, 604800,
    ),
    ParamSpec(
        "SHARING_V4_PREFIX", "24", "int", "IPv4 prefix length of one source network.", 8, 32
    ),
    ParamSpec(
        "SHARING_V6_PREFIX", "56", "int", "IPv6 prefix length of one source network.", 16, 128
    ),
)

SPEC_BY_NAME = {spec.name: spec for spec in SPECS}

# per-parameter checks of a text value (name -> why it is refused, or None);
# filled by the modules that own the template (params sits below them)
TEXT_CHECKS: dict[str, Callable[[str], str | None]] = {}
OnChange = Callable[[str, str, str], None]


class Params:
    """Live parameter values. `values[name]` is the typed value the hot path reads."""

    def __init__(self) -> None:
        self._raw: dict[str, str] = {spec.name: spec.default for spec in SPECS}
        self.values: dict[str, Any] = {s.name: s.typed(s.default) for s in SPECS}
        self._listeners: list[OnChange] = []

    def load(self, stored: dict[str, str]) -> None:
        """Adopt stored values; unknown or invalid stored entries are ignored."""
        for name, raw in stored.items():
            spec = SPEC_BY_NAME.get(name)
            if spec is None:
                continue
            try:
                value = spec.canonical(raw)
            except ParamError:
                continue
            self._raw[name] = value
            self.values[name] = spec.typed(value)

    def on_change(self, listener: OnChange) -> None:
        self._listeners.append(listener)

    def spec(self, name: str) -> ParamSpec:
        spec = SPEC_BY_NAME.get(name.strip().upper())
        if spec is None:
            raise KeyError(name)
        return spec

    def get(self, name: str) -> str:
        return self._raw[self.spec(name).name]

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def validate(self, name: str, raw: object) -> tuple[ParamSpec, str]:
        """The canonical new value, checked against the other parameters too."""
        spec = self.spec(name)
        value = spec.canonical(raw)
        proposed = dict(self.values)
        proposed[spec.name] = spec.typed(value)
        if proposed["SS_ENDPOINT_MIN_EXPIRE"] > proposed["SS_ENDPOINT_EXPIRE"]:
            raise ParamError("SS_ENDPOINT_MIN_EXPIRE must not exceed SS_ENDPOINT_EXPIRE")
        if proposed["REG_EVENT_MIN_EXPIRES"] > proposed["REG_EVENT_MAX_EXPIRES"]:
            raise ParamError("REG_EVENT_MIN_EXPIRES must not exceed REG_EVENT_MAX_EXPIRES")
        if spec.name in TEXT_CHECKS:
            why = TEXT_CHECKS[spec.name](value)
            if why is not None:
                raise ParamError(f"{spec.name}: {why}")
        return spec, value

    def apply(self, name: str, value: str) -> str:
        """Set an already validated canonical value; returns the old value."""
        old = self._raw[name]
        self._raw[name] = value
        self.values[name] = SPEC_BY_NAME[name].typed(value)
        if old != value:
            for listener in self._listeners:
                listener(name, old, value)
        return old

    def describe(self) -> list[dict[str, Any]]:
        return [
            {
                "name": spec.name,
                "value": self._raw[spec.name],
                "default": spec.default,
                "kind": spec.kind,
                "meaning": spec.meaning,
                "minimum": spec.minimum,
                "maximum": spec.maximum,
                "choices": list(spec.choices),
            }
            for spec in SPECS
        ]
