"""Inbound SMS keywords: read a message body and say whether it asks to stop, start or get help.

A message is an exact keyword when, trimmed, case-folded, accent-stripped and without trailing
punctuation or surrounding quotes, it is one of the words in ``_KEYWORDS``. Beyond that, a
message that plainly asks to stop receiving texts ("please stop texting me", "quiero darme de
baja") reads as STOP with ``exact=False``: revocation by any reasonable means. Only exact keywords
give START or HELP. Words that merely occur in other talk ("when does the bus stop?") are ignored.

Every pattern below works on space-separated tokens and repeats only single tokens or bounded
groups, so matching stays linear in the message length (messages are at most ``MAX_BODY`` long).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

STOP, START, HELP = "stop", "start", "help"
MAX_BODY = 1600  # ten concatenated SMS segments; anything longer is an ordinary message


@dataclass(frozen=True)
class Reading:
    """What an inbound message asks for: an intent or None, whether it was a bare keyword, which."""

    intent: str | None
    exact: bool
    keyword: str | None
    language: str = "en"


ORDINARY = Reading(None, False, None, "en")

# Folded form (case-folded, accents stripped, inner whitespace collapsed) -> reading.
_KEYWORDS: dict[str, Reading] = {}


def _add(intent: str, language: str, *words: str) -> None:
    for word in words:
        keyword = word.upper().replace(" ", "").replace("-", "")
        _KEYWORDS[word] = Reading(intent, True, keyword, language)


_add(STOP, "en", "stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke")
_add(STOP, "en", "optout", "opt out", "opt-out")
_add(STOP, "es", "parar", "alto", "cancelar", "baja")
_add(START, "en", "start", "unstop", "yes")
_add(START, "es", "comenzar")
_add(HELP, "en", "help", "info")
_add(HELP, "es", "ayuda")

_APOSTROPHES = str.maketrans({c: "'" for c in "\u2018\u2019\u201b\u02bc\u02b9\u2032`\u00b4"})
_OPENERS = frozenset("\"'\u00a1\u00bf")  # quotes and Spanish opening marks, also Pi/Pf/Ps below
_LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
_KEPT_IN_CLAUSE = frozenset("/&#@*%_+")  # symbols inside a clause, read as spaces


def read(body: str) -> Reading:
    """Say whether an SMS body asks to stop, start or get help (never raises)."""
    if not isinstance(body, str):
        return ORDINARY
    text = body.strip()
    if not text or len(text) > MAX_BODY:
        return ORDINARY
    folded = _fold(text)
    if len(folded) > 2 * MAX_BODY:  # compatibility forms can expand; keep the work bounded
        return ORDINARY
    exact = _KEYWORDS.get(_keyword_form(folded))
    if exact is not None:
        return exact
    language = _stop_phrase_language(folded)
    if language is not None:
        return Reading(STOP, False, None, language)
    return ORDINARY


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


_CLAUSE_BREAKS = frozenset({"but", "however", "pero", "sino"})


def _clauses(folded: str) -> list[list[str]]:
    """Split into clauses (at punctuation, line breaks and "but"), each a list of word tokens."""
    chars = []
    for c in folded:
        if c.isalnum() or c == "'":
            chars.append(c)
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
                current.append(token)
        clauses.append(current)
    return [clause for clause in clauses if clause]


# "stop please", "STOP STOP", "unsubscribe, thanks", "baja por favor": a stop word with courtesies.
_BARE_STOP = {"stop": "en", "stopall": "en", "unsubscribe": "en", "unsub": "en", "optout": "en"}
_BARE_STOP |= {"parar": "es", "baja": "es"}
_COURTESY = {
    "please": "en", "pls": "en", "plz": "en", "pleas": "en", "plese": "en", "now": "en",
    "thanks": "en", "thank": "en", "you": "en", "thx": "en", "ty": "en", "asap": "en",
    "immediately": "en", "already": "en", "it": "en", "all": "en", "ok": "en", "okay": "en",
    "hi": "en", "hello": "en", "hey": "en", "and": "en",
    "por": "es", "favor": "es", "porfavor": "es", "gracias": "es", "ya": "es", "ahora": "es",
}  # fmt: skip


def _bare_stop_language(clause: list[str]) -> str | None:
    words = " ".join(clause).replace("opt out", "optout").replace("opt in", "optin").split()
    if len(words) > 10 or not any(w in _BARE_STOP for w in words):
        return None
    if not all(w in _BARE_STOP or w in _COURTESY for w in words):
        return None
    spanish = any(_BARE_STOP.get(w, _COURTESY.get(w)) == "es" for w in words)
    return "es" if spanish else "en"


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
    "vuelvan a llamar", "vuelvan a contactar",
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
    "desuscribirnos", "darme de baja", "darnos de baja",
    "(?:quiten|quite|saquen|saque|borren|borre|eliminen|elimine|remuevan) "
    "(?:mi numero|este numero|mi telefono|mi celular|mi nombre)",
)  # fmt: skip
_ES_LIST = _any("lista", "listas", "grupo", "sistema", "servicio", _ES_MSG)


@dataclass(frozen=True)
class _Pattern:
    regex: re.Pattern[str]
    language: str
    anchored: bool = False  # whole clause: a lead-in then the request; needs no negation check
    noun_check: bool = False  # the request starts with "stop", which may be a noun ("bus stop")


def _p(pattern: str, language: str = "en", *, anchored=False, noun_check=False) -> _Pattern:
    return _Pattern(re.compile(pattern), language, anchored, noun_check)


_PATTERNS = (
    # stop texting me / quit calling / stop sending me
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
    # unsubscribe me / unsubscribe my number
    _p(f"{_S}(?:unsubscribe|unsub|unsuscribe|unsubcribe|unsubscibe) {_ME}{_E}"),
    # I want to unsubscribe / unsubscribe from these texts
    _p(f"{_S}(?:unsubscribe|unsub|unsuscribe|unsubcribe|unsubscibe){_TAIL}"),
    # opt me out
    _p(f"{_S}opt {_ME} out{_E}"),
    # I want to opt out / opting out of these messages
    _p(f"{_S}(?:opt out|optout|opting out){_TAIL}"),
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
    # don't text me anymore / do not contact us / never message me again
    _p(
        f"^{_LEAD}(?:don't|dont|do not|never)(?: ever)? {_CONTACT} {_ME}(?: {_TRAIL})*$",
        anchored=True,
    ),
    # no me envíen más mensajes / no me manden
    _p(f"{_S}no (?:(?:me|nos) )?{_ES_SEND}(?: {_ES_TRAIL})*$", "es"),
    # dejen de enviarme mensajes / deja de llamarme
    _p(f"{_S}(?:pueden |podrian |puede )?{_ES_QUIT} de {_ES_INFINITIVE}(?:me|nos){_E}", "es"),
    # dejen de enviar mensajes
    _p(f"{_S}{_ES_QUIT} de {_ES_INFINITIVE} {_ES_DETS}{_ES_MSG}{_E}", "es"),
    # quiero darme de baja / me doy de baja / dar de baja mi número
    _p(
        f"{_S}(?:darme|darnos|darse|dar|denme|dennos|den|me doy|nos damos|doy|damos|"
        f"quiero|queremos|solicito|pido|deseo) (?:(?:la|de|una|mi) )?baja{_E}",
        "es",
    ),
    # por favor paren los mensajes / no quiero recibir más mensajes / basta de mensajes
    _p(
        f"{_S}(?:paren|pare|para ya|detengan|detenga|cancelen|cancele|suspendan|suspenda|"
        f"quiten|quite|eliminen|elimine|basta de|ya basta de|no mas|no quiero|no queremos|"
        f"no deseo|no deseamos|no necesito|ya no quiero|ya no queremos) {_ES_DETS}{_ES_MSG}{_E}",
        "es",
    ),
    # quítenme de la lista / borren mi número
    _p(
        f"{_S}{_ES_REMOVE_ME}(?:$| (?:por favor|porfavor|gracias|ya){_E}| "
        f"de {_ES_DETS}{_ES_LIST}{_E})",
        "es",
    ),
    # cancelar mi suscripción
    _p(
        f"{_S}(?:cancelar|cancelen|cancele|cancela|cancelo|anular) (?:mi|la|su|mis|las) "
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
)

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


def _blocked(before: list[str], pattern: _Pattern) -> bool:
    """Whether the words before a match negate it, ask about it, or make "stop" a noun."""
    if pattern.anchored:
        return False
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


def _stop_phrase_language(folded: str) -> str | None:
    """The language of a natural-language request to stop texting, or None if there is none."""
    for clause in _clauses(folded):
        bare = _bare_stop_language(clause)
        if bare is not None:
            return bare
        line = " ".join(clause)
        for pattern in _PATTERNS:
            for match in pattern.regex.finditer(line):
                if not _blocked(line[: match.start()].split(), pattern):
                    return pattern.language
    return None
