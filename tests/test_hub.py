"""The Hugging Face Hub form of a run: export_hub's folder and card, ganforge.load of the folder
and of "hf:OWNER/NAME", ganforge push. The Hub is never reached: its calls are faked, or made
to fail fast (HF_HUB_OFFLINE, an endpoint nobody listens on)."""

import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import one_error_line as _one_error_line
from PIL import Image
from safetensors.torch import load_file, save_file

import ganforge
from ganforge.cli import main
from ganforge.errors import GanforgeError
from ganforge.generate import TrainedGAN, Translator, load_translator
from ganforge.hub import FILES, export_hub
from ganforge.hub_folder import parse_repo

hf = pytest.importorskip("huggingface_hub")

P2P = ["g_base=4", "d_base=4", "batch_size=4"]
EVAL = {"run": "r", "checkpoint": "step_00000002", "step": 2, "data": "digits", "n": 50,
        "seed": 0, "features": "classifier features (128-d, trained on digits; built-in "
        "digits classifier) - not Inception", "metrics": {"fid": 123.456, "fid_std": 1.5,
                                                          "classes_covered": 7,
                                                          "classes_total": 10}}


ARGS = {"dc": ["--preset", "dcgan", "--max-steps", "4"],
        "cond": ["--preset", "small-data-cond", "--max-steps", "2"],
        "p2p": ["--preset", "pix2pix", "--max-steps", "2", *P2P, "log_every=2",
                "sample_every=2", "checkpoint_every=2"]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny):
    """Tiny runs trained when first asked for: a DCGAN (4 steps), a conditional one
    (small-data-cond, 2 steps: with G_ema and classes) and a pix2pix one (2 steps)."""
    root = tmp_path_factory.mktemp("hub-runs")

    class Runs(dict):
        def __missing__(self, name):
            extra = tiny if name != "p2p" else []
            assert main(["train", *ARGS[name], *extra, "--out", str(root / name), "-q"]) == 0
            self[name] = root / name
            return self[name]

    return Runs()


@pytest.fixture(scope="module")
def dc_hub(runs, tmp_path_factory):
    return export_hub(runs["dc"], tmp_path_factory.mktemp("hub-dc") / "model")


def _card(folder):
    """(front matter as a dict, body) of the folder's README.md."""
    yaml = pytest.importorskip("yaml")
    text = (folder / "README.md").read_text()
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


def _png(path):
    return np.array(Image.open(path))


@pytest.fixture
def no_hub(monkeypatch, tmp_path):
    """huggingface_hub reads HF_HUB_OFFLINE and HF_ENDPOINT once, when imported: set the
    environment (for subprocesses) and its module constants (for this one); cache in tmp."""
    from huggingface_hub import constants

    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.setattr(constants, name, str(tmp_path / "hf-cache"), raising=False)

    def offline(on: bool = True, endpoint: str | None = None):
        monkeypatch.setenv("HF_HUB_OFFLINE", "1" if on else "0")
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", on)
        if endpoint:
            monkeypatch.setenv("HF_ENDPOINT", endpoint)
            monkeypatch.setattr(constants, "ENDPOINT", endpoint)

    return offline


def test_export_dcgan_folder_card_grid_and_same_samples(runs, dc_hub, tmp_path):
    run, out = runs["dc"], dc_hub
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)  # digits runs keep classes
    cfg = ganforge.Config.load(out / "config.json")  # the "ganforge" block does not get in
    block = json.loads((out / "config.json").read_text())["ganforge"]
    assert block["kind"] == "noise" and block["step"] == 4 and block["nets"] == {"G": "G"}
    assert block["images_seen"] == 64 and block["checkpoint"] == "step_00000004"
    assert cfg.preset == "dcgan" and cfg.model.resolution == 32
    keys = load_file(str(out / "model.safetensors"))
    assert keys and all(k.startswith("G.") for k in keys)  # the generator only: no D
    meta, body = _card(out)
    assert meta["license"] == "other" and meta["library_name"] == "ganforge"
    assert {"gan", "ganforge", "dcgan", "unconditional-image-generation"} <= set(meta["tags"])
    assert meta["pipeline_tag"] == "unconditional-image-generation"
    assert "![samples](samples.png)" in body and "No metrics were measured" in body
    assert "`ganforge eval RUN`" in body and "training data" in body
    assert "32x32" in body and "4 steps" in body and "digits" in body
    a, b = ganforge.load(out), ganforge.load(run)
    assert isinstance(a, TrainedGAN) and a.step == b.step == 4
    assert torch.equal(a.sample(4, seed=1), b.sample(4, seed=1))
    # the grid is what the card's command draws
    assert main(["sample", str(out), "--n", "64", "--seed", "0", "--out", str(tmp_path / "s")]) == 0
    assert np.array_equal(_png(out / "samples.png"), _png(tmp_path / "s" / "grid.png"))


def test_info_on_a_hub_folder_reads_its_block(dc_hub, capsys):
    capsys.readouterr()
    assert main(["info", str(dc_hub), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["step"] == 4 and rep["images_seen"] == 64 and rep["train_seconds"] > 0
    assert rep["checkpoint"].startswith("step_00000004") and "Hub folder" in rep["checkpoint"]


def test_export_conditional_with_metrics_license_and_ema(runs, tmp_path):
    run, out = runs["cond"], tmp_path / "hub"
    (run / "eval.json").write_text(json.dumps(EVAL))
    try:
        export_hub(run, out, license="MIT", repo="alice/digits-cond")
    finally:
        (run / "eval.json").unlink()
    block = json.loads((out / "config.json").read_text())["ganforge"]
    assert block["nets"] == {"G": "G_ema"}  # the EMA generator, as the run samples with
    ema = load_file(str(run / "checkpoints" / "step_00000002" / "G_ema.safetensors"))
    ours = load_file(str(out / "model.safetensors"))
    assert set(ours) == {f"G.{k}" for k in ema} and all(torch.equal(ours[f"G.{k}"], v)
                                                        for k, v in ema.items())
    assert json.loads((out / "classes.json").read_text()) == [str(i) for i in range(10)]
    meta, body = _card(out)
    assert meta["license"] == "mit" and "pipeline_tag" not in meta
    assert "class-conditional-image-generation" in meta["tags"]
    assert EVAL["features"] in body  # the feature space named as eval.json names it
    assert "| fid | 123.5 ± 1.5 |" in body and "| classes_covered | 7/10 |" in body
    assert "10 classes" in body and 'ganforge.load("hf:alice/digits-cond")' in body
    a, b = ganforge.load(out), ganforge.load(run)
    assert torch.equal(a.sample(4, seed=1, c=3), b.sample(4, seed=1, c=3))
    assert torch.equal(a.sample(4, seed=2, c="7"), b.sample(4, seed=2, c="7"))
    s = tmp_path / "s"
    assert main(["sample", str(out), "--by-class", "--n", "8", "--seed", "0", "--out",
                 str(s)]) == 0
    assert np.array_equal(_png(out / "samples.png"), _png(s / "grid.png"))  # a row per class
    assert _png(out / "samples.png").shape[:2] == (10 * 34 + 2, 8 * 34 + 2)


def test_export_pix2pix_translates_as_the_run(runs, tmp_path):
    run, out = runs["p2p"], tmp_path / "hub"
    export_hub(run, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(set(FILES) - {"classes.json"})
    meta, body = _card(out)
    assert meta["pipeline_tag"] == "image-to-image" and "pix2pix" in meta["tags"]
    assert "input | output | target" in body and "ganforge translate" in body
    grid = _png(out / "samples.png")
    assert grid.shape[:2] == (6 * 34 + 2, 3 * 34 + 2)  # 6 held-out rows of 3
    a, b = ganforge.load(out), load_translator(run)
    assert isinstance(a, Translator) and isinstance(load_translator(out), Translator)
    x = torch.rand(2, 1, 40, 24, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert torch.equal(a.translate(x), b.translate(x))
    img = tmp_path / "in" / "a.png"
    img.parent.mkdir()
    Image.fromarray(np.full((20, 28), 200, np.uint8)).save(img)
    assert main(["translate", str(out), "--input", str(img.parent), "--out",
                 str(tmp_path / "o")]) == 0
    assert Image.open(tmp_path / "o" / "a.png").size == (28, 20)


def test_export_refusals_and_replacing_an_earlier_export(runs, tmp_path, capsys):
    run = runs["dc"]
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(GanforgeError, match="not empty and is not a ganforge Hub folder"):
        export_hub(run, busy)
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]  # untouched
    with pytest.raises(GanforgeError, match="license id"):
        export_hub(run, tmp_path / "x", license="MIT License")
    assert not (tmp_path / "x").exists()
    out = tmp_path / "hub"
    (out / ".git").mkdir(parents=True)  # a clone of an empty Hub repository is fine
    export_hub(run, out, checkpoint="step_00000002")
    assert json.loads((out / "config.json").read_text())["ganforge"]["step"] == 2
    (out / "generated").mkdir()
    export_hub(run, out)  # an earlier export is replaced in place, other files kept
    assert json.loads((out / "config.json").read_text())["ganforge"]["step"] == 4
    assert (out / "generated").is_dir() and (out / ".git").is_dir()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    with pytest.raises(GanforgeError, match="Hub model already"):
        export_hub(out, tmp_path / "again")
    with pytest.raises(GanforgeError, match="drop --checkpoint"):
        ganforge.load(out, checkpoint="step_00000002")
    with pytest.raises(GanforgeError, match="generator only"):
        ganforge.load(out).sample_rejection(4)
    assert main(["translate", str(out), "--input", str(tmp_path), "--out",
                 str(tmp_path / "t")]) == 2
    _one_error_line(capsys, "generates from noise", "ganforge sample")


def test_hostile_or_broken_weights_are_one_line_errors(dc_hub, tmp_path):
    def copy(name):
        d = tmp_path / name
        shutil.copytree(dc_hub, d)
        return d

    bad = copy("garbage")
    (bad / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(GanforgeError, match="unreadable"):
        ganforge.load(bad)
    pickled = copy("pickle")  # a pickle under the safetensors name is never unpickled
    torch.save({"G.x": torch.zeros(1)}, pickled / "model.safetensors")
    with pytest.raises(GanforgeError, match="unreadable"):
        ganforge.load(pickled)
    extra = copy("extra")
    t = load_file(str(extra / "model.safetensors"))
    save_file({**t, "D.weight": torch.zeros(2)}, str(extra / "model.safetensors"))
    with pytest.raises(GanforgeError, match="'D.weight', not a weight"):
        ganforge.load(extra)
    other = copy("other")
    d = json.loads((other / "config.json").read_text())
    d["model"]["g_channel_base"] *= 2
    (other / "config.json").write_text(json.dumps(d))
    with pytest.raises(GanforgeError, match="does not fit the model built from config.json"):
        ganforge.load(other)
    newer = copy("newer")
    d = json.loads((newer / "config.json").read_text())
    d["ganforge"]["format"] = 99
    (newer / "config.json").write_text(json.dumps(d))
    with pytest.raises(GanforgeError, match="upgrade ganforge"):
        ganforge.load(newer)


def test_hf_spec_loads_through_snapshot_download(runs, dc_hub, monkeypatch, tmp_path, capsys):
    calls = []

    def fake(repo_id, revision=None, allow_patterns=None, **kw):
        calls.append((repo_id, revision, sorted(allow_patterns)))
        return str(dc_hub)

    monkeypatch.setattr(hf, "snapshot_download", fake)
    g = ganforge.load("hf:alice/digits-dcgan@v1")
    assert calls == [("alice/digits-dcgan", "v1",
                      ["classes.json", "config.json", "model.safetensors"])]
    assert torch.equal(g.sample(4, seed=1), ganforge.load(runs["dc"]).sample(4, seed=1))
    assert main(["sample", "hf:alice/digits-dcgan", "--n", "3", "--out",
                 str(tmp_path / "s")]) == 0
    assert len(list((tmp_path / "s").glob("0*.png"))) == 3
    # a model on the Hub has no folder of the user's to write into: --out is needed
    for cmd in (["sample", "hf:alice/digits-dcgan", "--n", "3"],
                ["interpolate", "hf:alice/digits-dcgan"]):
        capsys.readouterr()
        assert main(cmd) == 2
        _one_error_line(capsys, "hf:alice/digits-dcgan", "give --out")
    assert not list(tmp_path.glob("hf:*")) and not Path("hf:alice").exists()
    monkeypatch.setattr(hf, "snapshot_download", lambda *a, **k: str(tmp_path / "s"))
    with pytest.raises(GanforgeError, match="not a ganforge model"):
        ganforge.load("hf:alice/some-other-model")

    class RepositoryNotFoundError(Exception):  # classified by name, as huggingface_hub's
        pass

    def missing(*a, **k):
        raise RepositoryNotFoundError("404")

    monkeypatch.setattr(hf, "snapshot_download", missing)
    capsys.readouterr()
    assert main(["sample", "hf:alice/nope", "--out", str(tmp_path / "n")]) == 2
    _one_error_line(capsys, "alice/nope", "check the name")


def test_hf_spec_without_network_or_library_is_one_line(no_hub, monkeypatch, tmp_path, capsys):
    no_hub(True)
    assert main(["sample", "hf:alice/digits-dcgan", "--out", str(tmp_path / "s")]) == 2
    _one_error_line(capsys, "hf:alice/digits-dcgan", "HF_HUB_OFFLINE", "pass its path")
    no_hub(False, "http://127.0.0.1:9")  # nobody listens there: refused at once
    assert main(["sample", "hf:alice/digits-dcgan@main", "--out", str(tmp_path / "s")]) == 2
    _one_error_line(capsys, "hf:alice/digits-dcgan", "no connection", "pass its path")
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # not installed
    with pytest.raises(GanforgeError, match=r'pip install "ganforge\[hub\]"'):
        ganforge.load("hf:alice/digits-dcgan")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("name", ["alice", "alice/", "/x", "a/b/c", "alice/na me", "-a/b",
                                  "a/b-", "a/b--c", "alice/x@", "alice/x@../y", "hf:"])
def test_bad_repository_names_are_refused(name):
    with pytest.raises(GanforgeError, match="Hub model name|after @"):
        parse_repo(name)


def test_repository_names_parse():
    assert parse_repo("hf:alice/digits.v2_x@refs/pr/1") == ("alice/digits.v2_x", "refs/pr/1")
    assert parse_repo("alice/x") == ("alice/x", None)
    with pytest.raises(GanforgeError, match="drop @main"):
        parse_repo("alice/x@main", revision_ok=False)


class FakeApi:
    calls: list = []

    def __init__(self, *a, **k):
        pass

    def create_repo(self, repo_id, **kw):
        FakeApi.calls.append(("create", repo_id, kw))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, **kw):
        folder = Path(kw["folder_path"])
        files = sorted(p.name for p in folder.iterdir())
        card = (folder / "README.md").read_text()
        FakeApi.calls.append(("upload", kw, files, card))


def test_push_uploads_the_exported_folder(runs, dc_hub, monkeypatch, tmp_path, capsys):
    FakeApi.calls = []
    monkeypatch.setattr(hf, "HfApi", FakeApi)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert main(["push", str(runs["dc"]), "alice/digits-dcgan", "--token", "hf_test",
                 "--private", "--license", "apache-2.0"]) == 0
    assert capsys.readouterr().out.strip() == "https://huggingface.co/alice/digits-dcgan"
    (_, repo, create), (_, up, files, card) = FakeApi.calls
    assert repo == "alice/digits-dcgan" and create["private"] is True
    assert create["token"] == "hf_test" and create["exist_ok"] is True
    assert up["repo_id"] == "alice/digits-dcgan" and up["token"] == "hf_test"
    assert up["delete_patterns"] == []  # all five files are there
    assert files == sorted(FILES) and "license: apache-2.0" in card
    assert 'ganforge.load("hf:alice/digits-dcgan")' in card
    assert not list(tmp_path.iterdir())  # the temporary folder is gone
    FakeApi.calls = []
    assert main(["push", str(dc_hub), "alice/again", "--token", "hf_test"]) == 0
    assert FakeApi.calls[1][1]["folder_path"] == str(dc_hub)  # an export goes up as it is
    assert main(["push", str(dc_hub), "alice/again", "--license", "mit"]) == 2


def test_push_failures_are_one_line(runs, no_hub, monkeypatch, tmp_path, capsys):
    run = str(runs["dc"])
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hf, "get_token", lambda: None)
    assert main(["push", run, "alice/x"]) == 2
    _one_error_line(capsys, "not logged in", "huggingface-cli login", "--token")
    for bad in ("alice", "alice/x@main", "a/b/c"):
        assert main(["push", run, bad, "--token", "t"]) == 2
        capsys.readouterr()
    no_hub(False, "http://127.0.0.1:9")  # the real client, no Hub to reach
    assert main(["push", run, "alice/x", "--token", "hf_test"]) == 2
    _one_error_line(capsys, "could not reach the Hugging Face Hub", "alice/x")
    no_hub(True)
    assert main(["push", run, "alice/x", "--token", "hf_test"]) == 2
    _one_error_line(capsys, "HF_HUB_OFFLINE")

    class Refused(Exception):
        response = type("R", (), {"status_code": 401})()

    class Api(FakeApi):
        def create_repo(self, repo_id, **kw):
            raise Refused("401 Client Error: Unauthorized")

    monkeypatch.setattr(hf, "HfApi", Api)
    assert main(["push", run, "alice/x", "--token", "hf_bad"]) == 2
    _one_error_line(capsys, "refused the token", "HTTP 401", "huggingface-cli login")
    assert not list(tmp_path.iterdir())  # no temporary folder left behind


def test_published_folders_name_local_data_by_its_last_component_only():
    from ganforge import build_config
    from ganforge.hub import public_config, public_source

    assert public_source("/home/ann/photos/") == "photos"
    assert public_source("C:\\Users\\ann\\faces") == "faces"
    for spec in ("digits", "mnist:test", "hf:ann/faces", "ring8"):
        assert public_source(spec) == spec
    cfg = build_config("dcgan", {"source": "/home/ann/photos", "init": "/srv/runs/a/step_9"})
    pub = public_config(cfg)
    assert (pub.data.source, pub.train.init) == ("photos", "step_9")
    assert cfg.data.source == "/home/ann/photos"  # the run's own config is untouched
