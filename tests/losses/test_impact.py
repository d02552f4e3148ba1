"""IMPACT / IMPACT-Synth: reference cases (konfai 1.8.7 / ImpactLoss cross-checked), distances, gradients, errors."""

import math
import warnings
from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from medloss.losses import IMPACTLoss, IMPACTSynthLoss
from medloss.losses.feature_distances import DISTANCES, feature_distance

DATA = Path(__file__).resolve().parents[1] / "data" / "fair_impact"
TINY3D = DATA / "tiny3d_impact.pt"
TINY2D = DATA / "tiny2d_impact.pt"
RTOL = 1e-6


def _load(name):
    return dict(np.load(DATA / name))


def _t(a):
    return torch.from_numpy(np.asarray(a))


def _rel(a, b):
    return abs(float(a) - float(b)) / max(abs(float(b)), 1e-30)


def _double_model(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load deprecation notice
        return torch.jit.load(str(path)).double()


class Recorder(torch.nn.Module):
    """Plain nn.Module extractor with a configurable forward arity; records what it receives."""

    def __init__(self, n_out=2, nargs=4, detach_last=False, ch=1, dims=3):
        super().__init__()
        conv = torch.nn.Conv3d if dims == 3 else torch.nn.Conv2d
        self.c = conv(ch, 3, 3, padding=1)
        self.n_out, self.detach_last, self.seen = n_out, detach_last, []
        self.nargs = nargs

    def _run(self, x, *rest):
        self.seen.append((tuple(x.shape), len(rest), [r.clone() if torch.is_tensor(r) else r for r in rest]))
        f = torch.tanh(self.c(x))
        out = [f * (i + 1) for i in range(self.n_out)]
        if self.detach_last:
            out[-1] = torch.nn.functional.one_hot(f.argmax(1), 3).movedim(-1, 1).float()
        return out


class Rec1(Recorder):
    def forward(self, x):
        return self._run(x)


class Rec2(Recorder):
    def forward(self, x, nb_layers):
        return self._run(x, nb_layers)


class Rec4(Recorder):
    def forward(self, x, nb_layers, stats, direction):
        return self._run(x, nb_layers, stats, direction)


# ------------------------------------------------------------------------------------------------ reference cases
def test_case1_3d_values_and_gradients():
    c = _load("impact_case1_3d.npz")
    out, tgt = _t(c["output"]), _t(c["target"])
    for mode, key in (("own", "ownstats"), ("target", "targetstats")):
        loss = IMPACTLoss(TINY3D, weights=[1.0, 1.0], stats_from=mode)
        o = out.clone().requires_grad_(True)
        v = loss(o, tgt)
        v.backward()
        assert _rel(v.detach(), c[f"l1_total_{key}"]) < RTOL
        g_ref = c[f"grad_output_{key}"]
        assert np.abs(o.grad.numpy() - g_ref).max() <= RTOL * np.abs(g_ref).max()
        for layer, w in ((0, [1.0, 0.0]), (1, [0.0, 1.0])):
            per = IMPACTLoss(TINY3D, weights=w, stats_from=mode)(out, tgt)
            assert _rel(per, c[f"l1_per_layer_{key}"][layer]) < RTOL
    assert _rel(IMPACTLoss(TINY3D, weights=[0, 1])(out, tgt), c["l1_total_w01_ownstats"]) < RTOL
    assert float(IMPACTLoss(TINY3D, weights=[1, 1])(tgt, tgt)) == 0.0 == float(c["l1_total_identical"])


@pytest.mark.parametrize("layer", [0, 1])
@pytest.mark.parametrize("convention", ["konfai", "itk"])
def test_case1_distances_on_stored_features(layer, convention):
    c = _load("impact_case1_3d.npz")
    f, m = _t(c[f"feat_output_layer{layer}"]).double(), _t(c[f"feat_target_layer{layer}"]).double()
    names = ["L1", "L2", "Cosine", "L1Cosine", "Dice", "NCC"] + (["DotProduct"] if convention == "itk" else [])
    for name in names:
        d = feature_distance(name, f, m, convention)
        assert d.shape == (1,)
        assert _rel(d, c[f"{convention}_{name}_layer{layer}"]) < 1e-9, name


def test_case1_distances_through_the_loss():
    """Loss with each distance on the tiny model == the stored konfai/itk value of the layer (float32 features)."""
    c = _load("impact_case1_3d.npz")
    out, tgt = _t(c["output"]), _t(c["target"])
    for name in ["L2", "Cosine", "Dice", "NCC"]:
        for conv in ("konfai", "itk"):
            v = IMPACTLoss(TINY3D, weights=[1, 0], distance=name, convention=conv)(out, tgt)
            assert _rel(v, c[f"{conv}_{name}_layer0"]) < 1e-5, (name, conv)
    # one distance per layer
    v = IMPACTLoss(TINY3D, weights=[2.0, 0.5], distance=["Cosine", "NCC"], convention="itk")(out, tgt)
    ref = 2.0 * c["itk_Cosine_layer0"] + 0.5 * c["itk_NCC_layer1"]
    assert _rel(v, ref) < 1e-5


def test_case2_2d_extractor_on_3d_volume():
    c = _load("impact_case2_2d_on_3d.npz")
    out, tgt = _t(c["output"]), _t(c["target"])
    loss = IMPACTLoss(TINY2D, weights=[1, 1], in_channels=3, spatial_dims=2)
    assert _rel(loss(out, tgt), c["loss_mean_volumestats"]) < RTOL
    # small sweep batches give the same value
    loss_b = IMPACTLoss(TINY2D, weights=[1, 1], in_channels=3, spatial_dims=2, sweep_batch=4)
    assert _rel(loss_b(out, tgt), c["loss_mean_volumestats"]) < RTOL
    # ImpactLoss IMPACT.py behaviour (each slice with its own stats) = the 2D loss applied slice by slice
    loss2d = IMPACTLoss(TINY2D, weights=[1, 1], in_channels=3, spatial_dims=2)
    per = [loss2d(out[:, :, z], tgt[:, :, z]) for z in range(out.shape[2])]
    for z, v in enumerate(per):
        assert _rel(v, c["slice_losses_slicestats"][z]) < RTOL
    assert _rel(torch.stack(per).mean(), c["loss_mean_slicestats"]) < RTOL
    # per-slice values of the whole-volume-stats sweep
    for z in range(out.shape[2]):
        stats = torch.stack([out.min(), out.max(), out.mean(), out.std()])
        stats_t = torch.stack([tgt.min(), tgt.max(), tgt.mean(), tgt.std()])
        fo = loss2d.extractor(out[:, :, z].repeat(1, 3, 1, 1), torch.tensor([2]), stats, torch.eye(2))
        ft = loss2d.extractor(tgt[:, :, z].repeat(1, 3, 1, 1), torch.tensor([2]), stats_t, torch.eye(2))
        v = sum(float((a - b).abs().mean()) for a, b in zip(fo, ft))
        assert _rel(v, c["slice_losses_volumestats"][z]) < RTOL


def test_case3_impact_synth():
    c = _load("impact_case3_synth.npz")
    pred, ct, mr = _t(c["pred_norm"]), _t(c["ct_norm"]), _t(c["mr_norm"])
    cs, ms = _t(c["ct_raw_stats"]), _t(c["mr_raw_stats"])
    loss = IMPACTSynthLoss(TINY3D, content_weights=[0, 1], style_weights=[1, 1])
    terms = loss.components(pred, ct, mr, cs, ms)
    assert _rel(terms["content"][0], c["content_mse"]) < RTOL
    assert _rel(terms["style"][0], c["style_gram_l1"]) < RTOL
    v = loss(pred, ct, mr, cs, ms)
    assert _rel(v, c["impact_synth"]) < RTOL
    l1 = torch.nn.functional.l1_loss(pred, ct)
    assert _rel(l1 + v, c["total_l1_plus_synth"]) < RTOL
    # legacy single-model L1 perceptual value: IMPACTLoss on the de-normalised images with the CT stats
    lo, hi = float(c["ct_min"]), float(c["ct_max"])
    out_c, tgt_c = (pred + 1) / 2 * (hi - lo) + lo, (ct + 1) / 2 * (hi - lo) + lo
    legacy = IMPACTLoss(TINY3D, weights=[1, 1])(out_c, tgt_c, stats=cs)
    assert _rel(legacy, c["legacy_single_model_l1_w11"]) < RTOL
    # gradient reaches the prediction; style model given explicitly and a batch of two identical cases
    p = pred.clone().requires_grad_(True)
    loss2 = IMPACTSynthLoss(TINY3D, TINY3D, content_weights=[0, 1], style_weights=[1, 1], reduction="none")
    v2 = loss2(torch.cat([p, p]), torch.cat([ct, ct]), torch.cat([mr, mr]), cs, torch.stack([ms, ms]))
    assert v2.shape == (2,)
    assert _rel(v2[1].detach(), c["impact_synth"]) < RTOL
    v2.sum().backward()
    assert p.grad is not None and float(p.grad.abs().sum()) > 0


# ------------------------------------------------------------------------------------------------ hand-computable
def _fm(*vectors):
    """(1, C, N) feature map from N channel vectors."""
    return torch.tensor(vectors, dtype=torch.float64).t().unsqueeze(0)


def test_distances_identical_inputs_are_zero_konfai():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(2, 4, 9, 9, 9, generator=g, dtype=torch.float64)
    for name in ["L1", "L2", "Cosine", "L1Cosine", "NCC", "LNCC", "Gram"]:
        d = feature_distance(name, f, f.clone())
        assert d.shape == (2,)
        assert torch.allclose(d, torch.zeros(2, dtype=torch.float64), atol=1e-5), name
    # soft Dice is 0 at a match only on binary maps
    b = (torch.rand(2, 3, 5, 5, generator=g) > 0.5).double()
    assert torch.allclose(feature_distance("Dice", b, b), torch.zeros(2, dtype=torch.float64))
    half = torch.full((1, 2, 3, 3), 0.5, dtype=torch.float64)
    assert torch.allclose(feature_distance("Dice", half, half), torch.tensor([0.5], dtype=torch.float64))


def test_distances_known_values():
    f, m = _fm([1.0, 0.0], [1.0, 0.0]), _fm([0.0, 1.0], [-1.0, 0.0])  # orthogonal point, opposite point
    assert float(feature_distance("L1", f, m)) == pytest.approx(1.0)  # |1|,|1|,|2|,|0| / 4
    assert float(feature_distance("L2", f, m)) == pytest.approx(1.5)  # 1,1,4,0 / 4
    assert float(feature_distance("Cosine", f, m, "itk")) == pytest.approx(-(0.0 - 1.0) / 2)
    assert float(feature_distance("Cosine", f, m)) == pytest.approx(1 - (0.0 - 1.0) / 2, abs=1e-6)
    # L1Cosine: f=(1,0), m=(1,1): cos=1/sqrt2, channel terms exp(0), exp(-0.1)
    f1, m1 = _fm([1.0, 0.0]), _fm([1.0, 1.0])
    expect = (1 / math.sqrt(2)) * (1 + math.exp(-0.1)) / 2
    assert float(feature_distance("L1Cosine", f1, m1, "itk")) == pytest.approx(-expect)
    assert float(feature_distance("L1Cosine", f1, m1)) == pytest.approx(1 - expect, abs=1e-6)
    # Dice per point: (1,0)vs(0,1) -> 0 ; (1,1)vs(1,1) -> 2*2/4 = 1 ; zero-sum point -> 1 (match)
    fd, md = _fm([1.0, 0.0], [1.0, 1.0], [0.0, 0.0]), _fm([0.0, 1.0], [1.0, 1.0], [0.0, 0.0])
    assert float(feature_distance("Dice", fd, md, "itk")) == pytest.approx(-2 / 3)
    assert float(feature_distance("Dice", fd, md)) == pytest.approx(1 / 3)
    # DotProduct (itk only): points (1,1).(2,3)=5, (1,0).(4,0)=4
    assert float(feature_distance("DotProduct", _fm([1.0, 1.0], [1.0, 0.0]), _fm([2.0, 3.0], [4.0, 0.0]),
                                  "itk")) == pytest.approx(-4.5)
    # NCC is invariant to affine maps and flips sign with a negation
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 3, 6, 6, generator=g, dtype=torch.float64)
    assert float(feature_distance("NCC", x, 2.5 * x + 3, "itk")) == pytest.approx(-1.0)
    assert float(feature_distance("NCC", x, -x)) == pytest.approx(2.0, abs=1e-6)
    # LNCC uses the squared correlation: a negation still scores a perfect match
    assert float(feature_distance("LNCC", x, -x)) == pytest.approx(0.0, abs=1e-9)
    assert float(feature_distance("LNCC", x, -x, "itk")) == pytest.approx(-1.0, abs=1e-9)
    # Gram: F = [[1, 1]] (C=1, N=2) -> G = 2/2 = 1 ; zeros -> 0
    assert float(feature_distance("Gram", _fm([1.0], [1.0]), _fm([0.0], [0.0]))) == pytest.approx(1.0)


def test_lncc_matches_a_direct_window_computation():
    g = torch.Generator().manual_seed(2)
    f = torch.randn(1, 1, 7, 7, generator=g, dtype=torch.float64)
    m = f + 0.5 * torch.randn(1, 1, 7, 7, generator=g, dtype=torch.float64)
    k, r = 3, 1
    vals = []
    for i in range(7):
        for j in range(7):
            a = f[0, 0, max(i - r, 0): i + r + 1, max(j - r, 0): j + r + 1].flatten()
            b = m[0, 0, max(i - r, 0): i + r + 1, max(j - r, 0): j + r + 1].flatten()
            cov = (a * b).mean() - a.mean() * b.mean()
            va = max(float((a * a).mean() - a.mean() ** 2), 1e-5)
            vb = max(float((b * b).mean() - b.mean() ** 2), 1e-5)
            vals.append(float(cov) ** 2 / (va * vb))
    assert float(feature_distance("LNCC", f, m, kernel=k)) == pytest.approx(1 - np.mean(vals), rel=1e-10)


# ------------------------------------------------------------------------------------------------ gradients
def test_gradcheck_impact_loss_float64():
    model = _double_model(TINY3D)
    g = torch.Generator().manual_seed(3)
    tgt = torch.randn(2, 1, 5, 5, 5, generator=g, dtype=torch.float64) * 50 + 10
    x = (tgt + 5 * torch.randn(2, 1, 5, 5, 5, generator=g, dtype=torch.float64)).requires_grad_(True)
    # stats are constants by design: take them from the target (or pass them) so the numerical Jacobian agrees
    for dist in ["L1", "L2", "Cosine", "L1Cosine", "NCC", "LNCC", "Gram"]:
        loss = IMPACTLoss(model, weights=[0.7, 1.3], distance=dist, stats_from="target", probe_shape=(5, 5, 5))
        assert torch.autograd.gradcheck(lambda a: loss(a, tgt), (x,), eps=1e-6, atol=1e-6), dist
    loss = IMPACTLoss(model, weights=[1, 1], distance="Dice", probe_shape=(5, 5, 5))
    stats = torch.tensor([-100.0, 120.0, 10.0, 50.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: loss(a, tgt, stats), (x,), eps=1e-6, atol=1e-6)


def test_gradcheck_loss_double_from_path_and_2d_sweep():
    loss = IMPACTLoss(TINY2D, weights=[1, 1], in_channels=3, spatial_dims=2, stats_from="target",
                      probe_shape=(6, 6)).double()
    g = torch.Generator().manual_seed(4)
    tgt = torch.rand(1, 1, 3, 6, 6, generator=g, dtype=torch.float64) * 100
    x = (tgt + torch.rand(1, 1, 3, 6, 6, generator=g, dtype=torch.float64)).requires_grad_(True)
    assert loss(x, tgt).dtype == torch.float64
    assert torch.autograd.gradcheck(lambda a: loss(a, tgt), (x,), eps=1e-6, atol=1e-6)


def test_gradcheck_impact_synth_float64():
    model = _double_model(TINY3D)
    loss = IMPACTSynthLoss(model, content_weights=[0.5, 1.0], style_weights=[1.0, 2.0], content_shape=None)
    g = torch.Generator().manual_seed(5)
    ct = torch.rand(1, 1, 5, 5, 5, generator=g, dtype=torch.float64) * 2 - 1
    mr = torch.randn(1, 1, 5, 5, 5, generator=g, dtype=torch.float64)
    x = (ct + 0.1 * torch.randn(1, 1, 5, 5, 5, generator=g, dtype=torch.float64)).requires_grad_(True)
    cs = torch.tensor([-1000.0, 1000.0, -200.0, 300.0], dtype=torch.float64)
    ms = torch.tensor([0.0, 800.0, 300.0, 120.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: loss(a, ct, mr, cs, ms), (x,), eps=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------------------------ behaviour
def test_extractor_is_frozen_and_stays_in_eval_mode():
    loss = IMPACTLoss(TINY3D, weights=[1, 1])
    assert all(not p.requires_grad for p in loss.parameters())
    loss.train()
    assert loss.training and not loss.extractor.net.training
    module = Rec4(n_out=2)
    IMPACTLoss(module, weights=[1, 1], probe_shape=(4, 4, 4)).train()
    assert not module.training and all(not p.requires_grad for p in module.parameters())


@pytest.mark.parametrize("cls, nargs", [(Rec1, 1), (Rec2, 2), (Rec4, 4)])
def test_schema_driven_call(cls, nargs):
    module = cls(n_out=2)
    loss = IMPACTLoss(module, weights=[1, 1], probe_shape=(4, 4, 4), direction=[[0, 1, 0], [1, 0, 0], [0, 0, -1]])
    module.seen.clear()
    x = torch.rand(1, 1, 6, 6, 6) * 10
    loss(x, x + 1)
    assert [n for _, n, _ in module.seen] == [nargs - 1] * 2
    if nargs >= 2:
        assert module.seen[0][2][0].tolist() == [2]
    if nargs == 4:
        stats = module.seen[0][2][1]
        assert torch.allclose(stats, torch.stack([x.min(), x.max(), x.mean(), x.std()]))
        assert module.seen[0][2][2].dtype == torch.int16
        assert module.seen[0][2][2].tolist() == [[0, 1, 0], [1, 0, 0], [0, 0, -1]]


def test_torchscript_schema_gets_four_arguments():
    loss = IMPACTLoss(TINY3D, weights=[1, 1])
    assert loss.extractor.n_args == 4


def test_batch_is_per_sample_and_reductions():
    c = _load("impact_case1_3d.npz")
    out, tgt = _t(c["output"]), _t(c["target"])
    out2, tgt2 = torch.cat([out, tgt * 0.5 + 3]), torch.cat([tgt, tgt])
    none = IMPACTLoss(TINY3D, weights=[1, 1], reduction="none")(out2, tgt2)
    assert none.shape == (2,)
    assert _rel(none[0], c["l1_total_ownstats"]) < RTOL
    single = IMPACTLoss(TINY3D, weights=[1, 1])(out2[1:], tgt2[1:])
    assert float(none[1]) == pytest.approx(float(single), rel=1e-6)
    assert float(IMPACTLoss(TINY3D, weights=[1, 1], reduction="sum")(out2, tgt2)) == pytest.approx(
        float(none.sum()), rel=1e-6)
    assert float(IMPACTLoss(TINY3D, weights=[1, 1])(out2, tgt2)) == pytest.approx(float(none.mean()), rel=1e-6)


def test_channel_repeat_resize_and_half_precision():
    g = torch.Generator().manual_seed(6)
    x = torch.rand(1, 1, 4, 12, 12, generator=g) * 100
    y = torch.rand(1, 1, 4, 12, 12, generator=g) * 100
    loss = IMPACTLoss(TINY2D, weights=[1, 1], in_channels=3, spatial_dims=2)
    assert float(loss(x, y)) == pytest.approx(float(loss(x.repeat(1, 3, 1, 1, 1), y.repeat(1, 3, 1, 1, 1))), rel=1e-6)
    module = Rec4(n_out=1, ch=3, dims=2)
    resized = IMPACTLoss(module, weights=[1], in_channels=3, spatial_dims=2, shape=(8, 8))
    module.seen.clear()
    resized(x, y)
    assert module.seen[0][0] == (4, 3, 8, 8)  # 4 slices, 3 channels, resized
    v = loss(x.half(), y.half())
    assert v.dtype == torch.float32
    assert float(v) == pytest.approx(float(loss(x.half().float(), y.half().float())), rel=1e-6)


def test_model_lookup_in_env_dir_and_local_hf_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDLOSS_IMPACT_MODEL_DIR", str(DATA))
    loss = IMPACTLoss("tiny3d_impact.pt", weights=[1, 1])
    assert loss.extractor.path == DATA / "tiny3d_impact.pt"
    monkeypatch.delenv("MEDLOSS_IMPACT_MODEL_DIR")
    snap = tmp_path / "models--VBoussot--impact-torchscript-models" / "snapshots" / "abc123" / "TS"
    snap.mkdir(parents=True)
    (snap / "Tiny.pt").write_bytes(TINY3D.read_bytes())
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    loss = IMPACTLoss("TS/Tiny.pt", weights=[1, 1])
    assert loss.extractor.path == snap / "Tiny.pt"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_lazy_move():
    c = _load("impact_case1_3d.npz")
    loss = IMPACTLoss(TINY3D, weights=[1, 1])
    v = loss(_t(c["output"]).cuda(), _t(c["target"]).cuda())
    assert v.device.type == "cuda"
    assert _rel(v.cpu(), c["l1_total_ownstats"]) < 1e-4


# ------------------------------------------------------------------------------------------------ errors
def test_missing_file_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("MEDLOSS_IMPACT_MODEL_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        IMPACTLoss("TS/M730.pt", weights=[1])
    msg = str(err.value)
    assert "TS/M730.pt" in msg and "MEDLOSS_IMPACT_MODEL_DIR" in msg and "VBoussot/impact-torchscript-models" in msg
    assert "never downloads" in msg


def test_not_torchscript_file(tmp_path):
    bad = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2)}, bad)
    with pytest.raises(ValueError, match="TorchScript"):
        IMPACTLoss(bad, weights=[1])


def test_outputs_vs_weights_mismatch():
    with pytest.raises(ValueError, match=r"returned 2 feature map\(s\).*3 layer weight"):
        IMPACTLoss(TINY3D, weights=[1, 1, 1])
    with pytest.raises(ValueError, match=r"returned 2 feature map"):
        IMPACTLoss(Rec1(n_out=2), weights=[1], probe_shape=(4, 4, 4))  # traced-like model ignores nb_layers


def test_non_differentiable_weighted_layer():
    with pytest.raises(ValueError, match=r"layer\(s\) \[1\] carry no gradient"):
        IMPACTLoss(Rec4(n_out=2, detach_last=True), weights=[1, 1], probe_shape=(4, 4, 4))
    IMPACTLoss(Rec4(n_out=2, detach_last=True), weights=[1, 0], probe_shape=(4, 4, 4))  # skipped layer is fine


def test_model_must_return_a_list():
    class Single(torch.nn.Module):
        def forward(self, x):
            return x * 2

    with pytest.raises(ValueError, match="list of feature tensors"):
        IMPACTLoss(Single(), weights=[1], probe_shape=(4, 4, 4))


def test_probe_failure_is_reported():
    with pytest.raises(ValueError, match="probe input of shape"):
        IMPACTLoss(TINY3D, weights=[1, 1], in_channels=2)  # the network takes 1 channel


def test_bad_arguments():
    with pytest.raises(ValueError, match="all layer weights are 0"):
        IMPACTLoss(TINY3D, weights=[0, 0])
    with pytest.raises(ValueError, match="empty"):
        IMPACTLoss(TINY3D, weights=[])
    with pytest.raises(ValueError, match="unknown IMPACT distance"):
        IMPACTLoss(TINY3D, weights=[1, 1], distance="SSIM")
    with pytest.raises(ValueError, match="DotProduct"):
        IMPACTLoss(TINY3D, weights=[1, 1], distance="DotProduct")
    with pytest.raises(ValueError, match="distances for 2 layer weights"):
        IMPACTLoss(TINY3D, weights=[1, 1], distance=["L1"] * 3)
    with pytest.raises(ValueError, match="convention"):
        IMPACTLoss(TINY3D, weights=[1, 1], convention="elastix")
    with pytest.raises(ValueError, match="stats_from"):
        IMPACTLoss(TINY3D, weights=[1, 1], stats_from="batch")
    with pytest.raises(ValueError, match="lncc_kernel"):
        IMPACTLoss(TINY3D, weights=[1, 1], lncc_kernel=4)
    with pytest.raises(ValueError, match="shape must hold 3 values"):
        IMPACTLoss(TINY3D, weights=[1, 1], shape=(8, 8))
    with pytest.raises(ValueError, match="model must be a path"):
        IMPACTLoss(3, weights=[1])
    with pytest.raises(ValueError):
        IMPACTLoss(TINY3D, weights=[1, 1], reduction="median")
    with pytest.raises(ValueError, match="normalization"):
        IMPACTSynthLoss(TINY3D, content_weights=[0, 1], style_weights=[1, 1], style_normalization="robust")


def test_bad_inputs():
    loss = IMPACTLoss(TINY3D, weights=[1, 1])
    x = torch.rand(1, 1, 6, 6, 6)
    with pytest.raises(ValueError, match="different shape"):
        loss(x, torch.rand(1, 1, 6, 6, 5))
    bad = x.clone()
    bad[0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        loss(bad, x)
    with pytest.raises(ValueError, match="NaN"):
        loss(x, bad)
    with pytest.raises(ValueError, match=r"3D extractor needs \(B, C, D, H, W\)"):
        loss(x[:, :, 0], x[:, :, 0])
    with pytest.raises(ValueError, match="spatial dimensions"):
        loss(x[:, :, 0, 0], x[:, :, 0, 0])
    with pytest.raises(ValueError, match="in_channels=1"):
        loss(x.repeat(1, 2, 1, 1, 1), x.repeat(1, 2, 1, 1, 1))
    with pytest.raises(ValueError, match="empty"):
        loss(x[:0], x[:0])
    with pytest.raises(ValueError, match=r"stats must be \[min, max, mean, std\]"):
        loss(x, x, stats=torch.zeros(3))
    with pytest.raises(ValueError, match="floating point"):
        loss(x.long(), x.long())


def test_synth_bad_inputs():
    c = _load("impact_case3_synth.npz")
    pred, ct, mr = _t(c["pred_norm"]), _t(c["ct_norm"]), _t(c["mr_norm"])
    cs, ms = _t(c["ct_raw_stats"]), _t(c["mr_raw_stats"])
    loss = IMPACTSynthLoss(TINY3D, content_weights=[0, 1], style_weights=[1, 1])
    with pytest.raises(ValueError, match="content_stats is needed"):
        loss(pred, ct, mr, None, ms)
    with pytest.raises(ValueError, match="style_stats is needed"):
        loss(pred, ct, mr, cs, None)
    with pytest.raises(ValueError, match="different shape"):
        loss(pred, ct, mr[..., :8], cs, ms)
    with pytest.raises(ValueError, match=r"\(B, 4\)"):
        loss(pred, ct, mr, cs[:3], ms)
    with pytest.raises(ValueError, match="max must exceed min"):
        loss(pred, ct, mr, torch.tensor([1.0, 1.0, 0.0, 1.0]), ms)
    # raw images need no stats
    raw = IMPACTSynthLoss(TINY3D, content_weights=[0, 1], style_weights=[1, 1], content_normalization="none",
                          style_normalization="none")
    assert float(raw(ct * 500, ct * 500, ct * 500)) == pytest.approx(0.0, abs=1e-12)


def test_all_distance_names_are_accepted():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(1, 1, 6, 6, 6, generator=g) * 100, torch.rand(1, 1, 6, 6, 6, generator=g) * 100
    values = {}
    for name in DISTANCES:
        conv = "itk" if name == "DotProduct" else "konfai"
        values[name] = float(IMPACTLoss(TINY3D, weights=[1, 1], distance=name.lower(), convention=conv)(x, y))
        # the name selects the per-layer distance: the same value as naming it canonically, once per layer
        assert values[name] == float(IMPACTLoss(TINY3D, weights=[1, 1], distance=[name, name], convention=conv)(x, y))
    assert all(np.isfinite(v) for v in values.values())
    assert len({round(v, 9) for v in values.values()}) == len(DISTANCES)  # every name computes something else


# ------------------------------------------------------------------------------------------------ properties
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), c=st.integers(1, 4), n=st.integers(3, 7), scale=st.floats(0.1, 10.0))
def test_distance_symmetry_and_bounds(seed, c, n, scale):
    g = torch.Generator().manual_seed(seed)
    f = scale * torch.randn(2, c, n, n, generator=g, dtype=torch.float64)
    m = scale * torch.randn(2, c, n, n, generator=g, dtype=torch.float64)
    for name in ["L1", "L2", "Cosine", "L1Cosine", "Dice", "NCC", "LNCC", "Gram"]:
        d, d_rev = feature_distance(name, f, m), feature_distance(name, m, f)
        assert torch.allclose(d, d_rev, rtol=1e-10, atol=1e-12), name
        if name != "Dice":  # raw-activation Dice is unbounded for signed features
            assert bool((d >= -1e-12).all()), name
        if name in ("Cosine", "NCC"):
            assert bool((d <= 2 + 1e-12).all()), name
        if name == "LNCC":
            assert bool((d <= 1 + 1e-12).all())
        itk = feature_distance(name, f, m, "itk")
        expect = d if name in ("L1", "L2", "Gram") else None
        if expect is not None:
            assert torch.allclose(itk, expect)
        elif name == "LNCC":
            assert torch.allclose(itk, d - 1)  # no eps in LNCC: -s == (1 - s) - 1


# ------------------------------------------------------------------------------------------------ degenerate images
@pytest.mark.parametrize("stats_from", ["own", "target"])
@pytest.mark.parametrize("shape", [(1, 1, 8, 8, 8), (1, 1, 1, 1, 1)], ids=["constant", "single_voxel"])
def test_constant_image_gives_finite_loss_and_gradients(shape, stats_from):
    # a zero-initialised head, a patch entirely in air, a single voxel: std 0, which the extractor divides by
    loss = IMPACTLoss(TINY3D, weights=[1, 1], stats_from=stats_from, probe_shape=(8, 8, 8))
    for fill in (0.0, -1000.0):
        x = torch.full(shape, fill, requires_grad=True)
        gen = torch.Generator().manual_seed(0)
        target = torch.full(shape, 5.0) if shape[-1] == 1 else torch.rand(shape, generator=gen)
        for tgt in (target, torch.full(shape, fill)):
            value = loss(x, tgt)
            value.backward()
            assert math.isfinite(float(value)), (fill, tgt.shape)
            assert bool(torch.isfinite(x.grad).all())
            x.grad = None
    # both images constant: identical z-scores (0), so identical features
    assert float(loss(torch.full(shape, 3.0), torch.full(shape, 3.0))) == 0.0


def test_given_zero_std_statistics_are_guarded():
    x = torch.full((2, 1, 8, 8, 8), -1000.0, requires_grad=True)
    loss = IMPACTLoss(TINY3D, weights=[1, 1], probe_shape=(8, 8, 8))
    value = loss(x, torch.rand(2, 1, 8, 8, 8), stats=[-1000.0, -1000.0, -1000.0, 0.0])
    value.backward()
    assert math.isfinite(float(value)) and bool(torch.isfinite(x.grad).all())
    # a non-degenerate std is handed unchanged (reference values above), a zero one as 1
    from medloss.losses.impact import guard_stats

    stats = torch.tensor([[0.0, 2.0, 1.0, 0.5], [7.0, 7.0, 7.0, 0.0], [7.0, 7.0, 7.0, 1e-9]])
    assert guard_stats(stats)[:, 3].tolist() == [0.5, 1.0, 1.0]


def test_impact_synth_constant_prediction_is_finite():
    loss = IMPACTSynthLoss(TINY3D, content_weights=[0, 1], style_weights=[1, 1], content_normalization="none",
                           style_normalization="none")
    for shape in ((1, 1, 8, 8, 8), (1, 1, 1, 1, 1)):
        pred = torch.zeros(shape, requires_grad=True)  # a zero-initialised synthesis head
        for content, style in ((torch.rand(shape), torch.rand(shape)), (torch.zeros(shape), torch.full(shape, 4.0))):
            value = loss(pred, content, style)
            value.backward()
            assert math.isfinite(float(value)) and bool(torch.isfinite(pred.grad).all())
            pred.grad = None
    # z-score de-normalisation with a zero std (a constant raw style image)
    zs = IMPACTSynthLoss(TINY3D, content_weights=[0, 1], style_weights=[1, 1], content_normalization="none")
    pred = torch.zeros(1, 1, 8, 8, 8, requires_grad=True)
    value = zs(pred, torch.rand(1, 1, 8, 8, 8), torch.zeros(1, 1, 8, 8, 8), style_stats=[5.0, 5.0, 5.0, 0.0])
    value.backward()
    assert math.isfinite(float(value)) and bool(torch.isfinite(pred.grad).all())
