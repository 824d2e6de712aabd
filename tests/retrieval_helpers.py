"""A small corpus and a fast stand-in encoder for the retrieval tests."""

import zlib

import numpy as np

from jaxllm.retrieval import Document

DOCS = [
    Document("s1", "The striker scored twice as the club won the cup final.", "Cup final",
             {"category": "sport", "year": 2004}),
    Document("s2", "Rain stopped play at the cricket test. The match was drawn.", "Rain",
             {"category": "sport", "year": 2005}),
    Document("s3", "The tennis champion lost in the first round of the open.", "Upset",
             {"category": "sport", "year": 2005}),
    Document("b1", "Oil prices rose as the cartel cut output. Shares fell.", "Oil",
             {"category": "business", "year": 2004}),
    Document("b2", "The bank raised interest rates to curb inflation.", "Rates",
             {"category": "business", "year": 2005}),
    Document("t1", "A new phone with a faster chip and a better camera was launched.", "Phone",
             {"category": "tech"}),
]


class HashEncoder:
    """Bag-of-words vectors (words hashed into `dim` buckets), L2-normalised: deterministic and
    instant, so index tests need not load MiniLM."""

    def __init__(self, dim=32, name="test-hash"):
        self.dim, self.name = dim, name

    def embed(self, texts):
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().split():
                out[i, zlib.crc32(w.strip(".,").encode()) % self.dim] += 1
        norm = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norm > 0, norm, 1)
