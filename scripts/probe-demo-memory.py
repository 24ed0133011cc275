#!/usr/bin/env python
"""Probe the demo DiT's memory directly: can it learn to carry an object's colour from the first segment
of a three-segment clip into the memory segment (`The circle comes back on a navy background.`), when
the memory segment's own latents are pure noise and a linear head must name the colour?

    npm run build && .venv/bin/python scripts/probe-demo-memory.py --work /tmp/probe
    ... --bundle models/demo-baseline --steps 400 --models ttt_mlp,none

This asks the question of the issue's memory target without diffusion in the way: the loss is a
cross-entropy on the colour, read from the mean of the memory segment's last hidden states (the input of
the DiT's final layer), and every weight trains (AdamW; the TTT layers and gates at 10 times the rate).
`--bundle` is a local-attention demo bundle; `ttt_mlp` adds fresh TTT-MLP layers to it
(`with_ttt_layers`), `none` keeps it as it is (the control: its attention windows reach one latent
frame back, not two segments). The clips are memory-only world clips (first, cut, memory), the training
ones of the training split and the test ones held out, made and encoded (`ttt-video prepare` with the
bundle's VAE and T5) into `--work` once. Every latent is noised to timestep 50; the memory segment's are
replaced by noise. Prints the loss and a table of accuracies; chance is about 1 in 6.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from ttt_video.demo import evaluate, world
from ttt_video.demo.dataset import write_dataset
from ttt_video.demo.model_bundle import with_ttt_layers
from ttt_video.demo.score import expected_segments
from ttt_video.models import TTTVideoDiT
from ttt_video.models.ttt_order import segment_chunk_frames
from ttt_video.sampling.schedule import denoiser_grid

COLOURS = list(world.OBJECT_COLOURS)
MEMORY_ONLY = evaluate.board_set("memory")  # three segments: first, cut, memory
SPLITS = {"train": 7, "heldout": 9}  # split -> world seed of its clips
TIMESTEP = 50
TRAIN_SCORED = 64  # training clips whose accuracy is reported


def prepared_clips(
    work: Path, bundle: Path, split: str, count: int
) -> tuple[Path, Path]:
    """`count` memory-only clips of `split`: their annotation file (`work/<split>-clips`) and the folder
    `ttt-video prepare` encoded them into (`work/<split>-dataset`)."""
    data, dataset = work / f"{split}-clips", work / f"{split}-dataset"
    if not (data / "annotations.jsonl").exists():
        write_dataset(data, count, 3, SPLITS[split], split, MEMORY_ONLY.mix)
    if not (dataset / "dataset.json").exists():
        command = [
            *evaluate.cli_command(ROOT),
            "prepare",
            str(data / "annotations.jsonl"),
        ]
        command += [
            "--out",
            str(dataset),
            "--model",
            str(bundle),
            "--preset",
            "demo/3s",
        ]
        command += ["--run-dir", str(work / f"{split}-prepare-run")]
        env = evaluate.cli_env(ROOT)
        subprocess.run(command, check=True, stdout=sys.stderr, env=env)
    return data / "annotations.jsonl", dataset


def memory_items(
    annotations: Path, dataset: Path
) -> list[tuple[torch.Tensor, torch.Tensor, int, int]]:
    """`(latent means (T, C, h, w), text (n, L, D), memory segment index, colour index)` per clip with a
    memory segment; each clip's storyboard is its line of `annotations` (the manifest's annotation_line)."""
    boards = [
        json.loads(line)["segments"] for line in annotations.read_text().splitlines()
    ]
    items = []
    for line in (dataset / "manifest.jsonl").read_text().splitlines():
        entry = json.loads(line)
        expected = expected_segments(boards[entry["annotation_line"] - 1])
        memory = [k for k, e in enumerate(expected) if e["kind"] == "memory"]
        if memory:
            k = memory[-1]
            moments = load_file(dataset / entry["latents"])["moments"]
            text = load_file(dataset / entry["text"])["text"]
            colour = COLOURS.index(expected[k]["colour"])
            items.append((moments[:, : moments.shape[1] // 2], text, k, colour))
    return items


def segment_frames(k: int, num_segments: int, num_frames: int) -> slice:
    """Segment k's latent frames, as the model pairs them with its prompt (13, 12, 12, ...)."""
    chunks = segment_chunk_frames(num_segments, num_frames)
    start = sum(chunks[:k])
    return slice(start, start + chunks[k])


class Probe(torch.nn.Module):
    """The DiT and a linear colour head on the mean of the memory segment's last hidden states."""

    def __init__(self, dit: TTTVideoDiT):
        super().__init__()
        self.dit = dit
        self.head = torch.nn.Linear(dit.config.model_dim, len(COLOURS))
        self.hidden: torch.Tensor | None = None
        dit.final_layer.register_forward_hook(
            lambda _m, inputs, _o: setattr(self, "hidden", inputs[0])
        )

    def forward(self, items, generator: torch.Generator) -> torch.Tensor:
        latents = torch.stack([item[0] for item in items])
        a = denoiser_grid()[TIMESTEP]
        latents = a * latents + (1 - a * a).sqrt() * torch.randn(
            latents.shape, generator=generator
        )
        text = torch.stack([item[1] for item in items])
        memory = [
            segment_frames(k, text.shape[1], latents.shape[1]) for *_, k, _ in items
        ]
        for b, frames in enumerate(memory):
            noise = torch.randn(latents[b, frames].shape, generator=generator)
            latents[b, frames] = noise
        self.dit(latents, text, torch.full((len(items),), TIMESTEP))
        tokens = self.hidden.shape[1] // latents.shape[1]  # per latent frame
        pooled = [
            self.hidden[b, frames.start * tokens : frames.stop * tokens].mean(0)
            for b, frames in enumerate(memory)
        ]
        return self.head(torch.stack(pooled))


def accuracy(probe: Probe, items, generator: torch.Generator, batch: int = 8) -> float:
    probe.eval()
    hits = 0
    with torch.no_grad():
        for start in range(0, len(items), batch):
            chunk = items[start : start + batch]
            predicted = probe(chunk, generator).argmax(1)
            hits += int((predicted == torch.tensor([item[3] for item in chunk])).sum())
    probe.train()
    return hits / len(items)


def train_probe(ssm: str, args, train_items, test_items) -> dict:
    """Train the probe of `ssm` for `args.steps` steps of 4 clips; returns its accuracies."""
    dit = TTTVideoDiT.from_pretrained(args.bundle)
    probe = Probe(with_ttt_layers(dit, args.seed) if ssm == "ttt_mlp" else dit).train()
    fast = [p for n, p in probe.named_parameters() if "ttt" in n or "gate" in n]
    rest = [p for n, p in probe.named_parameters() if not ("ttt" in n or "gate" in n)]
    optimizer = torch.optim.AdamW(
        [{"params": rest, "lr": args.lr}, {"params": fast, "lr": 10 * args.lr}]
    )
    generator = torch.Generator().manual_seed(args.seed)
    started = time.perf_counter()
    for step in range(1, args.steps + 1):
        chosen = [
            train_items[int(i)]
            for i in torch.randint(len(train_items), (4,), generator=generator)
        ]
        loss = F.cross_entropy(
            probe(chosen, generator), torch.tensor([i[3] for i in chosen])
        )
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(probe.parameters(), 1.0)
        optimizer.step()
        if step % 50 == 0 or step == args.steps:
            seconds = time.perf_counter() - started
            message = f"{ssm}: step {step}/{args.steps} loss {loss.item():.3f} ({seconds:.0f} s)"
            print(message, file=sys.stderr, flush=True)
    return {
        "train": accuracy(probe, train_items[:TRAIN_SCORED], generator),
        "heldout": accuracy(probe, test_items, generator),
        "seconds": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--work", type=Path, required=True, help="folder for the clips (reused)"
    )
    baseline = ROOT / "models" / "demo-baseline"
    parser.add_argument(
        "--bundle", type=Path, default=baseline, help="a local-attention demo bundle"
    )
    parser.add_argument(
        "--models", default="ttt_mlp,none", help="comma-separated: ttt_mlp, none"
    )
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument(
        "--lr", type=float, default=1e-3, help="the DiT's and head's (TTT layers: 10x)"
    )
    parser.add_argument("--train-clips", type=int, default=300)
    parser.add_argument("--test-clips", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    models = args.models.split(",")
    if unknown := set(models) - {"ttt_mlp", "none"}:
        parser.error(
            f"--models: unknown {', '.join(sorted(unknown))}; choose from ttt_mlp, none"
        )
    if TTTVideoDiT.from_pretrained(args.bundle).config.has_ttt:
        parser.error(
            f"--bundle {args.bundle} has TTT layers; give a local-attention bundle (ssm_layer none)"
        )
    torch.manual_seed(args.seed)
    train_items = memory_items(
        *prepared_clips(args.work, args.bundle, "train", args.train_clips)
    )
    test_items = memory_items(
        *prepared_clips(args.work, args.bundle, "heldout", args.test_clips)
    )
    results = {ssm: train_probe(ssm, args, train_items, test_items) for ssm in models}
    print(
        f"| model | steps | training clips ({min(TRAIN_SCORED, len(train_items))}) "
        f"| held-out clips ({len(test_items)}) | seconds |"
    )
    print("|---|---|---|---|---|")
    for ssm, r in results.items():
        print(
            f"| {ssm} | {args.steps} | {r['train']:.1%} | {r['heldout']:.1%} | {r['seconds']:.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
