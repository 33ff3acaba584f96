"""``ceasr study losses``: cross-entropy vs MSE and RMSE on the softmax, training a voice-command classifier.

The classes are the command phrases of the default domain (:func:`ceasr.data.domain.command_phrases`); the
utterances are the rows whose normalized text is one of them. Each loss trains the same classifier through
the one training loop (:class:`ClassifierObjective` has the ASR model's forward signature) at every LR of a
small sweep; the best LR by final dev accuracy (ties: by mean accuracy over the run, i.e. the faster one) is
reported with its curves.

Why CE learns faster when the model is confidently wrong (gradients with respect to the logits z, p =
softmax(z), y one-hot, C classes; :func:`logit_grad` has the closed forms):

* CE ``-log p_y``: ``dL/dz = p - y``; its norm tends to sqrt(2) as the wrong class's p tends to 1.
* MSE ``mean_c (p_c - y_c)^2``: ``dL/dz = J^T g`` with ``g = 2 (p - y) / C`` and the softmax Jacobian
  ``J = diag(p) - p p^T``, i.e. ``p * (g - <p, g>)``: it vanishes as p saturates on any class, so a
  confidently wrong model gets almost no signal.
* RMSE ``sqrt(MSE)``: ``dL/dz = dMSE/dz / (2 sqrt(MSE))``: the same saturating direction, rescaled.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ceasr import losses


def _ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return losses.cross_entropy(logits, labels, reduction="sum")


def _onehot(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.one_hot(labels, logits.size(-1)).to(logits.dtype)


def _mse(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    p = logits.softmax(dim=-1)
    return losses.mse(p, _onehot(logits, labels)) * logits.size(0)


def _rmse(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    p = logits.softmax(dim=-1)
    return losses.rmse(p, _onehot(logits, labels)) * logits.size(0)


# Each maps (logits (B, C), labels (B,)) to the batch loss times B ("a sum over utterances"), which the
# training loop divides by the number of utterances in the step.
CLASSIFIER_LOSSES = {"ce": _ce, "mse": _mse, "rmse": _rmse}


def logit_grad(name: str, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Closed-form gradient of the *batch-mean* loss ``CLASSIFIER_LOSSES[name] / B`` wrt logits, (B, C)."""
    b, c = logits.shape
    p = logits.softmax(dim=-1)
    y = _onehot(logits, labels)
    if name == "ce":
        return (p - y) / b
    g = 2.0 * (p - y) / (b * c)  # d mean((p - y)^2) / dp
    grad = p * (g - (p * g).sum(dim=-1, keepdim=True))  # J^T g with J = diag(p) - p p^T (symmetric)
    if name == "mse":
        return grad
    if name == "rmse":
        return grad / (2.0 * ((p - y) ** 2).mean().sqrt().clamp(min=1e-12))
    raise ValueError(f"unknown loss {name!r}; known: {', '.join(CLASSIFIER_LOSSES)}")


def wrong_confidence_grad(name: str, q: float, c: int) -> float:
    """Norm of the per-example logit gradient when a wrong class has probability ``q`` and the others share
    ``1 - q`` equally (the true class among them): how much signal a confidently wrong example gives."""
    rest = (1.0 - q) / (c - 1)
    p = torch.full((1, c), rest, dtype=torch.float64)
    p[0, 1] = q
    return float(logit_grad(name, p.log(), torch.tensor([0])).norm())


class ClassifierObjective(nn.Module):
    """A classifier trained by the ASR training loop: ``forward(feats, feat_lens, ys, ys_lens, norm)``.

    ``ys[:, 0]`` holds the class id. ``grad_norms`` collects the output layer's weight-gradient norm of every
    backward pass (a hook), which is the "gradient magnitude at the output layer" the study reports.
    """

    def __init__(self, classifier: nn.Module, loss: str):
        super().__init__()
        self.classifier, self.loss_name, self.loss = classifier, loss, CLASSIFIER_LOSSES[loss]
        self.grad_norms: list[float] = []
        classifier.out.weight.register_hook(self._record)

    @property
    def normalize(self) -> nn.Module:  # the training loop sets CMVN statistics here
        return self.classifier.normalize

    @property
    def embed(self) -> nn.Module:
        return self.classifier.embed

    def _record(self, grad: torch.Tensor) -> None:
        self.grad_norms.append(float(grad.norm()))

    def forward(self, feats, feat_lens, ys, ys_lens, norm: float | None = None):
        """Loss (summed over utterances, divided by ``norm``, default B) and stats ``loss``, ``acc``."""
        logits = self.classifier(feats, feat_lens)  # (B, C)
        labels = ys[:, 0]
        norm = float(feats.size(0)) if norm is None else float(norm)
        loss = self.loss(logits, labels) / norm
        acc = (logits.argmax(dim=-1) == labels).float().mean().item()
        return loss, {"loss": loss.item(), "ctc": 0.0, "att": 0.0, "att_acc": acc}


class PhraseTokenizer:
    """Maps a phrase to ``[its class id]`` so the ASR dataset carries class labels; unknown text raises."""

    def __init__(self, phrases: list[str]):
        self.phrases = list(phrases)
        self.index = {p: i for i, p in enumerate(self.phrases)}
        self.vocab_size = len(self.phrases)

    def encode(self, text: str) -> list[int]:
        return [self.index[text]]

    def decode(self, ids) -> str:
        return " ".join(self.phrases[i] for i in ids)
