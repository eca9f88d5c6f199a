"""Tests of ``python -m sims.probe``: the loader's formats and bad inputs, the protocol on a small Gaussian
mixture with known symmetric noise (the recommendation follows its rule, the edge-of-grid warning), the
theory's block means and cleanlab's noise matrix in the suite's orientation, determinism."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sims.studies import probe as P
from sims.studies import probe_data as D
from tests.theorems.strategies import raises_naming

K, N, DIM, ETA = 3, 300, 20, 0.3


def mixture(seed=0, n=N, k=K, dim=DIM, eta=ETA, sep=1.6):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(k), n // k)
    means = rng.normal(size=(k, dim)) * sep / math.sqrt(dim) * 2.0
    X = means[y] + rng.normal(size=(y.size, dim)) / math.sqrt(dim) * 2.0
    flip = rng.random(y.size) < eta
    z = y.copy()
    z[flip] = (y[flip] + rng.integers(1, k, size=int(flip.sum()))) % k
    return X, y, z


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("probe-data")
    X, y, z = mixture()
    np.save(folder / "X.npy", X)
    np.save(folder / "z.npy", z)
    np.save(folder / "y.npy", y)
    return folder


def run(argv, capsys):
    try:
        rc = P.main(argv)
    except SystemExit as stop:  # argparse's own errors
        rc = stop.code
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def expect_error(argv, capsys, *words):
    rc, out, err = run(argv, capsys)
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith("python -m sims.probe: error: "), err
    for w in words:
        assert w in err, err
    return err


# ------------------------------------------------------------------ loader: formats

def _write_all(folder, X, labels):
    import pandas as pd

    np.save(folder / "f.npy", X)
    np.savez(folder / "f.npz", features=X, other=np.zeros(3))
    (folder / "f.csv").write_text("a" + "".join(f",b{j}" for j in range(1, X.shape[1])) + "\n"
                                  + "\n".join(",".join(repr(float(v)) for v in row) for row in X) + "\n")
    pd.DataFrame({f"c{j}": X[:, j] for j in range(X.shape[1])}).to_parquet(folder / "f.parquet")
    np.save(folder / "l.npy", labels)
    np.savez(folder / "l.npz", labels)
    (folder / "l.csv").write_text("label\n" + "\n".join(str(v) for v in labels) + "\n")
    pd.DataFrame({"label": labels}).to_parquet(folder / "l.parquet")


@pytest.mark.parametrize("labels", [np.array([2, 0, 1, 2, 7]), np.array(["cat", "dog", "cat", "emu", "dog"])])
def test_every_format_round_trips(tmp_path, labels):
    X = np.random.default_rng(1).normal(size=(5, 3))
    _write_all(tmp_path, X, labels)
    for ext in D.FORMATS:
        got = D.read_features("--features", tmp_path / f"f{ext}")
        assert got.dtype == np.float64 and np.array_equal(got, X), ext
        lab = D.read_labels("--labels", tmp_path / f"l{ext}")
        assert np.array_equal(lab.astype(str), labels.astype(str)), ext
        codec = D.LabelCodec("--labels", lab)
        assert len(codec.classes) == len(set(labels.tolist()))
    assert isinstance(D.read_features("--features", tmp_path / "f.npy"), np.memmap)
    assert D.read_labels("--labels", tmp_path / "l.csv").dtype.kind == labels.dtype.kind


def test_label_codec_maps_other_files_and_names_an_unseen_label():
    codec = D.LabelCodec("--labels", np.array(["b", "a", "b", "c"]))
    assert codec.encode("--true-labels", np.array(["c", "a"])).tolist() == [2, 0]
    with raises_naming("--test-labels", "'zebra'", "--labels"):
        codec.encode("--test-labels", np.array(["a", "zebra"]))


# ------------------------------------------------------------------ loader: bad input

def test_bad_inputs_get_one_line_and_status_2(tmp_path, files, capsys):
    X, y, z = mixture()
    base = ["--labels", str(files / "z.npy"), "--out", str(tmp_path / "o"), "--quick"]
    bad = X.copy()
    bad[5, 3] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    expect_error(["--features", str(tmp_path / "nan.npy"), *base], capsys, "non-finite", "row 5, column 3")
    bad[5, 3] = np.inf
    np.save(tmp_path / "inf.npy", bad)
    expect_error(["--features", str(tmp_path / "inf.npy"), *base], capsys, "non-finite", "inf")
    np.save(tmp_path / "short.npy", X[:-1])
    expect_error(["--features", str(tmp_path / "short.npy"), *base], capsys, "shape mismatch", "299 rows")
    lonely = z.copy()
    lonely[0] = 9
    np.save(tmp_path / "lonely.npy", lonely)
    expect_error(["--features", str(files / "X.npy"), "--labels", str(tmp_path / "lonely.npy"), "--quick"],
                 capsys, "class 9 has 1 instance", "at least 2")
    (tmp_path / "text.npy").write_text("1,2,3\n")
    expect_error(["--features", str(tmp_path / "text.npy"), *base], capsys, "is not a .npy file")
    (tmp_path / "bin.csv").write_bytes(b"\x93NUMPY\x00\xff\xfe")
    expect_error(["--features", str(tmp_path / "bin.csv"), *base], capsys, "is not a .csv file")
    np.save(tmp_path / "plain.npy", X)
    (tmp_path / "plain.npz").write_bytes((tmp_path / "plain.npy").read_bytes())
    expect_error(["--features", str(tmp_path / "plain.npz"), *base], capsys, "is not a .npz file")
    (tmp_path / "x.parquet").write_text("a,b\n1,2\n")
    expect_error(["--features", str(tmp_path / "x.parquet"), *base], capsys, "is not a .parquet file")
    (tmp_path / "words.csv").write_text("1,2\n3,apple\n")
    expect_error(["--features", str(tmp_path / "words.csv"), *base], capsys, "non-numeric cell 'apple'")
    expect_error(["--features", str(tmp_path / "missing.npy"), *base], capsys, "missing.npy", "no such file")
    (tmp_path / "x.txt").write_text("1,2\n")
    expect_error(["--features", str(tmp_path / "x.txt"), *base], capsys, "unsupported extension")
    np.save(tmp_path / "tl.npy", np.full(20, 7))
    np.save(tmp_path / "tf.npy", X[:20])
    expect_error(["--features", str(files / "X.npy"), *base, "--test-features", str(tmp_path / "tf.npy"),
                  "--test-labels", str(tmp_path / "tl.npy")], capsys, "label 7", "does not occur")


@pytest.mark.parametrize("extra, words", [
    (["--folds", "1"], ["--folds == 1"]),
    (["--seeds", "0"], ["--seeds == 0"]),
    (["--rounds", "-1"], ["--rounds == -1"]),
    (["--test-size", "1.5"], ["--test-size == 1.5"]),
    (["--lam", "-1"], ["--lam == -1"]),
    (["--lams", "0.1,x"], ["--lams"]),
    (["--lam", "0.1", "--lams", "0.1,1"], ["exclude each other"]),
    (["--jobs", "0"], ["--jobs == 0"]),
    (["--methods", "teacher,magic"], ["unknown method 'magic'"]),
    (["--folds", "200"], ["--folds 200"]),
    (["--seed", "abc"], ["--seed"]),
])
def test_bad_option_values(tmp_path, files, capsys, extra, words):
    expect_error(["--features", str(files / "X.npy"), "--labels", str(files / "z.npy"), "--out",
                  str(tmp_path / "o"), *extra], capsys, *words)


# ------------------------------------------------------------------ the theory's quantities

def test_block_means_from_class_sums_equal_the_brute_force_gram():
    X, y, _ = mixture(seed=3, n=60)
    got = P.block_means(X, y, K)
    G = X @ X.T / np.mean(np.sum(X * X, axis=1))
    for k in range(K):
        for l in range(K):
            blk = G[np.ix_(y == k, y == l)]
            want = blk[~np.eye(len(blk), dtype=bool)].mean() if k == l else blk.mean()
            assert got["B"][k, l] == pytest.approx(want, rel=1e-12, abs=1e-13)
    assert got["c"] == pytest.approx(np.mean(np.diag(got["B"])), rel=1e-12)


def test_cleanlab_noise_matrix_is_transposed_to_c_true_given():
    rng = np.random.default_rng(7)
    C = np.array([[0.8, 0.2, 0.0], [0.05, 0.6, 0.35], [0.1, 0.0, 0.9]])  # rows: true class; asymmetric
    n = 30000
    true = rng.integers(0, 3, size=n)
    given = np.array([rng.choice(3, p=C[t]) for t in true])
    probs = np.full((n, 3), 0.1)
    probs[np.arange(n), true] = 0.8
    est = P.estimate_corruption(given, probs, 3)
    assert np.allclose(est.sum(axis=1), 1.0)
    assert np.abs(est - C).max() < 0.03
    assert np.abs(est - C.T).max() > 0.2  # the untransposed matrix would be far off


# ------------------------------------------------------------------ statistics and the rule

def test_paired_interval_is_the_t_interval():
    d = np.array([0.01, 0.03, 0.02, 0.04])
    iv = P.paired_interval(d)
    half = 3.182446305284263 * d.std(ddof=1) / 2.0
    assert iv["low"] == pytest.approx(d.mean() - half, rel=1e-9) and iv["high"] == pytest.approx(d.mean() + half)
    assert P.paired_interval([0.1])["low"] is None


def test_recommend_takes_the_best_method_above_the_teacher():
    def m(acc, low, rounds=None):
        e = {"test_accuracy": acc, "vs_teacher": {"low": low}}
        if rounds is not None:
            e["round_per_seed"] = rounds
        return e

    base = {"teacher": m(0.8, None)}
    assert P.recommend({**base, "sd": m(0.9, -0.01, [1, 1, 2])})["text"] == "the tuned teacher is as good"
    r = P.recommend({**base, "sd": m(0.85, 0.01, [2, 3, 2]), "cleanlab": m(0.84, 0.02)})
    assert r["method"] == "sd" and r["text"] == "distil for 2 rounds" and r["rule"] == P.RULE
    r = P.recommend({**base, "sd": m(0.85, 0.01, [2, 3, 2]), "cleanlab": m(0.86, 0.001), "pll_ce": m(0.99, -0.1)})
    assert r["method"] == "cleanlab" and r["text"] == "clean with cleanlab"


# ------------------------------------------------------------------ the protocol

SMALL = ["--seeds", "3", "--folds", "3", "--rounds", "2", "--lams", "0.01,0.1,1", "--no-progress"]


@pytest.fixture(scope="module")
def protocol(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("probe-out")
    argv = ["--features", str(files / "X.npy"), "--labels", str(files / "z.npy"), "--true-labels",
            str(files / "y.npy"), "--standardize", "--seed", "5", *SMALL]
    assert P.main([*argv, "--out", str(out / "a"), "--json"]) == 0
    assert P.main([*argv, "--out", str(out / "b"), "--json"]) == 0
    assert P.main([*argv, "--out", str(out / "c"), "--json", "--jobs", "2"]) == 0
    from dask.distributed import LocalCluster

    # two worker processes, as on a real cluster: folds, lambdas and seeds pickled, run elsewhere, sent back
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        assert P.main([*argv, "--out", str(out / "d"), "--json", "--dask-scheduler", cluster.scheduler_address]) == 0
    return out


def test_json_has_every_method_and_the_recommendation_follows_its_rule(protocol, capsys):
    js = json.loads((protocol / "a" / "probe.json").read_text())
    assert set(js["methods"]) == set(P.METHODS)
    for name, e in js["methods"].items():
        assert 0.0 <= e["test_accuracy"] <= 1.0 and len(e["test_accuracy_per_seed"]) == 3
        assert e["test_accuracy"] == pytest.approx(np.mean(e["test_accuracy_per_seed"]))
    base = js["methods"]["teacher"]["test_accuracy_per_seed"]
    eligible = []
    for name in P.METHODS[1:]:
        diffs = np.subtract(js["methods"][name]["test_accuracy_per_seed"], base)
        half = 4.3026527297 * diffs.std(ddof=1) / math.sqrt(3)  # t_{0.975, 2}
        assert js["methods"][name]["vs_teacher"]["low"] == pytest.approx(diffs.mean() - half, abs=1e-9)
        if diffs.mean() - half > 0:
            eligible.append(name)
    rec = js["recommendation"]
    want = max(eligible, key=lambda n: (js["methods"][n]["test_accuracy"], -P.METHODS.index(n))) if eligible \
        else "teacher"
    assert rec["method"] == want and rec["rule"] == P.RULE and rec["text"]
    assert js["data"]["train_noise_rate"] > 0.2
    assert js["methods"]["teacher"]["test_accuracy"] > 0.6  # the mixture is learnable
    issues = js["label_issues"]
    assert set(issues) == set(P.DETECTORS)
    assert all(0 <= e["precision"] <= 1 and 0 <= e["recall"] <= 1 for e in issues.values())
    th = js["theory"]
    assert len(th["c_k"]) == K and np.allclose(np.sum(th["C_estimated"], axis=1), 1.0)
    assert th["structure_from"] == "true labels" and isinstance(th["block_model_fits"], bool)


def test_same_seed_same_bytes_and_neither_jobs_nor_dask_matter(protocol):
    for name in ("probe.json", "probe.csv"):
        a = (protocol / "a" / name).read_bytes()
        assert a == (protocol / "b" / name).read_bytes(), name
        assert a == (protocol / "c" / name).read_bytes(), name
        assert a == (protocol / "d" / name).read_bytes(), name  # a Dask cluster
    assert (protocol / "a" / "probe.png").stat().st_size > 1000
    csv = (protocol / "a" / "probe.csv").read_text().splitlines()
    assert csv[0] == ",".join(P.CSV_COLUMNS)
    assert sum(1 for r in csv if ",cv,sd," in r) == 3 * 3 * 3  # seeds x rounds x lambdas


def test_another_seed_changes_the_numbers(files, tmp_path, protocol):
    argv = ["--features", str(files / "X.npy"), "--labels", str(files / "z.npy"), "--true-labels",
            str(files / "y.npy"), "--standardize", "--seed", "6", *SMALL, "--methods", "teacher", "--out",
            str(tmp_path)]
    assert P.main(argv) == 0
    a = json.loads((protocol / "a" / "probe.json").read_text())["methods"]["teacher"]["test_accuracy_per_seed"]
    b = json.loads((tmp_path / "probe.json").read_text())["methods"]["teacher"]["test_accuracy_per_seed"]
    assert a != b


def test_edge_of_grid_warning(files, tmp_path, capsys):
    argv = ["--features", str(files / "X.npy"), "--labels", str(files / "z.npy"), "--standardize",
            "--seeds", "1", "--folds", "3", "--rounds", "0", "--lams", "30,100", "--methods", "teacher",
            "--no-progress", "--json", "--out", str(tmp_path)]
    rc, out, err = run(argv, capsys)
    assert rc == 0
    js = json.loads(out)
    lam = js["methods"]["teacher"]["lam_per_seed"][0]
    edge = "lower" if lam == 30 else "upper"
    assert any(w.startswith("teacher: the chosen lambda") and f"{edge} edge" in w for w in js["warnings"])
    assert f"at the {edge} edge of the grid [30, 100]" in err
    i = argv.index("--lams")
    rc, out, err = run([*argv[:i], "--lam", "1", *argv[i + 2:]], capsys)
    assert rc == 0 and "edge" not in err and json.loads(out)["warnings"] == []


def test_fixed_test_files_and_text_report(files, tmp_path, capsys):
    X, y, z = mixture(seed=11)
    np.save(tmp_path / "tx.npy", X)
    np.save(tmp_path / "tz.npy", z)
    np.save(tmp_path / "ty.npy", y)
    rc, out, err = run(["--features", str(files / "X.npy"), "--labels", str(files / "z.npy"),
                        "--test-features", str(tmp_path / "tx.npy"), "--test-labels", str(tmp_path / "tz.npy"),
                        "--test-true-labels", str(tmp_path / "ty.npy"), "--seeds", "2", "--folds", "3",
                        "--rounds", "1", "--lam", "0.03", "--methods", "teacher,sd", "--no-progress", "--out",
                        str(tmp_path / "o")], capsys)
    assert rc == 0, err
    assert "recommendation: " in out and "rule: " in out and "theory" in out and "test scored against the true" in out
    js = json.loads((tmp_path / "o" / "probe.json").read_text())
    assert js["data"]["N_train"] == N and js["data"]["N_test"] == N
    assert set(js["methods"]) == {"teacher", "sd"}


def test_the_fit_is_the_exact_optimum():
    """The study's fit (the scalable solver) and the classifier cleanlab gets reach the exact solver's optimum."""
    from sims.studies.probe_classifier import ProbeClassifier

    X, y, _ = mixture(seed=2, n=60)
    T = np.eye(K)[y].T
    exact = P.fit_stage.fit_features(X, T, 0.1, tol=1e-12)
    assert np.max(np.abs(P.SoftExact(X, 0.1).fit(T).outputs - exact.outputs)) <= 1e-8
    clf = ProbeClassifier(0.1, K).fit(X, y)
    assert np.max(np.abs(clf.predict_proba(X).T - exact.outputs)) <= 1e-8
    assert np.array_equal(clf.predict(X), np.argmax(exact.outputs, axis=0))
