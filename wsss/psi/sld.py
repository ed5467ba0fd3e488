"""PSI semantic label diffusion (Sec. 3.3, Eq. 5-9): the supervision y_R_t grows into the pixels whose
confidence passes a threshold that a small network learns from the confidence distribution.

For each class c present in an image's scribbles, at step t (1, 2, ...):
  Omega_{c,r} = the current supervision of c dilated by a (2r+1)^2 window, r = radius * t (the window grows
                with the step; Sec. 3.3);
  mu_c, sigma_c^2 = mean and variance of M(c, .) over Omega_{c,r} (Eq. 6-7), M the softmax confidence;
  gamma_c = mu_c + g(mu_c, sigma_c^2 | theta) * sigma_c, g a small MLP (Eq. 8);
  B(c, i) = 1 / (1 + exp(-k max(M(c, i) - gamma_c, 0))), k = 20 (Eq. 9).
B is >= 1/2 everywhere and > 1/2 exactly where M(c, i) > gamma_c. Labels from the soft map (Eq. 5, union by
max): S(c, i) = max(onehot(y_R_t)(c, i), B~(c, i)), where B~ is B inside Omega_{c,r} for the scribbles'
classes and 0 elsewhere; pixel i gets argmax_c S(c, i) when that maximum exceeds 1/2, and stays unlabelled
otherwise. So every labelled pixel keeps its label (its one-hot 1 is the maximum; ties, where B rounds to 1,
go to the old label too), a new pixel goes to the class it passes by the widest margin M - gamma, and the
scribbles y_R_0 are kept at every step.
"""
import torch
import torch.nn.functional as F
from torch import nn

from wsss import IGNORE


class ThresholdNet(nn.Module):
    """g(mu, sigma^2 | theta) of Eq. 8: an MLP on the two statistics. The last layer starts at zero, so
    gamma starts at mu."""

    def __init__(self, hidden: int = 16):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, mu: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.stack([mu, var], -1)).squeeze(-1)


def one_hot(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """bool [B, C, H, W] of a [B, H, W] label map (255 = no class)."""
    return labels[:, None] == torch.arange(n_classes, device=labels.device)[None, :, None, None]


def regions(labels: torch.Tensor, n_classes: int, radius: int) -> torch.Tensor:
    """Omega_{c,r}: bool [B, C, H, W], each class's labelled pixels dilated by a (2r+1)^2 window."""
    masks = one_hot(labels, n_classes).float()
    if radius > 0:  # a square window is a row window after a column window
        k = 2 * radius + 1
        masks = F.max_pool2d(F.max_pool2d(masks, (k, 1), 1, (radius, 0)), (1, k), 1, (0, radius))
    return masks > 0


def region_stats(conf: torch.Tensor, omega: torch.Tensor):
    """Eq. 6-7: mean and (population) variance of conf [B, C, H, W] over each omega [B, C, H, W]; 0 for
    an empty region."""
    w = omega.to(conf.dtype)
    count = w.sum((2, 3)).clamp_min(1)
    mu = (conf * w).sum((2, 3)) / count
    var = ((conf - mu[..., None, None]) ** 2 * w).sum((2, 3)) / count
    return mu, var


def threshold(conf: torch.Tensor, omega: torch.Tensor, g: nn.Module) -> torch.Tensor:
    """Eq. 8: gamma [B, C] = mu + g(mu, sigma^2 | theta) * sigma over omega."""
    return gamma_of(*region_stats(conf, omega), g)


def gamma_of(mu: torch.Tensor, var: torch.Tensor, g: nn.Module) -> torch.Tensor:
    """Eq. 8 from the statistics (they do not depend on theta: a training step reuses them)."""
    # sigma's gradient is infinite at 0 variance; the eps only keeps it finite
    return mu + g(mu, var) * (var + 1e-12).sqrt()


def binarisation_logits(conf: torch.Tensor, gamma: torch.Tensor, k: float) -> torch.Tensor:
    """k max(M - gamma, 0): Eq. 9's sigmoid argument (the losses take it in logit form)."""
    return k * F.relu(conf - gamma[..., None, None])


def soft_binarise(conf: torch.Tensor, gamma: torch.Tensor, k: float) -> torch.Tensor:
    """Eq. 9: B = 1 / (1 + exp(-k max(M - gamma, 0)))."""
    return torch.sigmoid(binarisation_logits(conf, gamma, k))


def present_classes(scribbles: torch.Tensor, n_classes: int) -> torch.Tensor:
    """bool [B, C]: the classes each image's scribbles hold."""
    return one_hot(scribbles, n_classes).flatten(2).any(2)


def diffuse(labels: torch.Tensor, soft: torch.Tensor, omega: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Eq. 5: y_R_{t+1} [B, H, W] from y_R_t `labels` and the soft map B `soft` (module docstring)."""
    candidate = torch.where(omega & present[..., None, None], soft, torch.zeros_like(soft))
    best, cls = candidate.max(1)
    grown = torch.where(best > 0.5, cls, IGNORE)
    return torch.where(labels != IGNORE, labels, grown)
