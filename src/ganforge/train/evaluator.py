"""Metrics during training (``eval_every``): score the sampling generator every N steps on a
fixed set of latent codes, log the numbers, and keep the best checkpoint by one metric.

Image runs use the feature metrics of :mod:`ganforge.metrics.evaluate` on ``eval_features``
(``auto``: Inception when its weights are at hand, the digits classifier on digits); vector
runs use the mode metrics (ring8/grid25) and precision/recall/density/coverage on the points.
"""

from __future__ import annotations

import torch

from ..config import Config
from ..errors import GanforgeError
from ..metrics.evaluate import DIRECTION
from ..utils import to_uint8


class PeriodicEval:
    def __init__(self, cfg: Config, data, device: torch.device, log=None):
        from ..metrics.evaluate import parse_metrics

        t = cfg.train
        self.cfg = cfg
        self.metric = t.eval_metric
        self.higher_better = DIRECTION[self.metric]
        self.n = t.eval_n
        self.vector = hasattr(data, "dim")
        self.device = device
        gen = torch.Generator().manual_seed(t.seed + 3)
        k = cfg.model.num_classes
        self.z = torch.randn(self.n, cfg.model.latent_dim, generator=gen)
        self.c = (torch.arange(self.n) % k) if k else None
        if self.vector:
            self.metrics = ("pr", "dc")
            self.modes, self.mode_std = data.modes, data.mode_std
            sub = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
            self.real = data.x[sub[:self.n]].float()
            self.name = "raw coordinates"
        else:
            from ..metrics.evaluate import real_features
            from ..metrics.features import feature_space

            self.metrics = parse_metrics("fid,kid,pr,dc,classes,is")
            self.space = feature_space(t.eval_features, cfg.data.source, None, str(device),
                                       log=log)
            self.real, self.real_probs = real_features(self.space, data.images, self.n,
                                                       data.labels, log=log)
            same = (self.space.class_names is not None
                    and list(self.space.class_names) == list(data.class_names))
            self.hist = (torch.bincount(data.labels.long(), minlength=data.num_classes).double()
                         if same and data.labels is not None else None)
            self.same_classes = same
            self.name = self.space.name
        self.best: dict | None = None

    @torch.no_grad()
    def __call__(self, G: torch.nn.Module) -> dict[str, float]:
        from ..metrics.evaluate import score_features

        was = G.training
        G.eval()
        outs = []
        try:
            for i in range(0, self.n, 500):
                c = self.c[i:i + 500].to(self.device) if self.c is not None else None
                outs.append(G(self.z[i:i + 500].to(self.device), c).float().cpu())
        finally:
            G.train(was)
        fake = torch.cat(outs)
        if self.vector:
            from ..metrics.modes import mode_metrics

            m = mode_metrics(fake, self.modes, self.mode_std) if self.modes is not None else {}
            m.update(score_features(self.real, fake, self.metrics, bootstrap=False))
        else:
            ff, fp = self.space(to_uint8(fake))
            m = score_features(self.real, ff, self.metrics, self.real_probs, fp, self.hist,
                               self.c if self.same_classes else None, bootstrap=False)
        if self.metric not in m:
            raise GanforgeError(f"eval_metric={self.metric} is not computed for this run "
                                f"(got {', '.join(sorted(m))}): pick one of those")
        return m

    def improved(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best["value"] if self.higher_better else value < self.best["value"]
