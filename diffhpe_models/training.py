"""Training of the three variants (the logic behind training/train.py).

One loop for MixSTE (loss: mean per-joint position error of the 3D) and the DiffHPE variants
(loss: the diffusion loss of `config.diffusion.prediction`). The Wrapper loads the MixSTE
checkpoint named in its config and freezes it. Model selection (`best.pt`) uses the VALIDATION
split only, with the run-time few-step sampler (LiftingPipeline), on the window's target frame.

Reproducibility: every epoch reseeds the global RNG (dropout, diffusion t and noise), the window
sampler and the data workers from (seed, epoch, rank), and rebuilds the (cheap) WindowDataset with
an epoch seed, so `--resume last.pt` continues exactly as an uninterrupted run (same losses, same
weights). That is also why data workers are started per epoch instead of persisting.

Multi-GPU / multi-node: run under `torchrun`; DistributedDataParallel over the trainable part,
DistributedSampler-style sharding (`EpochSampler`), gloo on CPU, nccl on CUDA. Rank 0 writes
all files (atomically); validation is sharded and all-reduced so every rank steps the LR
scheduler identically.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from .atomic import atomic_write_text
from .augmentation import BodyScaler
from .camera import normalize_input
from .checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from .config import ConfigError, ExperimentConfig, save_config
from .dataset import load_dataset
from .diffusion import cosine_schedule, diffusion_loss
from .lifter import LiftingPipeline, build_model, sample_hypotheses, window_calibration
from .metrics import mpjpe, p_mpjpe
from .objectives import energy_score
from .sampler import Sampler, SamplerSettings
from .skeleton import NUM_JOINTS, ROOT
from .windows import WindowDataset, camera_sampler, target_frame

BATCH_KEYS = ("keypoints_px", "mask", "calibration", "pose3d_m")


def batch_tensors(batch: dict, config: ExperimentConfig, device) -> list[torch.Tensor]:
    """keypoints_px, mask, the calibration the model's normalisation needs, pose3d_m: on device."""
    fields = {**batch, "calibration": window_calibration(batch, config.data.input_normalisation)}
    return [fields[k].to(device, non_blocking=True) for k in BATCH_KEYS]


LOG_FIELDS = ("epoch", "train_loss", "val_mpjpe_mm", "val_p_mpjpe_mm", "val_energy_mm", "lr",
              "seconds")


def selection_metric(config: ExperimentConfig) -> str:
    """The validation number that picks best.pt and drives the LR schedule: the energy score of
    the hypotheses for a sampler trained on it (a 'conditioner' aggregation's MPJPE is its
    frozen MixSTE's and would never move), MPJPE of the published pose otherwise."""
    return "val_energy_mm" if config.train.objective == "energy" else "val_mpjpe_mm"


def _seed(*parts: int) -> int:
    """A 63-bit seed from integers (independent streams per (seed, epoch, rank, ...))."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0]) >> 1


class EpochSampler(DistributedSampler):
    """DistributedSampler drawing `samples_per_epoch` windows per epoch (0 = one pass over the
    dataset): concatenated random permutations, seeded by (seed, epoch), sharded by rank."""

    def __init__(self, dataset, samples_per_epoch: int, num_replicas: int, rank: int, seed: int):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        total = samples_per_epoch or len(dataset)
        self.num_samples = math.ceil(total / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def __iter__(self):
        g = torch.Generator().manual_seed(_seed(self.seed, self.epoch))
        n = len(self.dataset)
        perms = [torch.randperm(n, generator=g) for _ in range(math.ceil(self.total_size / n))]
        order = torch.cat(perms)[:self.total_size]
        return iter(order[self.rank:self.total_size:self.num_replicas].tolist())


class TrainingObjective(nn.Module):
    """forward(batch tensors) -> scalar loss; the module DistributedDataParallel wraps.

    MixSTE: MPJPE. DiffHPE, train.objective "denoising": the diffusion loss at a random step;
    "energy": the run-time sampler (the config's DDIM steps, eta 0) unrolled from
    `energy_samples` initial noises per window, its hypotheses scored by the per-joint energy
    score in metres against the ground truth (every frame of the window).
    """

    def __init__(self, model: nn.Module, config: ExperimentConfig, device: torch.device):
        super().__init__()
        self.model = model.to(device)
        self.is_mixste = config.model.variant == "mixste"
        d = config.diffusion
        self.schedule = cosine_schedule(d.timesteps, d.max_beta, d.cosine_offset).to(device)
        self.prediction = d.prediction
        self.pose_scale_m = d.pose_scale_m
        self.normalisation = config.data.input_normalisation
        self.objective = config.train.objective
        self.energy_samples = config.train.energy_samples
        self.sampler = None
        if self.objective == "energy" and not self.is_mixste:
            settings = SamplerSettings("ddim", d.steps, self.energy_samples, 0.0, "mean")
            self.sampler = Sampler(self.schedule, settings, d.prediction)

    def forward(self, keypoints_px, mask, calibration, pose3d_m) -> torch.Tensor:
        """calibration: image_wh (B, 2) or intrinsics (B, 4), by data.input_normalisation."""
        uv_n = normalize_input(keypoints_px, calibration, self.normalisation) * mask.unsqueeze(-1)
        if self.is_mixste:
            return torch.linalg.vector_norm(self.model(uv_n, mask) - pose3d_m, dim=-1).mean()
        if self.sampler is not None:
            b, l, j, _ = pose3d_m.shape
            noise = torch.randn((b, self.energy_samples, l, j, 3), device=pose3d_m.device,
                                dtype=pose3d_m.dtype)
            hyps, _ = sample_hypotheses(self.model, self.sampler, uv_n, mask, noise)
            return energy_score(hyps, pose3d_m - pose3d_m[..., ROOT:ROOT + 1, :])
        conditioning = self.model.encode(uv_n, mask)           # once per window, not per step
        return diffusion_loss(lambda x_t, t: self.model.predict(x_t, t, conditioning),
                              self.schedule, pose3d_m / self.pose_scale_m, self.prediction)


# --- set-up ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Runtime:
    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_runtime(device: str | None) -> Runtime:
    """Single process, or the torchrun process group (nccl on CUDA, gloo on CPU)."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cuda", "cpu"):
        raise ValueError(f"--device must be 'cuda' or 'cpu', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Runtime(0, 1, torch.device(device))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    return Runtime(dist.get_rank(), dist.get_world_size(), dev)


def load_splits(config: ExperimentConfig):
    """(train, validation) subsets of the dataset file; clear errors for an unusable file."""
    ds = load_dataset(config.data.dataset)     # DatasetError names the file, key and shape
    train, val = ds.subset("train"), ds.subset("validation")
    for name, part in (("train", train), ("validation", val)):
        if len(part) == 0:
            raise ValueError(f"{config.data.dataset}: no {name!r} sequences")
    return train, val


def make_window_dataset(config: ExperimentConfig, split, train: bool, seed: int) -> WindowDataset:
    d = config.data
    b = d.body
    return WindowDataset(
        sequences=split.sequences, fps=split.fps, window=d.window, mode=d.window_mode,
        target_fps=d.fps, train=train, speed_range=(d.speed_min, d.speed_max),
        occlusion=d.occlusion, noise_sigma_frac=d.noise_sigma_frac, outlier_prob=d.outlier_prob,
        noise_sigma_frac_max=d.noise_sigma_frac_max, keypoint_bias_frac=d.keypoint_bias_frac,
        stride=None if train else d.stride, seed=seed, flip_prob=d.flip_prob if train else 0.0,
        mirror_occlusion=d.mirror_occlusion,
        camera_sampler=camera_sampler(d.camera), mask_outside_image=d.camera.mask_outside_image,
        body_scaler=BodyScaler((b.stature_min, b.stature_max), b.segment_jitter,
                               (b.width_min, b.width_max)))


def resolve_conditioner(config: ExperimentConfig) -> tuple[ExperimentConfig, dict | None]:
    """Wrapper: read the MixSTE checkpoint named in the config (refusing another variant or
    another window), and take its MixSTE architecture. -> (config, MixSTE state_dict)."""
    if config.model.variant != "diffhpe_wrapper":
        return config, None
    path = config.model.conditioner_checkpoint
    if not path:
        raise ConfigError("model.conditioner_checkpoint: the Wrapper needs a trained MixSTE checkpoint")
    mixste, mixste_config, _ = load_checkpoint(path, expected_variant="mixste")
    for field in ("window", "window_mode", "input_normalisation"):
        ours, theirs = getattr(config.data, field), getattr(mixste_config.data, field)
        if ours != theirs:
            raise CheckpointError(f"{path}: MixSTE trained with data.{field}={theirs!r}, this "
                                  f"config has {ours!r}")
    if mixste_config.model.causal != config.model.causal:
        raise CheckpointError(f"{path}: MixSTE causal={mixste_config.model.causal}, this config "
                              f"has model.causal={config.model.causal}")
    model = dataclasses.replace(config.model, mixste=mixste_config.model.mixste)
    return dataclasses.replace(config, model=model), mixste.state_dict()


# --- validation -----------------------------------------------------------------------------


@torch.no_grad()
def validate(pipeline: LiftingPipeline, loader, config: ExperimentConfig, rt: Runtime,
             seed: int) -> dict[str, float]:
    """MPJPE / P-MPJPE (mm) of the pipeline on the target frame of the validation windows, and
    for a sampler of H >= 2 the per-joint energy score of its hypotheses (mm, every frame of
    the window; objectives.energy_score), else None.

    The initial noise of batch k is drawn from (seed, rank, k): fixed across epochs, so the
    numbers are comparable from one epoch to the next.
    """
    frame = target_frame(config.data.window_mode, config.data.window)
    h = pipeline.hypotheses
    sums = torch.zeros(4, dtype=torch.float64)                 # mpjpe*n, p_mpjpe*n, n, energy*n
    for k, batch in enumerate(loader):
        kp, mask, calib, gt = batch_tensors(batch, config, rt.device)
        g = torch.Generator().manual_seed(_seed(seed, rt.rank, k))
        noise = torch.randn((kp.shape[0], h, config.data.window, NUM_JOINTS, 3), generator=g)
        pose, _, hyps = pipeline.lift_with_hypotheses(kp, mask, calib, noise.to(rt.device))
        pred, target = pose[:, frame].double().cpu().numpy(), gt[:, frame].double().cpu().numpy()
        n = len(pred)
        energy = (energy_score(hyps, gt - gt[..., ROOT:ROOT + 1, :]).item() * 1e3
                  if h >= 2 else 0.0)
        sums += torch.tensor([mpjpe(pred, target) * n, p_mpjpe(pred, target) * n, n, energy * n])
    if rt.world > 1:
        sums = sums.to(rt.device)
        dist.all_reduce(sums)
        sums = sums.cpu()
    n = max(sums[2].item(), 1.0)
    return {"val_mpjpe_mm": sums[0].item() / n, "val_p_mpjpe_mm": sums[1].item() / n,
            "val_energy_mm": sums[3].item() / n if h >= 2 else None}


# --- logs -----------------------------------------------------------------------------------


def write_csv_log(path: Path, history: list[dict]) -> None:
    """The whole per-epoch log, rewritten atomically (so a resumed run's log stays whole)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LOG_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: row.get(k) for k in LOG_FIELDS})     # None -> "" (older rows too)
    atomic_write_text(path, buf.getvalue())


def _tensorboard(out_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(out_dir / "tensorboard"))


# --- the loop -------------------------------------------------------------------------------


def train(config: ExperimentConfig, out_dir: str | os.PathLike, resume: str | os.PathLike | None = None,
          device: str | None = None, epochs: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Train `config` into `out_dir` (config.yaml, log.csv, last.pt, best.pt).

    resume: a last.pt of the same variant: continues at the next epoch with the optimizer,
    scheduler, history and best score it holds. epochs: overrides train.epochs. Returns
    {"best": best validation row, "history": [...], "out_dir": path}.
    Everything that can be refused (config, dataset, conditioner, resume checkpoint) is checked
    before anything is written.
    """
    if epochs is not None:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, epochs=epochs))
    out_dir = Path(out_dir)
    state = None
    mixste_weights = None
    if resume is not None:
        state = read_checkpoint(resume)
        saved = state["config"]
        if saved.model.variant != config.model.variant:
            raise CheckpointError(f"{resume}: a {saved.model.variant!r} checkpoint, the config "
                                  f"trains {config.model.variant!r}")
        if "training" not in state["extra"]:
            raise CheckpointError(f"{resume}: holds no training state (resume from a last.pt)")
        # The architecture and schedule are the checkpoint's; data and train come from `config`.
        config = dataclasses.replace(config, model=saved.model, diffusion=saved.diffusion)
    else:
        config, mixste_weights = resolve_conditioner(config)
    train_split, val_split = load_splits(config)
    tc = config.train
    rt = setup_runtime(device)

    torch.manual_seed(tc.seed)
    model = build_model(config)
    if mixste_weights is not None:
        model.mixste.load_state_dict(mixste_weights)
    if state is not None:
        try:
            model.load_state_dict(state["state_dict"])
        except RuntimeError as e:
            raise CheckpointError(f"{resume}: weights do not fit the model: {e}") from None
    model.to(rt.device)
    objective = TrainingObjective(model, config, rt.device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=tc.lr, weight_decay=tc.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=tc.lr_factor, patience=tc.lr_patience)
    history: list[dict] = []
    best: dict | None = None
    start_epoch = 0
    if state is not None:
        training_state = state["extra"]["training"]
        optimizer.load_state_dict(training_state["optimizer"])
        scheduler.load_state_dict(training_state["scheduler"])
        history = list(training_state["history"])
        best = training_state["best"]
        start_epoch = int(training_state["epoch"]) + 1
    if rt.world > 1:
        ids = [rt.device.index] if rt.device.type == "cuda" else None
        objective = nn.parallel.DistributedDataParallel(objective, device_ids=ids)

    val_data = make_window_dataset(config, val_split, train=False, seed=tc.seed)
    if tc.val_samples and tc.val_samples < len(val_data):   # a fixed, evenly spread subset
        picks = np.linspace(0, len(val_data) - 1, tc.val_samples).round().astype(int)
        val_data = torch.utils.data.Subset(val_data, picks.tolist())
    val_indices = list(range(rt.rank, len(val_data), rt.world))
    cuda = rt.device.type == "cuda"
    val_loader = DataLoader(torch.utils.data.Subset(val_data, val_indices),
                            batch_size=tc.batch_size, num_workers=min(tc.workers, 4),
                            pin_memory=cuda, persistent_workers=tc.workers > 0)
    fps = float(config.data.fps)
    writer = None
    if rt.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, out_dir / "config.yaml")
        writer = _tensorboard(out_dir)

    for epoch in range(start_epoch, config.train.epochs):
        t0 = time.time()
        torch.manual_seed(_seed(tc.seed, epoch, rt.rank))
        train_data = make_window_dataset(config, train_split, train=True, seed=_seed(tc.seed, epoch))
        sampler = EpochSampler(train_data, tc.samples_per_epoch, rt.world, rt.rank, tc.seed)
        sampler.set_epoch(epoch)
        loader = DataLoader(train_data, batch_size=tc.batch_size, sampler=sampler,
                            num_workers=tc.workers, pin_memory=cuda,
                            drop_last=len(sampler) >= tc.batch_size,
                            generator=torch.Generator().manual_seed(_seed(tc.seed, epoch, rt.rank, 1)))
        objective.train()
        loss_sum = torch.zeros((), device=rt.device, dtype=torch.float64)
        steps = 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.train.epochs}", leave=False,
                   disable=not (progress and rt.main), file=sys.stderr)
        for batch in bar:
            kp, mask, calib, gt = batch_tensors(batch, config, rt.device)
            loss = objective(kp, mask, calib, gt)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if tc.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(trainable, tc.grad_clip)
            optimizer.step()
            loss_sum += loss.detach()
            steps += 1
        if rt.world > 1:
            dist.all_reduce(loss_sum)
            loss_sum /= rt.world
        train_loss = loss_sum.item() / max(steps, 1)

        pipeline = LiftingPipeline(model, config)               # switches model to eval
        metrics = validate(pipeline, val_loader, config, rt, tc.seed)
        model.train()
        key = selection_metric(config)
        scheduler.step(metrics[key])
        row = {"epoch": epoch, "train_loss": train_loss, **metrics,
               "lr": optimizer.param_groups[0]["lr"], "seconds": time.time() - t0}
        history.append(row)
        improved = best is None or row[key] < best.get(key, float("inf"))
        if improved:
            best = dict(row)
        if rt.main:
            extra = {"fps": fps, "window_mode": config.data.window_mode, "training": {
                "epoch": epoch, "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "history": history, "best": best}}
            save_checkpoint(out_dir / "last.pt", model, config, extra, metrics=row)
            if improved:
                save_checkpoint(out_dir / "best.pt", model, config,
                                {"fps": fps, "window_mode": config.data.window_mode}, metrics=row)
            write_csv_log(out_dir / "log.csv", history)
            if writer is not None:
                for name in ("train_loss", "val_mpjpe_mm", "val_p_mpjpe_mm", "val_energy_mm", "lr"):
                    if row[name] is not None:
                        writer.add_scalar(name, row[name], epoch)
                writer.flush()
            if progress:
                print(f"epoch {epoch + 1}/{config.train.epochs}: loss {train_loss:.5f}  val MPJPE "
                      f"{row['val_mpjpe_mm']:.1f} mm  P-MPJPE {row['val_p_mpjpe_mm']:.1f} mm  "
                      + (f"energy {row['val_energy_mm']:.2f} mm  " if row["val_energy_mm"] is not None
                         else "") + f"lr {row['lr']:.2e}  {row['seconds']:.1f} s", file=sys.stderr, flush=True)
    if writer is not None:
        writer.close()
    if rt.world > 1:
        dist.barrier()
    return {"best": best, "history": history, "out_dir": str(out_dir), "rank": rt.rank}
