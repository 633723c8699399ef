"""Associative recall and the standard-library text task, on small hand-checked cases."""

import numpy as np
import pytest

from attention_kernels.testbeds.datasets import (
    STDLIB_TEXT_FILES,
    TEXT_VOCABULARY,
    decode_text,
    encode_text,
    load_stdlib_text,
    make_associative_recall,
    make_char_windows,
)


def test_recall_layout_by_hand():
    X, y = make_associative_recall(200, n_pairs=4, n_keys=6, n_values=3, n_queries=2, random_state=0)
    assert X.shape == (200, 10) and y.shape == (200, 2) and X.dtype == y.dtype == np.int64
    for row, target in zip(X, y):
        keys, values, queries = row[0:8:2], row[1:8:2], row[8:]
        assert len(set(keys)) == 4 and keys.max() < 6  # distinct keys from the key vocabulary
        assert values.min() >= 6 and values.max() < 9  # values after the keys
        assert len(set(queries)) == 2 and set(queries) <= set(keys)
        binding = dict(zip(keys, values - 6))
        assert [binding[q] for q in queries] == list(target)
    # every key and value symbol is used
    assert set(X[:, 0:8:2].ravel()) == set(range(6)) and set(y.ravel()) == {0, 1, 2}


def test_recall_one_pair_and_defaults():
    X, y = make_associative_recall(3, n_pairs=1, n_keys=1, n_values=2, random_state=1)
    np.testing.assert_array_equal(X[:, [0, 2]], 0)  # one key, queried
    np.testing.assert_array_equal(X[:, 1] - 1, y[:, 0])
    X, y = make_associative_recall(5, n_pairs=64, n_keys=64, n_values=64, random_state=2)
    assert X.shape == (5, 192) and y.shape == (5, 64)
    np.testing.assert_array_equal(np.sort(X[:, 128:], axis=1), np.sort(X[:, 0:128:2], axis=1))
    a, _ = make_associative_recall(4, 8, random_state=3)
    np.testing.assert_array_equal(a, make_associative_recall(4, 8, random_state=3)[0])


def test_recall_errors_name_the_argument():
    with pytest.raises(ValueError, match="n_pairs must be <= 5"):
        make_associative_recall(2, n_pairs=6, n_keys=5)
    with pytest.raises(ValueError, match="n_queries must be <= 3"):
        make_associative_recall(2, n_pairs=3, n_queries=4)
    with pytest.raises(ValueError, match="n_values must be >= 1"):
        make_associative_recall(2, n_values=0)
    with pytest.raises(TypeError, match="n_samples must be an integer"):
        make_associative_recall(2.0)


def test_encoding_by_hand():
    assert len(TEXT_VOCABULARY) == 98
    ids = encode_text("a\tb\n é")
    assert list(ids) == [TEXT_VOCABULARY.index(c) for c in "a\tb\n "] + [0]
    assert decode_text(encode_text("def f(x):\n\treturn x ~ 1")) == "def f(x):\n\treturn x ~ 1"
    with pytest.raises(ValueError, match="ids must be integers in 0..97"):
        decode_text([98])
    with pytest.raises(TypeError, match="text must be a str"):
        encode_text(b"abc")


def test_split_by_hand(tmp_path):
    (tmp_path / "a.py").write_text("abcdefghij")
    (tmp_path / "b.py").write_text("0123456789\n")
    corpus = load_stdlib_text(["a.py", "b.py"], validation_fraction=0.2, root=tmp_path)
    # each file's last 20% (rounded) is validation: "ij" and "9\n" (11 chars -> 2)
    assert decode_text(corpus.train) == "abcdefgh" + "012345678"
    assert decode_text(corpus.validation) == "ij" + "9\n"
    assert corpus.files == (str(tmp_path / "a.py"), str(tmp_path / "b.py")) and corpus.vocab_size == 98
    with pytest.raises(FileNotFoundError, match="files: .*missing.py' does not exist"):
        load_stdlib_text(["missing.py"], root=tmp_path)
    with pytest.raises(ValueError, match="validation_fraction must be < 1"):
        load_stdlib_text(["a.py"], validation_fraction=1.0, root=tmp_path)
    with pytest.raises(ValueError, match="too few to split"):
        load_stdlib_text(["a.py"], validation_fraction=0.01, root=tmp_path)
    with pytest.raises(ValueError, match="files must be a non-empty sequence"):
        load_stdlib_text("a.py", root=tmp_path)


def test_windows_shift_by_one():
    ids = np.arange(10)
    X, Y = make_char_windows(ids, 50, context=4, random_state=0)
    assert X.shape == Y.shape == (50, 4)
    np.testing.assert_array_equal(Y, X + 1)
    np.testing.assert_array_equal(np.diff(X, axis=1), 1)
    assert set(X[:, 0]) == set(range(6))  # every valid start 0..5 occurs
    with pytest.raises(ValueError, match="fewer than context \\+ 1 = 11"):
        make_char_windows(ids, 1, context=10)
    with pytest.raises(ValueError, match="ids must be a 1-D integer array"):
        make_char_windows(ids.astype(float), 1, context=2)


def test_stdlib_corpus_is_found_offline():
    corpus = load_stdlib_text()
    assert len(corpus.files) == len(STDLIB_TEXT_FILES)
    assert 400_000 < len(corpus.train) < 900_000 and 0.09 < len(corpus.validation) / len(corpus.train) < 0.13
    assert np.mean(corpus.train == 0) < 1e-3  # almost nothing outside the vocabulary
    assert "def " in decode_text(corpus.validation[:5000])
