"""`ganforge export` / ganforge.export: ONNX and TorchScript files of a run's generator or
translator, checked against the PyTorch sampler on batch sizes (and image sizes) other than
the ones they were exported with; metadata; the parity check failing; refused options."""

import re
import sys

import pytest
import torch
from test_zoo import _small

import ganforge
from ganforge import export
from ganforge.cli import main
from ganforge.nets.img2img import padded_call

FORMATS = ["onnx", "torchscript"]
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}
I2I = ["sample_every=0", "checkpoint_every=0", "log_every=1"]
ARGS = {  # tiny runs, one training step each (noise: tests/test_zoo.py, img2img: test_img2img)
    "dc": ["--preset", "dcgan", "g_channel_base=128", "d_channel_base=128", "batch_size=16"],
    "sg": ["--preset", "stylegan2-small", *_small("stylegan2-small")],
    "bg": ["--preset", "biggan-small", *_small("biggan-small")],
    "toy": ["--preset", "toy", "hidden=16", "batch_size=32"],
    "p2p": ["--preset", "pix2pix", "g_base=4", "d_base=4", "batch_size=4", *I2I],
    "sr": ["--preset", "srgan", "g_base=8", "d_base=4", "n_blocks=1", "batch_size=4",
           "warmup_steps=2", "warmup=0", "content=pixel", *I2I],
    "cyc": ["--preset", "cyclegan", "g_base=4", "d_base=4", "n_blocks=1", "batch_size=2",
            "pool_size=3", *I2I],
}
INPUTS = {"dc": ["z"], "sg": ["z", "truncation"], "bg": ["z", "class"], "toy": ["z"]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``runs(name)``: the run folder, trained (one step) when first asked for."""
    root = tmp_path_factory.mktemp("export")
    done = {}

    def get(name):
        if name not in done:
            torch.manual_seed(0)
            run = root / name
            assert main(["train", *ARGS[name], "--max-steps", "1", "--out", str(run),
                         "-q"]) == 0
            done[name] = run
        return done[name]

    return get


@pytest.fixture(scope="module")
def exported(runs):
    """``exported(name, fmt)``: the report of the run's export in that format (made once)."""
    done = {}

    def get(name, fmt):
        if fmt == "onnx":
            pytest.importorskip("onnxruntime")
        if (name, fmt) not in done:
            run = runs(name)
            fn = export.export_onnx if fmt == "onnx" else export.export_torchscript
            done[name, fmt] = fn(run, run / "export" / f"model{SUFFIX[fmt]}",
                                 direction="BtoA" if name == "cyc" else None)
        return done[name, fmt]

    return get


def _run_file(path, fmt, names, inputs):
    """The exported file run on its own (onnxruntime on the CPU / torch.jit.load)."""
    if fmt == "onnx":
        import onnxruntime as ort

        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        assert [i.name for i in sess.get_inputs()] == names
        return torch.from_numpy(sess.run(None, {n: x.numpy() for n, x in zip(names, inputs)})[0])
    with torch.no_grad():
        return torch.jit.load(path)(*inputs)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", ["dc", "sg", "bg", "toy"])
def test_noise_export_matches_the_sampler_at_another_batch_size(name, fmt, runs, exported):
    rep = exported(name, fmt)
    assert rep["max_abs_diff"] <= 1e-4 and rep["tolerance"] == 1e-4
    names = [x["name"] for x in rep["inputs"]]
    assert names == INPUTS[name]
    g = ganforge.load(runs(name), device="cpu")
    n = 5  # neither the export's batch (2) nor the check's (3)
    z = g.noise(n, seed=1)
    c = g.labels(n) if g.num_classes else None
    psi = 0.7 if g.is_style else None
    inputs = [z] + ([c] if c is not None else []) + ([torch.tensor([psi])] if psi else [])
    want = g.generate(z, c, truncation=psi, noise_mode="const")
    want = want if g.is_vector else want.clamp(-1, 1)
    got = _run_file(rep["path"], fmt, names, inputs)
    assert got.shape == want.shape
    assert (got - want).abs().max() <= 1e-4
    if g.is_style:  # truncation is a live input: psi = 0 gives the mean image for every z
        mean = _run_file(rep["path"], fmt, names, [z, torch.tensor([0.0])])
        assert (mean - mean[:1]).abs().max() < 1e-5 and (mean[0] - got[0]).abs().max() > 1e-3


@pytest.mark.parametrize("name,fmt", [
    *[(n, f) for n in ("p2p", "sr") for f in FORMATS], ("cyc", "torchscript"),
    pytest.param("cyc", "onnx", marks=pytest.mark.slow)])  # ONNX of CycleGAN's F: +8 s
def test_translator_export_takes_any_batch_and_image_size(name, fmt, runs, exported):
    rep = exported(name, fmt)
    assert rep["max_abs_diff"] <= 1e-4
    t = ganforge.load(runs(name), device="cpu")
    net = t.F if name == "cyc" else t.G
    s = t.scale
    gen = torch.Generator().manual_seed(1)
    # odd sizes, none a multiple of the U-Net's 32; 5x70 is too short to reflect (replicated)
    for n, h, w in [(1, 23, 50), (4, 37, 45), (2, 5, 70)]:
        x = torch.rand(n, t.in_channels, h, w, generator=gen) * 2 - 1
        with torch.no_grad():
            want = padded_call(net, x).clamp(-1, 1)
        got = _run_file(rep["path"], fmt, ["image"], [x])
        assert got.shape == (n, t.out_channels, h * s, w * s)
        assert (got - want).abs().max() <= 1e-4, (n, h, w)


@pytest.mark.parametrize("h,w", [(32, 32), (37, 45), (5, 70), (1, 1), (3, 40), (9, 17)])
def test_padding_in_the_graph_is_padded_calls_padding(h, w):
    class Seen(torch.nn.Module):
        size_multiple = 8

        def forward(self, x):
            self.x = x
            return x

    net, x = Seen(), torch.randn(2, 3, h, w)
    padded_call(net, x)
    assert torch.equal(export.pad_to_multiple(x, 8), net.x)
    assert torch.equal(torch.jit.script(export.pad_to_multiple)(x, 8), net.x)


def test_metadata_travels_in_both_formats(exported):
    for fmt in FORMATS:
        meta = export.read_metadata(exported("bg", fmt)["path"])
        assert meta["preset"] == "biggan-small" and meta["step"] == 1
        assert meta["ganforge_version"] == ganforge.__version__
        assert meta["class_names"] == [str(i) for i in range(10)]
        assert [x["name"] for x in meta["inputs"]] == ["z", "class"]
        assert meta["outputs"][0]["shape"] == ["N", 1, 32, 32]
        assert meta["value_range"] == [-1, 1] and "not an input" in meta["truncation"]
    meta = export.read_metadata(exported("sr", "onnx")["path"])
    assert meta["kind"] == "super-resolution" and meta["scale"] == 4
    assert meta["outputs"][0]["shape"] == ["N", 1, "H*4", "W*4"]
    onnx = pytest.importorskip("onnx")
    props = {p.key: p.value for p in onnx.load(exported("sg", "onnx")["path"]).metadata_props}
    assert props["preset"] == "stylegan2-small" and "psi" in props["inputs"]


def test_cli_writes_the_default_file_and_prints_the_parity_line(runs, capsys):
    pytest.importorskip("onnxruntime")
    run = runs("toy")
    assert main(["export", str(run)]) == 0
    text = capsys.readouterr().out
    assert (run / "export" / "generator.onnx").is_file()
    assert "wrote " in text and "z float32 [N, 16]" in text and "vector float32 [N, 2]" in text
    assert re.search(r"max abs difference vs PyTorch: \S+ \(tolerance 0\.0001\)", text)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_parity_failure_is_one_line_and_leaves_the_file(fmt, runs, monkeypatch, capsys,
                                                          tmp_path):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    real = export._reference
    monkeypatch.setattr(export, "_reference", lambda ex, device="cpu": real(ex, device) + 1e-3)
    out = tmp_path / f"g{SUFFIX[fmt]}"
    argv = ["export", str(runs("toy")), "--format", fmt, "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "differs from PyTorch by 0.001" in err, err
    assert str(out) in err and out.is_file()
    if fmt == "torchscript":  # a looser tolerance accepts it (one format: exports are slow)
        assert main([*argv, "--tolerance", "0.01"]) == 0


@pytest.mark.parametrize("args,words", [
    (["dc", "--out", "x.pt"], "ends in .onnx"),
    (["dc", "--format", "torchscript", "--out", "x.onnx"], "ends in .pt"),
    (["dc", "--license", "mit"], "--license is for --format hub"),
    (["dc", "--direction", "BtoA"], "--direction is for CycleGAN"),
    (["p2p", "--direction", "BtoA"], "one way only"),
    (["dc", "--format", "hub", "--tolerance", "0.1"], "--tolerance is not used"),
    (["dc", "--format", "hub", "--direction", "AtoB"], "--direction is not used"),
    (["dc", "--tolerance", "-1"], "--tolerance -1"),
    (["dc", "--device", "cuda"], "ONNX is exported and checked on the CPU"),
    (["nope"], "not a run folder"),
])
def test_bad_options_are_refused_in_one_line(args, words, runs, capsys, tmp_path):
    run = str(tmp_path / "nope") if args[0] == "nope" else str(runs(args[0]))
    assert main(["export", run, *args[1:]]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err, err


def test_missing_onnxruntime_names_the_extra(runs, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    assert main(["export", str(runs("toy"))]) == 2
    assert 'pip install "ganforge[export]"' in capsys.readouterr().err
