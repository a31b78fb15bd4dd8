"""Inbound SMS keywords: read a message body and say what it asks for, and on which channel.

The reading, in order (each step linear in the message's length):

1. Zero-width and format characters are removed anywhere (Unicode category Cf, and U+200B-U+200D,
   U+2060, U+FEFF), then the text is compatibility-normalised (NFKC), case-folded and stripped
   of accents; a keyword may then be followed by punctuation or surrounded by quotes.
2. A whole message that is one of ``_KEYWORDS`` (the carriers' and Twilio's lists in English,
   Spanish and French) reads exactly: ``exact=True`` and the keyword.
3. A one-word message one edit away from a stop keyword (STPO, STOPP, SOTP; a letter repeated
   three times or more counts once: "stopppp") reads as STOP, not exact, unless the word is a
   real one (``_REAL_WORDS``: "stoop", "step", "quiet", "cancer" ...).
4. Otherwise each clause is matched against the phrase tables: a plain request to stop ("please
   stop calling me", "déjame en paz") reads as STOP on the channels it names (texts when it
   names none); a request about only some messages ("stop sending the lunch menu") as STOP with
   ``scope="some"``; "wrong number" as STOP with ``reassigned=True``; a message that may be a
   revocation but is unclear ("not interested", "stop it") as UNCLEAR, for one clarifying reply.

Only exact keywords give START or HELP. Words that merely occur in other talk ("when does the
bus stop?", "Can you stop by the office?") are ignored.

Linear: a clause is read in windows of at most ``WINDOW`` tokens of at most ``MAX_TOKEN``
characters (overlapping by ``OVERLAP``), so each regular expression runs on a string of bounded
length and the work is proportional to the number of windows. ``read(body, meter)`` counts it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

STOP, START, HELP, UNCLEAR = "stop", "start", "help", "unclear"
TEXT, VOICE, EMAIL = "text", "voice", "email"  # the values of consent.models.Channel
MAX_BODY = 1600  # ten concatenated SMS segments; anything longer is an ordinary message
WINDOW, OVERLAP, MAX_TOKEN = 32, 16, 30


@dataclass(frozen=True)
class Reading:
    """What an inbound message asks for.

    ``intent`` is STOP, START, HELP, UNCLEAR or None; ``exact`` whether the message was a bare
    keyword (``keyword`` names it); ``channels`` the channels a STOP is about (texts unless the
    message names calls or email); ``scope`` "all", or "some" for a request about only some
    messages; ``reassigned`` when the message says the number is not the contact's.
    """

    intent: str | None
    exact: bool
    keyword: str | None
    language: str = "en"
    channels: tuple[str, ...] = (TEXT,)
    scope: str = "all"
    reassigned: bool = False


ORDINARY = Reading(None, False, None, "en")


class Meter:
    """Counts the characters the phrase patterns are run over (the work of one reading)."""

    def __init__(self) -> None:
        self.steps = 0
        self.longest = 0  # the longest string any pattern ran on

    def add(self, line: str, patterns: int) -> None:
        self.steps += (len(line) + 1) * patterns
        self.longest = max(self.longest, len(line))


# Folded form (case-folded, accents stripped, inner whitespace collapsed) -> reading.
_KEYWORDS: dict[str, Reading] = {}


def _add(intent: str, language: str, *words: str) -> None:
    for word in words:
        keyword = word.upper().replace(" ", "").replace("-", "")
        _KEYWORDS[word] = Reading(intent, True, keyword, language)


# Twilio's defaults (STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE, OPTOUT), the AWS /
# CTIA list (adds REMOVE, OPT-OUT, ARRET, TD), Telnyx ("STOP ALL"); Spanish and French ones.
_add(STOP, "en", "stop", "stopall", "stop all", "unsubscribe", "cancel", "end", "quit", "revoke")
_add(STOP, "en", "optout", "opt out", "opt-out", "remove", "stop2quit")
_add(STOP, "es", "parar", "alto", "cancelar", "baja", "detener")
_add(STOP, "fr", "arret", "arrete", "arreter", "td", "desabonner", "annuler")
_add(START, "en", "start", "unstop", "yes")
_add(START, "es", "comenzar")
_add(HELP, "en", "help", "info")
_add(HELP, "es", "ayuda")
_add(HELP, "fr", "aide")

# Stop keywords whose one-letter-off spellings count (when the message is that one word). The
# short or common ones (END, ALTO, BAJA, TD) have too many real neighbours.
_TYPO_KEYWORDS = {
    "stop": "en", "stopall": "en", "unsubscribe": "en", "cancel": "en", "quit": "en",
    "revoke": "en", "optout": "en", "remove": "en", "parar": "es", "cancelar": "es",
    "detener": "es", "arret": "fr",
}  # fmt: skip
# Real English and Spanish words one edit from a typo keyword: never read as a typo.
_REAL_WORDS = frozenset(
    {
        # stop
        "top", "sop", "step", "shop", "slop", "swop", "stow", "stob", "stoa", "atop", "stoop",
        "stomp", "stops", "stope", "stot", "stoup", "estop", "scop",
        # quit
        "quite", "quiet", "quits", "quid", "quip", "quiz", "quilt", "quint", "suit", "quito",
        "quita", "quin", "qui", "quot", "squit", "uit",
        # cancel
        "cancer", "cancels", "chancel", "cancela", "canceled", "candel",
        # revoke
        "revoked", "revokes", "revoker", "evoke", "revote",
        # remove
        "removes", "removed", "remover", "remote", "removal",
        # unsubscribe, optout, stopall
        "unsubscribed", "unsubscribes", "unsubscriber", "optouts", "stopwall",
        # parar
        "para", "parad", "paras", "parra", "pasar", "pagar", "parir", "parer", "parara",
        "parada", "palar", "parear", "sarar", "varar",
        # cancelar
        "cancelas", "cancelan", "cancelad", "cancelara", "cancelare",
        # detener
        "retener", "detened", "detenerse", "detenes",
        # arret
        "arrest", "garret", "barret", "arrets", "ferret",
    }
)  # fmt: skip
_COLLAPSE = re.compile(r"([^\W\d_])\1{2,}")  # a letter three times or more: once

# Characters removed wherever they are (zero-width and format characters).
_ZERO_WIDTH = frozenset("\u200b\u200c\u200d\u2060\ufeff")

_APOSTROPHES = str.maketrans({c: "'" for c in "\u2018\u2019\u201b\u02bc\u02b9\u2032`\u00b4"})
_OPENERS = frozenset("\"'\u00a1\u00bf")  # quotes and Spanish opening marks, also Pi/Pf/Ps below
_LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
_KEPT_IN_CLAUSE = frozenset("/&#@*%_+")  # symbols inside a clause, read as spaces


def read(body: str, meter: Meter | None = None) -> Reading:
    """Say what an SMS body asks for (never raises); `meter`, when given, counts the work."""
    if not isinstance(body, str) or len(body) > 16 * MAX_BODY:
        return ORDINARY
    text = _visible(body).strip()
    if not text or len(text) > MAX_BODY:
        return ORDINARY
    folded = _fold(text)
    if len(folded) > 2 * MAX_BODY:  # compatibility forms can expand; keep the work bounded
        return ORDINARY
    form = _keyword_form(folded)
    exact = _KEYWORDS.get(form)
    if exact is not None:
        return exact
    collapsed = _COLLAPSE.sub(r"\1", folded)
    typo = _typo_language(_keyword_form(collapsed))
    if typo is not None:
        return Reading(STOP, False, None, typo)
    return _phrases(collapsed, meter or Meter())


def _visible(text: str) -> str:
    """The text without zero-width and format characters ("S\u200bTOP" -> "STOP")."""
    return "".join(c for c in text if c not in _ZERO_WIDTH and unicodedata.category(c) != "Cf")


def _fold(text: str) -> str:
    """Compatibility-normalise, case-fold and strip accents ("ＳＴＯＰ", "Párar" -> "stop", "parar")."""
    text = unicodedata.normalize("NFKD", text).casefold()
    text = "".join(c for c in text if unicodedata.category(c) != "Mn")
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES)
    return "".join("-" if unicodedata.category(c) == "Pd" else c for c in text)


def _invisible(c: str) -> bool:
    return c.isspace() or unicodedata.category(c) in ("Cc", "Cf")


def _leading_junk(c: str) -> bool:
    return _invisible(c) or c in _OPENERS or unicodedata.category(c) in ("Pi", "Pf", "Ps")


def _trailing_junk(c: str) -> bool:
    return _invisible(c) or unicodedata.category(c).startswith("P")


def _keyword_form(folded: str) -> str:
    """The folded message without surrounding quotes, trailing punctuation or extra whitespace."""
    start, end = 0, len(folded)
    while start < end and _leading_junk(folded[start]):
        start += 1
    while end > start and _trailing_junk(folded[end - 1]):
        end -= 1
    return " ".join(folded[start:end].split())


# --- One-letter-off spellings ----------------------------------------------------------------


def one_edit(word: str, keyword: str) -> bool:
    """Whether `word` is `keyword` with one letter added, dropped, changed, or two neighbours
    swapped (Damerau-Levenshtein distance 1). Linear in the length."""
    if word == keyword:
        return False
    short, long = sorted((word, keyword), key=len)
    if len(long) - len(short) > 1:
        return False
    first = next(
        (i for i, (a, b) in enumerate(zip(short, long, strict=False)) if a != b), len(short)
    )
    if len(short) != len(long):
        return short[first:] == long[first + 1 :]
    if short[first + 1 :] == long[first + 1 :]:
        return True
    return (
        first + 1 < len(short)
        and short[first] == long[first + 1]
        and short[first + 1] == long[first]
        and short[first + 2 :] == long[first + 2 :]
    )


def _typo_language(form: str) -> str | None:
    """The language of the stop keyword a one-word message misspells, or None."""
    if not (3 <= len(form) <= 14) or not form.isalpha() or form in _REAL_WORDS:
        return None
    if form in _KEYWORDS:  # "stopppp" collapsed to "stop": the keyword, misspelled
        reading = _KEYWORDS[form]
        return reading.language if reading.intent == STOP else None
    for keyword, language in _TYPO_KEYWORDS.items():
        if one_edit(form, keyword):
            return language
    return None


# --- Clauses ---------------------------------------------------------------------------------

_CLAUSE_BREAKS = frozenset({"but", "however", "pero", "sino"})


def _clauses(folded: str) -> list[list[str]]:
    """Split into clauses (at punctuation, line breaks and "but"), each a list of word tokens;
    a token longer than MAX_TOKEN (no word we look for is) becomes "_"."""
    chars = []
    for position, c in enumerate(folded):
        if c.isalnum() or c == "'":
            chars.append(c)
        elif c == "#" and not folded[position + 1 : position + 2].isalnum():
            chars.append(" # ")  # "wrong #", "my #"; a hashtag or "#5" reads as a space
        elif c in _LINE_BREAKS or (unicodedata.category(c).startswith("P") and c != "-"):
            chars.append(" " if c in _KEPT_IN_CLAUSE else "\n")
        else:
            chars.append(" ")
    clauses: list[list[str]] = []
    for line in "".join(chars).split("\n"):
        current: list[str] = []
        for token in line.split():
            token = token.strip("'")
            if not token:
                continue
            if token in _CLAUSE_BREAKS:
                clauses.append(current)
                current = []
            else:
                current.append(token if len(token) <= MAX_TOKEN else "_")
        clauses.append(current)
    return [clause for clause in clauses if clause]


def _windows(clause: list[str]):
    """(line, before) pairs: the clause in windows of at most WINDOW tokens. A window that does
    not start (end) the clause begins (ends) with "_", so ^ and $ keep meaning the clause's."""
    if len(clause) <= WINDOW:
        yield " ".join(clause)
        return
    for start in range(0, len(clause) - OVERLAP, WINDOW - OVERLAP):
        words = clause[start : start + WINDOW]
        line = " ".join(words)
        if start:
            line = "_ " + line
        if start + WINDOW < len(clause):
            line += " _"
        yield line


# "stop please", "STOP STOP", "unsubscribe, thanks", "baja por favor": a stop word with courtesies.
_BARE_STOP = {
    "stop": "en", "stopall": "en", "unsubscribe": "en", "unsub": "en", "optout": "en",
    "remove": "en", "revoke": "en", "quit": "en", "parar": "es", "baja": "es", "detener": "es",
    "arret": "fr", "arrete": "fr",
}  # fmt: skip
# "cancel please", "end it": keywords that in a phrase may be about something else: ask.
_BARE_UNCLEAR = {"cancel": "en", "end": "en", "cancelar": "es", "alto": "es", "annuler": "fr"}
_COURTESY = {
    "please": "en", "pls": "en", "plz": "en", "pleas": "en", "plese": "en", "now": "en",
    "thanks": "en", "thank": "en", "you": "en", "thx": "en", "ty": "en", "asap": "en",
    "immediately": "en", "already": "en", "it": "en", "all": "en", "ok": "en", "okay": "en",
    "hi": "en", "hello": "en", "hey": "en", "and": "en",
    "por": "es", "favor": "es", "porfavor": "es", "gracias": "es", "ya": "es", "ahora": "es",
}  # fmt: skip


def _bare(clause: list[str]) -> tuple[str, str] | None:
    """(intent, language) of a clause that is stop words and courtesies only: STOP; UNCLEAR
    when its stop word may be about something else or is misspelled ("stpo please")."""
    words = " ".join(clause).replace("opt out", "optout").replace("opt in", "optin").split()
    if len(words) > 10:
        return None
    intent, spanish = None, False
    for word in words:
        if word in _BARE_STOP:
            intent = STOP
            spanish |= _BARE_STOP[word] == "es"
        elif word in _COURTESY:
            spanish |= _COURTESY[word] == "es"
        elif word in _BARE_UNCLEAR or _typo_language(word) is not None:
            intent = intent or UNCLEAR
            spanish |= _BARE_UNCLEAR.get(word, _typo_language(word)) == "es"
        else:
            return None
    return (intent, "es" if spanish else "en") if intent else None


# --- Phrase patterns. Each runs on one clause: lower-case tokens joined by single spaces. ---------


def _any(*alternatives: str) -> str:
    return "(?:" + "|".join(alternatives) + ")"


_S = r"(?<![^ ])"  # starts a token
_E = r"(?![^ ])"  # ends a token
_ME = _any(
    "me", "us", "this (?:cell |mobile |phone )?(?:number|phone|#)",
    "my (?:cell |mobile |home |phone |cell phone )?(?:number|phone|cell|#)",
    "our (?:phone )?number", "my family", "our family", "my name", "my info",
    "my contact info", "my contact information",
)  # fmt: skip
_MSG = _any(
    "texts?", "txts?", "text messages?", "txt messages?", "messages?", "msgs?", "sms",
    "alerts?", "notifications?", "notices", "calls?", "phone calls?", "robocalls?",
    "robo calls?", "robotexts?", "voicemails?", "emails?", "e mails?", "spam", "reminders?",
    "updates?", "announcements?", "communications?",
)  # fmt: skip
_LIST = _any(
    "list", "lists", "listing", "mailing list", "text list", "texting list", "sms list",
    "contact list", "contacts", "call list", "calling list", "distribution list",
    "broadcast list", "group", "group text", "group chat", "thread", "system", "database",
    "service", "program", "subscription", "subscriptions",
)  # fmt: skip
_DET_WORD = _any(
    "all", "any", "the", "these", "those", "this", "that", "your", "ur", "my", "our", "of",
    "such", "more", "future", "further", "stupid", "annoying", "constant", "daily", "automated",
    "mass", "group", "text", "texting", "sms", "messaging", "mailing", "school", "district",
    "school's", "district's", "many", "so", "every",
)  # fmt: skip
_DETS = f"(?:{_DET_WORD} ){{0,3}}"
_FILL = _any(
    "please", "pls", "plz", "now", "already", "asap", "immediately", "thanks", "thank you",
    "thx", "ok", "okay", "so much", "so often", "every day", "all the time", "anymore",
    "any more", "lol", "again", "at all", "ever", "for good", "forever", "right now",
)  # fmt: skip
# Single tokens that may trail a "don't text me" request; single tokens keep matching linear.
_TRAIL = _any(
    "again", "anymore", "any", "more", "ever", "from", "now", "on", "please", "pls", "plz",
    "thanks", "thank", "you", "thx", "ok", "texts?", "messages?", "msgs?", "sms", "calls?",
    "emails?", "the", "these", "those", "such", "at", "all", "stuff", "things", "spam", "this",
    "number", "to", "or", "and", "call", "text", "email", "message", "forever", "good", "for",
)  # fmt: skip
_LEAD = (
    "(?:"
    + _any(
        "please", "pls", "plz", "plese", "pleas", "kindly", "just", "hi", "hello", "hey", "ok",
        "okay", "yes", "yeah", "and", "so", "now", "also", "then", "seriously", "honestly",
        "can you", "could you", "would you", "will you", "can u", "could u", "would u",
        "will u", "i want you to", "i need you to", "i'd like you to", "i would like you to",
        "i'd like", "i would like", "id like", "i want", "we want", "i need", "we need",
        "i want to", "i wanna", "i would like to", "i'd like to", "id like to", "i wish to",
        "i need to", "we want to", "we would like to", "we'd like to", "we need to",
        "i'm trying to", "im trying to", "i am trying to", "how do i", "how can i",
        "how do we", "how can we", "let me", "i", "we", "i'm", "im", "i am", "we're", "we are",
        "you need to", "u need to", "you should", "you must", "go ahead and",
    )
    + " )*"
)  # fmt: skip
# After "unsubscribe" / "opt out": the clause ends, a courtesy follows, or it names the texts.
_TAIL = (
    f"(?:$| {_FILL}{_E}| (?:from|to|of|off) "
    f"(?:{_DETS}(?:{_LIST}|{_MSG})|this|these|it|them|everything|all|you|you guys){_E})"
)
_STOP_VERB = _any("stop", "stopp", "quit", "cease", "discontinue")
_CONTACTING = _any(
    "texting", "txting", "textin", "txtin", "texing", "messaging", "msging", "messageing",
    "sending", "contacting", "calling", "phoning", "emailing", "e mailing", "spamming",
    "bothering", "harassing", "harrassing", "pinging", "robocalling", "robotexting",
)  # fmt: skip
_CONTACT = _any(
    "text", "txt", "message", "msg", "contact", "call", "phone", "email", "e mail", "spam",
    "bother", "sms", "send", "harass", "robocall",
)  # fmt: skip

# Spanish (accents already stripped).
_ES_MSG = _any(
    "mensajes?", "textos?", "mensajes de texto", "sms", "alertas?", "notificaciones?",
    "llamadas?", "correos?", "avisos?", "recordatorios?",
)  # fmt: skip
_ES_DET = _any(
    "mas", "los", "las", "estos", "estas", "esos", "esas", "sus", "todos", "todas", "ningun",
    "ninguno", "ningunos", "ninguna", "el", "la", "tantos", "recibir", "de", "su", "otro",
    "otros", "mis",
)  # fmt: skip
_ES_DETS = f"(?:{_ES_DET} ){{0,3}}"
_ES_SEND = _any(
    "envien", "envie", "envies", "mandes", "manden", "mande", "escriban", "escriba", "escribas",
    "contacten", "contacte", "contactes", "llamen", "llame", "llames", "textees", "texteen",
    "textee", "molesten", "moleste", "molestes", "sigan enviando", "sigan mandando",
    "sigan escribiendo", "vuelvan a enviar", "vuelvan a mandar", "vuelvan a escribir",
    "vuelvan a llamar", "vuelvan a contactar", "enviar", "mandar", "llamar", "textear",
    "contactar", "escribir", "molestar", "sigan llamando", "sigan molestando",
)  # fmt: skip
_ES_TRAIL = _any(
    "mas", "ningun", "ninguno", "ningunos", "ninguna", "ningunas", "otro", "otros", "otra",
    "otras", "esos", "estos", "estas", "esas", "sus", "los", "las", "el", "la", "mensajes?",
    "textos?", "sms", "correos?", "llamadas?", "notificaciones?", "alertas?", "avisos?", "por",
    "favor", "porfavor", "gracias", "ya", "nunca", "jamas", "a", "este", "mi", "numero",
    "celular", "telefono", "de", "texto", "nada", "aqui", "aca", "ahora", "nuevo", "vez",
    "ustedes",
)  # fmt: skip
_ES_INFINITIVE = _any(
    "enviar", "mandar", "escribir", "contactar", "llamar", "textear", "molestar", "enviarle"
)
_ES_QUIT = _any(
    "dejen", "deje", "deja", "dejar", "dejan", "paren", "pare", "parar", "terminen", "detengan"
)
_ES_REMOVE_ME = _any(
    "quitenme", "quiteme", "quitame", "quitenos", "sacame", "saquenme", "saqueme", "sacanme",
    "borrenme", "borreme", "borrame", "eliminenme", "elimineme", "eliminame", "remuevanme",
    "desinscribanme", "desuscribanme", "desuscribirme", "desinscribirme", "desuscribeme",
    "desuscribirnos", "darme de baja", "darnos de baja", "dame de baja", "denme de baja",
    "deme de baja", "denos de baja", "dennos de baja",
    "(?:quiten|quite|saquen|saque|borren|borre|eliminen|elimine|remuevan) "
    "(?:mi numero|este numero|mi telefono|mi celular|mi nombre)",
)  # fmt: skip
_ES_LIST = _any("lista", "listas", "grupo", "sistema", "servicio", _ES_MSG)


# Messages about only some of what we send: "stop sending the lunch menu".
_TOPIC = _any(
    "lunch menus?", "menus?", "newsletters?", "fundraisers?", "fundraising", "sports?",
    "athletics", "events?", "surveys?", "ads", "advertisements?", "promotions?", "promos?",
    "marketing", "pta", "pto", "boosters?", "picture day", "photos?", "volunteer requests?",
    "donation requests?", "donations?", "yearbooks?", "book fair", "clubs?", "games?",
    "general messages", "non emergency", "nonemergency", "weekly", "spirit wear", "surveys",
)  # fmt: skip
_ES_TOPIC = _any(
    "menu", "menus", "boletin", "boletines", "eventos?", "deportes", "recaudacion", "encuestas?",
    "anuncios", "publicidad", "promociones", "fotos", "noticias",
)  # fmt: skip
_ABOUT = "(?:about|regarding|re|concerning)"

_LEAVE_ALONE = _any(
    "dejame", "dejenme", "dejeme", "dejanos", "dejennos", "dejenos", "dejalos", "dejenlos"
)


@dataclass(frozen=True)
class _Pattern:
    regex: re.Pattern[str]
    language: str
    kind: str = STOP  # STOP, "some" (only some messages), UNCLEAR, or "wrong" (wrong number)
    anchored: bool = False  # whole clause: a lead-in then the request; needs no negation check
    noun_check: bool = False  # the request starts with "stop", which may be a noun ("bus stop")


def _p(pattern: str, language: str = "en", kind: str = STOP, *, anchored=False, noun_check=False):
    return _Pattern(re.compile(pattern), language, kind, anchored, noun_check)


_PATTERNS = (
    # --- wrong number: "wrong number", "this isn't Maria's phone", "número equivocado" ------
    _p(
        f"{_S}wrong (?:cell |phone |mobile )?(?:number|numbr|num|#|person|phone|family){_E}",
        kind="wrong",
    ),
    _p(
        f"{_S}this (?:is not|isn't|isnt|is no longer|ain't|aint|is not the|isn't the) "
        f"(?:[a-z0-9]+ )?[a-z0-9]+'s (?:cell |mobile |cell phone |phone )?"
        f"(?:phone|number|cell|cellphone|#|mom|dad|mother|father|parent|family){_E}",
        kind="wrong",
    ),
    _p(
        f"{_S}(?:doesn't|doesnt|does not|no longer|don't|dont|do not) (?:have|has|use|uses|own) "
        f"this (?:number|phone|cell|#) (?:anymore|any more|now){_E}",
        kind="wrong",
    ),
    _p(
        f"^(?:i|we) (?:don't|dont|do not) (?:have|know) (?:a |any )?"
        f"(?:child|children|kids?|students?|son|daughter|one) (?:at|in|named|by that name)"
        f"{_E}",
        kind="wrong",
        anchored=True,
    ),
    _p(
        f"{_S}(?:numero|telefono|celular) (?:equivocado|incorrecto|errado|equivocada){_E}",
        "es",
        kind="wrong",
    ),
    _p(
        f"{_S}(?:se|te) (?:equivoco|equivocaron|equivocaste) de (?:numero|persona){_E}",
        "es",
        kind="wrong",
    ),
    _p(f"{_S}(?:este|ese) no es el (?:numero|telefono|celular) de{_E}", "es", kind="wrong"),
    # --- only some messages ------------------------------------------------------------------
    # stop sending the lunch menu / stop texting me about fundraisers / stop the sports texts
    _p(
        f"{_S}{_STOP_VERB} (?:sending|texting|emailing|messaging|calling|send|with)"
        f"(?: me| us)? (?:{_DET_WORD} ){{0,3}}{_TOPIC}{_E}",
        kind="some",
        noun_check=True,
    ),
    _p(
        f"{_S}{_STOP_VERB} (?:{_DET_WORD} ){{0,3}}{_TOPIC}(?: {_MSG}){_E}",
        kind="some",
        noun_check=True,
    ),
    _p(f"{_S}{_STOP_VERB} (?:{_DET_WORD} ){{1,3}}{_TOPIC}{_E}", kind="some", noun_check=True),
    _p(
        f"{_S}{_STOP_VERB} (?:{_CONTACTING}|sending)(?: me| us)?(?: {_DETS}{_MSG})? {_ABOUT} ",
        kind="some",
        noun_check=True,
    ),
    _p(
        f"^{_LEAD}(?:no more|nomore) (?:{_DET_WORD} ){{0,3}}{_TOPIC}{_E}",
        kind="some",
        anchored=True,
    ),
    _p(f"^{_LEAD}(?:no more|nomore) {_DETS}{_MSG} {_ABOUT} ", kind="some", anchored=True),
    _p(
        f"{_S}(?:i|we) (?:don't|dont|do not|no longer) (?:want|wish|need|wanna)"
        f"(?: to (?:receive|recieve|get|be getting|keep getting))? "
        f"(?:(?:{_DETS}{_MSG} {_ABOUT} )|(?:{_DET_WORD} ){{0,3}}{_TOPIC}{_E})",
        kind="some",
    ),
    _p(
        f"{_S}no (?:(?:me|nos) )?{_ES_SEND} (?:mas )?(?:{_ES_DET} ){{0,2}}{_ES_TOPIC}{_E}",
        "es",
        kind="some",
    ),
    _p(
        f"{_S}(?:no quiero|no queremos|ya no quiero|no mas) (?:{_ES_DET} ){{0,3}}"
        f"(?:{_ES_MSG} (?:sobre|acerca de) |{_ES_TOPIC}{_E})",
        "es",
        kind="some",
    ),
    # --- plain requests to stop ---------------------------------------------------------------
    # stop texting me / quit calling / stop sending me / stop texting and calling me
    _p(
        f"{_S}{_STOP_VERB} {_CONTACTING}(?: me| us)? (?:and|or|n) {_CONTACTING}"
        f"(?: {_ME}{_E}|$| {_FILL}{_E})",
        noun_check=True,
    ),
    _p(f"{_S}{_STOP_VERB} {_CONTACTING}(?: {_ME}{_E}|$| {_FILL}{_E})", noun_check=True),
    # stop sending me these texts / stop receiving messages / stop with the texts
    _p(
        f"{_S}{_STOP_VERB} (?:sending|send|giving|getting|receiving|recieving|with)"
        f"(?: me| us)? {_DETS}{_MSG}{_E}",
        noun_check=True,
    ),
    # stop the texts / stop all these messages (a determiner shows "stop" is a verb)
    _p(f"{_S}{_STOP_VERB} (?:{_DET_WORD} ){{1,3}}{_MSG}{_E}", noun_check=True),
    # stop texts / stop messages please (but not "stop alerts are late")
    _p(f"{_S}{_STOP_VERB} {_MSG}(?:$| {_FILL}{_E})", noun_check=True),
    # remove me from this list / take me off your list / delete my number from the system
    _p(
        f"{_S}(?:remove|take|delete|drop|erase|unenroll|unenrol|unlist|get|kick|pull) {_ME} "
        f"(?:off|from|out of|off of|outta) {_DETS}(?:{_LIST}|{_MSG}){_E}"
    ),
    # please remove me / take me off
    _p(f"{_S}(?:remove|take|delete|erase) {_ME}(?: off| out)?(?:$| {_FILL}{_E})"),
    # lose my number / delete this number / forget my number
    _p(
        f"{_S}(?:lose|loose|delete|forget|erase|remove|drop|trash|lose) (?:my|this|our) "
        f"(?:cell |phone |mobile |cell phone )?(?:number|#|digits|contact info|info){_E}"
    ),
    # I want to be removed / get me unsubscribed
    _p(
        f"{_S}(?:be|been|get|got) (?:removed|taken off|unsubscribed|deleted|opted out)"
        f"(?:$| {_FILL}{_E}| (?:from|off) {_DETS}(?:{_LIST}|{_MSG}){_E})"
    ),
    # leave me alone
    _p(f"{_S}(?:leave|let) (?:me|us|my family|our family) (?:alone|be){_E}"),
    # unsubscribe me / unsubscribe my number / unsubscribe me from emails
    _p(
        f"{_S}(?:unsubscribe|unsub|unsuscribe|unsubcribe|unsubscibe) {_ME}"
        f"(?: (?:from|off|of) {_DETS}(?:{_LIST}|{_MSG}))?{_E}"
    ),
    # I want to unsubscribe / unsubscribe from these texts
    _p(f"{_S}(?:unsubscribe|unsub|unsuscribe|unsubcribe|unsubscibe){_TAIL}"),
    # opt me out
    _p(f"{_S}opt {_ME} out{_E}"),
    # I want to opt out / opting out of these messages
    _p(f"{_S}(?:opt out|optout|opting out){_TAIL}"),
    # I quit / we unsubscribe
    _p(
        f"^{_LEAD}(?:i|we) (?:quit|unsubscribe|unsub|opt out|optout|am out|'m out)(?: {_FILL})*$",
        anchored=True,
    ),
    # I already unsubscribed / we opted out (and are still getting texts)
    _p(
        f"{_S}(?:i|we) (?:(?:already|have|just|had|previously) ){{0,3}}"
        f"(?:unsubscribed|opted out|said stop|replied stop|texted stop|sent stop|"
        f"asked to be removed|asked you to stop){_TAIL}"
    ),
    # cancel my subscription / cancel these texts
    _p(f"{_S}cancel {_DETS}(?:subscription|subscriptions|{_MSG}){_E}"),
    # I revoke my consent / withdraw consent to be texted
    _p(
        f"{_S}(?:revoke|revoking|withdraw|withdrawing|rescind|rescinding|cancel) "
        f"(?:my |our |all |the |any )?(?:consent|permission|authorization)"
        f"(?:$| {_FILL}{_E}| (?:to|for) (?:be |being )?(?:{_CONTACTING}|{_CONTACT}|{_MSG}|"
        f"texted|contacted|messaged|called|emailed|receive|receiving){_E})"
    ),
    # I don't want these texts anymore / I no longer wish to receive messages
    _p(
        f"{_S}(?:i|we) (?:don't|dont|do not|no longer) (?:want|wish|need|wanna)"
        f"(?: to (?:receive|recieve|get|be getting|keep getting|keep receiving|be receiving))?"
        f" {_DETS}{_MSG}(?: {_TRAIL})*$"
    ),
    # I don't want to be texted
    _p(
        f"{_S}(?:i|we) (?:don't|dont|do not|no longer) (?:want|wish) to be "
        f"(?:texted|contacted|messaged|called|emailed|spammed)(?: {_TRAIL})*$"
    ),
    # no more texts please
    _p(f"^{_LEAD}(?:no more|nomore) {_DETS}{_MSG}{_E}", anchored=True),
    # don't text me anymore / do not contact us / never message me again / do not text
    _p(
        f"^{_LEAD}(?:don't|dont|do not|never)(?: ever)? {_CONTACT}(?: or {_CONTACT})?"
        f"(?: {_ME})?(?: {_TRAIL})*$",
        anchored=True,
    ),
    # DNC / do not call list
    _p(f"^{_LEAD}(?:dnc|do not call list|do not contact list)(?: {_FILL})*$", anchored=True),
    # no me envíen más mensajes / no me manden / no me llamen
    _p(f"{_S}no (?:(?:me|nos) )?{_ES_SEND}(?: {_ES_TRAIL})*$", "es"),
    # no quiero que me contacten / no queremos que nos llamen
    _p(
        f"{_S}no (?:quiero|queremos|deseo|deseamos) que (?:me|nos) (?:sigan |vuelvan a )?"
        f"(?:{_ES_SEND}|{_ES_INFINITIVE}){_E}",
        "es",
    ),
    # dejen de enviarme mensajes / deja de llamarme
    _p(f"{_S}(?:pueden |podrian |puede )?{_ES_QUIT} de {_ES_INFINITIVE}(?:me|nos){_E}", "es"),
    # dejen de enviar mensajes
    _p(f"{_S}{_ES_QUIT} de {_ES_INFINITIVE} {_ES_DETS}{_ES_MSG}{_E}", "es"),
    # quiero darme de baja / me doy de baja / dar de baja mi número / dame de baja
    _p(
        f"{_S}(?:darme|darnos|darse|dar|denme|dennos|den|me doy|nos damos|doy|damos|dame|deme|"
        f"quiero|queremos|solicito|pido|deseo) (?:(?:la|de|una|mi) )?baja{_E}",
        "es",
    ),
    # me desuscribo / nos desinscribimos
    _p(
        f"{_S}(?:me|nos) (?:desuscribo|desinscribo|desuscribimos|desinscribimos|desuscribi|"
        f"desinscribi|desuscribe|desuscriben){_E}",
        "es",
    ),
    # déjame en paz / déjenme tranquila
    _p(f"{_S}{_LEAVE_ALONE} (?:en paz|tranquilo|tranquila|tranquilos|tranquilas){_E}", "es"),
    # por favor paren los mensajes / no quiero recibir más mensajes / basta de mensajes
    _p(
        f"{_S}(?:paren|pare|para ya|detengan|detenga|cancelen|cancele|cancelar|suspendan|"
        f"suspenda|quiten|quite|eliminen|elimine|basta de|ya basta de|no mas|no quiero|"
        f"no queremos|no deseo|no deseamos|no necesito|ya no quiero|ya no queremos) "
        f"{_ES_DETS}{_ES_MSG}{_E}",
        "es",
    ),
    # quítenme de la lista / borren mi número
    _p(
        f"{_S}{_ES_REMOVE_ME}(?:$| (?:por favor|porfavor|gracias|ya){_E}| "
        f"de {_ES_DETS}{_ES_LIST}{_E})",
        "es",
    ),
    # eliminar mi número / borrar este número
    _p(
        f"{_S}(?:eliminar|borrar|quitar|sacar|eliminen|borren|quiten|saquen) (?:mi|este|nuestro) "
        f"(?:numero|telefono|celular){_E}",
        "es",
    ),
    # cancelar mi suscripción
    _p(
        f"{_S}(?:cancelar|cancelen|cancele|cancela|cancelo|anular) (?:(?:mi|la|su|mis|las) )?"
        f"(?:suscripcion|suscripciones|subscripcion){_E}",
        "es",
    ),
    # revoco mi consentimiento
    _p(
        f"{_S}(?:revoco|retiro|revocar|retirar|cancelo) (?:mi |el |nuestro )?"
        f"(?:consentimiento|autorizacion)(?:$| (?:para|de) (?:recibir|enviarme|contactarme|"
        f"mensajes|textos|llamadas){_E})",
        "es",
    ),
    # --- may be a revocation: one clarifying question ----------------------------------------
    _p(
        f"^{_LEAD}(?:not interested|no longer interested|not interested anymore|no interest|"
        f"enough|enough already|that's enough|thats enough|goodbye|go away|no more|"
        f"i never signed up(?: for (?:this|these|it|them|that))?|"
        f"i didn't sign up(?: for (?:this|these|it|them|that))?|"
        f"(?:this is |this|it's |its )?spam|"
        f"(?:stop|quit|end|cancel) (?:this|these|it|them|that)|"
        f"(?:i|we) (?:don't|dont|do not) want (?:this|these|them|it|any of this)|"
        f"how do i (?:stop|end|cancel) (?:this|these|it|them))(?: {_FILL})*$",
        kind=UNCLEAR,
        anchored=True,
    ),
    _p(
        f"^(?:{_ES_DET} )?(?:no me interesa|ya no me interesa|no estoy interesad[oa]|"
        f"no estamos interesados|basta|ya basta|suficiente|no mas|ya no|adios|"
        f"(?:esto es )?spam|nunca me inscribi|yo no me inscribi)"
        f"(?: (?:por favor|porfavor|gracias|ya))*$",
        "es",
        kind=UNCLEAR,
        anchored=True,
    ),
)

# Words that name a channel, in a matched request: calls, email, or texts.
_VOICE_WORDS = frozenset(
    {
        "call", "calls", "calling", "called", "phone", "phoning", "robocall", "robocalls",
        "robocalling", "voicemail", "voicemails", "llamen", "llame", "llames", "llamar",
        "llamarme", "llamarnos", "llamadas", "llamada", "llamando", "llamandome",
    }
)  # fmt: skip
_EMAIL_WORDS = frozenset(
    {
        "email", "emails", "emailing", "emailed", "mail", "mails", "correo", "correos",
        "correos electronicos", "e-mail", "e-mails",
    }
)  # fmt: skip
_TEXT_WORDS = frozenset(
    {
        "text", "texts", "texting", "txt", "txts", "txting", "sms", "texted", "robotexts",
        "robotexting", "textos", "texto", "textear", "textees", "texteen", "textee", "mensajes",
        "mensaje", "messages", "message", "messaging", "msg", "msgs",
    }
)  # fmt: skip


def _channels(words: list[str]) -> set[str]:
    """The channels a request names: calls, email, texts (none when it names none)."""
    named = set()
    for position, word in enumerate(words):
        if word in ("mail", "mails") and position and words[position - 1] == "e":
            named.add(EMAIL)
        elif word in _VOICE_WORDS and not (word == "phone" and position + 1 < len(words)):
            named.add(VOICE)  # "phone" alone is a call; "phone number" is not
        elif word in _EMAIL_WORDS:
            named.add(EMAIL)
        elif word in _TEXT_WORDS:
            named.add(TEXT)
    return named


# A request is not one when negated or asked about in the words just before it.
_NEGATIONS = frozenset(
    {
        "don't", "dont", "not", "never", "didn't", "didnt", "doesn't", "doesnt", "won't", "wont",
        "can't", "cant", "cannot", "shouldn't", "shouldnt", "wouldn't", "wouldnt", "isn't",
        "isnt", "aren't", "arent", "wasn't", "wasnt", "weren't", "werent", "without", "nunca",
        "jamas", "ni", "sin",
    }
)  # fmt: skip
_NEGATION_REACH = 4  # "I don't want you to | stop texting me"
_QUESTIONS = frozenset(
    {"why", "did", "does", "when", "whenever", "if", "whether", "unless", "until", "till"}
    | {"cuando", "porque"}
)
_QUESTION_REACH = 3  # "why did you | stop texting me"
_STOP_AS_NOUN = frozenset(
    {
        "bus", "the", "a", "an", "each", "every", "next", "last", "first", "one", "our", "my",
        "your", "this", "that", "his", "her", "their", "school", "new", "pickup", "dropoff",
        "full", "pit", "which", "what", "whose", "same", "that's", "its", "it's",
    }
)  # fmt: skip
# "I gave you the wrong number": the sender's own mistake, not a reassigned number.
_OWN_MISTAKE = frozenset({"gave", "give", "given", "entered", "typed", "wrote", "put", "sent"})


def _blocked(before: list[str], pattern: _Pattern) -> bool:
    """Whether the words before a match negate it, ask about it, or make "stop" a noun."""
    if pattern.anchored:
        return False
    if pattern.kind == "wrong":
        return any(word in _OWN_MISTAKE for word in before[-4:])
    if pattern.noun_check and before and before[-1] in _STOP_AS_NOUN:
        return True
    if any(word in _NEGATIONS for word in before[-_NEGATION_REACH:]):
        return True
    recent = before[-_QUESTION_REACH:]
    if any(word in _QUESTIONS for word in recent):
        return True
    if "por que" in " ".join(recent):  # "¿por qué no me ...?"
        return True
    return pattern.language == "es" and "no" in before[-2:]  # "no quiero | darme de baja"


def _phrases(folded: str, meter: Meter) -> Reading:
    """The reading of a message that is not a keyword: its clauses against the phrase tables.

    A clause that asks to stop only some messages is read so even when it also matches a plain
    request ("stop texting me about fundraisers"); the channels are those the matching requests
    name, texts when they name none."""
    found: dict[str, list[tuple[str, set[str]]]] = {STOP: [], "some": [], UNCLEAR: [], "wrong": []}
    for clause in _clauses(folded):
        bare = _bare(clause)
        if bare is not None:
            found[bare[0]].append((bare[1], set()))
            continue
        kinds: dict[str, list[tuple[str, set[str]]]] = {}
        for line in _windows(clause):
            meter.add(line, len(_PATTERNS))
            for pattern in _PATTERNS:
                for match in pattern.regex.finditer(line):
                    if _blocked(line[: match.start()].split(), pattern):
                        continue
                    named = _channels(match.group(0).split())
                    kinds.setdefault(pattern.kind, []).append((pattern.language, named))
                    break
        if "some" in kinds:
            kinds.pop(STOP, None)
        for kind, matches in kinds.items():
            found[kind].extend(matches)
    wrong = bool(found["wrong"])
    for kind, scope in ((STOP, "all"), ("some", "some")):
        if found[kind]:
            languages = [language for language, _named in found[kind]]
            named = set().union(*(named for _language, named in found[kind]))
            channels = tuple(c for c in (TEXT, VOICE, EMAIL) if c in named) or (TEXT,)
            language = "es" if "es" in languages else languages[0]
            return Reading(STOP, False, None, language, channels, scope, wrong)
    if wrong:
        return Reading(STOP, False, None, found["wrong"][0][0], (TEXT,), "all", True)
    if found[UNCLEAR]:
        return Reading(UNCLEAR, False, None, found[UNCLEAR][0][0])
    return ORDINARY


# --- Short answers to a question we asked -----------------------------------------------------

_YES = frozenset(
    {"y", "yes", "yeah", "yep", "yup", "ye", "yes please", "si", "s", "oui", "yes stop"}
)
_NO = frozenset({"n", "no", "nope", "nah", "no thanks", "no thank you", "no gracias", "non"})


def answer(body: str) -> str | None:
    """ "yes" or "no" when the whole message is a short answer ("Y", "Sí.", "nope"), else None."""
    if not isinstance(body, str) or len(body) > 64:
        return None
    form = _keyword_form(_fold(_visible(body)))
    if form in _YES:
        return "yes"
    if form in _NO:
        return "no"
    return None
