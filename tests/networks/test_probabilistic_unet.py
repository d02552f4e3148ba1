"""Tests for the probabilistic U-Net (shapes, latent injection, sampling, KL, input checks, a short training)."""

import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

from medloss.losses import PULASkiLoss, SinkhornDistanceLoss
from medloss.metrics import generalized_energy_distance
from medloss.networks import ProbabilisticUNet


def _net(spatial_dims=3, out_channels=1, **kwargs):
    torch.manual_seed(0)
    args = dict(channels=(4, 8), strides=(2,), latent_dim=3)
    args.update(kwargs)
    return ProbabilisticUNet(spatial_dims, 1, out_channels, **args)


@pytest.mark.parametrize("spatial_dims,shape", [(2, (8, 12)), (3, (8, 8, 4))])
@pytest.mark.parametrize("out_channels", [1, 3])
def test_shapes_and_outputs(spatial_dims, shape, out_channels):
    net = _net(spatial_dims, out_channels, num_res_units=1)
    image = torch.randn((2, 1) + shape)
    rater = torch.zeros((2, out_channels) + shape)
    out = net(image, rater=rater, num_samples=4)
    assert out.samples.shape == (2, 4, out_channels) + shape
    assert out.kl.shape == (2,) and (out.kl >= 0).all()
    assert out.prior.batch_shape == (2,) and out.prior.event_shape == (3,)
    prior_only = net(image, num_samples=2)
    assert prior_only.posterior is None and prior_only.kl is None
    assert net.sample(image, 5).shape == (2, 5, out_channels) + shape
    assert net.mean_prediction(image).shape == (2, out_channels) + shape


def test_kl_is_analytic_diagonal_gaussian_kl():
    net = _net()
    image, rater = torch.randn(2, 1, 8, 8, 8), (torch.rand(2, 1, 8, 8, 8) > 0.5).float()
    out = net(image, rater=rater)
    q, p = out.posterior.base_dist, out.prior.base_dist
    expected = (torch.log(p.scale / q.scale) + (q.scale**2 + (q.loc - p.loc) ** 2) / (2 * p.scale**2) - 0.5).sum(1)
    np.testing.assert_allclose(out.kl.detach().numpy(), expected.detach().numpy(), rtol=1e-5)


def test_backbone_runs_once_and_head_per_sample():
    net = _net()
    calls = {"backbone": 0, "head": 0}
    net.backbone.register_forward_hook(lambda *a: calls.__setitem__("backbone", calls["backbone"] + 1))
    net.head_rest.register_forward_hook(lambda m, i, o: calls.__setitem__("head", calls["head"] + i[0].shape[0]))
    net(torch.randn(2, 1, 8, 8, 8), rater=torch.zeros(2, 1, 8, 8, 8), num_samples=5)
    assert calls == {"backbone": 1, "head": 2 * 5}  # one backbone pass; the head sees B * N maps


def test_head_equals_concatenation_of_tiled_latent():
    """Kohl et al. tile z and concatenate it to the features before 1x1 convs; the split first layer is the same map."""
    net = _net(2)
    feats = torch.randn(2, net.feature_channels, 6, 5)
    z = torch.randn(2, 3, net.latent_dim)
    w = torch.cat([net.head_features.weight, net.head_latent.weight[..., None, None]], dim=1)
    tiled = torch.cat([feats.unsqueeze(1).expand(-1, 3, -1, -1, -1), z[..., None, None].expand(-1, -1, -1, 6, 5)], 2)
    first = torch.nn.functional.conv2d(tiled.flatten(0, 1), w, net.head_features.bias)
    expected = net.head_rest(first).reshape(2, 3, 1, 6, 5)
    np.testing.assert_allclose(net.head(feats, z).detach().numpy(), expected.detach().numpy(), atol=1e-6)


def test_samples_depend_on_latent_and_generator():
    net = _net()
    image = torch.randn(1, 1, 8, 8, 8)
    a = net.sample(image, 3, generator=torch.Generator().manual_seed(1))
    b = net.sample(image, 3, generator=torch.Generator().manual_seed(1))
    c = net.sample(image, 3, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert not torch.allclose(a[:, 0], a[:, 1])  # different samples differ
    # the mean prediction is the head at z = prior mean
    z = net.prior_net(image).base_dist.loc.unsqueeze(1)
    np.testing.assert_allclose(net.mean_prediction(image).detach().numpy(),
                               net.head(net.features(image), z)[:, 0].detach().numpy(), rtol=1e-6)


def test_posterior_depends_on_rater_and_gradients_reach_all_parts():
    net = _net()
    image = torch.randn(2, 1, 8, 8, 8)
    r0, r1 = torch.zeros(2, 1, 8, 8, 8), torch.ones(2, 1, 8, 8, 8)
    loc0, loc1 = net(image, rater=r0).posterior.base_dist.loc, net(image, rater=r1).posterior.base_dist.loc
    assert not torch.allclose(loc0, loc1)
    out = net(image, rater=r1, num_samples=2)
    (out.samples.mean() + out.kl.sum()).backward()
    for name, module in [("backbone", net.backbone), ("prior", net.prior_net), ("posterior", net.posterior_net),
                         ("head", net.head_rest), ("latent", net.head_latent)]:
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), name
        assert any(g.abs().sum() > 0 for g in grads), name


def test_bad_input_raises():
    net = _net()
    image = torch.randn(2, 1, 8, 8, 8)
    with pytest.raises(ValueError, match="channel"):
        net(torch.randn(2, 2, 8, 8, 8))
    with pytest.raises(ValueError, match="divisible"):
        net(torch.randn(2, 1, 8, 8, 7))
    with pytest.raises(ValueError, match="image must have shape"):
        net(torch.randn(2, 1, 8, 8))
    with pytest.raises(ValueError, match="rater mask must have shape"):
        net(image, rater=torch.zeros(2, 2, 8, 8, 8))
    with pytest.raises(ValueError, match="rater mask must have shape"):
        net(image, rater=torch.zeros(1, 1, 8, 8, 8))
    with pytest.raises(ValueError, match="num_samples"):
        net(image, num_samples=0)
    with pytest.raises(ValueError, match="empty"):
        net(torch.randn(0, 1, 8, 8, 8))
    bad = [
        dict(spatial_dims=1), dict(channels=(4,), strides=()), dict(strides=(2, 2)), dict(latent_dim=0),
        dict(head_layers=0), dict(encoder_channels=(4, 8, 16)), dict(out_channels=0),
    ]
    for kwargs in bad:
        args = dict(spatial_dims=3, in_channels=1, out_channels=1, channels=(4, 8), strides=(2,))
        args.update(kwargs)
        with pytest.raises(ValueError):
            ProbabilisticUNet(**args)


def test_single_head_layer():
    net = _net(2, 2, head_layers=1)
    assert len(net.head_rest) == 0
    assert net(torch.randn(1, 1, 4, 4), num_samples=2).samples.shape == (1, 2, 2, 4, 4)


# ---------------------------------------------------------------------------------------------------- training
def _multi_rater_problem():
    """Two 16^3 volumes with a noisy ball; three raters draw it at radii 2.5 / 4 / 5.5 (dilated versions)."""
    gen = torch.Generator().manual_seed(0)
    grid = torch.stack(torch.meshgrid(*[torch.arange(16.0)] * 3, indexing="ij"))

    def ball(center, radius):
        return (((grid - torch.tensor(center).view(3, 1, 1, 1)) ** 2).sum(0) <= radius**2).float()

    centers = [(7.5, 7.5, 7.5), (6.0, 8.0, 9.0)]
    image = torch.stack([ball(c, 4) for c in centers])[:, None] + 0.1 * torch.randn(2, 1, 16, 16, 16, generator=gen)
    raters = torch.stack([torch.stack([ball(c, r) for r in (2.5, 4.0, 5.5)]) for c in centers])[:, :, None]
    return image, raters


def _train(distance, steps):
    torch.manual_seed(0)
    net = ProbabilisticUNet(3, 1, 1, channels=(8, 16), strides=(2,), latent_dim=2)
    loss_fn = PULASkiLoss(distance=distance, per_voxel=True, seed=0, model_generator=torch.Generator().manual_seed(1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    image, raters = _multi_rater_problem()
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(net, image, raters)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return net, image, raters, np.array(losses)


def _prior_ged(net, image, raters):
    with torch.no_grad():
        samples = net.sample(image, 8, generator=torch.Generator().manual_seed(5)) > 0
    return np.mean([generalized_energy_distance(samples[b, :, 0], raters[b, :, 0]) for b in range(image.shape[0])])


@pytest.mark.parametrize("distance", ["energy", "sinkhorn"])
def test_training_on_multi_rater_problem_decreases_loss(distance):
    torch.manual_seed(0)
    net0 = ProbabilisticUNet(3, 1, 1, channels=(8, 16), strides=(2,), latent_dim=2)
    image, raters = _multi_rater_problem()
    ged_before = _prior_ged(net0, image, raters)
    net, image, raters, losses = _train(distance, 40)
    assert np.isfinite(losses).all()
    assert losses[-5:].mean() < 0.5 * losses[:5].mean()
    assert _prior_ged(net, image, raters) < 0.5 * ged_before


def test_training_learns_rater_variability():
    """After longer training the prior samples spread over the raters' sizes instead of collapsing to one."""
    net, image, raters, losses = _train("energy", 150)
    assert losses[-10:].mean() < 0.2 * losses[:5].mean()
    assert _prior_ged(net, image, raters) < 0.3
    with torch.no_grad():
        volumes = (net.sample(image, 16, generator=torch.Generator().manual_seed(6))[0, :, 0] > 0).sum((1, 2, 3))
    assert volumes.max() > 2 * volumes.min()  # raters: 56, 280, 672 voxels


def test_pulaski_loss_with_multiclass_labels_and_base_objective():
    """PULASkiLoss drives the network end to end: label maps are one-hot encoded for the posterior, softmax samples."""
    net = _net(2, 3)
    image = torch.randn(2, 1, 8, 8)
    labels = torch.randint(0, 3, (2, 4, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    loss = PULASkiLoss(to_onehot_y=True, softmax=True, distance="sinkhorn", seed=0,
                       model_generator=torch.Generator().manual_seed(4))(net, image, labels)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
    # recompute: same rater draw (seed 0) and latent noise (seed 4), one-hot raters, softmax samples, N = R = 4
    idx = torch.randint(4, (2,), generator=torch.Generator().manual_seed(0))
    onehot = torch.nn.functional.one_hot(labels[:, :, 0], 3).permute(0, 1, 4, 2, 3).float()
    with torch.no_grad():
        out = net(image, rater=onehot[torch.arange(2), idx], num_samples=4, generator=torch.Generator().manual_seed(4))
        expected = SinkhornDistanceLoss(reduction="none")(torch.softmax(out.samples, 2), onehot) + out.kl
    assert loss.item() == pytest.approx(expected.mean().item(), rel=1e-5)
    with pytest.raises(ValueError, match="\\(B, R, 1"):
        PULASkiLoss(to_onehot_y=True, softmax=True)(net, image, torch.zeros(2, 4, 3, 8, 8))

    def dice_loss(p, g):
        return 1 - 2 * (p * g).sum() / (p.sum() + g.sum())

    base = PULASkiLoss(distance="base", segmentation_loss=dice_loss, kl_weight=0.0, seed=0,
                       model_generator=torch.Generator().manual_seed(3))
    binary_net = _net(2, 1)
    raters = (torch.rand(2, 3, 1, 8, 8, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    value = base(binary_net, image, raters)
    # recompute: same rater draw (seed 0) and same latent noise (seed 3)
    idx = torch.randint(3, (2,), generator=torch.Generator().manual_seed(0))
    cond = raters[torch.arange(2), idx]
    out = binary_net(image, rater=cond, num_samples=1, generator=torch.Generator().manual_seed(3))
    np.testing.assert_allclose(value.item(), dice_loss(torch.sigmoid(out.samples[:, 0]), cond).item(), rtol=1e-6)
