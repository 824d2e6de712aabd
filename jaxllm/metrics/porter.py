"""The Porter stemmer (Porter 1980) with NLTK's extensions, the variant rouge-score stems with.

`stem("relational") == "relat"`. It follows the paper's five steps; NLTK's default mode
(`PorterStemmer()`, NLTK_EXTENSIONS) departs from the paper in these places, all kept here:
a few irregular words map to fixed stems (skies -> sky, dying -> die, ...); words of one or two
letters are left alone; "ies"/"ied" on a four-letter word become "ie"; "ied" otherwise becomes
"i" at once; y -> i only after a consonant that is not the word's first letter; step 2 takes
"bli" -> "ble" (not "abli"), "fulli" -> "ful", "logi" -> "log", and rewrites "alli" -> "al" and
runs again; the *o condition also holds for a two-letter vowel-consonant stem.

Notation (the paper's): a letter is a consonant unless it is a, e, i, o, u, or a y that follows a
consonant. m(stem) is the number of vowel-run -> consonant-run changes; *v* means the stem holds
a vowel; *d that it ends in a double consonant; *o that it ends consonant-vowel-consonant, the
last not w, x or y.
"""

from __future__ import annotations

from typing import Callable

_VOWELS = frozenset("aeiou")

_IRREGULAR = {"sky": "sky", "skies": "sky", "dying": "die", "lying": "lie", "tying": "tie",
              "news": "news", "innings": "inning", "inning": "inning", "outings": "outing",
              "outing": "outing", "cannings": "canning", "canning": "canning", "howe": "howe",
              "proceed": "proceed", "exceed": "exceed", "succeed": "succeed"}


def _consonants(word: str) -> list[bool]:
    """Whether each letter is a consonant (a y is one at the start or after a vowel)."""
    flags: list[bool] = []
    for i, ch in enumerate(word):
        if ch in _VOWELS:
            flags.append(False)
        elif ch == "y":
            flags.append(i == 0 or not flags[-1])
        else:
            flags.append(True)
    return flags


def _m(stem: str) -> int:
    flags = _consonants(stem)
    return sum(1 for a, b in zip(flags, flags[1:]) if not a and b)


def _has_vowel(stem: str) -> bool:
    return not all(_consonants(stem))


def _double_consonant(word: str) -> bool:
    return len(word) >= 2 and word[-1] == word[-2] and _consonants(word)[-1]


def _cvc(word: str) -> bool:
    if len(word) == 2:
        c = _consonants(word)
        return not c[0] and c[1]
    if len(word) >= 3:
        c = _consonants(word)
        return c[-3] and not c[-2] and c[-1] and word[-1] not in "wxy"
    return False


def _m_above(k: int) -> Callable[[str], bool]:
    return lambda stem: _m(stem) > k


def _first_rule(word: str, rules) -> str:
    """Apply the rule of the first listed suffix the word ends with (the order matters); if
    that rule's condition fails, the word is kept as it is."""
    for suffix, replacement, condition in rules:
        if word.endswith(suffix):
            stem = word[:len(word) - len(suffix)]
            return stem + replacement if condition is None or condition(stem) else word
    return word


_STEP1A = [("sses", "ss", None), ("ies", "i", None), ("ss", "ss", None), ("s", "", None)]

_STEP2 = [(s, r, _m_above(0)) for s, r in [
    ("ational", "ate"), ("tional", "tion"), ("enci", "ence"), ("anci", "ance"), ("izer", "ize"),
    ("bli", "ble"), ("alli", "al"), ("entli", "ent"), ("eli", "e"), ("ousli", "ous"),
    ("ization", "ize"), ("ation", "ate"), ("ator", "ate"), ("alism", "al"), ("iveness", "ive"),
    ("fulness", "ful"), ("ousness", "ous"), ("aliti", "al"), ("iviti", "ive"), ("biliti", "ble"),
    ("fulli", "ful")]]
# "logi" -> "log" when the stem with its "l" has m > 0
_STEP2.append(("logi", "log", lambda stem: _m(stem + "l") > 0))

_STEP3 = [(s, r, _m_above(0)) for s, r in [
    ("icate", "ic"), ("ative", ""), ("alize", "al"), ("iciti", "ic"), ("ical", "ic"),
    ("ful", ""), ("ness", "")]]

_STEP4 = [(s, "", _m_above(1)) for s in [
    "al", "ance", "ence", "er", "ic", "able", "ible", "ant", "ement", "ment", "ent"]]
_STEP4.append(("ion", "", lambda stem: _m(stem) > 1 and stem[-1] in "st"))
_STEP4 += [(s, "", _m_above(1)) for s in ["ou", "ism", "ate", "iti", "ous", "ive", "ize"]]


def _step1a(word: str) -> str:
    if word.endswith("ies") and len(word) == 4:
        return word[:-3] + "ie"
    return _first_rule(word, _STEP1A)


def _step1b(word: str) -> str:
    if word.endswith("ied"):
        return word[:-3] + ("ie" if len(word) == 4 else "i")
    if word.endswith("eed"):
        stem = word[:-3]
        return stem + "ee" if _m(stem) > 0 else word
    for suffix in ("ed", "ing"):
        if word.endswith(suffix) and _has_vowel(word[:-len(suffix)]):
            stem = word[:-len(suffix)]
            break
    else:
        return word
    # the removal succeeded: tidy the stem up
    for suffix, replacement in (("at", "ate"), ("bl", "ble"), ("iz", "ize")):
        if stem.endswith(suffix):
            return stem[:-2] + replacement
    if _double_consonant(stem):
        return stem[:-1] if stem[-1] not in "lsz" else stem
    if _m(stem) == 1 and _cvc(stem):
        return stem + "e"
    return stem


def _step1c(word: str) -> str:
    if word.endswith("y") and len(word) > 2 and _consonants(word[:-1])[-1]:
        return word[:-1] + "i"
    return word


def _step2(word: str) -> str:
    if word.endswith("alli") and _m(word[:-4]) > 0:
        return _step2(word[:-4] + "al")
    return _first_rule(word, _STEP2)


def _step5a(word: str) -> str:
    if word.endswith("e"):
        stem = word[:-1]
        m = _m(stem)
        if m > 1 or (m == 1 and not _cvc(stem)):
            return stem
    return word


def _step5b(word: str) -> str:
    if word.endswith("ll") and _m(word[:-1]) > 1:
        return word[:-1]
    return word


def stem(word: str) -> str:
    """The stem of a word (lowercased first), as nltk's `PorterStemmer().stem(word)`."""
    lowered = word.lower()
    if lowered in _IRREGULAR:
        return _IRREGULAR[lowered]
    if len(word) <= 2:
        return lowered
    word = _step1c(_step1b(_step1a(lowered)))
    word = _first_rule(_first_rule(_step2(word), _STEP3), _STEP4)
    return _step5b(_step5a(word))
