"""Model bundles (contract 4): diffusers CogVideoX -> TTT-Video conversion, and training checkpoints.

`convert_diffusers` renames the transformer keys by reference-spec 8.5 (1-to-1, no reshapes), adds the
TTT parameters with the constructor initialisation of spec 5.5 drawn from a seed, and writes
`<dst>/transformer/` (config.json + safetensors). It streams: one tensor is read at a time and at most one
output shard plus one layer's TTT parameters are held in memory, so the 5B model (~11 GB in bf16)
converts on a small machine. `vae/`, `text_encoder/` and `tokenizer/` are linked (or copied) as they are.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from .models import DiTConfig, TTTVideoDiT, init_ttt_parameters
from .models.dit import TransformerLayer
from .models.ttt import TanhGate, TTTBase

BUNDLE_FILE = "bundle.json"
BUNDLE_FORMAT = "ttt-video-bundle"
COMPANION_FOLDERS = ("vae", "text_encoder", "tokenizer", "scheduler")
DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"
DIFFUSERS_INDEX = "diffusion_pytorch_model.safetensors.index.json"
DEFAULT_SHARD_BYTES = 5 * 2**30
# Raw CogVideoX weights expect latents scaled by 0.7; TTT-Video checkpoints were trained on 1.0 (spec 7.4).
COGVIDEOX_LATENT_SCALE = 0.7

GLOBAL_RENAMES = {
    "patch_embed.proj.": "patch_embedding.vid_proj.",
    "patch_embed.text_proj.": "patch_embedding.text_proj.",
    "time_embedding.linear_1.": "time_embed.0.",
    "time_embedding.linear_2.": "time_embed.2.",
    "norm_final.": "transformer_norm.",
    "norm_out.linear.": "final_layer.adaLN_modulation.1.",
    "norm_out.norm.": "final_layer.norm.",
    "proj_out.": "final_layer.linear.",
}
LAYER_RENAMES = {
    "norm1.linear.": "pre_seq_adaLN_modulation.1.",
    "norm1.norm.": "pre_seq_layernorm.",
    "norm2.linear.": "pre_mlp_adaLN_modulation.1.",
    "norm2.norm.": "pre_mlp_layernorm.",
    "attn1.to_q.": "seq_modeling_block.q.",
    "attn1.to_k.": "seq_modeling_block.k.",
    "attn1.to_v.": "seq_modeling_block.v.",
    "attn1.to_out.0.": "seq_modeling_block.o.",
    "attn1.norm_q.": "seq_modeling_block.q_norm.",
    "attn1.norm_k.": "seq_modeling_block.k_norm.",
    "ff.net.0.proj.": "mlp.layer1.",
    "ff.net.2.": "mlp.layer2.",
}
_LAYER_KEY = re.compile(r"^transformer_blocks\.(\d+)\.(.+)$")

Progress = Callable[[dict[str, Any]], None]


class ConversionError(ValueError):
    """A source that cannot be converted; the message lists the offending keys or files."""


def diffusers_to_ttt_key(key: str) -> str | None:
    """The TTT-Video name of a diffusers CogVideoX transformer key, or None when it has none."""
    match = _LAYER_KEY.match(key)
    if match:
        index, rest = match.groups()
        for old, new in LAYER_RENAMES.items():
            if rest.startswith(old):
                return f"layers.{index}.{new}{rest[len(old) :]}"
        return None
    for old, new in GLOBAL_RENAMES.items():
        if key.startswith(old):
            return new + key[len(old) :]
    return None


def ttt_to_diffusers_key(key: str) -> str | None:
    """The inverse of `diffusers_to_ttt_key` (None for the TTT parameters, which diffusers lacks)."""
    match = re.match(r"^layers\.(\d+)\.(.+)$", key)
    if match:
        index, rest = match.groups()
        for old, new in LAYER_RENAMES.items():
            if rest.startswith(new):
                return f"transformer_blocks.{index}.{old}{rest[len(new) :]}"
        return None
    for old, new in GLOBAL_RENAMES.items():
        if key.startswith(new):
            return old + key[len(new) :]
    return None


# ---------------------------------------------------------------------------------------------------
# Reading a diffusers transformer


@dataclass(frozen=True)
class DiffusersTransformer:
    root: Path | None  # the snapshot folder holding vae/, text_encoder/, ... (None for a bare transformer/)
    folder: Path  # the transformer folder
    config: dict[str, Any]
    key_files: dict[str, Path]  # tensor name -> the safetensors file holding it


def locate_transformer(src: str | os.PathLike) -> DiffusersTransformer:
    """Reads a diffusers CogVideoX snapshot (or its transformer/ folder); checks every shard is there."""
    src = Path(src)
    if not src.exists():
        raise ConversionError(
            f"{src} does not exist; pass a CogVideoX snapshot folder or its transformer/ folder"
        )
    folder, root = (src / "transformer", src) if (src / "transformer").is_dir() else (src, None)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ConversionError(
            f"{folder} has no config.json: expected a diffusers CogVideoXTransformer3DModel folder "
            "(transformer/ of the CogVideoX-5b snapshot)"
        )
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as e:
        raise ConversionError(f"{config_file} is not valid JSON: {e}") from None
    key_files: dict[str, Path] = {}
    index_file = folder / DIFFUSERS_INDEX
    if index_file.is_file():
        weight_map = json.loads(index_file.read_text()).get("weight_map", {})
        missing = sorted({f for f in weight_map.values() if not (folder / f).is_file()})
        if missing:
            raise ConversionError(
                f"{folder}: shards listed in {DIFFUSERS_INDEX} are missing: {', '.join(missing)}"
            )
        files = sorted({folder / f for f in weight_map.values()})
    elif (folder / DIFFUSERS_WEIGHTS).is_file():
        files = [folder / DIFFUSERS_WEIGHTS]
    else:
        pickled = sorted(p.name for p in folder.glob("*.bin"))
        hint = f" ({', '.join(pickled)} are pickle files, which are never loaded)" if pickled else ""
        raise ConversionError(f"{folder}: no {DIFFUSERS_WEIGHTS} or {DIFFUSERS_INDEX}{hint}")
    for file in files:
        try:
            with safe_open(str(file), framework="pt") as handle:
                for name in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                    key_files[name] = file
        except (SafetensorError, OSError) as e:
            raise ConversionError(f"{file} is not a readable safetensors file: {e}") from None
    return DiffusersTransformer(root, folder, config, key_files)


def dit_config_from_diffusers(config: dict[str, Any], ssm_layer: str, **overrides: Any) -> DiTConfig:
    """The DiT architecture of a diffusers CogVideoXTransformer3DModel config.json."""
    missing = [
        k
        for k in ("num_attention_heads", "attention_head_dim", "num_layers", "text_embed_dim")
        if k not in config
    ]
    if missing:
        raise ConversionError(f"the transformer config.json lacks {missing}; is it a CogVideoX transformer?")
    if config.get("use_rotary_positional_embeddings") is False:
        raise ConversionError(
            "this CogVideoX transformer uses absolute position embeddings (CogVideoX-2B); TTT-Video builds on "
            "the 5B model, whose config has use_rotary_positional_embeddings = true"
        )
    if config.get("ofs_embed_dim") or config.get("patch_size_t"):
        raise ConversionError(
            "CogVideoX 1.5 transformers (ofs embedding / temporal patches) are not supported"
        )
    values: dict[str, Any] = {
        "model_dim": config["num_attention_heads"] * config["attention_head_dim"],
        "num_heads": config["num_attention_heads"],
        "num_layers": config["num_layers"],
        "text_dim": config["text_embed_dim"],
        "time_embed_dim": config.get("time_embed_dim", 512),
        "patch_size": config.get("patch_size", 2),
        "in_channels": config.get("in_channels", 16),
        "out_channels": config.get("out_channels", 16),
        "ssm_layer": ssm_layer,
    }
    if ssm_layer == "ttt_linear":
        values.update(ttt_base_lr=1.0, mini_batch_size=16)
    elif ssm_layer == "ttt_mlp":
        values.update(ttt_base_lr=0.1, mini_batch_size=64)
    values.update(overrides)
    return DiTConfig(**values)


# ---------------------------------------------------------------------------------------------------
# Conversion


def _ttt_layer_tensors(config: DiTConfig, num_layers: int, seed: int) -> Iterator[dict[str, torch.Tensor]]:
    """The new TTT and gate parameters of each layer, in order, drawn as `init_ttt_parameters` draws them
    for the whole model from `seed`; one layer is materialised at a time."""
    generator = torch.Generator().manual_seed(seed)
    for index in range(num_layers):
        with torch.device("meta"):
            layer = TransformerLayer(config)
        new_modules = [m for m in layer.modules() if _is_ttt_module(m)]
        for module in new_modules:
            module.to_empty(device="cpu", recurse=True)
        init_ttt_parameters(layer, generator, gating_alpha=config.gating_alpha_init)
        yield {
            f"layers.{index}.{name}": tensor.detach()
            for name, tensor in layer.state_dict().items()
            if tensor.device.type == "cpu"
        }


def _is_ttt_module(module: nn.Module) -> bool:
    return isinstance(module, (TTTBase, TanhGate))


def convert_diffusers(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    ssm_layer: str = "ttt_mlp",
    seed: int = 0,
    *,
    dtype: torch.dtype | None = None,
    max_shard_bytes: int = DEFAULT_SHARD_BYTES,
    link: bool = True,
    progress: Progress | None = None,
) -> Path:
    """Convert a diffusers CogVideoX transformer into a TTT-Video model bundle at `dst`; returns `dst`.

    `dtype` casts every tensor (default: keep the source's, bf16 for the public weights; new TTT tensors
    take the dtype of the source). `link` symlinks the companion folders (else copies them).
    """
    started = time.perf_counter()
    report = progress or (lambda event: None)
    source = locate_transformer(src)
    config = dit_config_from_diffusers(source.config, ssm_layer)
    with torch.device("meta"):
        target = TTTVideoDiT(config)
    expected = {name: tuple(t.shape) for name, t in target.state_dict().items()}
    _check_source_keys(source, expected)

    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    out_dir = dst / "transformer"
    partial = dst / "transformer.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()

    total = len(expected)
    source_dtype = _first_dtype(source)
    new_dtype = dtype or source_dtype
    ttt_layers = _ttt_layer_tensors(config, config.num_layers, seed) if config.has_ttt else iter(())
    pending_ttt: dict[str, torch.Tensor] = {}
    writer = _ShardWriter(partial, max_shard_bytes, report)
    report(
        {"type": "convert.started", "tensors": total, "ssm_layer": ssm_layer, "source": str(source.folder)}
    )
    with ExitStack() as stack:
        handles: dict[Path, Any] = {}
        for done, name in enumerate(expected, start=1):
            source_key = ttt_to_diffusers_key(name)
            if source_key is not None:
                file = source.key_files[source_key]
                if file not in handles:
                    handles[file] = stack.enter_context(safe_open(str(file), framework="pt"))
                tensor = handles[file].get_tensor(source_key)
                if dtype is not None:
                    tensor = tensor.to(dtype)
            else:
                if name not in pending_ttt:
                    pending_ttt = next(ttt_layers)
                tensor = pending_ttt.pop(name).to(new_dtype)
            writer.add(name, tensor.contiguous())
            if done % 64 == 0 or done == total:
                report({"type": "convert.progress", "done": done, "total": total})
    writer.close()

    (partial / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(partial, out_dir)
    _place_companions(source.root, dst, link)
    write_bundle_info(
        dst,
        latent_scale=COGVIDEOX_LATENT_SCALE,
        source=str(Path(src).resolve()),
        ssm_layer=ssm_layer,
        seed=seed,
    )
    seconds = round(time.perf_counter() - started, 3)
    report({"type": "convert.finished", "path": str(dst), "seconds": seconds, "shards": writer.shards})
    return dst


def _first_dtype(source: DiffusersTransformer) -> torch.dtype:
    name, file = min(source.key_files.items(), key=lambda item: item[0].startswith("transformer_blocks"))
    with safe_open(str(file), framework="pt") as handle:
        return handle.get_tensor(name).dtype


def _check_source_keys(source: DiffusersTransformer, expected: dict[str, tuple[int, ...]]) -> None:
    unknown, misshapen = [], []
    mapped: set[str] = set()
    shapes: dict[str, tuple[int, ...]] = {}
    for file in sorted(set(source.key_files.values())):
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118
                shapes[key] = tuple(handle.get_slice(key).get_shape())
    for key, shape in shapes.items():
        target = diffusers_to_ttt_key(key)
        if target is None or target not in expected:
            unknown.append(key)
            continue
        mapped.add(target)
        if expected[target] != shape:
            misshapen.append(f"{key}: {shape} in the source, {expected[target]} expected for {target}")
    missing = sorted(
        ttt_to_diffusers_key(name) or name
        for name in expected
        if ttt_to_diffusers_key(name) and name not in mapped
    )
    problems = []
    if missing:
        problems.append(
            f"missing keys ({len(missing)}): {', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}"
        )
    if unknown:
        problems.append(f"unexpected keys ({len(unknown)}): {', '.join(sorted(unknown)[:20])}")
    if misshapen:
        problems.append(f"misshapen keys ({len(misshapen)}): {'; '.join(misshapen[:20])}")
    if problems:
        raise ConversionError(f"{source.folder} does not match its config.json:\n  " + "\n  ".join(problems))


class _ShardWriter:
    """Collects tensors into safetensors shards of at most `max_bytes` (one shard in memory at a time)."""

    def __init__(self, folder: Path, max_bytes: int, report: Progress):
        self.folder, self.max_bytes, self.report = folder, max_bytes, report
        self.current: dict[str, torch.Tensor] = {}
        self.current_bytes = 0
        self.files: list[tuple[str, list[str]]] = []
        self.total_bytes = 0

    @property
    def shards(self) -> int:
        return len(self.files)

    def add(self, name: str, tensor: torch.Tensor) -> None:
        size = tensor.numel() * tensor.element_size()
        if self.current and self.current_bytes + size > self.max_bytes:
            self._flush()
        self.current[name] = tensor
        self.current_bytes += size
        self.total_bytes += size

    def _flush(self) -> None:
        file_name = f"model-{len(self.files) + 1:05d}.safetensors"
        save_file(self.current, str(self.folder / file_name), metadata={"format": "pt"})
        self.files.append((file_name, list(self.current)))
        self.report({"type": "convert.shard", "file": file_name, "bytes": self.current_bytes})
        self.current, self.current_bytes = {}, 0

    def close(self) -> None:
        if self.current:
            self._flush()
        if len(self.files) == 1:
            os.replace(self.folder / self.files[0][0], self.folder / "model.safetensors")
            return
        count = len(self.files)
        weight_map = {}
        for i, (file_name, names) in enumerate(self.files, start=1):
            final = f"model-{i:05d}-of-{count:05d}.safetensors"
            os.replace(self.folder / file_name, self.folder / final)
            weight_map.update(dict.fromkeys(names, final))
        index = {"metadata": {"total_size": self.total_bytes}, "weight_map": weight_map}
        (self.folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def _place_companions(root: Path | None, dst: Path, link: bool) -> None:
    if root is None:
        return
    for name in COMPANION_FOLDERS:
        source, target = root / name, dst / name
        if not source.is_dir() or target.resolve() == source.resolve():
            continue
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.exists():
            shutil.rmtree(target)
        if link:
            target.symlink_to(source.resolve(), target_is_directory=True)
        else:
            shutil.copytree(source, target)


# ---------------------------------------------------------------------------------------------------
# Bundle metadata


def write_bundle_info(dst: str | os.PathLike, **fields: Any) -> None:
    info = {"format": BUNDLE_FORMAT, "version": 1, **fields}
    path = Path(dst) / BUNDLE_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(tmp, path)


def read_bundle_info(bundle: str | os.PathLike) -> dict[str, Any]:
    """`bundle.json` of a bundle, or {} for a folder made by hand (the latent scale then defaults to 1.0)."""
    path = Path(bundle) / BUNDLE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


# ---------------------------------------------------------------------------------------------------
# Training checkpoints (torch.distributed.checkpoint)


def load_dcp_weights(model: nn.Module, checkpoint_dir: str | os.PathLike) -> None:
    """Loads a DCP checkpoint (spec 8.4): `{"model": state}` of a training run, or a flat state dict.

    Keys may carry the reference's `dit.` prefix. Works without a process group (single process) and
    inside one (each rank reads what it needs).
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import FileSystemReader

    folder = Path(checkpoint_dir)
    if not (folder / ".metadata").is_file():
        raise FileNotFoundError(f"{folder} is not a torch.distributed.checkpoint folder (no .metadata file)")
    reader = FileSystemReader(str(folder))
    stored = reader.read_metadata().state_dict_metadata
    own = model.state_dict()
    for prefix in ("model.dit.", "model.", "dit.", ""):
        if not all(f"{prefix}{name}" in stored for name in own):
            continue
        misshapen = [
            f"{name}: {tuple(stored[prefix + name].size)} stored, {tuple(t.shape)} expected"
            for name, t in own.items()
            if tuple(getattr(stored[prefix + name], "size", t.shape)) != tuple(t.shape)
        ]
        if misshapen:
            raise ValueError(
                f"{folder}: the checkpoint does not hold this model's weights; misshapen: {'; '.join(misshapen[:10])} "
                "(is it a checkpoint of another ssm_layer or size?)"
            )
        state = {f"{prefix}{name}": tensor for name, tensor in own.items()}
        dcp.load(state, checkpoint_id=str(folder), no_dist=not _distributed())
        model.load_state_dict({name: state[f"{prefix}{name}"] for name in own}, strict=True)
        return
    sample = sorted(stored)[:5]
    missing = sorted(name for name in own if name not in stored and f"dit.{name}" not in stored)[:10]
    raise ValueError(
        f"{folder}: the checkpoint does not hold this model's weights (tried flat, 'dit.', 'model.' and "
        f"'model.dit.' prefixes). Missing for example: {missing}; the checkpoint has e.g. {sample}"
    )


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()
