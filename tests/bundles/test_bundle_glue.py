"""What the bundle configs use besides the losses: the loss combinator, the prior-mean wrapper, per-batch inputs
in MONAI's own SupervisedTrainer iteration, the PULASki wiring, and the ``medloss bundle`` command."""

import copy
import json
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser
from monai.engines import SupervisedTrainer

from medloss.bundles.cli import BUNDLE_ROOT, bundle_names, init_bundle
from medloss.cli import main
from medloss.losses import BatchInputsLoss, WeightedSumLoss
from medloss.networks import MeanPredictionNet


def test_weighted_sum_loss():
    x, y = torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4)
    loss = WeightedSumLoss([torch.nn.L1Loss(), lambda a, b: ((a - b) ** 2).sum((1, 2, 3))], [2.0, 0.5])
    expected = 2.0 * (x - y).abs().mean() + 0.5 * ((x - y) ** 2).sum((1, 2, 3)).mean()
    torch.testing.assert_close(loss(x, y), expected)
    # a zero-weight term is not evaluated
    never = WeightedSumLoss([torch.nn.L1Loss(), lambda a, b: 1 / 0], [1.0, 0.0])
    torch.testing.assert_close(never(x, y), (x - y).abs().mean())
    with pytest.raises(ValueError, match="one finite weight per loss"):
        WeightedSumLoss([torch.nn.L1Loss()], [1.0, 2.0])
    with pytest.raises(ValueError, match=r"weights\[0\] must be a finite number, got inf"):
        WeightedSumLoss([torch.nn.L1Loss()], [float("inf")])
    with pytest.raises(ValueError, match="non-zero"):
        WeightedSumLoss([torch.nn.L1Loss()], [0.0])
    with pytest.raises(ValueError, match="losses must be a non-empty sequence"):
        WeightedSumLoss([])


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(2.0))

    def mean_prediction(self, image):
        return image * self.w


def test_mean_prediction_net():
    net = _Net()
    x = torch.rand(1, 1, 4, 4)
    torch.testing.assert_close(MeanPredictionNet(net)(x), 2 * x)
    assert list(MeanPredictionNet(net).state_dict()) == ["net.w"]
    with pytest.raises(ValueError, match="mean_prediction"):
        MeanPredictionNet(torch.nn.Identity())


def test_batch_inputs_reach_the_loss_in_monai_iteration():
    """BatchInputsLoss as loss_function and handler: MONAI's own iteration, the batch's groups reach the loss."""
    net = torch.nn.Conv2d(1, 1, 1)
    seen = []

    def loss_fn(pred, label, groups):
        value = ((pred - label) ** 2).mean() * (1 + groups.float().mean())
        seen.append((groups.clone(), value.detach().clone()))
        return value

    batches = [{"image": torch.rand(2, 1, 4, 4), "label": torch.rand(2, 1, 4, 4), "group": torch.tensor(g)}
               for g in ([0, 1], [1, 1])]
    before = copy.deepcopy(net)
    loss = BatchInputsLoss(loss_fn, inputs={"groups": "group"})
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=1, train_data_loader=batches, network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1), loss_function=loss, train_handlers=[loss],
        decollate=False,
    )
    assert trainer._iteration.__func__ is SupervisedTrainer._iteration  # no hand-written iteration
    trainer.run()
    assert [groups.tolist() for groups, _ in seen] == [[0, 1], [1, 1]]  # each batch's own groups
    with torch.no_grad():  # the first step's loss, from the weights before any step
        pred = before(batches[0]["image"])
        torch.testing.assert_close(seen[0][1], ((pred - batches[0]["label"]) ** 2).mean() * 1.5)
    torch.testing.assert_close(trainer.state.output["loss"].detach(), seen[1][1])
    assert not torch.equal(net.weight.detach(), before.weight.detach())  # the optimizer stepped


def test_pulaski_wiring_trains_the_network_through_the_loss(tmp_path):
    """The PULASki train config: prepare_batch gives (image, raters), the inferer passes the image through and
    the loss runs the network; one MONAI iteration changes the network's weights and gives the loss's value."""
    bundle = init_bundle("pulaski", str(tmp_path / "pulaski"))
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "train.json"))
    parser["bundle_root"] = str(bundle)
    parser["device"] = "$torch.device('cpu')"
    network = parser.get_parsed_content("network")
    loss, prepare, inferer = (parser.get_parsed_content(k) for k in ("loss", "prepare_batch", "inferer"))
    image = torch.rand(2, 1, 16, 16, 16)
    raters = (torch.rand(2, 3, 1, 16, 16, 16) > 0.5).float()
    batch = {"image": image, "raters": raters, "case": ["a", "b"]}
    got_image, got_raters = prepare(batch, torch.device("cpu"), False)
    assert got_image is image and got_raters is raters
    assert inferer(image, network) is image
    before = copy.deepcopy(network.state_dict())
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=1, train_data_loader=[batch], network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=0.1), loss_function=loss, prepare_batch=prepare,
        inferer=inferer, decollate=False,
    )
    trainer.run()
    assert torch.isfinite(trainer.state.output["loss"])
    assert any(not torch.equal(before[k], v) for k, v in network.state_dict().items())


# ------------------------------------------------------------------------------------------------ medloss bundle
def test_bundle_list(capsys):
    assert main(["bundle", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == bundle_names() == [
        "betti_matching_finetune", "fair_scaling", "impact_synthesis", "pulaski", "sauna_soft_labels", "vessel_mip"]
    assert "medloss vessel segmentation with MIP loss" in lines[-1]


def test_bundle_init_copies_every_file(tmp_path, capsys):
    target = tmp_path / "mine"
    assert main(["bundle", "init", "impact_synthesis", str(target)]) == 0
    assert "python -m monai.bundle run" in capsys.readouterr().out
    source = BUNDLE_ROOT / "impact_synthesis"
    expected = sorted(str(p.relative_to(source)) for p in source.rglob("*") if p.is_file())
    copied = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert copied == sorted(expected + ["meta_schema.json"])
    model = Path("models") / "impact_extractor.pt"
    assert (target / model).read_bytes() == (source / model).read_bytes()
    schema = json.loads((BUNDLE_ROOT / "meta_schema.json").read_text())
    assert json.loads((target / "meta_schema.json").read_text()) == schema
    # an empty existing folder is fine
    (tmp_path / "empty").mkdir()
    assert main(["bundle", "init", "vessel_mip", str(tmp_path / "empty")]) == 0


@pytest.mark.parametrize(
    "setup, name, message",
    [
        (lambda d: (d.mkdir(), (d / "x").write_text("")), "vessel_mip", "is not empty; give a new or empty folder"),
        (lambda d: d.write_text(""), "vessel_mip", "is a file"),
        (lambda d: None, "nope", "unknown bundle 'nope'; the bundles are: betti_matching_finetune"),
    ],
)
def test_bundle_init_refuses(tmp_path, capsys, setup, name, message):
    target = tmp_path / "target"
    setup(target)
    assert main(["bundle", "init", name, str(target)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1  # one line, no traceback
    assert not (target.is_dir() and (target / "configs").exists())
