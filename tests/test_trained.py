"""A trained run opened as a model (TrainedModel) from its folder alone: export, evaluation on another data folder,
prediction and the report work once its training data is gone; a search run deploys its derived architecture; and
`nss derive` reads on-probabilities through the run's own relaxation."""
import json
import shutil

import numpy as np
import pytest
import torch

import nss
from nss.cli import main
from nss.data import FolderDataset
from nss.evaluation.evaluate import evaluate
from nss.runs.trained import TrainedModel
from nss.scale_search.derive import derive_architecture
from nss.scale_search.gates import RELAXATIONS, Gates
from search_spaces import Architecture, get_space

from conftest import tiny_config

SPACE = get_space("most_net_plus")
KEPT = ("restoration@1", "restoration@3", "segmentation@2", "segmentation@3", "flow@2", "flow@3")


@pytest.fixture(scope="module")
def moved(tmp_path_factory, synthetic_folder):
    """A retraining and a search trained on a data folder that has since been deleted."""
    root = tmp_path_factory.mktemp("moved")
    data = shutil.copytree(synthetic_folder, root / "data")
    nss.save_architecture(root / "arch.json", Architecture(SPACE, KEPT))
    retrained = nss.retrain(tiny_config(data=str(data), architecture=str(root / "arch.json"), retrain_steps=2,
                                        val_every=2), out=root / "retrain", progress=False)
    searched = nss.search(tiny_config(data=str(data), threshold=0.5), out=root / "search", progress=False)
    shutil.rmtree(data)
    return retrained, searched


def test_export_evaluate_predict_and_report_need_no_training_data(moved, synthetic_folder, tmp_path, capsys):
    retrained, _ = moved
    assert main(["export", str(retrained), "--out", str(tmp_path / "m.onnx")]) == 0
    assert json.loads((tmp_path / "m.onnx.json").read_text())["max_abs_diff"] < 1e-4
    # on another data folder of the same tasks: the network's metrics on that folder's split
    assert main(["evaluate", str(retrained), "--split", "val", "--data", str(synthetic_folder)]) == 0
    written = nss.evaluate_run(retrained, "val", data=synthetic_folder, write=False)
    model = TrainedModel.load(retrained)
    by_hand = evaluate(model.network, model.space, FolderDataset(synthetic_folder, "val"), model.device, 2)
    np.testing.assert_allclose(written["value"], by_hand["value"], rtol=1e-6)
    capsys.readouterr()
    assert main(["evaluate", str(retrained)]) == 1  # its own data is gone: said in one line
    assert "data folder not found" in capsys.readouterr().err
    synthetic = nss.evaluate_run(retrained, "val", data="synthetic", write=False)  # clips at its frame size
    assert set(synthetic.loc[synthetic["model"] == "network", "head"]) == set(KEPT)
    assert main(["predict", str(retrained), "--input", str(synthetic_folder), "--out", str(tmp_path / "pred"),
                 "--max-frames", "2", "--quiet"]) == 0
    assert main(["report", str(retrained), "--out", str(tmp_path / "report")]) == 0
    assert "No outputs figure" in (tmp_path / "report" / "report.md").read_text()


def test_evaluation_on_a_folder_without_a_task_of_the_network_is_refused(moved, data_copy, capsys):
    meta = json.loads((data_copy / "meta.json").read_text())
    meta["tasks"] = [t for t in meta["tasks"] if t != "flow"]
    (data_copy / "meta.json").write_text(json.dumps(meta))
    assert main(["evaluate", str(moved[0]), "--data", str(data_copy)]) == 1
    assert "no labels for task(s) flow" in capsys.readouterr().err


def test_a_search_run_deploys_its_derived_architecture_with_the_supernets_weights(moved, tmp_path, capsys):
    _, searched = moved
    model = TrainedModel.load(searched.run_dir)
    assert model.network.architecture == Architecture.full(SPACE) and model.gates is not None
    derived = model.deployable()
    assert derived.network.architecture == searched.architecture
    supernet = model.network.state_dict()
    assert all(torch.equal(v, supernet[k]) for k, v in derived.network.state_dict().items())
    capsys.readouterr()
    assert main(["export", str(searched.run_dir), "--out", str(tmp_path / "s.onnx")]) == 0
    assert "is a search run: using its derived architecture" in capsys.readouterr().err
    outputs = [o["name"] for o in json.loads((tmp_path / "s.onnx.json").read_text())["outputs"]]
    assert outputs == list(searched.architecture.heads)


@pytest.mark.parametrize("relaxation", RELAXATIONS)
@pytest.mark.parametrize("threshold", [0.3, 0.7])
def test_derive_at_a_threshold_is_the_search_s_own_derivation_at_it(tmp_path, capsys, relaxation, threshold):
    # a gate step large enough that the on-probabilities spread to both sides of the thresholds
    result = nss.search(tiny_config(relaxation=relaxation, threshold=threshold, gate_lr=0.5, pretrain_steps=2),
                        out=tmp_path / "run", progress=False)
    assert main(["derive", str(tmp_path / "run"), "--threshold", str(threshold), "--out", str(tmp_path / "a.json")]) == 0
    assert Architecture.load(tmp_path / "a.json") == Architecture.load(tmp_path / "run" / "architecture.json")
    assert json.loads((tmp_path / "a.json").read_text())["gates"] == pytest.approx(result.probabilities)


def test_a_dirichlet_gates_on_probability_is_its_mean_not_a_softmax(tmp_path):
    nss.search(tiny_config(relaxation="dirichlet"), out=tmp_path / "run", progress=False)
    checkpoint = tmp_path / "run" / "checkpoints" / "last.pt"
    state = torch.load(checkpoint, weights_only=True)
    state["gates"]["logits"] = torch.tensor([[1.0, 0.0]] * len(SPACE.searchable))  # mean 2/3, softmax 0.73
    torch.save(state, checkpoint)
    assert nss.derive(tmp_path / "a.json", run=tmp_path / "run", threshold=0.7).heads == SPACE.fixed
    gates = Gates(SPACE.searchable, "dirichlet")
    gates.load_state_dict(state["gates"])
    assert gates.probabilities()["flow@1"] == pytest.approx(2 / 3)
    assert derive_architecture(SPACE, gates.probabilities(), 0.6).heads == SPACE.heads
