"""Fine-tuning a converted Whisper model with (optionally label-smoothed) cross-entropy: ``ceasr finetune``.

The decoder is taught ``sot language transcribe no_timestamps`` + `` text`` + ``eot`` (the prompt's
positions carry no loss). With ``freeze_encoder`` the encoder runs once per utterance before training and
its outputs (float16) are reused every epoch, so an epoch costs only decoder passes; with
``train_encoder_layers`` N as well, what is computed once and reused is the hidden state below the top N
encoder blocks, which train with the decoder (N blocks' passes per epoch instead of all). Layer-wise LR decay
gives each depth ``lr * layer_decay ** (depths above it)``. Every epoch ends with a checkpoint
(``OUT/checkpoints``) and a greedy decode of the dev set (and of the optional general-speech dev set).

Averaged weights (icefall's habit): with ``train.average_last`` k > 1, the mean of the last k epochs' weights
(fewer if fewer were trained, at least 2) is one more candidate, and it becomes the *final weights*;
otherwise the final weights are the last epoch's. Weight-space merges (WiSE-FT, Wortsman et al. 2022): each
``merge_ratios`` entry r gives one more candidate, (1 - r) * pretrained + r * final weights, decoded like an
epoch. Such a merge often keeps most of the gain on the new domain and little of the forgetting.

Model soups (Wortsman et al. 2022, "Model soups: averaging weights of multiple fine-tuned models improves
accuracy without increasing inference time"): with ``runs`` N > 1, fine-tuning runs N times from the
pretrained weights with batch orders seeded ``train.seed``, ``train.seed + 1``, ...; the mean of the runs'
final weights (the soup) is one more candidate and becomes the final weights the merges start from.

Keep rule (guarding against forgetting): the kept model is the candidate with the lowest dev WER among the
pretrained model (epoch 0), the epochs, the mean and the merges whose general-speech WER is at most the
pretrained model's plus ``max_forgetting`` points (every candidate qualifies without a general set); ties go
to the lower general-speech WER, then the earlier epoch, the single epoch over the mean, the smaller ratio.
With several runs, the candidates are the pretrained model, the soup and its merges only: the runs' epochs
are reported, not kept (the lowest dev WER of many close candidates is mostly luck).
Training stops early after ``patience`` epochs without a better dev WER. ``OUT/model`` is the kept model;
``OUT/finetune.json`` the report.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from ceasr.config import to_dict
from ceasr.data.manifest import Utterance
from ceasr.errors import ConfigError
from ceasr.io import atomic_write_text
from ceasr.losses import cross_entropy
from ceasr.metrics import corpus_errors
from ceasr.modeldir import export_model, merge_weights
from ceasr.models.whisper import Whisper
from ceasr.text.normalize import normalize
from ceasr.train import checkpoint as ckpt
from ceasr.train.optim import OPTIMIZERS, build_scheduler
from ceasr.whisper.audio import window_frames
from ceasr.whisper.config import WhisperDecodeConfig, WhisperFinetuneConfig
from ceasr.whisper.decoding import greedy
from ceasr.whisper.encoder_cache import EncoderCache, encoder_digest
from ceasr.whisper.examples import Examples, encoded, encoder_split, prepare, subset
from ceasr.whisper.factorized import teacher_forced_logits
from ceasr.whisper.recognizer import load_whisper_dir
from ceasr.whisper.selection import EpochReport, FinetuneResult, keep_rule
from ceasr.whisper.tokenizer import WhisperTokenizer


def param_groups(model: Whisper, lr: float, layer_decay: float, weight_decay: float) -> list[dict]:
    """One group per depth and decay kind; the top depth gets ``lr``, each one below ``layer_decay`` times less."""
    depths = model.layer_groups()
    groups = []
    for depth, params in enumerate(depths):
        scale = layer_decay ** (len(depths) - 1 - depth)
        trainable = [p for p in params if p.requires_grad]
        for decay, kind in ((weight_decay, True), (0.0, False)):
            chosen = [p for p in trainable if (p.ndim >= 2) == kind]
            if chosen:
                groups.append({"params": chosen, "lr": lr * scale, "weight_decay": decay})
    return groups


def _batch(tok: WhisperTokenizer, prompt: list[int], targets: list[list[int]]):
    """Teacher-forcing ``tokens`` (B, L) padded with eot and ``labels`` (B, L) padded with -1."""
    seqs = [prompt + t for t in targets]
    labels = [[-1] * (len(prompt) - 1) + t + [tok.eot] for t in targets]
    width = max(len(s) for s in seqs)
    tokens = torch.tensor([s + [tok.eot] * (width - len(s)) for s in seqs])
    return tokens, torch.tensor([lab + [-1] * (width - len(lab)) for lab in labels])


def _loss(model: Whisper, ex: Examples, idx: list[int], prompt, tok, cfg: WhisperFinetuneConfig,
          version: list[int] | None = None) -> torch.Tensor:
    enc = encoded(model, ex.pick(idx, version), cfg)
    tokens, labels = _batch(tok, prompt, [ex.targets[i] for i in idx])
    logits = teacher_forced_logits(model.decoder, tokens, enc)
    return cross_entropy(logits, labels, label_smoothing=cfg.label_smoothing)


@torch.no_grad()
def greedy_texts(model: Whisper, ex: Examples, tok: WhisperTokenizer, cfg: WhisperFinetuneConfig,
                 batch: int = 8) -> list[str]:
    """Normalized greedy transcripts of ``ex``, in order."""
    model.eval()
    prompt = tok.prompt(cfg.language)
    # A runaway hypothesis stops at twice the longest reference (plus slack) instead of 224 tokens.
    longest = max(len(t) for t in ex.targets)
    dcfg = WhisperDecodeConfig(language=cfg.language, max_new_tokens=min(224, 2 * longest + 10))
    hyps = []
    for i in range(0, len(ex.refs), batch):
        enc = encoded(model, ex.inputs[i : i + batch].float(), cfg)
        prompts = torch.tensor([prompt] * len(enc))
        hyps += [normalize(tok.decode(toks), cfg.language) for toks, _, _ in greedy(model, enc, prompts, tok, dcfg)]
    return hyps


def dev_wer(model: Whisper, ex: Examples, tok: WhisperTokenizer, cfg: WhisperFinetuneConfig) -> float:
    """Corpus WER (%) of a greedy decode of ``ex`` on normalized text."""
    return 100.0 * corpus_errors(ex.refs, greedy_texts(model, ex, tok, cfg)).rate


def _evaluate(model: Whisper, sets, tok: WhisperTokenizer, cfg: WhisperFinetuneConfig, epoch: int,
              loss: float | None, **what) -> EpochReport:
    """The report of the weights in ``model`` (``what``: the EpochReport fields saying which candidate it is)."""
    _, dev, general = sets
    gen_wer = dev_wer(model, general, tok, cfg) if general else None
    return EpochReport(epoch, loss, dev_wer(model, dev, tok, cfg), gen_wer, **what)


def _step(model, ex, idx, prompt, tok, cfg, optimizer, version: list[int] | None = None) -> float:
    """One optimizer step on the examples ``idx`` (in their ``version``, see Examples.pick); returns the loss."""
    loss = _loss(model, ex, idx, prompt, tok, cfg, version)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.train.grad_clip)
    optimizer.step()
    return loss.item()


def _train_mode(model: Whisper, cfg: WhisperFinetuneConfig) -> None:
    model.train()
    if cfg.freeze_encoder:
        model.encoder.eval()


def _train_epoch(model, ex, prompt, tok, cfg, optimizer, scheduler, gen, progress, epoch) -> tuple[float, int]:
    """One pass over shuffled batches, each utterance in one of its versions drawn at random (with speed
    perturbation); returns the mean loss and the number of steps."""
    _train_mode(model, cfg)
    order = torch.randperm(len(ex.targets), generator=gen).tolist()
    batches = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
    version = None
    if ex.versions is not None:
        version = torch.randint(0, ex.versions.shape[1] + 1, (len(ex.targets),), generator=gen).tolist()
    total = 0.0
    bar = tqdm(batches, desc=f"epoch {epoch}", disable=not progress, leave=False)
    for idx in bar:
        loss = _step(model, ex, idx, prompt, tok, cfg, optimizer, version and [version[i] for i in idx])
        scheduler.step()
        total += loss
        bar.set_postfix(loss=f"{loss:.3f}")
    return total / max(len(batches), 1), len(batches)


def _find_lr(model, train: Examples, tok, cfg: WhisperFinetuneConfig, out_dir: Path, progress: bool):
    """The LR range test (``cfg.lr_find_*``) on ``train``; writes ``OUT/lr_find.csv`` and ``.png``."""
    from ceasr.tune.lr_find import write_lr_find
    from ceasr.whisper.lr_find import whisper_lr_find

    unit = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=1.0))  # group lr = its decay scale
    optimizer, _ = _optimizer(model, unit, len(train.targets))
    prompt = tok.prompt(cfg.language)
    _train_mode(model, cfg)
    result = whisper_lr_find(model, lambda idx: _step(model, train, idx, prompt, tok, cfg, optimizer),
                             len(train.targets), cfg.batch_size, optimizer, cfg.lr_find_min, cfg.lr_find_max,
                             cfg.lr_find_steps, cfg.train.seed, progress)
    write_lr_find(result, out_dir)
    print(f"lr-find: suggested lr {result.suggested:.3g} (steepest {result.steepest:.3g}, "
          f"minimum at {result.at_minimum:.3g}{', diverged' if result.diverged else ''})", file=sys.stderr)
    return result


def _optimizer(model: Whisper, cfg: WhisperFinetuneConfig, n_train: int):
    """ceasr's optimizer (by name) over layer-decayed groups and its schedule over all planned steps."""
    if cfg.train.optimizer not in OPTIMIZERS:
        raise ConfigError(f"optimizer {cfg.train.optimizer!r}: unknown; known: {', '.join(OPTIMIZERS)}")
    groups = param_groups(model, cfg.train.lr, cfg.layer_decay, cfg.train.weight_decay)
    optimizer = OPTIMIZERS[cfg.train.optimizer](groups, cfg.train)
    steps_per_epoch = -(-n_train // cfg.batch_size)
    return optimizer, build_scheduler(optimizer, cfg.train, steps_per_epoch * cfg.train.max_epochs)


def _fit(model, tok, cfg, sets, out_dir: Path, progress: bool, first: EpochReport,
         run: int = 0) -> tuple[list[EpochReport], dict]:
    """Run ``run``'s epochs (batch order seeded ``train.seed + run - 1``) from the weights in ``model``, whose
    report is ``first``, until ``max_epochs``, ``patience`` or the time box; returns the reports (``first``
    included) and the checkpoint paths by epoch."""
    train = sets[0]
    optimizer, scheduler = _optimizer(model, cfg, len(train.targets))
    gen = torch.Generator().manual_seed(cfg.train.seed + max(run - 1, 0))
    prompt = tok.prompt(cfg.language)
    start = time.perf_counter()

    def save(step: int, epoch: int) -> Path:
        extra = {"report": dataclasses.asdict(reports[-1])}
        return ckpt.save_checkpoint(out_dir, step, epoch, model, optimizer, scheduler, {}, extra)

    reports = [first]
    paths, step, stale = {0: save(0, 0)}, 0, 0
    for epoch in range(1, cfg.train.max_epochs + 1):
        loss, n = _train_epoch(model, train, prompt, tok, cfg, optimizer, scheduler, gen, progress, epoch)
        step += n
        reports.append(_evaluate(model, sets, tok, cfg, epoch, loss, run=run))
        paths[epoch] = save(step, epoch)
        kept = keep_rule(reports, cfg.max_forgetting)  # only ever moves to the newest epoch, so never a pruned one
        ckpt.mark_best(out_dir, paths[kept], "dev_wer", reports[kept].dev_wer)
        ckpt.prune(out_dir, max(cfg.train.keep_last, cfg.train.average_last))
        _say(reports[-1], "epoch", sets)
        stale = 0 if reports[-1].dev_wer < min(r.dev_wer for r in reports[:-1]) else stale + 1
        if stale >= cfg.patience:
            break
        if cfg.max_minutes > 0 and time.perf_counter() - start > 60 * cfg.max_minutes:
            print(f"time box of {cfg.max_minutes:g} min reached after epoch {epoch}", file=sys.stderr)
            break
    return reports, paths


def _averaged(last: int, cfg: WhisperFinetuneConfig) -> int:
    """How many epochs the mean candidate averages after ``last`` epochs: 1 (no mean) unless at least 2."""
    k = min(cfg.train.average_last, last)
    return k if k >= 2 else 1


def _final_weights(model: Whisper, paths: dict, last: int, sets, tok, cfg: WhisperFinetuneConfig,
                   run: int = 0) -> list:
    """Load the final weights of a run into ``model``: the mean of its last epochs' checkpoints (reported as one
    more candidate), or the last epoch's weights as they are (no report)."""
    k = _averaged(last, cfg)
    if k == 1:
        return []
    model.load_state_dict(ckpt.average_checkpoints([paths[e] for e in range(last - k + 1, last + 1)]))
    report = _evaluate(model, sets, tok, cfg, last, None, averaged=k, run=run)
    _say(report, "mean of epochs", sets)
    return [report]


def _soup(model: Whisper, finals: list[dict], lasts: list[int], sets, tok, cfg: WhisperFinetuneConfig) -> list:
    """With several runs, load the mean of their final weights (a model soup) into ``model`` and report it."""
    if len(finals) < 2 or max(lasts) == 0:
        return []
    model.load_state_dict(ckpt.average_states(finals))
    report = _evaluate(model, sets, tok, cfg, max(lasts), None, soup=len(finals))
    _say(report, "soup", sets)
    return [report]


def _merges(model: Whisper, pretrained: dict, final: EpochReport, sets, tok, cfg: WhisperFinetuneConfig) -> list:
    """Evaluate ``cfg.merge_ratios`` merges of the pretrained weights with ``model``'s (the final weights,
    described by ``final``: an epoch, a mean of epochs or a soup); ``model`` ends with its own weights back."""
    if final.epoch == 0 or not cfg.merge_ratios:
        return []
    tuned = {k: v.detach().clone() for k, v in model.state_dict().items()}
    reports = []
    for ratio in cfg.merge_ratios:
        model.load_state_dict(merge_weights(pretrained, tuned, ratio))
        reports.append(_evaluate(model, sets, tok, cfg, final.epoch, None, merge=ratio, averaged=final.averaged,
                                 run=final.run, soup=final.soup))
        _say(reports[-1], "merge", sets)
    model.load_state_dict(tuned)
    return reports


def _say(report: EpochReport, what: str, sets) -> None:
    """One line on stderr: ``epoch 3: train loss .., dev WER ..%, general WER ..%`` (the last with a general set)."""
    loss = "" if report.train_loss is None else f" train loss {report.train_loss:.4f},"
    print(f"{what} {report.name}:{loss} dev WER {report.dev_wer:.2f}%"
          + (f", general WER {report.general_wer:.2f}%" if sets[2] else ""), file=sys.stderr)


def _candidate_weights(model: Whisper, choice: EpochReport, paths: dict, pretrained: dict,
                       finals: list[dict]) -> None:
    """Load the weights of the candidate ``choice`` into ``model`` (``paths[run][epoch]``: the runs'
    checkpoints; ``finals``: the runs' final weights, which a soup averages)."""
    if choice.soup > 1:
        model.load_state_dict(ckpt.average_states(finals))
    else:
        first = choice.epoch - choice.averaged + 1
        runs = paths[choice.run or 1]
        model.load_state_dict(ckpt.average_checkpoints([runs[e] for e in range(first, choice.epoch + 1)]))
    if choice.merge != 1.0:
        model.load_state_dict(merge_weights(pretrained, model.state_dict(), choice.merge))


def _check_encoder_layers(model: Whisper, cfg: WhisperFinetuneConfig) -> None:
    n, k = len(model.encoder.blocks), cfg.train_encoder_layers
    if not 0 <= k <= n:
        raise ConfigError(f"train_encoder_layers={k}: this encoder has {n} blocks")
    if k > 0 and not cfg.freeze_encoder:
        raise ConfigError("train_encoder_layers: only with a frozen encoder (training the whole encoder already "
                          "trains every block)")


def finetune(model_dir: str | Path, train_rows: list[Utterance], dev_rows: list[Utterance], out_dir: str | Path,
             cfg: WhisperFinetuneConfig = WhisperFinetuneConfig(), general_rows: list[Utterance] | None = None,
             progress: bool = True) -> FinetuneResult:
    """Fine-tune the Whisper model in ``model_dir``; write checkpoints, ``OUT/model`` and ``OUT/finetune.json``."""
    bad = [r for r in cfg.merge_ratios if not 0.0 < r < 1.0]
    if bad:
        raise ConfigError(f"merge ratios {bad}: each must lie strictly between 0 (pretrained) and 1 (fine-tuned)")
    if any(not 0.0 < s != 1.0 for s in cfg.speeds):
        raise ConfigError(f"speeds {list(cfg.speeds)}: each must be positive and not 1 (the recorded version is "
                          "always one of the versions)")
    if cfg.train.average_last < 1:
        raise ConfigError(f"average_last={cfg.train.average_last}: the number of last epochs to average, at least 1")
    if cfg.runs < 1:
        raise ConfigError(f"runs={cfg.runs}: the number of fine-tuning runs to average, at least 1")
    start = time.perf_counter()
    out_dir = Path(out_dir)
    model, dir_cfg, tok = load_whisper_dir(model_dir)
    _check_encoder_layers(model, cfg)
    torch.manual_seed(cfg.train.seed)
    for p in model.encoder.parameters():
        p.requires_grad_(not cfg.freeze_encoder)
    split = encoder_split(model, cfg)
    if split is not None:
        for p in [*model.encoder.blocks[split:].parameters(), *model.encoder.ln_post.parameters()]:
            p.requires_grad_(True)
    audio_ctx = cfg.audio_ctx or dir_cfg.decode.audio_ctx
    frames = window_frames(audio_ctx, model.cfg.n_audio_ctx)
    cache = EncoderCache(cfg.encoder_cache, encoder_digest(model, split, frames)) if cfg.encoder_cache else None
    train = prepare(subset(train_rows, cfg.max_train_utterances), model, tok, cfg, "train", progress, cache, frames,
                    cfg.speeds)
    dev = prepare(dev_rows, model, tok, cfg, "dev", progress, cache, frames)
    general = prepare(general_rows, model, tok, cfg, "general", progress, cache, frames) if general_rows else None
    lr_find = _find_lr(model, train, tok, cfg, out_dir, progress) if cfg.lr_find_steps > 0 else None
    if lr_find is not None:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=lr_find.suggested))
    sets = (train, dev, general)
    pretrained = {k: v.detach().clone() for k, v in model.state_dict().items()}
    reports = [_evaluate(model, sets, tok, cfg, 0, None)]
    paths, finals, lasts = {}, [], []
    for run in range(1, cfg.runs + 1):
        model.load_state_dict(pretrained)
        tag = run if cfg.runs > 1 else 0
        run_dir = out_dir / f"run{run}" if cfg.runs > 1 else out_dir
        run_reports, paths[run] = _fit(model, tok, cfg, sets, run_dir, progress, reports[0], tag)
        lasts.append(run_reports[-1].epoch)
        reports += run_reports[1:] + _final_weights(model, paths[run], lasts[-1], sets, tok, cfg, tag)
        if cfg.runs > 1:  # a soup's ingredients; one run's final weights stay in ``model``
            finals.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    reports += _soup(model, finals, lasts, sets, tok, cfg)
    final = reports[-1] if cfg.runs > 1 else EpochReport(lasts[0], None, 0.0, None, averaged=_averaged(lasts[0], cfg))
    reports += _merges(model, pretrained, final, sets, tok, cfg)
    # With several runs, only the soup and its merges compete with the pretrained model: the best of many close
    # candidates on a small dev set is mostly the luckiest (see the README's fine-tuning figures).
    eligible = [i for i, r in enumerate(reports) if cfg.runs == 1 or i == 0 or r.soup > 1]
    kept = eligible[keep_rule([reports[i] for i in eligible], cfg.max_forgetting)]
    choice = reports[kept]
    _candidate_weights(model, choice, paths, pretrained, finals)
    reports = [dataclasses.replace(r, kept=i == kept) for i, r in enumerate(reports)]
    dir_cfg = dataclasses.replace(dir_cfg, decode=dataclasses.replace(dir_cfg.decode, audio_ctx=audio_ctx))
    model_out = export_model(model, dir_cfg, tok, out_dir / "model")
    skipped = train.skipped + dev.skipped + (general.skipped if general else 0)
    result = FinetuneResult(reports, kept, model_out, skipped, time.perf_counter() - start, cfg.train.lr)
    atomic_write_text(out_dir / "finetune.json", json.dumps({
        "config": to_dict(cfg), "epochs": [dataclasses.asdict(r) for r in reports], "kept_epoch": choice.epoch,
        "kept_merge": choice.merge, "kept_name": choice.name,
        "keep_rule": f"lowest dev WER among epoch 0, the epochs, their mean, the soup and the merges with general "
                     f"WER <= epoch 0's + {cfg.max_forgetting}",
        "model_dir": str(model_out), "skipped": skipped, "seconds": result.seconds,
        "lr_find": None if lr_find is None else {"suggested": lr_find.suggested, "steepest": lr_find.steepest,
                                                 "at_minimum": lr_find.at_minimum, "diverged": lr_find.diverged},
    }, indent=2) + "\n")
    return result
