"""Text analysis for sparse retrieval: text -> the terms an index stores and a query looks up.

One `Analyzer` serves both sides, and an index saves its settings (`to_dict`) so that a loaded
index analyses queries exactly as it analysed its documents:

    Unicode normalisation (NFKC) -> lowercase -> tokens (regex) -> stop words out -> stemming

The defaults are those of bm25s's tokenizer: tokens of two or more word characters, Lucene's 33
English stop words, and the Snowball English stemmer of PyStemmer (the library bm25s uses).

    analyzer = Analyzer()
    analyzer("The runners were running")       # ['runner', 'were', 'run']
    analyzer.analyze(["text one", "text two"])  # one token list per text (stems cached)
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass, field

from jaxllm.errors import ConfigError

# Lucene's default English stop set (EnglishAnalyzer.ENGLISH_STOP_WORDS_SET), also bm25s's "en".
ENGLISH_STOP_WORDS = (
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it",
    "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these",
    "they", "this", "to", "was", "will", "with")
STOP_WORD_LISTS = {"english": ENGLISH_STOP_WORDS, "none": ()}
NORMAL_FORMS = ("NFC", "NFKC", "NFD", "NFKD", "none")


@dataclass(frozen=True)
class Analyzer:
    lowercase: bool = True
    normalize: str = "NFKC"  # Unicode normal form applied first ("none" to skip)
    pattern: str = r"(?u)\b\w\w+\b"  # a token: two or more word characters (bm25s's default)
    stopwords: str | tuple[str, ...] = "english"  # a STOP_WORD_LISTS name or the words
    stemmer: str = "english"  # a Snowball language of PyStemmer, or "none"
    _stem_cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.normalize not in NORMAL_FORMS:
            raise ConfigError(f"analyzer normalize={self.normalize!r} is not one of "
                              f"{', '.join(NORMAL_FORMS)}")
        if isinstance(self.stopwords, str) and self.stopwords not in STOP_WORD_LISTS:
            raise ConfigError(f"analyzer stopwords={self.stopwords!r}: give one of "
                              f"{', '.join(STOP_WORD_LISTS)} or a list of words")
        if not isinstance(self.stopwords, str):
            object.__setattr__(self, "stopwords", tuple(self.stopwords))
        try:
            re.compile(self.pattern)
        except re.error as e:
            raise ConfigError(f"analyzer pattern={self.pattern!r} is not a regular expression "
                              f"({e})") from None
        object.__setattr__(self, "_regex", re.compile(self.pattern))
        words = STOP_WORD_LISTS[self.stopwords] if isinstance(self.stopwords, str) else \
            self.stopwords
        object.__setattr__(self, "_stop", frozenset(words))
        object.__setattr__(self, "_stem", _stemmer(self.stemmer))

    def tokens(self, text: str) -> list[str]:
        """The surface tokens of a text: normalised, lowercased, stop words removed, unstemmed."""
        if self.normalize != "none":
            text = unicodedata.normalize(self.normalize, text)
        if self.lowercase:
            text = text.lower()
        stop = self._stop
        return [t for t in self._regex.findall(text) if t not in stop]

    def __call__(self, text: str) -> list[str]:
        return self.analyze([text])[0]

    def analyze(self, texts) -> list[list[str]]:
        """One list of terms per text. Stems are computed once per distinct word and cached."""
        token_lists = [self.tokens(t) for t in texts]
        if self._stem is None:
            return token_lists
        cache = self._stem_cache
        new = {w for ts in token_lists for w in ts if w not in cache}
        if new:
            new = sorted(new)
            cache.update(zip(new, self._stem.stemWords(new)))
        get = cache.__getitem__
        return [list(map(get, ts)) for ts in token_lists]

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("_stem_cache")
        if not isinstance(self.stopwords, str):
            d["stopwords"] = list(self.stopwords)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Analyzer:
        known = {"lowercase", "normalize", "pattern", "stopwords", "stemmer"}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown analyzer setting(s) {sorted(unknown)}; known: "
                              f"{sorted(known)}")
        d = dict(d)
        if isinstance(d.get("stopwords"), list):
            d["stopwords"] = tuple(d["stopwords"])
        return cls(**d)


def _stemmer(language: str):
    if language == "none":
        return None
    try:
        import Stemmer
    except ImportError:
        raise ConfigError("analyzer stemmer needs the PyStemmer package: pip install PyStemmer, "
                          "or use stemmer='none'") from None
    if language not in Stemmer.algorithms():
        raise ConfigError(f"analyzer stemmer={language!r} is not a Snowball language; give "
                          f"'none' or one of {', '.join(Stemmer.algorithms())}")
    return Stemmer.Stemmer(language)
