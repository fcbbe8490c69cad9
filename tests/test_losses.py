import math

import torch

from ganforge.losses import LOSSES, d_bce, g_minimax, g_nonsaturating


def _sig(x):
    return 1 / (1 + math.exp(-x))


def test_d_bce_matches_hand_computed():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    want = -(math.log(_sig(2.0)) + math.log(_sig(-1.0))) / 2 \
        - (math.log(1 - _sig(0.5)) + math.log(1 - _sig(-3.0))) / 2
    assert math.isclose(d_bce(real, fake).item(), want, rel_tol=1e-6)


def test_generator_losses_match_hand_computed():
    fake = torch.tensor([1.5, -0.5, 0.0])
    ns = -sum(math.log(_sig(v)) for v in (1.5, -0.5, 0.0)) / 3
    mm = sum(math.log(1 - _sig(v)) for v in (1.5, -0.5, 0.0)) / 3
    assert math.isclose(g_nonsaturating(fake).item(), ns, rel_tol=1e-6)
    assert math.isclose(g_minimax(fake).item(), mm, rel_tol=1e-6)


def test_losses_are_stable_for_extreme_logits():
    big = torch.tensor([100.0, -100.0])
    for loss in LOSSES.values():
        assert torch.isfinite(loss.d(big, -big))
        assert torch.isfinite(loss.g(big, -big))
    # a perfectly fooled D: the minimax G loss saturates, the non-saturating one does not
    fake = torch.tensor([-20.0], requires_grad=True)
    g_minimax(fake).backward()
    assert abs(fake.grad.item()) < 1e-6
    fake.grad = None
    g_nonsaturating(fake).backward()
    assert abs(fake.grad.item()) > 0.99


def test_wasserstein_hinge_lsgan_match_hand_computed():
    real, fake = torch.tensor([2.0, -0.5]), torch.tensor([0.25, -2.0])
    W = LOSSES["wasserstein"]
    assert math.isclose(W.d(real, fake).item(), (0.25 - 2.0) / 2 - (2.0 - 0.5) / 2)
    assert math.isclose(W.g(fake).item(), -(0.25 - 2.0) / 2)
    H = LOSSES["hinge"]
    # real: max(0, 1-2)=0, max(0, 1+0.5)=1.5 ; fake: max(0, 1.25)=1.25, max(0, 1-2)=0
    assert math.isclose(H.d(real, fake).item(), 1.5 / 2 + 1.25 / 2)
    assert math.isclose(H.g(fake).item(), -(0.25 - 2.0) / 2)
    L = LOSSES["lsgan"]
    want_d = 0.5 * ((2 - 1) ** 2 + (-0.5 - 1) ** 2) / 2 + 0.5 * (0.25 ** 2 + 2.0 ** 2) / 2
    assert math.isclose(L.d(real, fake).item(), want_d)
    assert math.isclose(L.g(fake).item(), 0.5 * ((0.25 - 1) ** 2 + (-2 - 1) ** 2) / 2)
