"""A sentiment model trained on the team's own labelled mentions (``xwatch train``).

The model: word 1-2-grams and ``char_wb`` 2-5-grams, hashed (``HashingVectorizer``, so
there is no vocabulary to store) into two blocks of ``2**bits`` columns; sublinear term
frequency times a smoothed idf learnt on the training set; each block L2-normalised on its
own; one more column, the *prior*: the default scorer's score of the text (VADER plus
complaint cues for English, the lexicon plus cues for Japanese; see ``default_router``)
times ``PRIOR_WEIGHT``, which carries what the hand-written lexicons know about words the
training set lacks; then a linear model, of the kind (``MODELS``: a multinomial logistic
regression, or NB-LR, one logistic regression per class on features scaled by their
naive-Bayes log-count ratios), ``C``, class weighting (balanced or not) and offset to the
negative logit chosen by stratified cross-validation on negative-vs-rest F1.  Both kinds
are stored and scored alike: one row of coefficients per class, softmax.

Before the n-grams, the text is normalised (``normalise``: lower case, straight
apostrophes, URLs to "http", numbers to "0", elongations cut to two letters) and, for the
word n-grams, tokenised with emoji and punctuation as tokens of their own and the words in
the scope of an English negation marked (``mark_negation``: "not good" is "not neg_good").
These are the "xwatch-2" text scheme (``SCHEMES``); files of the older "xwatch-1" scheme
are read and scored as they were trained.

Handles are kept as written: which account a post addresses is informative (its base rate
of complaints), and a team's own labels come from its own accounts.

The file (``.npz``, written by ``save`` and read by ``load``) holds plain arrays only:

- ``header``: UTF-8 JSON as ``uint8`` — format name and version, classes, language (or
  none), vectorizer parameters, training stats, and ``sha256``;
- ``coef`` (``float32``, classes x features), ``intercept`` (``float64``, classes) and
  ``idf`` (``float64``, hashed features).

Version 1 (no prior column) and version 2 files (the "xwatch-1" text scheme) still load
and score as before; a version 1 or 2 file that names the newer scheme is refused.

``sha256`` covers the canonical JSON of the header without it and each array's name, dtype,
shape and bytes.  ``load`` reads with ``allow_pickle=False``, accepts exactly these four
members, checks the format, version, parameters, classes, shapes, dtypes and hash, and
rebuilds the vectorizers from the checked parameters: nothing is ever unpickled, and any
other file (a pickle, a foreign ``.npz`` or zip, a flipped byte) raises ``ModelError``.
The hash detects corruption and careless edits; it is not a signature.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
import time
import warnings
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from xwatch.errors import XwatchError
from xwatch.model import Sentiment, SentimentLabel, normalise_lang
from xwatch.sentiment.router import LanguageRouter, default_router

if TYPE_CHECKING:
    from xwatch.config import Config

FORMAT = "xwatch-sentiment-model"
VERSION = 3
VERSIONS = (1, 2, 3)
"""The file versions ``load`` reads: 1 has no prior column; 1 and 2 know only the "xwatch-1"
text scheme (``SCHEMES``)."""
SCHEMES = ("xwatch-1", "xwatch-2")
"""How texts become n-grams (the ``preprocess`` parameter): "xwatch-1" is ``preprocess`` for
both blocks and one L2 norm over the whole row; "xwatch-2" (the default) is ``normalise``
for the characters, ``normalise`` then ``mark_negation`` for the words, and each block
L2-normalised on its own."""
LABELS: tuple[SentimentLabel, ...] = ("negative", "neutral", "positive")
C_GRID = (1.0, 3.0, 10.0)
"""Inverse regularisation strengths tried by the cross-validation."""
CLASS_WEIGHTS: tuple[str | None, ...] = ("balanced", None)
"""Class weightings tried by the cross-validation: "balanced" helps rare classes, none
helps the majority's F1 (negative, in complaint streams)."""
MODELS = ("multinomial", "nb-lr")
"""The kinds of model the cross-validation tries (with each ``C`` and class weighting).
"multinomial": one softmax logistic regression over the features.  "nb-lr": NB-LR (Wang &
Manning 2012), for each class a logistic regression of that class against the rest, on
features scaled column by column by their log-count ratio (``log_count_ratios``): an
n-gram that leans clearly to the class or away from it gets a larger column, so the
regularisation holds its weight back less, and one that leans nowhere a smaller one.
Both are linear in the features (NB-LR's scaling is folded into its coefficients): the
file and the scoring are the same."""
NB_ALPHA = 1.0
"""The smoothing of the log-count ratio: one pseudo-text holding every n-gram, added to
each side (Wang & Manning's add-one), so an n-gram seen in few texts leans little."""
NEGATIVE_BIASES = tuple(round(0.1 * step, 1) for step in range(-20, 21))
"""Offsets to the negative class's logit tried by the cross-validation (with each setting
of model, ``C`` and class weighting): the argmax of three classes is not the best cut for
negative-vs-rest F1, so the offset with the best cross-validated negative F1 is added to
the negative intercept of the final model (ties go to the smaller offset).  Up to 2: the
one-vs-rest logits of "nb-lr" are not calibrated against each other as a softmax's are."""
PRIOR_WEIGHT = 0.5
"""The prior column is the default scorer's score (-1..1) times this: on the scale of the
TF-IDF values (rows of unit norm), so the solver converges as fast as without it."""
DEFAULT_BITS = 18
MAX_CHARS = 5000
"""Only a text's first ``MAX_CHARS`` characters are scored (bounded cost for huge posts)."""
MAX_FILE_FEATURES = 2**24
_ARRAYS = ("coef", "intercept", "idf")
_MEMBERS = frozenset({"header", *_ARRAYS})
_URL = re.compile(r"https?://\S+|www\.\S+")
_NUMBER = re.compile(r"\d+")
_DECIMAL = re.compile(r"\d+(?:[.,:]\d+)*")
_ELONGATION = re.compile(r"(\S)\1{2,}")
_TOKEN = re.compile(r"[\w']+|[^\w\s]")
NEGATIONS = frozenset(
    {
        "not",
        "no",
        "never",
        "cannot",
        "nothing",
        "nobody",
        "none",
        "nowhere",
        "neither",
        "nor",
        "without",
        "dont",
        "cant",
        "wont",
        "didnt",
        "doesnt",
        "isnt",
        "wasnt",
        "arent",
        "werent",
        "havent",
        "hasnt",
        "hadnt",
        "couldnt",
        "wouldnt",
        "shouldnt",
        "aint",
    }
)
"""English words that open a negation scope (and any word ending in "n't")."""
NEGATION_SCOPE = 3
"""How many words after a negation ``mark_negation`` marks."""
SCOPE_ENDS = frozenset({".", ",", "!", "?", ";", ":", "but", "however", "although", "though"})
"""Tokens that close a negation scope early: a clause ends, or turns."""

FloatArray = npt.NDArray[np.float64]


class ModelError(XwatchError):
    """A model file that cannot be used (missing, foreign, tampered), or training that cannot
    be done (no data, a single class, unknown labels)."""


def preprocess(text: str) -> str:
    """Lower-case, URLs to "http", digit runs to "0"; lone surrogates are replaced and only
    the first ``MAX_CHARS`` characters kept.  Handles are kept: which account a post
    addresses is informative (normalising them cost about 1 point of negative F1)."""
    text = text[:MAX_CHARS].encode("utf-8", "replace").decode("utf-8")
    text = _URL.sub(" http ", text.lower())
    return _NUMBER.sub("0", text)


def normalise(text: str) -> str:
    """The "xwatch-2" text: as ``preprocess`` (numbers with their separators, "3:45" or
    "1,200", become one "0"), typographic apostrophes made straight ("don\u2019t" is
    "don't"), and a character repeated three times or more cut to two ("soooo" is "soo",
    "!!!!!" is "!!", "😡😡😡" is "😡😡"): every elongation of a word looks the same, and
    still differs from the plain word."""
    text = text[:MAX_CHARS].encode("utf-8", "replace").decode("utf-8")
    text = _URL.sub(" http ", text.lower().replace("\u2019", "'"))
    return _ELONGATION.sub(r"\1\1", _DECIMAL.sub("0", text))


def mark_negation(text: str) -> str:
    """The tokens of ``text`` (words, and each other non-space character: punctuation, emoji
    and symbols are tokens of their own), space-separated, with the ``NEGATION_SCOPE`` words
    after an English negation prefixed "neg_" until a ``SCOPE_ENDS`` token: "not good at
    all" is "not neg_good neg_at neg_all", so the n-grams tell "good" from "not good", and
    "neg_good" is learnt once for every way of saying it ("never good", "isn't good").
    Japanese negation follows the word and is left to the character n-grams."""
    tokens = _TOKEN.findall(text)
    marked: list[str] = []
    scope = 0
    for token in tokens:
        if token in SCOPE_ENDS:
            scope = 0
        if scope and token[0].isalnum():
            marked.append("neg_" + token)
            scope -= 1
        else:
            marked.append(token)
        if token in NEGATIONS or token.endswith("n't"):
            scope = NEGATION_SCOPE
    return " ".join(marked)


def _word_text(text: str) -> str:
    return mark_negation(normalise(text))


@dataclass(frozen=True, slots=True)
class VectorizerParams:
    """Everything needed to rebuild the feature extraction; stored in the header."""

    bits: int = DEFAULT_BITS
    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] = (2, 5)
    sublinear_tf: bool = True
    preprocess: str = SCHEMES[-1]
    """The text scheme, one of ``SCHEMES``."""
    prior: float = PRIOR_WEIGHT
    """The weight of the prior column; 0 for none (version 1 files)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "bits": self.bits,
            "word_ngrams": list(self.word_ngrams),
            "char_ngrams": list(self.char_ngrams),
            "sublinear_tf": self.sublinear_tf,
            "preprocess": self.preprocess,
            "prior": self.prior,
        }

    @classmethod
    def from_json(cls, data: object, version: int = VERSION) -> VectorizerParams:
        """Checked: only known keys, with types and ranges that make a sane vectorizer.
        Version 1 parameters have no "prior" (a prior weight of 0)."""
        keys = set(cls().to_json())
        if version == 1:
            keys.discard("prior")
        if not isinstance(data, dict) or set(data) != keys:
            raise ModelError("vectorizer parameters: unexpected keys")
        prior = data.get("prior", 0.0)
        if not (
            isinstance(prior, int | float)
            and not isinstance(prior, bool)
            and math.isfinite(prior)
            and 0.0 <= prior <= 10.0
        ):
            raise ModelError(f"vectorizer parameters: prior {prior!r} out of 0..10")
        bits, word, char = data["bits"], data["word_ngrams"], data["char_ngrams"]
        if not (isinstance(bits, int) and 10 <= bits <= 23):
            raise ModelError(f"vectorizer parameters: bits {bits!r} out of 10..23")
        for name, pair, top in (("word_ngrams", word, 3), ("char_ngrams", char, 8)):
            if not (
                isinstance(pair, list)
                and len(pair) == 2
                and all(isinstance(n, int) and not isinstance(n, bool) for n in pair)
                and 1 <= pair[0] <= pair[1] <= top
            ):
                raise ModelError(f"vectorizer parameters: {name} {pair!r} is not a range")
        schemes = SCHEMES if version >= 3 else SCHEMES[:1]
        if not isinstance(data["sublinear_tf"], bool) or data["preprocess"] not in schemes:
            raise ModelError("vectorizer parameters: unknown sublinear_tf or preprocess")
        return cls(
            bits,
            (word[0], word[1]),
            (char[0], char[1]),
            data["sublinear_tf"],
            data["preprocess"],
            float(prior),
        )

    @property
    def n_hashed(self) -> int:
        """Columns of hashed n-grams (and entries of ``idf``)."""
        return 2 * (1 << self.bits)

    @property
    def n_features(self) -> int:
        """All columns: the hashed n-grams, then the prior's when it has a weight."""
        return self.n_hashed + (1 if self.prior else 0)


class Featurizer:
    """Texts to hashed counts (stateless), counts to L2-normalised TF-IDF rows, and the
    prior column (the default scorer's scores)."""

    def __init__(self, params: VectorizerParams) -> None:
        from sklearn.feature_extraction.text import HashingVectorizer

        self.params = params
        common: dict[str, Any] = {
            "n_features": 2**params.bits,
            "alternate_sign": False,
            "norm": None,
            "lowercase": False,  # done by the preprocessors
            "dtype": np.float64,
        }
        if params.preprocess == "xwatch-1":
            word_text, char_text, tokens = preprocess, preprocess, r"(?u)\b\w+\b|[!?]"
        else:
            word_text, char_text, tokens = _word_text, normalise, r"\S+"
        self._word = HashingVectorizer(
            analyzer="word", ngram_range=params.word_ngrams, token_pattern=tokens,
            preprocessor=word_text, **common,
        )  # fmt: skip
        self._char = HashingVectorizer(
            analyzer="char_wb", ngram_range=params.char_ngrams, preprocessor=char_text, **common
        )
        self._router: LanguageRouter | None = None

    def counts(self, texts: Sequence[str]) -> sp.csr_matrix:
        matrix = sp.hstack([self._word.transform(texts), self._char.transform(texts)], format="csr")
        matrix.sum_duplicates()
        return matrix

    def weigh(self, counts: sp.csr_matrix, idf: FloatArray) -> sp.csr_matrix:
        """TF-IDF with rows of unit L2 norm (a new matrix; ``counts`` is left as it is).

        With the "xwatch-2" scheme each block (words, characters) is normalised on its own
        to a norm of 1/sqrt(2): a text weighs its word and its character view alike, where
        one norm over both lets the many character n-grams drown the few words."""
        matrix = counts.copy()
        if self.params.sublinear_tf:
            np.log(matrix.data, out=matrix.data)
            matrix.data += 1.0
        matrix.data *= idf[matrix.indices]
        rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
        if self.params.preprocess == "xwatch-1":
            groups, scale = rows, 1.0
        else:
            groups, scale = 2 * rows + (matrix.indices >> self.params.bits), math.sqrt(2.0)
        squares = np.bincount(groups, weights=matrix.data**2, minlength=2 * matrix.shape[0])
        norms = np.sqrt(squares) * scale
        norms[norms == 0.0] = 1.0
        matrix.data /= norms[groups]
        return matrix

    def prior(self, texts: Sequence[str], lang: str | None) -> FloatArray:
        """The default scorer's score of each text: of ``lang``'s scorer, or, with no
        ``lang``, of the scorer for the language its script suggests."""
        if self._router is None:
            self._router = default_router()
        scores = self._router.score(texts, [lang] * len(texts))
        return np.array([sentiment.score for sentiment in scores], dtype=np.float64)

    def assemble(self, weighted: sp.csr_matrix, prior: FloatArray) -> sp.csr_matrix:
        """The TF-IDF rows, then the prior column (when the parameters give it a weight)."""
        if not self.params.prior:
            return weighted
        column = sp.csr_matrix(self.params.prior * prior.reshape(-1, 1))
        return sp.hstack([weighted, column], format="csr")

    def features(self, texts: Sequence[str], idf: FloatArray, lang: str | None) -> sp.csr_matrix:
        """What the model reads for ``texts``: TF-IDF rows and the prior."""
        weighted = self.weigh(self.counts(texts), idf)
        return self.assemble(weighted, self.prior(texts, lang) if self.params.prior else _NONE)


_NONE: FloatArray = np.zeros(0)


def learn_idf(counts: sp.csr_matrix) -> FloatArray:
    """Smoothed idf, as scikit-learn's ``TfidfTransformer(smooth_idf=True)``."""
    n_docs = counts.shape[0]
    df = np.bincount(counts.indices, minlength=counts.shape[1]).astype(np.float64)
    idf: FloatArray = np.log((1.0 + n_docs) / (1.0 + df)) + 1.0
    return idf


@dataclass(frozen=True, slots=True)
class ClassReport:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class TrainedModel:
    """The learnt arrays and what describes them; scores texts (the ``Scorer`` protocol)."""

    classes: tuple[SentimentLabel, ...]
    params: VectorizerParams
    coef: npt.NDArray[np.float32]
    intercept: FloatArray
    idf: FloatArray
    lang: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    _featurizer: Featurizer | None = field(default=None, init=False, repr=False)
    _weights: tuple[npt.NDArray[np.float32], FloatArray] | None = field(
        default=None, init=False, repr=False
    )

    def _features(self) -> Featurizer:
        if self._featurizer is None:
            self._featurizer = Featurizer(self.params)
        return self._featurizer

    def _logit_weights(self) -> FloatArray:
        """``coef`` transposed, as C-ordered float64 (what the sparse product reads), made
        once per ``coef``: making it costs more than scoring a few texts, and the daemon
        scores a few at a time."""
        if self._weights is None or self._weights[0] is not self.coef:
            self._weights = (self.coef, np.ascontiguousarray(self.coef.T, dtype=np.float64))
        return self._weights[1]

    def probabilities(self, texts: Sequence[str]) -> FloatArray:
        """One row of class probabilities (in ``classes`` order) per text."""
        if not texts:
            return np.zeros((0, len(self.classes)))
        matrix = self._features().features(texts, self.idf, self.lang)
        logits = np.asarray(matrix @ self._logit_weights()) + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        probabilities: FloatArray = exp / exp.sum(axis=1, keepdims=True)
        return probabilities

    def score(self, texts: Sequence[str]) -> list[Sentiment]:
        """``score`` = P(positive) - P(negative); ``label`` = the most probable class."""
        probabilities = self.probabilities(texts)
        zeros = np.zeros(len(texts))
        column = {label: i for i, label in enumerate(self.classes)}
        positive = probabilities[:, column["positive"]] if "positive" in column else zeros
        negative = probabilities[:, column["negative"]] if "negative" in column else zeros
        scores = np.clip(positive - negative, -1.0, 1.0)
        best = probabilities.argmax(axis=1)
        return [
            Sentiment(self.classes[int(i)], float(s)) for i, s in zip(best, scores, strict=True)
        ]

    # -- the file --------------------------------------------------------------------------

    def _header(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "classes": list(self.classes),
            "lang": self.lang,
            "vectorizer": self.params.to_json(),
            "n_features": self.params.n_features,
            "stats": self.stats,
        }

    def _arrays(self) -> dict[str, npt.NDArray[Any]]:
        return {"coef": self.coef, "intercept": self.intercept, "idf": self.idf}

    def save(self, path: Path) -> None:
        """Write the model to ``path`` (an ``.npz``; written whole, then renamed into place)."""
        header = self._header()
        arrays = self._arrays()
        header["sha256"] = digest(header, arrays)
        encoded = np.frombuffer(json.dumps(header, sort_keys=True).encode("utf-8"), np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        try:
            with partial.open("wb") as file:
                np.savez_compressed(
                    file,
                    header=encoded,
                    coef=arrays["coef"],
                    intercept=arrays["intercept"],
                    idf=arrays["idf"],
                )
            partial.replace(path)
        except BaseException:
            partial.unlink(missing_ok=True)  # no stray half-written file beside the target
            raise


def digest(header: Mapping[str, Any], arrays: Mapping[str, npt.NDArray[Any]]) -> str:
    """sha256 of the header (without ``sha256``) and of each array's name, dtype, shape, bytes."""
    sha = hashlib.sha256()
    body = {key: value for key, value in header.items() if key != "sha256"}
    sha.update(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8"))
    for name in _ARRAYS:
        array = np.ascontiguousarray(arrays[name])
        sha.update(f"\0{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        sha.update(array.tobytes())
    return sha.hexdigest()


def load(path: Path) -> TrainedModel:
    """Read and check a model written by ``TrainedModel.save``; ``ModelError`` otherwise."""
    try:
        if not path.is_file():
            found = "a folder" if path.is_dir() else "no such file"
            raise ModelError(f"{path}: not an xwatch model ({found})")
        if not zipfile.is_zipfile(path):
            raise ModelError(f"{path}: not an xwatch model (not an .npz archive)")
        with np.load(path, allow_pickle=False) as archive:
            members = set(archive.files)
            if members != _MEMBERS:
                raise ModelError(
                    f"{path}: not an xwatch model (members {sorted(members)}, "
                    f"expected {sorted(_MEMBERS)})"
                )
            if archive.zip.getinfo("header.npy").file_size > 1_000_000:
                raise ModelError(f"{path}: not an xwatch model (header too large)")
            header = _read_header(path, archive["header"])
            params = VectorizerParams.from_json(header["vectorizer"], header["version"])
            n_bytes = 8 * (len(header["classes"]) + 1) * params.n_features + 4096
            for name in _ARRAYS:  # before inflating anything (a zip bomb stops here)
                if archive.zip.getinfo(f"{name}.npy").file_size > n_bytes:
                    raise ModelError(f"{path}: {name} is larger than the model it claims to be")
            arrays = {name: archive[name] for name in _ARRAYS}
    except ModelError:
        raise
    except (
        OSError,
        ValueError,
        TypeError,
        EOFError,
        KeyError,
        NotImplementedError,
        zipfile.BadZipFile,
        zlib.error,
    ) as exc:
        raise ModelError(f"{path}: cannot read the model: {exc}") from exc
    classes = header["classes"]
    if (
        not isinstance(classes, list)
        or len(classes) < 2
        or len(set(classes)) != len(classes)
        or not all(c in LABELS for c in classes)
    ):
        raise ModelError(f"{path}: classes {classes!r} are not distinct labels among {LABELS}")
    lang = header["lang"]
    if lang is not None and (not isinstance(lang, str) or normalise_lang(lang) != lang):
        raise ModelError(f"{path}: language {lang!r} is not a language code")
    n_classes, n_features = len(classes), params.n_features
    if header["n_features"] != n_features:
        raise ModelError(f"{path}: n_features {header['n_features']!r} != {n_features}")
    expected = {
        "coef": ((n_classes, n_features), np.dtype(np.float32)),
        "intercept": ((n_classes,), np.dtype(np.float64)),
        "idf": ((params.n_hashed,), np.dtype(np.float64)),
    }
    for name, (shape, dtype) in expected.items():
        array = arrays[name]
        if array.shape != shape or array.dtype != dtype:
            raise ModelError(
                f"{path}: {name} is {array.dtype}{list(array.shape)}, expected {dtype}{list(shape)}"
            )
    if header["sha256"] != digest(header, arrays):
        raise ModelError(f"{path}: sha256 mismatch: the file was altered or damaged")
    for name in _ARRAYS:
        if not np.all(np.isfinite(arrays[name])):
            raise ModelError(f"{path}: {name} holds non-finite values")
    stats = header["stats"]
    return TrainedModel(
        classes=tuple(classes),
        params=params,
        coef=arrays["coef"],
        intercept=arrays["intercept"],
        idf=arrays["idf"],
        lang=lang,
        stats=stats if isinstance(stats, dict) else {},
    )


def _read_header(path: Path, raw: npt.NDArray[Any]) -> dict[str, Any]:
    if raw.dtype != np.uint8 or raw.ndim != 1 or raw.size > 1_000_000:
        raise ModelError(f"{path}: not an xwatch model (bad header array)")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelError(f"{path}: not an xwatch model (header is not JSON)") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ModelError(f"{path}: not an xwatch model (format is not {FORMAT!r})")
    if header.get("version") not in VERSIONS:
        raise ModelError(
            f"{path}: model version {header.get('version')!r}, expected one of {VERSIONS}"
        )
    missing = {"classes", "lang", "vectorizer", "n_features", "stats", "sha256"} - set(header)
    if missing:
        raise ModelError(f"{path}: header lacks {sorted(missing)}")
    classes = header["classes"]
    if not isinstance(classes, list) or len(classes) > len(LABELS):
        raise ModelError(f"{path}: classes {classes!r} are not a list of labels")
    if not isinstance(header["n_features"], int) or header["n_features"] > MAX_FILE_FEATURES:
        raise ModelError(f"{path}: n_features {header['n_features']!r} out of range")
    return header


class TrainedScorer:
    """A ``Scorer`` backed by a model file (checked on load; see ``load``)."""

    def __init__(self, model: TrainedModel) -> None:
        self.model = model

    @classmethod
    def from_file(cls, path: Path) -> TrainedScorer:
        return cls(load(path))

    @property
    def lang(self) -> str | None:
        return self.model.lang

    def score(self, texts: Sequence[str]) -> list[Sentiment]:
        return self.model.score(texts)


# -- training ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    label: SentimentLabel
    lang: str | None = None


def read_examples(
    path: Path, lang: str | None = None, stdin: BinaryIO | None = None
) -> tuple[list[Example], int]:
    """Labelled JSON lines (``path`` "-": ``stdin``, as ``labels export --out -`` writes
    them); with ``lang``, only those whose ``lang`` is it (or missing and guessed so from
    the script).  Returns the examples and how many lines were skipped."""
    from xwatch.sentiment.lang import guess_lang

    wanted = normalise_lang(lang) if lang else None
    examples: list[Example] = []
    skipped = 0
    from_stdin = str(path) == "-"
    if from_stdin:
        path = Path("<stdin>")
    try:
        # JSON lines end at "\n" only: a text may hold U+2028 as it is (splitlines() cut
        # there); a byte-order mark, as some editors write one, is not JSON
        raw = (stdin or sys.stdin.buffer).read() if from_stdin else path.read_bytes()
        lines = raw.decode("utf-8-sig").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: cannot read: {exc}") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            text, label, tag = item["text"], item["label"], item.get("lang")
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            raise ModelError(
                f'{path}:{number}: expected {{"text": ..., "label": ..., "lang": optional}}'
            ) from None
        if not isinstance(text, str) or not (tag is None or isinstance(tag, str)):
            raise ModelError(f"{path}:{number}: text must be a string, lang a string or absent")
        if label not in LABELS:
            raise ModelError(f"{path}:{number}: label {label!r} is not one of {', '.join(LABELS)}")
        if wanted is not None:
            code = normalise_lang(tag) or guess_lang(text)
            if code != wanted:
                skipped += 1
                continue
        examples.append(Example(text, label, tag))
    return examples, skipped


def _fit(
    features: sp.csr_matrix,
    labels: npt.NDArray[np.str_],
    c: float,
    class_weight: str | None,
    seed: int,
    previous: Any = None,
) -> Any:
    """Multinomial logistic regression (saga: about 10x faster than lbfgs here).  With
    ``previous``, a model fitted on the same rows with a smaller ``C``, the solver starts
    from its coefficients (a warm start: the grid costs about half as much) and that model
    is refitted in place.  A fit that stops at ``max_iter`` is still used (its scores are in
    the CV report), so scikit-learn's ConvergenceWarning is silenced."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    if previous is None:
        model = LogisticRegression(
            class_weight=class_weight,
            solver="saga",
            max_iter=1000,
            tol=1e-4,
            random_state=seed,
            warm_start=True,
        )
    else:
        model = previous
    model.set_params(C=c)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(features, labels)
    return model


def class_reports(
    truth: Sequence[str] | npt.NDArray[np.str_],
    predicted: Sequence[str] | npt.NDArray[np.str_],
    classes: Sequence[str],
) -> dict[str, ClassReport]:
    """Precision, recall and F1 of each class against the rest."""
    truth_array, predicted_array = np.asarray(truth), np.asarray(predicted)
    reports = {}
    for label in classes:
        actual, guessed = truth_array == label, predicted_array == label
        tp = int(np.count_nonzero(actual & guessed))
        fp = int(np.count_nonzero(guessed & ~actual))
        fn = int(np.count_nonzero(actual & ~guessed))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        reports[label] = ClassReport(precision, recall, f1, tp + fn)
    return reports


def log_count_ratios(
    counts: sp.csr_matrix, labels: npt.NDArray[np.str_], classes: Sequence[str]
) -> FloatArray:
    """NB-LR's scaling (Wang & Manning 2012): for each class (a row) and hashed column, the
    log of the share of the column among the class's texts over its share among the other
    texts, counting each text once (binarised) and adding ``NB_ALPHA`` to every column."""
    present = counts.copy()
    present.data[:] = 1.0
    ratios = np.empty((len(classes), counts.shape[1]))
    for row, label in enumerate(classes):
        inside = labels == label
        p = np.asarray(present[inside].sum(axis=0)).ravel() + NB_ALPHA
        q = np.asarray(present[~inside].sum(axis=0)).ravel() + NB_ALPHA
        ratios[row] = np.log(p / p.sum()) - np.log(q / q.sum())
    return ratios


def _fit_nb(
    features: sp.csr_matrix,
    labels: npt.NDArray[np.str_],
    classes: Sequence[str],
    ratios: FloatArray,
    c: float,
    class_weight: str | None,
    seed: int,
) -> tuple[FloatArray, FloatArray]:
    """NB-LR: for each class, a logistic regression of it against the rest on ``features``
    whose hashed columns are scaled by the class's row of ``ratios`` (any further column,
    the prior, is left as it is).  Returns one row of coefficients per class, the scaling
    folded in (so they apply to unscaled features), and the intercepts.  liblinear's dual
    solver: a few seconds for thousands of texts and a million columns."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    coef = np.zeros((len(classes), features.shape[1]))
    intercept = np.zeros(len(classes))
    unscaled = np.ones(features.shape[1] - ratios.shape[1])
    for row, label in enumerate(classes):
        scale = np.concatenate([ratios[row], unscaled])
        model = LogisticRegression(
            C=c,
            class_weight=class_weight,
            solver="liblinear",
            dual=True,
            max_iter=1000,
            random_state=seed,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(features @ sp.diags(scale), labels == label)
        coef[row] = model.coef_[0] * scale
        intercept[row] = model.intercept_[0]
    return coef, intercept


def _per_class(model: Any) -> tuple[FloatArray, FloatArray]:
    """The fitted ``model``'s coefficients and intercepts, one row per class of its
    ``classes_``.  With two classes scikit-learn keeps one row, the second class's logit
    against the first's; the first class then gets a row of zeros (the same softmax)."""
    coef = np.asarray(model.coef_, dtype=np.float64)
    intercept = np.asarray(model.intercept_, dtype=np.float64)
    if len(model.classes_) == 2 and coef.shape[0] == 1:
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.concatenate([np.zeros(1), intercept])
    return coef, intercept


def _logits(model: Any, features: sp.csr_matrix, classes: Sequence[str]) -> FloatArray:
    """The fitted ``model``'s logits of ``features``, one column per class of ``classes``."""
    scores = np.asarray(model.decision_function(features), dtype=np.float64)
    if scores.ndim == 1:  # two classes: one logit, of the second class against the first
        scores = np.column_stack([np.zeros_like(scores), scores])
    order = [list(model.classes_).index(c) for c in classes]
    return scores[:, order]


def _best_bias(
    logits: FloatArray, labels: npt.NDArray[np.str_], classes: Sequence[str]
) -> tuple[float, dict[str, ClassReport]]:
    """The offset of ``NEGATIVE_BIASES`` to add to the negative logit that gives the best
    selection score (ties to the smaller offset), with the per-class reports it gives;
    0 when there is no negative class."""
    names = np.asarray(classes)
    biases = sorted(NEGATIVE_BIASES, key=abs) if "negative" in classes else [0.0]
    best: tuple[float, float, dict[str, ClassReport]] | None = None
    for bias in biases:
        shifted = logits.copy()
        if bias:
            shifted[:, classes.index("negative")] += bias
        reports = class_reports(labels, names[shifted.argmax(axis=1)], classes)
        selection = _selection_score(reports)
        if best is None or selection > best[0]:
            best = (selection, bias, reports)
    assert best is not None
    return best[1], best[2]


def _selection_score(reports: Mapping[str, ClassReport]) -> float:
    """Negative-vs-rest F1 when there is a negative class (what the detectors use), else
    the macro F1."""
    if "negative" in reports:
        return reports["negative"].f1
    return sum(r.f1 for r in reports.values()) / len(reports)


def train(
    examples: Sequence[Example],
    *,
    lang: str | None = None,
    folds: int = 5,
    models: Sequence[str] = MODELS,
    c_grid: Sequence[float] = C_GRID,
    class_weights: Sequence[str | None] = CLASS_WEIGHTS,
    params: VectorizerParams | None = None,
    seed: int = 0,
    progress: Callable[[str], None] = lambda _line: None,
) -> TrainedModel:
    """Choose the kind of model (``MODELS``), ``C``, the class weighting and the negative
    bias (``NEGATIVE_BIASES``) by stratified ``folds``-fold cross-validation (on
    negative-vs-rest F1), then fit on everything and add the bias to the negative intercept.

    The cross-validated per-class scores of the chosen setting go into ``stats["cv"]``.
    ``folds`` is lowered to the size of the smallest class when that is smaller (>= 2).
    The prior column's scores are computed once: they do not depend on the folds; the idf
    and NB-LR's log-count ratios are learnt on each fold's training rows only.
    """
    from sklearn.model_selection import StratifiedKFold

    params = params or VectorizerParams()
    lang = normalise_lang(lang) or None
    counts_by_label = Counter(e.label for e in examples)
    classes = tuple(label for label in LABELS if counts_by_label[label])
    if len(classes) < 2:
        raise ModelError(f"need at least two labels to train, got {sorted(counts_by_label)}")
    smallest = min(counts_by_label[c] for c in classes)
    if folds < 2 or smallest < 2:
        raise ModelError(
            f"cross-validation needs folds >= 2 and >= 2 examples of each label "
            f"(folds {folds}, smallest label has {smallest})"
        )
    if not models or not c_grid or not class_weights:
        raise ModelError("the grid of models, C and class weights must not be empty")
    if set(models) - set(MODELS):
        raise ModelError(f"unknown models {sorted(set(models) - set(MODELS))}, known {MODELS}")
    folds = min(folds, smallest)
    started = time.perf_counter()
    featurizer = Featurizer(params)
    texts = [e.text for e in examples]
    labels = np.array([e.label for e in examples])
    counts = featurizer.counts(texts)
    prior = featurizer.prior(texts, lang) if params.prior else _NONE
    grid = [(kind, c, weight) for kind in models for weight in class_weights for c in c_grid]
    progress(
        f"{len(examples)} examples ({', '.join(f'{c} {counts_by_label[c]}' for c in classes)}), "
        f"{counts.nnz / max(len(examples), 1):.0f} features per text; "
        f"{folds}-fold CV over models {list(models)}, C in {list(c_grid)}, "
        f"class weights {list(class_weights)}"
    )

    def rows(matrix: sp.csr_matrix, idf: FloatArray, where: npt.NDArray[np.intp]) -> sp.csr_matrix:
        return featurizer.assemble(
            featurizer.weigh(matrix[where], idf), prior[where] if params.prior else _NONE
        )

    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    splits = list(splitter.split(np.zeros(len(labels)), labels))
    logits = {setting: np.empty((len(labels), len(classes))) for setting in grid}
    for train_rows, test_rows in splits:
        idf = learn_idf(counts[train_rows])
        x_train, x_test = rows(counts, idf, train_rows), rows(counts, idf, test_rows)
        y_train = labels[train_rows]
        ratios = (
            log_count_ratios(counts[train_rows], y_train, classes) if "nb-lr" in models else _NONE
        )
        for weight in class_weights:
            if "multinomial" in models:
                model = None
                for c in sorted(c_grid):  # each fit starts from the one of the next smaller C
                    model = _fit(x_train, y_train, c, weight, seed, model)
                    logits["multinomial", c, weight][test_rows] = _logits(model, x_test, classes)
            if "nb-lr" in models:
                for c in c_grid:
                    coef, intercept = _fit_nb(x_train, y_train, classes, ratios, c, weight, seed)
                    logits["nb-lr", c, weight][test_rows] = x_test @ coef.T + intercept
    best: tuple[float, tuple[str, float, str | None], float, dict[str, ClassReport]] | None = None
    cv_selection: dict[str, float] = {}
    for setting in grid:
        bias, reports = _best_bias(logits[setting], labels, classes)
        selection = _selection_score(reports)
        name = _setting_name(*setting)
        cv_selection[name] = round(selection, 4)
        progress(
            f"{name} negative bias {bias:+.1f}: "
            + ", ".join(f"{label} F1 {r.f1:.3f}" for label, r in reports.items())
            + f" ({time.perf_counter() - started:.1f}s)"
        )
        if best is None or selection > best[0]:
            best = (selection, setting, bias, reports)
    assert best is not None
    _, (kind, chosen, chosen_weight), chosen_bias, reports = best
    idf = learn_idf(counts)
    everything = rows(counts, idf, np.arange(len(labels)))
    if kind == "nb-lr":
        ratios = log_count_ratios(counts, labels, classes)
        coef, intercept = _fit_nb(everything, labels, classes, ratios, chosen, chosen_weight, seed)
    else:
        final = _fit(everything, labels, chosen, chosen_weight, seed)
        order = [list(final.classes_).index(c) for c in classes]
        coef, intercept = _per_class(final)
        coef, intercept = coef[order], intercept[order]
    if "negative" in classes:
        intercept[classes.index("negative")] += chosen_bias
    elapsed = time.perf_counter() - started
    progress(
        f"fitted on all {len(examples)} examples with {_setting_name(kind, chosen, chosen_weight)} "
        f"negative bias {chosen_bias:+.1f} in {elapsed:.1f}s"
    )
    from sklearn import __version__ as sklearn_version

    from xwatch import __version__

    stats: dict[str, Any] = {
        "examples": len(examples),
        "label_counts": {c: counts_by_label[c] for c in classes},
        "model": kind,
        "C": chosen,
        "class_weight": chosen_weight,
        "negative_bias": chosen_bias,
        "folds": folds,
        "cv_selection": cv_selection,
        "cv": {
            label: {
                "precision": round(r.precision, 4),
                "recall": round(r.recall, 4),
                "f1": round(r.f1, 4),
                "support": r.support,
            }
            for label, r in reports.items()
        },
        "train_seconds": round(elapsed, 2),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "xwatch_version": __version__,
        "sklearn_version": sklearn_version,
    }
    return TrainedModel(
        classes=classes,
        params=params,
        coef=np.ascontiguousarray(coef, dtype=np.float32),
        intercept=intercept,
        idf=idf,
        lang=lang,
        stats=stats,
    )


def _setting_name(kind: str, c: float, class_weight: str | None) -> str:
    return f"{kind} C={c:g} class_weight={class_weight}"


def format_cv(stats: Mapping[str, Any]) -> str:
    """The cross-validated per-class table of a model's stats."""
    weight = f", class_weight={stats['class_weight']}" if "class_weight" in stats else ""
    if "negative_bias" in stats:
        weight += f", negative bias {stats['negative_bias']:+.1f}"
    model = f"{stats['model']}, " if "model" in stats else ""
    lines = [f"cross-validated ({stats['folds']} folds, {model}C={stats['C']:g}{weight}):"]
    lines.append(f"  {'label':<10}{'precision':>10}{'recall':>10}{'F1':>10}{'support':>10}")
    for label, r in stats["cv"].items():
        lines.append(
            f"  {label:<10}{r['precision']:>10.3f}{r['recall']:>10.3f}{r['f1']:>10.3f}"
            f"{r['support']:>10}"
        )
    return "\n".join(lines)


# -- routing -------------------------------------------------------------------------------


def router_with_models(
    base: LanguageRouter, models: Mapping[str, TrainedScorer], fallback: str
) -> LanguageRouter:
    """``base``'s scorers, with each language of ``models`` scored by its trained model."""
    scorers = dict(base.scorers)
    scorers.update({normalise_lang(lang): scorer for lang, scorer in models.items()})
    return LanguageRouter(scorers, fallback)


def router_from_config(config: Config) -> LanguageRouter:
    """The default router, where ``sentiment.models`` replace the scorer of their language.

    Raises ``ModelError`` when a configured model cannot be loaded, or was trained for
    another language (``--lang``); a model trained without ``--lang`` fits any.
    """
    fallback = config.sentiment.fallback_lang
    base = default_router(fallback)
    if not config.sentiment.models:
        return base
    models = {}
    for lang, path in config.sentiment.models.items():
        scorer = TrainedScorer.from_file(path)
        if scorer.lang is not None and scorer.lang != normalise_lang(lang):
            raise ModelError(f"{path}: a model for {scorer.lang!r}, configured for {lang!r}")
        models[lang] = scorer
    return router_with_models(base, models, fallback)
