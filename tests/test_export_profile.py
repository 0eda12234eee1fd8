"""ONNX export checked under ONNX Runtime; profiling reports on every backend this machine has."""
import json

import onnx
import pytest
import torch

import nss
from nss.cli import main
from nss.deploy.export import export_onnx
from nss.deploy.profile import count_flops, profile_network, tensorrt_available
from search_spaces import Architecture, get_size, get_space, list_spaces
from supernet import build_network

from conftest import tiny_config

TINY = get_size("tiny")


@pytest.mark.parametrize("preset", list_spaces())
def test_exported_supernet_matches_pytorch_under_onnx_runtime(tmp_path, preset):
    network = build_network(get_space(preset), TINY)
    report = export_onnx(network, tmp_path / "m.onnx", 32, 32)
    onnx.checker.check_model(str(tmp_path / "m.onnx"))
    assert report["max_abs_diff"] <= 1e-4 and report["opset"] >= 17 and report["precision"] == "fp32"
    assert [o["name"] for o in report["outputs"]] == list(network.heads)
    assert [i["name"] for i in report["inputs"]] == ["previous", "current"]


def test_fp16_and_streaming_graphs(tmp_path):
    network = build_network(get_space("most_net_plus"), TINY)
    half = export_onnx(network, tmp_path / "h.onnx", 32, 32, fp16=True)
    assert half["precision"] == "fp16" and half["max_abs_diff"] < 1e-2
    stream = export_onnx(network, tmp_path / "s.onnx", 32, 32, streaming=True)
    assert [i["name"] for i in stream["inputs"]] == ["current", "previous_features_1", "previous_features_2",
                                                     "previous_features_3"]
    assert stream["max_abs_diff"] <= 1e-4


def test_nss_export_writes_the_model_and_its_report(tmp_path, capsys):
    arch = Architecture(get_space("most_net_pp"), ("restoration@1", "restoration@3", "segmentation@2",
                                                   "segmentation@3", "homography@3"))
    nss.save_architecture(tmp_path / "arch.json", arch)
    run = nss.retrain(tiny_config(architecture=str(tmp_path / "arch.json"), retrain_steps=2, val_every=2),
                      out=tmp_path / "run", progress=False)
    out = tmp_path / "model.onnx"
    assert main(["export", str(run), "--out", str(out)]) == 0
    report = json.loads((tmp_path / "model.onnx.json").read_text())
    assert report["max_abs_diff"] <= 1e-4 and [o["name"] for o in report["outputs"]] == list(arch.heads)
    assert report["input_size"] == [32, 32] and "max abs diff" in capsys.readouterr().out
    assert main(["export", str(run), "--out", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err


def test_pruning_shows_in_parameters_and_flops():
    space = get_space("most_net_plus")
    full = build_network(space, TINY)
    pruned = build_network(Architecture(space, space.fixed), TINY)
    assert count_flops(pruned, 32, 32) < count_flops(full, 32, 32)
    # FLOPs of a single 3×3 convolution, by hand: 2 · C_in · C_out · 9 · H · W
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    with torch.utils.flop_counter.FlopCounterMode(display=False) as counter:
        conv(torch.zeros(1, 3, 8, 8))
    assert counter.get_total_flops() == 2 * 3 * 4 * 9 * 8 * 8


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_profile_report(backend):
    network = build_network(get_space("most_net_plus"), TINY)
    report = profile_network(network, height=32, width=32, backend=backend, iters=7, warmup=1)
    assert report["iters"] == 7 and report["params"] == sum(p.numel() for p in network.parameters())
    latency = report["latency_ms"]
    assert 0 < latency["median"] <= latency["p90"] <= latency["p99"] and latency["cv"] >= 0
    assert report["fps"] == pytest.approx(1e3 / latency["median"])
    assert report["streaming_latency_ms"]["median"] > 0
    assert {"backend", "precision", "device", "input_size", "flops"} <= set(report)


def test_nss_profile_on_a_space_name_writes_here(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["profile", "most_net_plus", "--network", "tiny", "--size", "32x32", "--iters", "3",
                 "--backend", "auto", "--device", "cpu"]) == 0
    report = json.loads((tmp_path / "profile.json").read_text())
    assert report["backend"] == ("tensorrt" if tensorrt_available() is None else "torch")
    captured = capsys.readouterr()
    if tensorrt_available() is not None:
        assert "TensorRT not used" in captured.err
    assert main(["profile", "most_net_plus", "--size", "30x32"]) == 1
    assert "multiples of 16" in capsys.readouterr().err


def test_a_compiled_profile_times_the_compiled_network(tmp_path, capsys):
    out = tmp_path / "profile.json"
    assert main(["profile", "most_net_plus", "--network", "tiny", "--size", "32x32", "--iters", "3", "--warmup", "1",
                 "--backend", "torch", "--device", "cpu", "--compile", "eager", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["compile"] == "eager" and not report["cuda_graphs"] and report["latency_ms"]["median"] > 0
    assert "compiled with eager" in capsys.readouterr().out
    for flags, message in ((["--backend", "onnxruntime"], "--compile aot_eager: compiles the torch backend's"),
                           (["--per-head"], "--compile aot_eager: times one network; --per-head times dozens")):
        assert main(["profile", "most_net_plus", "--network", "tiny", "--size", "32x32", "--compile", "aot_eager",
                     "--device", "cpu", "--out", str(tmp_path / "bad.json"), *flags]) == 1
        assert capsys.readouterr().err.startswith(f"nss: error: {message}")
        assert not (tmp_path / "bad.json").exists()


@pytest.mark.skipif(tensorrt_available() is None, reason="TensorRT and a GPU are present")
def test_tensorrt_unavailable_is_one_clear_line(capsys):
    assert main(["profile", "most_net_plus", "--backend", "tensorrt", "--network", "tiny", "--size", "32x32"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("nss: error: --backend tensorrt: unavailable here (") and "\n" not in err


@pytest.mark.skipif(tensorrt_available() is not None, reason=f"needs TensorRT and a GPU ({tensorrt_available()})")
def test_tensorrt_fp16_profile():
    network = build_network(get_space("most_net_plus"), TINY)
    report = profile_network(network, height=64, width=64, backend="tensorrt", iters=100, warmup=10)
    assert report["precision"] == "fp16" and report["device"].startswith("cuda") and report["iters"] == 100


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_torch_fp16_profile_on_the_gpu():
    network = build_network(get_space("most_net_plus"), TINY)
    report = profile_network(network, height=64, width=64, backend="torch", device="cuda", fp16=True, iters=20)
    assert report["precision"] == "fp16" and report["latency_ms"]["median"] > 0 and report["cuda_graphs"]


def test_bad_targets_get_one_line_errors(tmp_path, capsys):
    def fails(argv, message):
        assert main(argv) == 1
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, err

    fails(["evaluate", str(tmp_path / "nowhere")], "not a run folder")
    fails(["export", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m.onnx")], "not a run folder")
    fails(["profile", str(tmp_path / "missing.json")], "missing.json: file not found")
    fails(["profile", "no_such_space"], "unknown space 'no_such_space'")
    heads_of_another_space = "restoration@3,segmentation@3,flow@3"
    fails(["derive", "--space", "most_net_pp", "--heads", heads_of_another_space, "--out", str(tmp_path / "a.json")],
          "does not have")
    # a run whose checkpoint was trained for another architecture than the one it now names
    space = get_space("most_net_plus")
    nss.save_architecture(tmp_path / "arch.json", Architecture(space, space.fixed))
    run = nss.retrain(tiny_config(architecture=str(tmp_path / "arch.json"), retrain_steps=2, val_every=2),
                      out=tmp_path / "run", progress=False)
    nss.save_architecture(run / "architecture.json", Architecture(space, space.fixed + ("flow@2",)))
    fails(["evaluate", str(run)], "checkpoint was made for another network")


def test_fp16_homography_geometry_holds_at_512(tmp_path):
    # the square-to-quad determinant is about −w·h = −262144 at 512×512, beyond fp16's 65504: the geometry must
    # run in fp32 inside the fp16 graph, or the coarse homography's warp of the finer scales goes wrong
    torch.manual_seed(0)
    network = build_network(get_space("most_net_pp"), TINY)
    with torch.no_grad():
        for head in ("homography@3", "homography@2"):  # a visible perspective, so the geometry matters
            network.heads[head].regress[1].bias.copy_(torch.tensor([2.0, 1.0, -3.0, 2.0, 1.5, -2.5, -1.0, -2.0]))
    report = export_onnx(network, tmp_path / "pp.onnx", 512, 512, fp16=True)
    assert report["max_abs_diff"] < 0.05
