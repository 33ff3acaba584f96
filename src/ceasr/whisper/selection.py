"""What fine-tuning chooses between: the candidates (the pretrained model, each epoch of each run, the mean of
the last epochs' weights, the soup of several runs' final weights, each merge of the final weights with the
pretrained ones), their reports, and the keep rule (see :mod:`ceasr.whisper.finetune`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class EpochReport:
    epoch: int
    train_loss: float | None
    dev_wer: float
    general_wer: float | None
    kept: bool = False
    merge: float = 1.0  # share of this epoch's weights in a merge with the pretrained ones; 1 = the epoch itself
    averaged: int = 1  # the weights are the mean of this many epochs' ending at ``epoch``; 1 = the epoch alone
    run: int = 0  # with several runs: which one (1, 2, ...); 0 = the only run, or a soup of runs
    soup: int = 1  # the weights are the mean of this many runs' final weights; 1 = one run's

    @property
    def name(self) -> str:
        """``3``: epoch 3; ``2-3``: the mean of epochs 2 and 3; ``3x0.7`` and ``2-3x0.7``: merges of those;
        with several runs ``r2:3`` (run 2, epoch 3), ``soup3`` (the mean of 3 runs) and ``soup3x0.7``."""
        weights = str(self.epoch) if self.averaged == 1 else f"{self.epoch - self.averaged + 1}-{self.epoch}"
        if self.soup > 1:
            weights = f"soup{self.soup}"
        elif self.run and self.epoch:
            weights = f"r{self.run}:{weights}"
        return weights if self.merge == 1.0 else f"{weights}x{self.merge:g}"


@dataclass(frozen=True)
class FinetuneResult:
    epochs: list[EpochReport]  # epoch 0 (pretrained), each run's trained epochs (and mean), the soup, the merges
    kept: int  # index into ``epochs`` of the kept candidate
    model_dir: Path
    skipped: int  # unreadable or too long utterances over all sets
    seconds: float
    lr: float  # the top layers' learning rate used (the LR range test's suggestion with lr_find_steps)

    @property
    def kept_report(self) -> EpochReport:
        return self.epochs[self.kept]

    @property
    def kept_epoch(self) -> int:  # 0: the pretrained model was kept
        return self.kept_report.epoch

    def table(self) -> str:
        """One line per candidate (epoch 0 = before fine-tuning, ``3-4`` = the mean of epochs 3 and 4, ``4x0.5`` =
        a merge with epoch 4); the last line states what was kept."""
        lines = ["   epoch  train_loss  dev_WER  general_WER  kept"]
        for e in self.epochs:
            loss = "-" if e.train_loss is None else f"{e.train_loss:.4f}"
            gen = "-" if e.general_wer is None else f"{e.general_wer:.2f}"
            lines.append(f"{e.name:>8}  {loss:>10}  {e.dev_wer:>7.2f}  {gen:>11}  {'*' if e.kept else ''}")
        best = self.kept_report
        lines.append(f"kept epoch {best.name}: dev WER {best.dev_wer:.2f}% -> {self.model_dir} "
                     f"({self.seconds:.0f} s, lr {self.lr:.3g}, {self.skipped} skipped)")
        return "\n".join(lines)


def keep_rule(reports: list[EpochReport], max_forgetting: float) -> int:
    """The keep rule: the index of the lowest dev WER among epoch 0 and the candidates that forgot at most
    ``max_forgetting`` points; ties go to the lower general WER, then the earlier epoch, the single epoch over
    a mean, one run over a soup, the earlier run, the smaller ratio."""
    base = reports[0].general_wer
    allowed = [i for i, r in enumerate(reports)
               if i == 0 or base is None or r.general_wer <= base + max_forgetting]
    r = reports
    return min(allowed, key=lambda i: (r[i].dev_wer, r[i].general_wer or 0.0, r[i].epoch, r[i].averaged,
                                       r[i].soup, r[i].run, r[i].merge))
