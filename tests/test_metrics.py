"""Evaluation numerics against independent references, feature spaces, caching, eval CLI."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.cli import main
from ganforge.errors import GanforgeError
from ganforge.metrics import features as feats
from ganforge.metrics.classes import class_coverage
from ganforge.metrics.evaluate import parse_metrics, real_features, score_features
from ganforge.metrics.frechet import fid_from_features, frechet_distance, gaussian_stats
from ganforge.metrics.isc import inception_score
from ganforge.metrics.kid import kid, mmd2_unbiased
from ganforge.metrics.paired import l1, paired_metrics, psnr, ssim
from ganforge.metrics.prdc import density_coverage, precision_recall

# --- KID --------------------------------------------------------------------------------------


def _mmd2_by_loops(x, y):
    """The unbiased MMD² of Bińkowski et al. (eq. 3) written out term by term."""
    d = x.shape[1]

    def k(a, b):
        return (float(a @ b) / d + 1) ** 3

    m, n = len(x), len(y)
    sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    syy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return sxx + syy - 2 * sxy


def test_kid_matches_its_closed_form_on_small_sets():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(7, 4, generator=g, dtype=torch.float64)
    y = torch.randn(6, 4, generator=g, dtype=torch.float64) + 0.5
    ref = _mmd2_by_loops(x, y)
    assert mmd2_unbiased(x, y) == pytest.approx(ref, rel=1e-10, abs=1e-12)
    # one subset holding every row (equal sizes): the same number, in float32
    y7 = torch.cat([y, y[:1] + 0.1])
    mean, std = kid(x, y7, subsets=3, subset_size=100)
    assert mean == pytest.approx(_mmd2_by_loops(x, y7), rel=1e-5)
    assert std == pytest.approx(0.0, abs=1e-5)  # every subset is the whole set


def test_kid_is_near_zero_for_one_distribution_and_large_for_two():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(600, 8, generator=g), torch.randn(600, 8, generator=g)
    same, same_std = kid(a, b, subsets=20, subset_size=300)
    diff, _ = kid(a, b + 1.0, subsets=20, subset_size=300)
    assert abs(same) < 3 * same_std + 1e-3
    assert diff > 20 * abs(same) and diff > 0.1


# --- IS -------------------------------------------------------------------------------------


def test_inception_score_of_uniform_predictions_is_one_and_of_confident_ones_k():
    k = 10
    mean, std = inception_score(torch.full((100, k), 1.0 / k))
    assert mean == pytest.approx(1.0, abs=1e-9) and std == pytest.approx(0.0, abs=1e-9)
    onehot = torch.eye(k).repeat(10, 1)  # confident, balanced: IS = K in every split
    mean, _ = inception_score(onehot, splits=10)
    assert mean == pytest.approx(k, rel=1e-6)
    collapsed = torch.eye(k)[[3] * 100]  # confident but one class: IS = 1
    assert inception_score(collapsed)[0] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(GanforgeError):
        inception_score(torch.ones(5, 3) / 3, splits=10)


# --- FID ------------------------------------------------------------------------------------


def test_fid_of_identical_sets_is_zero_and_matches_pytorch_fid_when_installed():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(400, 16, generator=g, dtype=torch.float64)
    assert abs(fid_from_features(a, a)) < 1e-8
    b = torch.randn(400, 16, generator=g, dtype=torch.float64) @ torch.randn(
        16, 16, generator=g, dtype=torch.float64) * 0.3 + 1
    ours = fid_from_features(a, b)
    try:
        from pytorch_fid.fid_score import calculate_frechet_distance
    except ImportError:
        pytest.skip("pytorch-fid not installed (scipy's sqrtm reference: tests/test_frechet.py)")
    m1, s1 = gaussian_stats(a)
    m2, s2 = gaussian_stats(b)
    ref = calculate_frechet_distance(m1.numpy(), s1.numpy(), m2.numpy(), s2.numpy())
    assert ours == pytest.approx(float(ref), rel=1e-6)
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(ours)


# --- precision / recall, density / coverage ---------------------------------------------------


def test_identical_sets_give_precision_recall_coverage_one():
    x = torch.randn(300, 5, generator=torch.Generator().manual_seed(0))
    pr = precision_recall(x, x.clone())
    assert pr == {"precision": 1.0, "recall": 1.0}
    dc = density_coverage(x, x.clone())
    assert dc["coverage"] == 1.0 and dc["density"] >= 1.0


def test_precision_recall_separate_fidelity_from_diversity():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(500, 2, generator=g)
    collapsed = 0.05 * torch.randn(500, 2, generator=g)  # all fakes at the centre: precise
    far = torch.randn(500, 2, generator=g) + 20.0  # nowhere near the data
    pr = precision_recall(real, collapsed)
    assert pr["precision"] > 0.95 and pr["recall"] < 0.2
    assert precision_recall(real, far) == {"precision": 0.0, "recall": 0.0}
    dc = density_coverage(real, collapsed)
    assert dc["coverage"] < 0.2 and dc["density"] > 1  # crowding the densest region


# --- class coverage ---------------------------------------------------------------------------


def test_class_coverage_of_a_collapse_onto_one_class():
    k = 10
    data_hist = torch.ones(k)
    collapsed = torch.eye(k)[[4] * 50]
    c = class_coverage(collapsed, data_hist)
    assert c["classes_covered"] == 1 and c["classes_total"] == 10
    assert c["class_kl"] == pytest.approx(math.log(k))
    balanced = class_coverage(torch.eye(k).repeat(5, 1), data_hist)
    assert balanced["classes_covered"] == 10 and balanced["class_kl"] == pytest.approx(0.0)


# --- paired metrics ---------------------------------------------------------------------------


def test_paired_metrics_known_values():
    a = torch.zeros(2, 3, 16, 16)  # 0 in [-1, 1] -> 0.5 on [0, 1]
    b = a + 0.2  # +0.1 on [0, 1]: MSE 0.01 -> 20 dB, L1 0.1
    assert l1(a, b) == pytest.approx(0.1)
    assert psnr(a, b) == pytest.approx(20.0)
    assert psnr(a, a) == 100.0
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-6)
    assert ssim(x, -x) < 0.5
    u8 = ((x + 1) * 127.5).round().to(torch.uint8)
    m = paired_metrics(u8, u8)
    assert m["l1"] == 0 and m["psnr"] == 100.0
    with pytest.raises(GanforgeError, match="same shape"):
        l1(a, b[:1])
    with pytest.raises(GanforgeError, match="unknown paired metric"):
        paired_metrics(a, b, ("nope",))


# --- parsing ----------------------------------------------------------------------------------


def test_parse_metrics():
    assert parse_metrics("fid, KID,precision") == ("fid", "kid", "pr")
    with pytest.raises(GanforgeError, match="unknown metric 'fidd'"):
        parse_metrics("fidd")


def test_score_features_runs_every_metric():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(200, 6, generator=g), torch.randn(200, 6, generator=g)
    probs = torch.softmax(torch.randn(200, 4, generator=g) * 3, 1)
    m = score_features(real, fake, parse_metrics(None), probs, probs, torch.ones(4),
                       probs.argmax(1))
    for key in ("fid", "fid_std", "kid", "kid_std", "is", "is_std",
                "precision", "recall", "density", "coverage", "classes_covered", "class_kl",
                "cond_acc"):
        assert key in m and math.isfinite(m[key]), key
    assert 0 < m["fid_std"] < m["fid"]
    assert m["cond_acc"] == 1.0


# --- Inception weights ------------------------------------------------------------------------


@pytest.fixture
def no_inception(tmp_path, monkeypatch):
    """An empty torch hub cache, no env var, and a download that fails as it does offline."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(feats.INCEPTION_ENV, raising=False)

    def offline(*a, **k):
        raise OSError("<urlopen error [Errno -2] Name or service not known>")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path


def test_missing_inception_weights_say_where_to_put_them(no_inception):
    with pytest.raises(GanforgeError) as e:
        feats.find_inception_weights()
    msg = str(e.value)
    assert feats.INCEPTION_URL in msg and str(feats.inception_cache_path()) in msg
    assert "\n" not in msg and "download failed" in msg
    with pytest.raises(GanforgeError, match="not found"):
        feats.find_inception_weights(no_inception / "nope.pth")


def test_inception_weights_are_checked_by_hash(no_inception, monkeypatch):
    bad = no_inception / "weights.pth"
    bad.write_bytes(b"not the weights")
    with pytest.raises(GanforgeError, match="is not the FID Inception weights"):
        feats.find_inception_weights(bad)
    monkeypatch.setenv(feats.INCEPTION_ENV, str(bad))
    with pytest.raises(GanforgeError, match="SHA-256"):
        feats.find_inception_weights()


def test_auto_features_fall_back_to_the_digits_classifier_offline(no_inception):
    space = feats.feature_space("auto", "digits")
    assert isinstance(space, feats.ClassifierFeatures) and "not Inception" in space.name
    with pytest.raises(GanforgeError, match="ganforge features train"):
        feats.feature_space("auto", "/some/folder")


# --- caching ----------------------------------------------------------------------------------


class CountingSpace(feats.FeatureSpace):
    name, key = "mean colour", "test-mean"

    def __init__(self):
        self.calls = 0

    def extract(self, images):
        self.calls += 1
        return images.float().mean((2, 3)), None


def test_real_features_are_cached_by_content_and_size():
    images = torch.randint(0, 255, (40, 3, 8, 8), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    space = CountingSpace()
    a, _ = real_features(space, images, 30)
    b, _ = real_features(space, images, 30)
    assert space.calls == 1 and torch.equal(a, b) and a.shape == (30, 3)
    real_features(space, images, 20)  # another sample count: computed again
    images2 = images.clone()
    images2[0, 0, 0, 0] ^= 1  # one pixel differs: another cache entry
    real_features(space, images2, 30)
    assert space.calls == 3


# --- CLI --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny):
    r = tmp_path_factory.mktemp("eval") / "run"
    assert main(["train", "--max-steps", "4", "--out", str(r), "-q", "eval_every=2",
                 "eval_n=100", *tiny]) == 0
    return r


def test_train_with_eval_every_logs_metrics_and_keeps_best(run):
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [x for x in lines if "eval/fid" in x]
    assert [x["step"] for x in evals] == [2, 4]
    best = run / "checkpoints" / "best"
    assert (best / "G.safetensors").is_file() and (best / "state.pt").is_file()
    from ganforge import checkpoint as ck

    st = ck.load_state(best)
    assert st["best_eval"]["metric"] == "fid"
    assert st["best_eval"]["value"] == min(x["eval/fid"] for x in evals)
    assert ck.latest_checkpoint(run).name == "step_00000004"  # best never becomes latest


def test_eval_cli_offline_with_classifier_features(run, capsys):
    assert main(["eval", str(run), "--n", "200", "--metrics", "fid,kid,pr,classes"]) == 0
    report = json.loads((run / "eval.json").read_text())
    assert "classifier features" in report["features"] and report["n"] == 200
    for k in ("fid", "kid", "precision", "recall", "classes_covered", "class_kl"):
        assert k in report["metrics"]
    out = capsys.readouterr().out
    assert "FID" in out and "not Inception" in out
    assert main(["eval", str(run), "--n", "100", "--checkpoint", "best",
                 "--metrics", "fid"]) == 0


def _cli(*args, env=None):
    proc = subprocess.run([sys.executable, "-m", "ganforge", *map(str, args)],
                          capture_output=True, text=True, env={**os.environ, **(env or {})})
    return proc.returncode, proc.stdout, proc.stderr


def test_eval_cli_missing_inception_weights_is_one_line(run, tmp_path):
    code, out, err = _cli("eval", run, "--features", "inception", "--n", "50",
                          env={"TORCH_HOME": str(tmp_path / "t"), "https_proxy": "http://0.0.0.0:9",
                               "HTTPS_PROXY": "http://0.0.0.0:9"})
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2 and "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("error: ") and feats.INCEPTION_URL in err


def _folder(root, n, shift, classes=("a", "b")):
    rng = np.random.default_rng(shift)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            arr = np.clip(rng.normal(100 + 60 * classes.index(c) + shift, 20, (20, 20)), 0, 255)
            Image.fromarray(arr.astype(np.uint8)).save(root / c / f"{i}.png")
    return root


def test_features_train_then_eval_folders(tmp_path, capsys):
    real = _folder(tmp_path / "real", 30, 0)
    fake = _folder(tmp_path / "fake", 20, 5)
    f = tmp_path / "feats.safetensors"
    assert main(["features", "train", "--data", str(real), "--out", str(f), "--epochs",
                 "2"]) == 0
    assert f.is_file() and f.with_suffix(".json").is_file()
    assert main(["eval", "--real", str(real), "--fake", str(fake), "--features", str(f),
                 "--metrics", "fid,pr,classes"]) == 0
    out = capsys.readouterr().out
    assert "FID" in out and "precision" in out and str(f) in out
    assert main(["eval", "--real", str(real)]) == 2  # --fake missing: one-line error


def test_eval_vector_run(tmp_path):
    r = tmp_path / "toy"
    assert main(["train", "--preset", "toy", "--data", "ring8", "--max-steps", "20",
                 "--out", str(r), "-q", "hidden=16", "batch_size=32", "log_every=10"]) == 0
    assert main(["eval", str(r), "--n", "300"]) == 0
    m = json.loads((r / "eval.json").read_text())["metrics"]
    for k in ("modes", "high_quality", "reverse_kl", "precision", "recall", "coverage"):
        assert k in m


def test_best_eval_survives_resume(tmp_path, tiny):
    from ganforge import checkpoint as ck

    r = tmp_path / "run"
    assert main(["train", "--max-steps", "2", "--out", str(r), "-q", "eval_every=2",
                 "eval_n=60", *tiny]) == 0
    first = ck.load_state(r / "checkpoints" / "best")["best_eval"]
    assert main(["train", "--resume", str(r), "--max-steps", "4", "-q"]) == 0
    st = ck.load_state(ck.latest_checkpoint(r))
    assert st["best_eval"]["value"] <= first["value"]  # FID: the best can only go down
    assert st["best_eval"]["step"] in (2, 4)


def test_inception_features_wiring_with_stand_in_weights(tmp_path, monkeypatch):
    """The real weights are not reachable offline: random weights of the same network check
    our side (file lookup, gray -> RGB, uint8 in, 2048-d features and 1008-way
    probabilities out)."""
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    monkeypatch.setattr(tfi, "load_state_dict_from_url", lambda *a, **k: None)
    monkeypatch.setattr(torch.nn.Module, "load_state_dict", lambda self, sd, *a, **k: None)
    net = tfi.FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"])
    monkeypatch.undo()
    path = tmp_path / "stand-in.pth"
    torch.save(net.state_dict(), path)
    with pytest.raises(GanforgeError, match="is not the FID Inception weights"):
        feats.InceptionFeatures(path)
    monkeypatch.setenv(feats.SKIP_HASH_ENV, "1")
    space = feats.InceptionFeatures(path)
    images = torch.randint(0, 255, (3, 1, 32, 32), dtype=torch.uint8)
    f, p = space(images)
    assert f.shape == (3, 2048) and p.shape == (3, 1008)
    assert torch.allclose(p.sum(1), torch.ones(3), atol=1e-5)
    assert "Inception" in space.name
