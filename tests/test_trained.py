"""The trained sentiment model: train → save → load, the CLI, refusal of foreign or altered
files, and routing by ``sentiment.models`` in the config."""

from __future__ import annotations

import dataclasses
import io
import json
import pickle
import random
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import yaml
from prometheus_client import CollectorRegistry

from tests.factories import mention
from xwatch import cli
from xwatch.metrics import Metrics
from xwatch.model import SentimentLabel
from xwatch.pipeline import Pipeline
from xwatch.sentiment.router import default_router
from xwatch.sentiment.trained import (
    LABELS,
    MODELS,
    Example,
    Featurizer,
    ModelError,
    TrainedModel,
    TrainedScorer,
    VectorizerParams,
    digest,
    format_cv,
    load,
    log_count_ratios,
    mark_negation,
    normalise,
    read_examples,
    router_from_config,
    train,
)
from xwatch.settings import load_settings

SMALL = VectorizerParams(bits=12)

EN_WORDS = {
    "negative": ["delayed", "lost my bag", "cancelled", "still waiting", "refund please", "rude"],
    "neutral": ["flight tomorrow", "which gate", "boarding at", "schedule for", "is there wifi"],
    "positive": ["thank you", "great crew", "love it", "amazing service", "best flight"],
}
JA_WORDS = {
    "negative": ["届かない", "不具合", "返金して", "対応が遅い", "最悪です"],
    "neutral": ["明日の便", "どのゲート", "時刻表", "予約について", "確認します"],
    "positive": ["ありがとう", "最高でした", "素晴らしい", "大好き", "感謝します"],
}


def synthetic(words: dict[str, list[str]], n: int, seed: int, lang: str) -> list[Example]:
    rng = random.Random(seed)
    fillers = (
        ["@acme", "today", "the", "again", "#travel", "🙂"] if lang == "en" else ["今日", "また"]
    )
    examples = []
    for i in range(n):
        label: SentimentLabel = LABELS[i % 3]
        parts = [rng.choice(words[label]), rng.choice(fillers), rng.choice(words[label])]
        rng.shuffle(parts)
        examples.append(Example(" ".join(parts), label, lang))
    return examples


@pytest.fixture(scope="module")
def model() -> TrainedModel:
    return train(synthetic(EN_WORDS, 90, 1, "en"), folds=3, params=SMALL, c_grid=(1.0, 10.0))


@pytest.fixture(scope="module")
def model_file(model: TrainedModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "en.npz"
    model.save(path)
    return path


def test_train_save_load_gives_identical_predictions(model: TrainedModel, model_file: Path) -> None:
    texts = [e.text for e in synthetic(EN_WORDS, 30, 2, "en")] + ["", "🙂🙂", "x" * 100_000]
    loaded = load(model_file)
    assert loaded.classes == model.classes == ("negative", "neutral", "positive")
    assert np.array_equal(loaded.probabilities(texts), model.probabilities(texts))
    assert loaded.score(texts) == model.score(texts)
    assert loaded.stats["cv"]["negative"]["f1"] > 0.9
    assert loaded.stats["C"] in (1.0, 10.0)


def test_scores_follow_the_labels(model: TrainedModel) -> None:
    texts = ["my flight was delayed and they lost my bag", "thank you, great crew", "which gate"]
    results = TrainedScorer(model).score(texts)
    assert [r.label for r in results] == ["negative", "positive", "neutral"]
    assert results[0].score < 0 < results[1].score
    assert all(-1.0 <= r.score <= 1.0 for r in results)


def test_one_text_at_a_time_scores_as_a_batch(model: TrainedModel) -> None:
    """The daemon scores a few texts at a time: each text's probabilities do not depend on
    the batch it comes in."""
    texts = [e.text for e in synthetic(EN_WORDS, 12, 8, "en")]
    batch = model.probabilities(texts)
    one_by_one = np.vstack([model.probabilities([text]) for text in texts])
    assert np.array_equal(batch, one_by_one)


def test_scores_follow_a_replaced_coef(model: TrainedModel) -> None:
    """The float64 weights kept for scoring are remade when ``coef`` is replaced."""
    copy = dataclasses.replace(model)
    texts = ["my flight was delayed and they lost my bag", "thank you, great crew"]
    before = copy.probabilities(texts)
    copy.coef = -copy.coef
    assert [s.label for s in copy.score(texts)] != [s.label for s in model.score(texts)]
    assert np.array_equal(model.probabilities(texts), before)


def test_awkward_texts_do_not_raise(model: TrainedModel) -> None:
    texts = ["", " ", "\ud800 lone surrogate", "🙂" * 1000, "\x00\x1b[31m", "delayed " * 200_000]
    assert len(model.score(texts)) == len(texts)
    assert model.score([]) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Soooo GOOD!!!!!", "soo good!!"),  # elongation: every length looks alike
        ("@united 3:45pm, $1,200 http://t.co/x", "@united 0pm, $0  http "),
        ("don\u2019t", "don't"),  # a typographic apostrophe is the straight one
        ("😡😡😡😡 届かないwwwww", "😡😡 届かないww"),
    ],
)
def test_normalise(text: str, expected: str) -> None:
    assert normalise(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("not good at all", "not neg_good neg_at neg_all"),
        ("it isn't good, but fine", "it isn't neg_good , but fine"),  # a clause ends it
        ("never ever been so late again", "never neg_ever neg_been neg_so late again"),
        ("no. good", "no . good"),
        ("great 😍!", "great 😍 !"),  # emoji and punctuation are tokens of their own
        ("届かない", "届かない"),  # Japanese negation is left to the characters
    ],
)
def test_mark_negation(text: str, expected: str) -> None:
    assert mark_negation(text) == expected


def test_negated_words_are_features_of_their_own() -> None:
    """In the default scheme "not good" holds "neg_good", not "good": the n-grams of a
    negated word differ from the word's."""
    featurizer = Featurizer(VectorizerParams(bits=16))
    old = Featurizer(VectorizerParams(bits=16, preprocess="xwatch-1"))
    for scheme, expect_good in ((featurizer, False), (old, True)):
        good, negated = scheme.counts(["good", "not good"])[:, : 2**16]  # the word block
        assert good.nnz == 1
        assert bool(negated[0, good.indices[0]] > 0) is expect_good


def test_each_block_is_normalised_on_its_own() -> None:
    """Words and characters weigh alike in a row, whatever the text's length."""
    params = VectorizerParams(bits=12)
    featurizer = Featurizer(params)
    counts = featurizer.counts(["ok", "a much longer text with many more character n-grams"])
    weighted = featurizer.weigh(counts, np.ones(params.n_hashed)).toarray()
    words, chars = weighted[:, : 2**12], weighted[:, 2**12 :]
    assert np.allclose(np.linalg.norm(words, axis=1), np.sqrt(0.5))
    assert np.allclose(np.linalg.norm(chars, axis=1), np.sqrt(0.5))
    assert np.allclose(np.linalg.norm(weighted, axis=1), 1.0)


def test_the_prior_carries_words_the_training_set_lacks(model: TrainedModel) -> None:
    unseen = ["horrible, disgusting, awful experience", "wonderful, lovely, fantastic"]
    assert [s.label for s in model.score(unseen)] == ["negative", "positive"]
    prior = model.coef[:, -1]  # the default scorer's score: for positive, against negative
    assert prior[model.classes.index("positive")] > 0 > prior[model.classes.index("negative")]


def test_cross_validation_chooses_model_c_and_class_weight(model: TrainedModel) -> None:
    assert set(model.stats["cv_selection"]) == {
        f"{kind} C={c:g} class_weight={w}"
        for kind in MODELS
        for c in (1.0, 10.0)
        for w in ("balanced", None)
    }
    chosen = (
        f"{model.stats['model']} C={model.stats['C']:g} class_weight={model.stats['class_weight']}"
    )
    assert model.stats["cv_selection"][chosen] == max(model.stats["cv_selection"].values())
    for empty in ({"c_grid": ()}, {"models": ()}, {"class_weights": ()}):
        with pytest.raises(ModelError, match="grid"):
            train(synthetic(EN_WORDS, 30, 3, "en"), params=SMALL, **empty)  # type: ignore[arg-type]
    with pytest.raises(ModelError, match="unknown models"):
        train(synthetic(EN_WORDS, 30, 3, "en"), params=SMALL, models=("svm",))


def test_log_count_ratios_lean_to_the_class_an_ngram_comes_with() -> None:
    """An n-gram seen only in negative texts has a positive ratio for negative and a
    negative one for the other classes; one in every text leans much less."""
    counts = sp.csr_matrix(
        np.array(
            [
                [2.0, 1.0, 0.0, 0.0],  # negative
                [1.0, 1.0, 0.0, 0.0],  # negative
                [0.0, 1.0, 1.0, 0.0],  # neutral
                [0.0, 1.0, 0.0, 0.0],  # positive
            ]
        )
    )
    labels = np.array(["negative", "negative", "neutral", "positive"])
    ratios = log_count_ratios(counts, labels, LABELS)
    assert ratios.shape == (3, 4)
    assert ratios[0, 0] > 0 > ratios[1, 0] and ratios[2, 0] < 0
    assert ratios[1, 2] > 0 > ratios[0, 2]
    assert abs(ratios[0, 1]) < ratios[0, 0]


@pytest.fixture(scope="module")
def nb_model() -> TrainedModel:
    return train(
        synthetic(EN_WORDS, 90, 1, "en"), folds=3, params=SMALL, models=("nb-lr",), c_grid=(3.0,)
    )


def test_an_nb_lr_model_scores_and_round_trips(nb_model: TrainedModel, tmp_path: Path) -> None:
    """NB-LR folds its scaling into the coefficients: the file is an ordinary model file,
    and what it scores after loading is what was trained."""
    assert nb_model.stats["model"] == "nb-lr"
    assert nb_model.stats["cv"]["negative"]["f1"] > 0.9
    texts = ["my flight was delayed and they lost my bag", "thank you, great crew", "which gate"]
    assert [s.label for s in nb_model.score(texts)] == ["negative", "positive", "neutral"]
    nb_model.save(tmp_path / "nb.npz")
    loaded = load(tmp_path / "nb.npz")
    assert set(members(tmp_path / "nb.npz")) == {"header", "coef", "intercept", "idf"}
    assert np.array_equal(loaded.probabilities(texts), nb_model.probabilities(texts))
    assert loaded.stats["model"] == "nb-lr"
    assert "nb-lr" in format_cv(loaded.stats)


def test_nb_lr_gives_no_weight_to_ngrams_never_seen(nb_model: TrainedModel) -> None:
    """A hashed column no training text has keeps a coefficient of exactly 0, whatever its
    log-count ratio: an unseen n-gram moves no score."""
    featurizer = Featurizer(SMALL)
    seen = featurizer.counts([e.text for e in synthetic(EN_WORDS, 90, 1, "en")])
    unseen = np.setdiff1d(np.arange(SMALL.n_hashed), seen.indices)
    assert unseen.size > 0
    assert not np.any(nb_model.coef[:, unseen])


@pytest.fixture(scope="module")
def plain() -> TrainedModel:
    """A model without the prior column and with the first text scheme, as version 1 files
    hold."""
    return train(
        synthetic(EN_WORDS, 60, 4, "en"),
        folds=3,
        c_grid=(1.0,),
        class_weights=("balanced",),
        params=VectorizerParams(bits=12, prior=0.0, preprocess="xwatch-1"),
    )


def test_a_model_without_prior_round_trips(plain: TrainedModel, tmp_path: Path) -> None:
    assert plain.coef.shape == (3, 2 * 2**12)
    plain.save(tmp_path / "plain.npz")
    texts = ["delayed again", "great crew", "which gate"]
    assert load(tmp_path / "plain.npz").score(texts) == plain.score(texts)


def test_a_version_1_file_still_loads(plain: TrainedModel, tmp_path: Path) -> None:
    """Files of xwatch before the prior column: version 1, no "prior" parameter."""
    plain.save(tmp_path / "v2.npz")
    arrays = members(tmp_path / "v2.npz")
    header = json.loads(arrays["header"].tobytes())
    header["version"] = 1
    del header["vectorizer"]["prior"]
    header["sha256"] = digest(header, arrays)
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez_compressed(tmp_path / "v1.npz", **arrays)
    texts = ["delayed again", "great crew", "which gate"]
    assert load(tmp_path / "v1.npz").score(texts) == plain.score(texts)
    header["vectorizer"]["prior"] = 0.5  # a prior in a version 1 file is not one
    header["sha256"] = digest(header, arrays)
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez_compressed(tmp_path / "v1-prior.npz", **arrays)
    with pytest.raises(ModelError, match="unexpected keys"):
        load(tmp_path / "v1-prior.npz")


def rewrite_header(source: Path, target: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Copy the model ``source`` to ``target`` with ``change`` applied to its header and the
    hash recomputed (a careful forger, or an older xwatch)."""
    arrays = members(source)
    header = json.loads(arrays["header"].tobytes())
    change(header)
    header["sha256"] = digest(header, arrays)
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez_compressed(target, **arrays)


def test_a_version_2_file_still_loads_and_scores_the_same(
    model: TrainedModel, tmp_path: Path
) -> None:
    """Files of xwatch before the "xwatch-2" text scheme: version 2, "xwatch-1" texts."""
    old = train(
        synthetic(EN_WORDS, 60, 7, "en"),
        folds=3,
        c_grid=(1.0,),
        class_weights=(None,),
        params=VectorizerParams(bits=12, preprocess="xwatch-1"),
    )
    old.save(tmp_path / "v3.npz")

    def to_version_2(header: dict[str, Any]) -> None:
        header["version"] = 2

    rewrite_header(tmp_path / "v3.npz", tmp_path / "v2.npz", to_version_2)
    texts = ["delayed again", "great crew", "which gate", "not good at all"]
    loaded = load(tmp_path / "v2.npz")
    assert loaded.params.preprocess == "xwatch-1"
    assert np.array_equal(loaded.probabilities(texts), old.probabilities(texts))


def test_a_version_2_file_with_the_new_text_scheme_is_refused(
    model_file: Path, tmp_path: Path
) -> None:
    """Version 2 knew only "xwatch-1": a version 2 file that claims "xwatch-2" is not one
    an xwatch ever wrote."""

    def to_version_2(header: dict[str, Any]) -> None:
        header["version"] = 2

    rewrite_header(model_file, tmp_path / "v2-new.npz", to_version_2)
    with pytest.raises(ModelError, match="preprocess"):
        load(tmp_path / "v2-new.npz")

    def unknown_scheme(header: dict[str, Any]) -> None:
        header["vectorizer"]["preprocess"] = "xwatch-9"

    rewrite_header(model_file, tmp_path / "scheme.npz", unknown_scheme)
    with pytest.raises(ModelError, match="preprocess"):
        load(tmp_path / "scheme.npz")


@pytest.mark.parametrize("prior", [-1.0, 11.0, "0.5", True, None])
def test_a_bad_prior_weight_is_refused(model_file: Path, tmp_path: Path, prior: object) -> None:
    arrays = members(model_file)
    header = json.loads(arrays["header"].tobytes())
    header["vectorizer"]["prior"] = prior
    header["sha256"] = digest(header, arrays)  # a careful forger
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez_compressed(tmp_path / "prior.npz", **arrays)
    with pytest.raises(ModelError, match="prior"):
        load(tmp_path / "prior.npz")


def test_training_needs_two_labels() -> None:
    only = [Example(f"delayed {i}", "negative") for i in range(10)]
    with pytest.raises(ModelError, match="two labels"):
        train(only, params=SMALL)


# -- the command line -----------------------------------------------------------------------


def run_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str], stdin: str
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write_jsonl(path: Path, examples: list[Example]) -> None:
    path.write_text(
        "".join(
            json.dumps({"text": e.text, "label": e.label, "lang": e.lang}, ensure_ascii=False)
            + "\n"
            for e in examples
        ),
        "utf-8",
    )


def test_cli_train_then_sentiment_with_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "labelled.jsonl"
    write_jsonl(data, synthetic(EN_WORDS, 60, 3, "en"))
    out = tmp_path / "models" / "en.npz"
    code, stdout, stderr = run_cli(
        monkeypatch,
        capsys,
        ["train", "--input", str(data), "--out", str(out), "--folds", "3", "--bits", "12"],
        "",
    )
    assert code == 0, stderr
    assert "negative" in stdout and "F1" in stdout and out.is_file()
    assert "fitted on all 60 examples" in stderr
    lines = "".join(
        json.dumps({"text": t}) + "\n" for t in ["still waiting, refund please", "love it"]
    )
    code, stdout, stderr = run_cli(monkeypatch, capsys, ["sentiment", "--model", str(out)], lines)
    assert code == 0, stderr
    results = [json.loads(line) for line in stdout.splitlines()]
    assert [r["label"] for r in results] == ["negative", "positive"]
    assert results[0]["lang"] == "en"


def test_cli_model_with_a_language_scores_only_that_language(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "labelled.jsonl"
    write_jsonl(data, synthetic(JA_WORDS, 60, 4, "ja") + synthetic(EN_WORDS, 30, 4, "en"))
    out = tmp_path / "ja.npz"
    argv = [
        "train",
        "--input",
        str(data),
        "--out",
        str(out),
        "--lang",
        "ja",
        "--folds",
        "3",
        "--bits",
        "12",
    ]
    code, _, stderr = run_cli(monkeypatch, capsys, argv, "")
    assert code == 0, stderr
    assert "30 lines skipped" in stderr
    assert load(out).lang == "ja"
    texts = ["荷物が届かない、返金して", "great crew, thank you"]
    lines = "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts)
    code, stdout, _ = run_cli(monkeypatch, capsys, ["sentiment", "--model", str(out)], lines)
    assert code == 0
    results = [json.loads(line) for line in stdout.splitlines()]
    trained = TrainedScorer.from_file(out).score(texts[:1])[0]
    default = default_router().score(texts[1:], ["en"])[0]
    assert results[0]["label"] == trained.label == "negative"
    assert results[0]["score"] == round(trained.score, 4)
    assert results[1]["score"] == round(default.score, 4)  # English: the default scorer


def test_cli_refuses_a_bad_model_with_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a model")
    code, _, stderr = run_cli(monkeypatch, capsys, ["sentiment", "--model", str(bad)], "")
    assert code == 1
    assert "not an xwatch model" in stderr


# -- refusal of altered and foreign files ---------------------------------------------------


def members(path: Path) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def test_a_changed_array_value_is_refused(model_file: Path, tmp_path: Path) -> None:
    arrays = members(model_file)
    coef = arrays["coef"].copy()
    coef.reshape(-1).view(np.uint8)[5] ^= 0x01  # one bit of one weight
    arrays["coef"] = coef
    tampered = tmp_path / "tampered.npz"
    np.savez_compressed(tampered, **arrays)
    with pytest.raises(ModelError, match="sha256 mismatch"):
        load(tampered)


def test_a_flipped_byte_in_the_file_is_refused(model_file: Path, tmp_path: Path) -> None:
    data = bytearray(model_file.read_bytes())
    with zipfile.ZipFile(model_file) as archive:
        info = archive.getinfo("coef.npy")
    data[info.header_offset + 30 + len(info.filename) + 40] ^= 0xFF  # inside coef's data
    tampered = tmp_path / "flipped.npz"
    tampered.write_bytes(bytes(data))
    with pytest.raises(ModelError):
        load(tampered)


def test_a_changed_header_is_refused(model_file: Path, tmp_path: Path) -> None:
    arrays = members(model_file)
    header = json.loads(arrays["header"].tobytes())
    header["classes"] = ["positive", "neutral", "negative"]  # swapped meaning, same shapes
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    tampered = tmp_path / "header.npz"
    np.savez_compressed(tampered, **arrays)
    with pytest.raises(ModelError, match="sha256 mismatch"):
        load(tampered)


def test_wrong_shapes_are_refused_even_with_a_matching_hash(
    model_file: Path, tmp_path: Path
) -> None:
    arrays = members(model_file)
    header = json.loads(arrays["header"].tobytes())
    arrays["coef"] = np.ascontiguousarray(arrays["coef"][:, :-7])
    header["sha256"] = digest(header, arrays)  # a careful forger
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    wrong = tmp_path / "shapes.npz"
    np.savez_compressed(wrong, **arrays)
    with pytest.raises(  # 2 * 2**12 hashed columns and the prior's
        ModelError, match=r"coef is float32\[3, 8186\], expected float32\[3, 8193\]"
    ):
        load(wrong)


class Payload:
    """Unpickling this would create ``flag``."""

    def __init__(self, flag: Path) -> None:
        self.flag = flag

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.flag), "w"))


def test_a_pickle_named_npz_is_refused_without_unpickling(tmp_path: Path) -> None:
    flag = tmp_path / "unpickled"
    evil = tmp_path / "model.npz"
    evil.write_bytes(pickle.dumps(Payload(flag)))
    with pytest.raises(ModelError, match="not an xwatch model"):
        load(evil)
    assert not flag.exists()


def test_an_npz_with_pickled_members_is_refused_without_unpickling(
    model_file: Path, tmp_path: Path
) -> None:
    flag = tmp_path / "unpickled"
    arrays: dict[str, Any] = members(model_file)
    arrays["coef"] = np.array([Payload(flag)], dtype=object)
    evil = tmp_path / "objects.npz"
    np.savez(evil, **arrays)
    with pytest.raises(ModelError, match="cannot read the model"):
        load(evil)
    assert not flag.exists()


def test_foreign_zip_and_npz_files_are_refused(tmp_path: Path) -> None:
    foreign_zip = tmp_path / "foreign.npz"
    with zipfile.ZipFile(foreign_zip, "w") as archive:
        archive.writestr("readme.txt", "hello")
    foreign_npz = tmp_path / "other.npz"
    np.savez(foreign_npz, weights=np.zeros(3), bias=np.ones(1))
    for path in (foreign_zip, foreign_npz):
        with pytest.raises(ModelError, match="not an xwatch model"):
            load(path)
    with pytest.raises(ModelError, match="not an xwatch model"):
        load(tmp_path / "missing.npz")


def test_another_format_or_version_is_refused(model_file: Path, tmp_path: Path) -> None:
    for key, value, message in (("format", "other", "format"), ("version", 99, "version 99")):
        arrays = members(model_file)
        header = json.loads(arrays["header"].tobytes())
        header[key] = value
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
        path = tmp_path / f"{key}.npz"
        np.savez_compressed(path, **arrays)
        with pytest.raises(ModelError, match=message):
            load(path)


# -- the config -----------------------------------------------------------------------------


def test_config_models_route_a_language_to_the_trained_scorer(project: Path) -> None:
    ja = train(synthetic(JA_WORDS, 60, 5, "ja"), lang="ja", folds=3, params=SMALL)
    ja.save(project / "models" / "ja.npz")
    config_path = project / "config.yaml"
    document = yaml.safe_load(config_path.read_text("utf-8"))
    document.setdefault("sentiment", {})["models"] = {"ja": "models/ja.npz"}  # relative
    config_path.write_text(yaml.safe_dump(document, allow_unicode=True), "utf-8")
    settings = load_settings(config_path)
    assert settings.config.sentiment.models == {"ja": project / "models" / "ja.npz"}

    router = router_from_config(settings.config)
    pipeline = Pipeline(
        settings.config, settings.rules, settings.playbooks, router, Metrics(CollectorRegistry())
    )
    posts = [mention("荷物が届かない 対応が遅い", lang="ja"), mention("great crew, thank you")]
    enriched = pipeline.enrich(posts)
    assert enriched[0].sentiment == ja.score([posts[0].text])[0]
    assert enriched[0].sentiment is not None and enriched[0].sentiment.label == "negative"
    assert enriched[1].sentiment == default_router().score([posts[1].text], ["en"])[0]


def test_a_configured_model_that_cannot_load_stops_the_start(project: Path) -> None:
    settings = load_settings(project / "config.yaml")
    config = settings.config.model_copy(
        update={
            "sentiment": settings.config.sentiment.model_copy(
                update={"models": {"ja": project / "nope.npz"}}
            )
        }
    )
    with pytest.raises(ModelError, match=r"nope\.npz"):
        router_from_config(config)


def test_an_oversized_member_is_refused_before_it_is_inflated(
    model_file: Path, tmp_path: Path
) -> None:
    arrays = members(model_file)
    arrays["coef"] = np.zeros((3, 1_000_000), np.float32)  # compresses to almost nothing
    bomb = tmp_path / "bomb.npz"
    np.savez_compressed(bomb, **arrays)
    with pytest.raises(ModelError, match="coef is larger than the model it claims to be"):
        load(bomb)


def test_a_model_for_another_language_is_refused(project: Path, model_file: Path) -> None:
    settings = load_settings(project / "config.yaml")
    en = train(synthetic(EN_WORDS, 30, 6, "en"), lang="en", folds=3, params=SMALL)
    en.save(project / "en.npz")
    for lang, path, error in (("ja", project / "en.npz", True), ("ja", model_file, False)):
        sentiment = settings.config.sentiment.model_copy(update={"models": {lang: path}})
        config = settings.config.model_copy(update={"sentiment": sentiment})
        if error:
            with pytest.raises(ModelError, match="a model for 'en', configured for 'ja'"):
                router_from_config(config)
        else:
            assert "ja" in router_from_config(config).languages  # no --lang: fits any


def test_the_negative_bias_is_chosen_by_cross_validated_f1() -> None:
    """Logits that put every negative just below neutral: argmax finds none, an offset of
    +0.3 to the negative logit finds them all; ties go to the smaller offset."""
    from xwatch.sentiment.trained import NEGATIVE_BIASES, _best_bias

    classes = ("negative", "neutral", "positive")
    labels = np.array(["negative"] * 4 + ["neutral"] * 4 + ["positive"] * 2)
    logits = np.array([[0.0, 0.25, -1.0]] * 4 + [[-1.0, 1.0, -1.0]] * 4 + [[-1.0, -1.0, 1.0]] * 2)
    bias, reports = _best_bias(logits, labels, classes)
    assert bias == 0.3 and bias in NEGATIVE_BIASES
    assert reports["negative"].f1 == 1.0
    clear = np.array([[1.0, 0.0, 0.0]] * 4 + [[-1.0, 1.0, -1.0]] * 4 + [[-1.0, -1.0, 1.0]] * 2)
    assert _best_bias(clear, labels, classes)[0] == 0.0


def test_the_chosen_negative_bias_is_in_the_model(model: TrainedModel) -> None:
    from xwatch.sentiment.trained import NEGATIVE_BIASES

    assert model.stats["negative_bias"] in NEGATIVE_BIASES


@pytest.mark.parametrize("kind", MODELS)
def test_a_model_of_two_labels(kind: str) -> None:
    """scikit-learn keeps one row of coefficients for two classes; the model keeps one
    per label, and scores and round-trips like a three-label one."""
    examples = [e for e in synthetic(EN_WORDS, 60, 5, "en") if e.label != "neutral"]
    model = train(
        examples, folds=3, params=SMALL, models=(kind,), c_grid=(1.0,), class_weights=(None,)
    )
    assert model.stats["model"] == kind
    assert model.classes == ("negative", "positive")
    assert model.coef.shape == (2, SMALL.n_features)
    texts = ["my flight was delayed, they lost my bag", "thank you, great crew"]
    assert [s.label for s in model.score(texts)] == ["negative", "positive"]


@pytest.mark.parametrize(
    "line", ['{"text": "x"}', '"just text"', "[" * 100_000 + "]" * 100_000, "{not json"]
)
def test_a_training_line_that_is_not_an_example_is_named(tmp_path: Path, line: str) -> None:
    path = tmp_path / "labelled.jsonl"
    path.write_text(f'{{"text": "good", "label": "positive"}}\n{line}\n', "utf-8")
    with pytest.raises(ModelError, match=f"^{path}:2: expected"):
        read_examples(path)


def test_training_lines_end_at_newlines_only_and_a_bom_is_not_json(tmp_path: Path) -> None:
    """json.dumps(ensure_ascii=False) writes U+2028 as it is: that is inside a text."""
    path = tmp_path / "labelled.jsonl"
    lines = [
        json.dumps(
            {"text": "still broken\u2028after the update", "label": "negative"}, ensure_ascii=False
        ),
        json.dumps({"text": "works\u0085fine", "label": "positive"}, ensure_ascii=False),
    ]
    path.write_text("\ufeff" + "\r\n".join(lines) + "\n", "utf-8")
    examples, skipped = read_examples(path)
    assert [e.text for e in examples] == ["still broken\u2028after the update", "works\u0085fine"]
    assert skipped == 0


def test_training_examples_come_from_stdin_as_labels_export_writes_them() -> None:
    """``xwatch labels export --out - | xwatch train --input - --out m.npz``."""
    lines = [
        json.dumps({"text": "lost my bag", "label": "negative"}),
        json.dumps({"text": "thanks!", "label": "positive", "lang": "en"}),
        "{not json",
    ]
    examples, skipped = read_examples(Path("-"), stdin=io.BytesIO("\n".join(lines[:2]).encode()))
    assert skipped == 0
    assert [(e.text, e.label) for e in examples] == [
        ("lost my bag", "negative"),
        ("thanks!", "positive"),
    ]
    with pytest.raises(ModelError, match=r"^<stdin>:3: expected"):
        read_examples(Path("-"), stdin=io.BytesIO("\n".join(lines).encode()))


@pytest.mark.parametrize("where", ["folder", "under-a-file"])
def test_cli_train_refuses_an_unwritable_out_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    """A folder as --out gave an IsADirectoryError traceback after all the training."""
    data = tmp_path / "labelled.jsonl"
    write_jsonl(data, synthetic(EN_WORDS, 60, 3, "en"))
    (tmp_path / "a-file").write_text("x")
    out = tmp_path if where == "folder" else tmp_path / "a-file" / "en.npz"
    argv = ["train", "--input", str(data), "--out", str(out), "--folds", "3", "--bits", "12"]
    code, stdout, stderr = run_cli(monkeypatch, capsys, argv, "")
    assert code == 1 and stdout == ""
    assert stderr.startswith(f"xwatch train: cannot write the model to {out}: ")
    assert "Traceback" not in stderr and "fitted" not in stderr  # before any training


def test_a_save_that_fails_leaves_no_partial_file(
    model: TrainedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", full_disk)
    with pytest.raises(OSError, match="No space left"):
        model.save(tmp_path / "en.npz")
    assert list(tmp_path.iterdir()) == []
