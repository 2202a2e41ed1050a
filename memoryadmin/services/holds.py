"""Legal holds: sessions that nothing may clear, redact or expire until an Admin lifts the hold.

A hold names one connection's sessions by a glob pattern with SCAN MATCH's syntax (`*`, `?`,
`[...]`, `[^...]`, `\\` escapes); one session key is held by its pattern with the wildcard
characters escaped (`exact_pattern`). Matching is Redis's (and Valkey's) `stringmatchlen`, to
the byte: so a hold covers exactly the keys a SCAN MATCH of its pattern would list.

Checks are local (no store command): a connection's active holds are read in one query and
turned into a matcher, exact keys in a dict and patterns in one compiled regular expression,
that answers for a batch of thousands of keys at once (`held_keys`).
"""

import re

from django.db.models import F
from django.utils import timezone

from memoryadmin.holds.models import LegalHold

from . import audit
from .connections import ConnectionChoice

# Upstash refuses keys over 32 KB; a pattern is held to the same limit, measured as a key.
MAX_PATTERN_BYTES = 32 * 1024

# Redis gives up on a pattern past this many nested `*` (stringmatchlen's protection against abusive patterns).
MAX_STAR_NESTING = 1000


class SessionOnHold(Exception):
    """A write refused because the session is on legal hold: nothing was changed."""

    def __init__(self, key, hold):
        self.key, self.hold = key, hold
        super().__init__(
            f"This session is on legal hold #{hold.pk} ({hold.reason}): nothing was changed. "
            "An Admin can lift the hold under Legal holds."
        )


# --- patterns, as Redis's stringmatchlen reads them -------------------------------------------
# A pattern is a sequence of tokens: a byte (int), any byte (ANY), a class (frozenset of bytes)
# and runs of stars (STAR). Every token but STAR matches exactly one byte of the key.
ANY, STAR = "?", "*"
_STAR, _ANY, _BACKSLASH, _OPEN, _CLOSE, _CARET, _DASH = b"*?\\[]^-"


def _signed(byte):
    """A byte as C's `char` on x86 and x86-64 (signed): how stringmatchlen compares the ends of a range."""
    return byte - 256 if byte > 127 else byte


def _class(pattern, i):
    """The bytes of the class whose body starts at i, and the index of its last byte.

    Exactly stringmatchlen's loop: `\\` escapes the next byte, `]` ends it (so `[]` is empty),
    `a-z` is a range (its ends in either order; `[a-]` takes `]` as the end), and a class that
    is never closed ends with the pattern.
    """
    n = len(pattern)
    negated = i < n and pattern[i] == _CARET
    i += negated
    members = set()
    while True:
        if i < n and pattern[i] == _BACKSLASH and n - i >= 2:
            i += 1
            members.add(pattern[i])
        elif i < n and pattern[i] == _CLOSE:
            break
        elif i >= n:
            i -= 1
            break
        elif n - i >= 3 and pattern[i + 1] == _DASH:
            low, high = sorted((_signed(pattern[i]), _signed(pattern[i + 2])))
            members.update(byte for byte in range(256) if low <= _signed(byte) <= high)
            i += 2
        else:
            members.add(pattern[i])
        i += 1
    return frozenset(range(256)).difference(members) if negated else frozenset(members), i


def _tokens(pattern):
    """The tokens of a pattern (bytes)."""
    tokens, i, n = [], 0, len(pattern)
    while i < n:
        byte = pattern[i]
        if byte == _STAR:
            while i + 1 < n and pattern[i + 1] == byte:
                i += 1
            tokens.append(STAR)
        elif byte == _ANY:
            tokens.append(ANY)
        elif byte == _OPEN:
            members, i = _class(pattern, i + 1)
            tokens.append(members)
        elif byte == _BACKSLASH and i + 1 < n:
            i += 1
            tokens.append(pattern[i])
        else:
            tokens.append(byte)
        i += 1
    return tokens


def _encoded(text):
    # surrogatepass: a hostile key with a lone surrogate is still compared, byte for byte.
    return text.encode("utf-8", "surrogatepass")


def _literal(tokens):
    """The one key (bytes) that tokens without wildcards match, or None when they have any."""
    return bytes(tokens) if all(isinstance(token, int) for token in tokens) else None


def exact_key(pattern):
    """The one key a pattern without wildcards matches, or None when it has any."""
    literal = _literal(_tokens(_encoded(pattern)))
    return None if literal is None else literal.decode("utf-8", "surrogatepass")


def exact_pattern(key):
    """The pattern that matches this key and no other."""
    return re.sub(r"([*?\[\\])", r"\\\1", key)


def _byte_class(members):
    if not members:
        return "(?!)"  # `[]`: matches no byte
    if len(members) == 256:
        return "."
    ranges = []  # [first, last] of each run of consecutive bytes
    for byte in sorted(members):
        if ranges and ranges[-1][1] == byte - 1:
            ranges[-1][1] = byte
        else:
            ranges.append([byte, byte])
    return "[" + "".join(f"\\x{first:02x}-\\x{last:02x}" for first, last in ranges) + "]"


def _one_byte(token):
    if token == ANY:
        return "."
    if isinstance(token, int):
        return f"\\x{token:02x}"
    return _byte_class(token)


def _regex(tokens):
    """A regular expression (for bytes, DOTALL, to be matched from the start) with stringmatchlen's answers.

    Runs of stars split the pattern into segments of one-byte tokens: the first is anchored at
    the start, the last at the end, and each one between is taken at its first place after the
    one before (atomic: a later place never helps, as every segment has a fixed length). Without
    backtracking into earlier stars, a hostile 32 KB key costs no more than one pass per segment.
    """
    stars = tokens.count(STAR)
    if stars > MAX_STAR_NESTING and not (stars == MAX_STAR_NESTING + 1 and tokens[-1] == STAR):
        return "(?!)"  # Redis stops at the 1,001st star unless it ends the pattern: no key matches
    segments = [[]]
    for token in tokens:
        if token == STAR:
            segments.append([])
        else:
            segments[-1].append(_one_byte(token))
    first, *middle = ["".join(segment) for segment in segments]
    if not middle:
        return first + r"\Z"
    *middle, last = middle
    return first + "".join(f"(?>.*?{segment})" for segment in middle) + ".*" + last + r"\Z"


def check_pattern(pattern):
    """ValueError, saying why, for a pattern that cannot be a hold: empty, or over 32 KB as a key."""
    if not pattern:
        raise ValueError("Give a session key or a pattern.")
    key = exact_key(pattern)
    size = len(_encoded(pattern if key is None else key))
    if size > MAX_PATTERN_BYTES:
        raise ValueError(f"That is {size:,} bytes; a key or pattern can be at most {MAX_PATTERN_BYTES:,} (32 KB).")


class HoldMatcher:
    """Which of some holds (oldest first) each key is under; built once, asked for many keys."""

    def __init__(self, holds):
        self._exact = {}
        self._patterns, regexes = [], []
        self._match_everything = None  # SCAN lists every key for `*`, the empty one included
        for hold in holds:
            tokens = _tokens(_encoded(hold.pattern))
            literal = _literal(tokens)
            if literal is not None:
                self._exact.setdefault(literal, hold)
                continue
            self._patterns.append(hold)
            regexes.append(f"({_regex(tokens)})")  # group n: the nth pattern
            if hold.pattern == STAR and self._match_everything is None:
                self._match_everything = hold
        alternatives = "|".join(regexes)
        self._regex = re.compile(alternatives.encode("ascii"), re.DOTALL) if alternatives else None

    def hold_for(self, key):
        """The first hold the key is under, or None."""
        encoded = _encoded(key)
        exact = self._exact.get(encoded)
        if not encoded:
            # stringmatchlen matches no pattern against an empty key; only SCAN's `*` lists it.
            found = self._match_everything
        else:
            match = self._regex.match(encoded) if self._regex else None
            found = self._patterns[match.lastindex - 1] if match else None
        candidates = [hold for hold in (exact, found) if hold is not None]
        return min(candidates, key=lambda hold: hold.pk) if candidates else None


# --- holds ---------------------------------------------------------------------------------------


def active_holds(connection_slug):
    """The connection's holds in force, oldest first."""
    return list(LegalHold.objects.filter(connection_slug=connection_slug, lifted_at__isnull=True).order_by("id"))


def holds_to_list(connection_slug):
    """Every hold of the connection: active ones first (newest first), then lifted ones (last lifted first)."""
    holds = LegalHold.objects.filter(connection_slug=connection_slug).select_related("created_by", "lifted_by")
    return holds.order_by(F("lifted_at").desc(nulls_first=True), "-id")


def held_keys(connection_slug, keys):
    """The keys that are on hold, each with the first hold it is under (one query)."""
    holds = active_holds(connection_slug)
    if not holds:
        return {}
    matcher = HoldMatcher(holds)
    return {key: hold for key in keys if (hold := matcher.hold_for(key)) is not None}


def hold_for(connection_slug, key):
    """The first active hold the session is under, or None (one query)."""
    return held_keys(connection_slug, [key]).get(key)


def refuse_if_held(connection_slug, key):
    """SessionOnHold if the session is on hold: call it inside a write's audited block, before the store."""
    hold = hold_for(connection_slug, key)
    if hold is not None:
        raise SessionOnHold(key, hold)


def place_hold(request, connection, pattern, reason):
    """Put the connection's sessions matching the pattern on hold (audited hold.create)."""
    check_pattern(pattern)
    reason = reason.strip()
    if not reason:
        raise ValueError("Give the reason for the hold.")
    details = {"pattern": pattern, "reason": reason}
    with audit.audited(
        request, "hold.create", connection=connection, session_key=exact_key(pattern) or "", details=details
    ) as result:
        hold = LegalHold.objects.create(
            connection_slug=connection.slug,
            connection_name=connection.name,
            pattern=pattern,
            reason=reason,
            created_by=request.user,
        )
        result["hold"] = hold.pk
    return hold


def lift_hold(request, hold, reason):
    """Lift a hold (audited hold.lift): the sessions it held may be cleared again. The hold is kept."""
    reason = reason.strip()
    if not reason:
        raise ValueError("Give the reason for lifting the hold.")
    connection = ConnectionChoice(hold.connection_slug, hold.connection_name, False)
    details = {"hold": hold.pk, "pattern": hold.pattern, "reason": reason}
    with audit.audited(
        request, "hold.lift", connection=connection, session_key=exact_key(hold.pattern) or "", details=details
    ):
        lifted = LegalHold.objects.filter(pk=hold.pk, lifted_at__isnull=True).update(
            lifted_by=request.user, lifted_at=timezone.now(), lift_reason=reason
        )
        if not lifted:
            raise ValueError(f"Legal hold #{hold.pk} was already lifted.")
    hold.refresh_from_db()
    return hold
