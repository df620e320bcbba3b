"""What a checkpoint's weight files hold, and content hashes of weights and tokenizers.

Weight files are untrusted input: safetensors headers are validated before anything is loaded,
pickle files are only ever hashed, never opened, and nothing here imports model code.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, NamedTuple

from harness.storage.result_cache import ResultCache, default_cache_dir
from skill_catalog.errors import UserError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model", "vocab.txt")
"""Any of these makes a folder a tokenizer folder."""
PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".ckpt"})
"""Weight files that are Python pickles: loading one can run arbitrary code."""
TRAINER_STATE = frozenset({"training_args.bin", "optimizer.pt", "scheduler.pt", "scaler.pt"})
"""Pickles a training run writes next to the weights; never weights, never opened."""
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                "BOOL": 1, "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1}
_EMBED_IN = ("embed_in.weight", "embed_tokens.weight", "wte.weight", "word_embeddings.weight", "token_embd.weight")
_EMBED_OUT = ("embed_out.weight", "lm_head.weight", "output.weight")
_EMBED_POS = ("wpe.weight", "embed_positions.weight", "position_embd.weight")
_MAX_HEADER = 100 << 20
_CHUNK_BYTES = 4 << 20


class ParamCounts(NamedTuple):
    """Parameter counts read from weight-file headers."""

    total: int
    """All parameters (a tied output embedding stored twice counts once)."""
    nonembedding: int
    """`total` minus input, untied output and position embeddings."""
    dtype: str
    """Storage dtype holding the most parameters."""


def _corrupt(path: Path, why: str) -> UserError:
    return UserError(f"{path}: corrupt or truncated safetensors file ({why}); fix: re-copy or re-save it")


def read_safetensors_header(path: Path) -> tuple[dict[str, dict], int]:
    """The validated tensor table of a safetensors file, reading only its header.

    Checks that the header is JSON, that each tensor's byte range matches its shape and dtype, and
    that the data section has exactly the size the header describes (catches truncation).

    Returns:
        The tensor table (without ``__metadata__``) and the file offset where tensor data starts.

    Raises:
        UserError: The file is corrupt or truncated.
    """
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 0 < n <= min(_MAX_HEADER, size - 8):
            raise _corrupt(path, "bad header length")
        try:
            header = json.loads(fh.read(n))
        except ValueError as exc:
            raise _corrupt(path, "header is not JSON") from exc
    if not isinstance(header, dict):
        raise _corrupt(path, "header is not a JSON object")
    header.pop("__metadata__", None)
    data_end = 0
    for name, info in header.items():
        try:
            begin, end = (int(x) for x in info["data_offsets"])
            numel = math.prod(int(d) for d in info["shape"])
        except (KeyError, TypeError, ValueError) as exc:
            raise _corrupt(path, f"bad entry for tensor {name}") from exc
        width = _DTYPE_BYTES.get(info.get("dtype"))
        if not 0 <= begin <= end or (width is not None and end - begin != numel * width):
            raise _corrupt(path, f"byte range of tensor {name} does not match its shape")
        data_end = max(data_end, end)
    if data_end != size - 8 - n:
        raise _corrupt(path, f"header describes {data_end} data bytes, the file holds {size - 8 - n}")
    return header, 8 + n


def _matches(name: str, suffixes: tuple[str, ...]) -> bool:
    return any(name == s or name.endswith("." + s) for s in suffixes)


def _same_bytes(a: tuple[Path, int, int], b: tuple[Path, int, int]) -> bool:
    """Whether two (file, offset, length) byte ranges are equal; stops at the first differing chunk."""
    if a[2] != b[2]:
        return False
    with open(a[0], "rb") as fa, open(b[0], "rb") as fb:
        fa.seek(a[1])
        fb.seek(b[1])
        for start in range(0, a[2], _CHUNK_BYTES):
            n = min(_CHUNK_BYTES, a[2] - start)
            if fa.read(n) != fb.read(n):
                return False
    return True


def count_params_safetensors(files: Iterable[Path]) -> ParamCounts:
    """Count parameters from safetensors headers without loading any tensor.

    An output embedding byte-identical to the input embedding is a tied copy and counts once.
    """
    total, by_dtype = 0, Counter()
    embed: dict[str, int] = {"in": 0, "out": 0, "pos": 0}
    ranges: dict[str, tuple[Path, int, int]] = {}
    for path in files:
        header, data_start = read_safetensors_header(path)
        for name, info in header.items():
            numel = math.prod(int(d) for d in info["shape"])
            total += numel
            by_dtype[info["dtype"]] += numel
            begin, end = (int(x) for x in info["data_offsets"])
            for kind, names in (("in", _EMBED_IN), ("out", _EMBED_OUT), ("pos", _EMBED_POS)):
                if _matches(name, names):
                    embed[kind] += numel
                    ranges[kind] = (path, data_start + begin, end - begin)
    if "in" in ranges and "out" in ranges and _same_bytes(ranges["in"], ranges["out"]):
        total -= embed.pop("out")
    dtype = by_dtype.most_common(1)[0][0] if by_dtype else "unknown"
    return ParamCounts(total, total - sum(embed.values()), dtype)


def architecture_name(model_type: str) -> str:
    """The transformers causal-LM class name of a model type or GGUF architecture (``llama`` ->
    ``LlamaForCausalLM``), so a GGUF file and the same model as a folder share one vocabulary;
    the name itself when transformers has no causal-LM class for it."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES as names

    key = re.sub(r"(\d)moe$", r"\1_moe", model_type.replace("-", "_"))
    return names.get(f"{key}_text") or names.get(key) or model_type


def gguf_file_type(reader) -> str | None:
    """The quantization type a GGUF file declares for itself (``general.file_type``, e.g. ``Q4_K_M``), or None.

    A mixed file (Q4_K_M keeps some tensors in Q6_K or Q8_0) is named by this field, not by the type of
    whichever tensor holds the most parameters (often the embedding).
    """
    from gguf import LlamaFileType

    field = reader.fields.get("general.file_type")
    try:
        return LlamaFileType(int(field.contents())).name.removeprefix("MOSTLY_") if field is not None else None
    except (ValueError, TypeError):
        return None


def gguf_info(path: Path) -> tuple[str, ParamCounts]:
    """(architecture class name, parameter counts) of a GGUF file; refuses architectures transformers cannot load.

    The counts' dtype is the file's declared quantization type (`gguf_file_type`), else the storage
    type holding the most parameters.
    """
    try:
        from gguf import GGUFReader
        from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES
    except ImportError as exc:
        raise UserError(f"{path}: reading GGUF needs the gguf package ({exc}); fix: pip install gguf") from exc
    try:
        reader = GGUFReader(path)
        field = reader.fields["general.architecture"]
        architecture = str(field.contents())
    except Exception as exc:  # the reader raises many types on malformed input
        raise UserError(f"{path}: unreadable GGUF file ({type(exc).__name__}: {exc}); fix: re-convert it") from exc
    supported = set(GGUF_SUPPORTED_ARCHITECTURES) - {"general", "tokenizer"}
    normalized = re.sub(r"(\d)moe$", r"\1_moe", architecture.replace("-", "_"))
    if architecture not in supported and normalized not in supported:
        raise UserError(
            f"{path}: GGUF architecture {architecture!r} cannot be read by transformers "
            f"(supported: {', '.join(sorted(supported))}); fix: use the safetensors checkpoint instead"
        )
    by_type, embed, total = Counter(), 0, 0
    for tensor in reader.tensors:
        numel = int(tensor.n_elements)
        total += numel
        by_type[tensor.tensor_type.name] += numel
        if tensor.name in ("token_embd.weight", "output.weight", "position_embd.weight"):
            embed += numel
    dtype = gguf_file_type(reader) or (by_type.most_common(1)[0][0] if by_type else "unknown")
    return architecture_name(normalized), ParamCounts(total, total - embed, dtype)


def is_pickle_weights(path: Path) -> bool:
    """Whether a file is a pickle of model weights, not of trainer state (optimizer, scheduler, RNG)."""
    return path.suffix in PICKLE_SUFFIXES and path.name not in TRAINER_STATE and not path.name.startswith("rng_state")


def weight_files(folder: Path, allow_pickle: bool = False) -> tuple[str, list[Path]]:
    """The weight files of a Hugging Face model folder, preferring safetensors; never opens a pickle.

    Returns:
        (format, files): ``"safetensors"`` or ``"pickle"`` and the files, sorted by name.

    Raises:
        UserError: No weights, a missing shard, or only pickle files while `allow_pickle` is False.
    """
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"{index}: unreadable shard index ({exc}); fix: re-save the checkpoint") from exc
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise UserError(f"{folder}: shard {missing[0]} listed in the index is missing; fix: copy all shards")
        return "safetensors", [folder / s for s in shards]
    files = sorted(p for p in folder.iterdir() if p.is_file())
    if (folder / "model.safetensors").is_file():
        return "safetensors", [folder / "model.safetensors"]
    if any(p.suffix == ".safetensors" for p in files):
        return "safetensors", [p for p in files if p.suffix == ".safetensors"]
    pickles = [p for p in files if is_pickle_weights(p)]
    if pickles and not allow_pickle:
        raise UserError(
            f"{folder}: only pickle weights ({', '.join(p.name for p in pickles)}), which can run code when "
            "loaded; fix: convert them to safetensors, or pass --allow-pickle (allow_pickle=True in Python) if you trust "
            "their source"
        )
    if pickles:
        return "pickle", pickles
    raise UserError(f"{folder}: no weight files (*.safetensors); fix: point at a model.save_pretrained() folder")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def file_hashes(files: Iterable[Path], hash_cache: Path | None = None) -> list[str]:
    """sha256 of each file, cached by (absolute path, size, mtime_ns) so each version is read once.

    Args:
        files: Files to hash (their bytes are read, never deserialized).
        hash_cache: SQLite cache file; default ``<default_cache_dir()>/file_hashes.sqlite``.
    """
    files = [Path(f).resolve() for f in files]
    cache = ResultCache(hash_cache or default_cache_dir() / "file_hashes.sqlite")
    keys = []
    for f in files:
        st = f.stat()
        keys.append(hashlib.sha256(f"{f}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest())
    known = cache.get_many(keys)
    fresh = {k: _sha256_file(f) for k, f in zip(keys, files) if k not in known}
    if fresh:
        cache.put_many(fresh)
    return [known.get(k) or fresh[k] for k in keys]


def weights_hash(files: Iterable[Path], hash_cache: Path | None = None) -> str:
    """The identity of a set of weight files: sha256 over their digests, in file-name order."""
    ordered = sorted((Path(f) for f in files), key=lambda p: p.name)
    digests = file_hashes(ordered, hash_cache)
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()


def model_hash(weights_id: str, config_path: Path, tokenizer_path: Path) -> str:
    """The identity of a model folder: its weights' hash, its config.json and its tokenizer's files.

    Everything that can change a score is in it, so two folders that share weights but differ in config or
    tokenizer (one of them perhaps broken) are two checkpoints, each with its own records and failure.
    """
    digest = hashlib.sha256(f"weights\0{weights_id}\n".encode())
    digest.update(f"config\0{hashlib.sha256(Path(config_path).read_bytes()).hexdigest()}\n".encode())
    digest.update(f"tokenizer\0{tokenizer_hash(tokenizer_path)}\n".encode())
    return digest.hexdigest()


def tokenizer_hash(path: Path) -> str:
    """sha256 over a tokenizer's files (names and contents), or of the ``.gguf`` file that holds it."""
    path = Path(path)
    if path.is_file():
        return _sha256_file(path)
    digest = hashlib.sha256()
    names = set(TOKENIZER_FILES) | {"tokenizer_config.json", "special_tokens_map.json", "merges.txt",
                                    "added_tokens.json", "chat_template.jinja"}
    for name in sorted(names):
        if (path / name).is_file():  # small files: hashed directly, not through the weight-file cache
            digest.update(f"{name}\0{hashlib.sha256((path / name).read_bytes()).hexdigest()}\n".encode())
    return digest.hexdigest()
