"""Loading a transformers checkpoint offline, and the checks around it.

Local files only, no remote code, no pickles unless allowed; encoder-decoder, masked and
bidirectional models are refused, as are a dtype the device has no kernels for and out-of-memory moves, weight
files that leave a parameter missing, unexpected or mis-shaped (transformers would initialise it randomly), and
non-finite weights. A model larger than one device is spread over GPUs, CPU and disk by accelerate
(``device_map="auto"``).
"""
from __future__ import annotations

import contextlib
import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from harness.offline import enforce_offline

enforce_offline()  # before transformers reads the hub settings at import
import transformers  # noqa: E402

from harness.checkpoints.discovery import Checkpoint, discover
from skill_catalog.errors import UserError

if TYPE_CHECKING:
    from harness.model.settings import ModelSettings

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
_DTYPE_KW = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"
_OOM = tuple({getattr(torch, "OutOfMemoryError", RuntimeError), torch.cuda.OutOfMemoryError})


def is_oom(exc: BaseException) -> bool:
    """Whether an exception means the device (or the host) ran out of memory."""
    text = str(exc).lower()
    if isinstance(exc, _OOM):
        return True
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def resolve_device(device: str) -> torch.device:
    """``"auto"`` is cuda when available, else cpu; any other name must be a device this machine has.

    Raises:
        UserError: an unknown device name, or a cuda/mps device this machine does not have.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        resolved = None
    if resolved is None or resolved.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"--device {device!r} is not a device; fix: use auto, cpu, cuda, cuda:N or mps")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device}: this machine has no CUDA device; fix: use --device cpu (or auto)")
    if resolved.type == "cuda" and (resolved.index or 0) >= torch.cuda.device_count():
        raise UserError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s); "
                        "fix: use cuda:0 .. cuda:N-1")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"--device {device}: MPS is not available here; fix: use --device cpu (or auto)")
    return resolved


def input_device(model: Any) -> torch.device:
    """Where a model's inputs go: the device of its first module under an accelerate device map (a
    CPU- or disk-offloaded module runs from the CPU), else the device of its parameters."""
    device_map = getattr(model, "hf_device_map", None)
    if device_map:
        first = next(iter(device_map.values()))
        if first in ("cpu", "disk"):
            return torch.device("cpu")
        return torch.device(f"cuda:{first}" if isinstance(first, int) else first)
    return next(model.parameters()).device


def model_max_length(model: Any, tokenizer: Any) -> int:
    """The longest input the model takes: from its config, else its tokenizer, else 2048."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    for attr in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length", "max_seq_len"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and limit < 10**6 else 2048


def single_checkpoint(checkpoint: Checkpoint | str | Path, allow_pickle: bool) -> Checkpoint:
    """The one checkpoint a path names: a folder's own weights win over its step subfolders.

    Raises:
        UserError: The path names no checkpoint or several.
    """
    if isinstance(checkpoint, Checkpoint):
        return checkpoint
    found = discover(checkpoint, allow_pickle=allow_pickle)
    own = [c for c in found if c.path == Path(checkpoint).expanduser().resolve()]
    if len(own) == 1:
        return own[0]
    if len(found) != 1:
        raise UserError(f"{checkpoint}: holds {len(found)} checkpoints; fix: pass one of them")
    return found[0]


def _check_causal_config(checkpoint: Checkpoint) -> None:
    """Refuse encoder-decoder and masked-LM configs before loading any weights."""
    if checkpoint.fmt == "gguf":
        return
    config = json.loads((checkpoint.path / "config.json").read_text())
    architectures = config.get("architectures") or []
    masked = architectures and all(a.endswith(("ForMaskedLM", "ForPreTraining")) for a in architectures)
    if config.get("is_encoder_decoder") or masked:
        raise UserError(f"{checkpoint.path}: {', '.join(architectures) or 'an encoder-decoder'} is not a causal "
                        "language model; fix: pass a decoder-only checkpoint (...ForCausalLM)")


def _check_causal(model: Any, path: Path) -> None:
    """Refuse a model whose first-position prediction depends on later tokens (bidirectional attention)."""
    ids = torch.tensor([[0, 1], [0, 2]], device=input_device(model))
    try:
        with torch.inference_mode():
            logits = model(input_ids=ids).logits.float()
    except RuntimeError as exc:  # e.g. a half-precision kernel missing on this device
        if is_oom(exc):
            raise
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{path}: a forward pass fails ({first}); "
                        "fix: use --dtype float32, or another device") from exc
    if not torch.isfinite(logits).all():  # NaN never compares equal: say what is wrong, not "not causal"
        raise UserError(f"{path}: the model computes NaN or infinite logits from finite weights; "
                        "fix: check the checkpoint's config (e.g. norm epsilon, dtype) or use float32")
    if not torch.allclose(logits[0, 0], logits[1, 0], atol=1e-4, rtol=0):
        raise UserError(f"{path}: not a causal language model (position 0 sees later tokens); "
                        "fix: pass a decoder-only checkpoint (...ForCausalLM)")


def check_dtype(name: str, device: torch.device) -> torch.dtype:
    """The torch dtype named by the settings (half precision on CPU too: a missing kernel fails the causal check).

    Raises:
        UserError: an unknown dtype.
    """
    if name not in _DTYPES:
        raise UserError(f"unknown dtype {name!r}; fix: use one of {', '.join(_DTYPES)}")
    return _DTYPES[name]


def _torch_dtype(checkpoint: Checkpoint, name: str, device: torch.device) -> torch.dtype:
    try:
        return check_dtype(name, device)
    except UserError as err:
        raise UserError(f"{checkpoint.path}: {err}") from None


def _sources(checkpoint: Checkpoint) -> tuple[dict[str, Any], dict[str, Any]]:
    """``from_pretrained`` arguments of the model and of the tokenizer: local files only, no remote code."""
    safe = {"local_files_only": True, "trust_remote_code": False}
    if checkpoint.fmt == "gguf":
        source = {"pretrained_model_name_or_path": checkpoint.path.parent, "gguf_file": checkpoint.path.name}
        source.update(safe)
        return source, source
    source = {"pretrained_model_name_or_path": checkpoint.path, "use_safetensors": checkpoint.fmt == "safetensors"}
    source.update(safe)
    return source, {"pretrained_model_name_or_path": checkpoint.tokenizer_path, **safe}


def _load_tokenizer(checkpoint: Checkpoint, source: dict[str, Any]) -> Any:
    try:
        return transformers.AutoTokenizer.from_pretrained(**source)
    except Exception as exc:  # tokenizer loaders raise many types on bad files
        raise UserError(f"{checkpoint.tokenizer_path}: cannot load the tokenizer of {checkpoint.path} "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                        "fix: save it with tokenizer.save_pretrained()") from exc


@contextlib.contextmanager
def _quiet_gguf_bar():
    """Silences transformers' de-quantizing bar (a plain tqdm that the library's progress switch misses)."""
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    bar = gguf_utils.tqdm
    gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = bar


def _placement(settings: ModelSettings, device: torch.device) -> dict[str, Any]:
    """``from_pretrained`` arguments that let accelerate place the layers (only with a device map); with
    ``--device cpu`` on a GPU machine, only CPU memory and disk are used."""
    if settings.device_map is None:
        return {}
    if settings.device_map != "auto":
        raise UserError(f"--device-map {settings.device_map!r} is not supported; fix: use --device-map auto")
    placement: dict[str, Any] = {"device_map": "auto"}
    if settings.max_memory is not None:
        placement["max_memory"] = dict(settings.max_memory)
    elif device.type == "cpu" and torch.cuda.is_available():
        from accelerate.utils import get_max_memory

        placement["max_memory"] = {"cpu": get_max_memory()["cpu"]}
    if settings.offload_folder is not None:
        placement["offload_folder"] = settings.offload_folder
    return placement


def _load_model(checkpoint: Checkpoint, source: dict[str, Any], dtype: torch.dtype, device: torch.device,
                placement: dict[str, Any] | None = None) -> Any:
    """The causal LM in eval mode on `device`, or placed by accelerate when `placement` holds a device map."""
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # the load report is a multi-line table; our check says it in one
    try:  # mismatched shapes are loaded as reported, not raised, so the message can name each tensor
        with _quiet_gguf_bar():
            model, info = transformers.AutoModelForCausalLM.from_pretrained(
                **source, **{_DTYPE_KW: dtype}, **(placement or {}), output_loading_info=True,
                ignore_mismatched_sizes=True)
    except Exception as exc:  # from_pretrained raises ValueError, OSError, KeyError, ... on bad input
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise UserError(f"{checkpoint.path}: cannot load as a causal language model "
                        f"({type(exc).__name__}: {first}); fix: pass a decoder-only transformers checkpoint") from exc
    finally:
        transformers.logging.set_verbosity(verbosity)
    check_loaded_weights(checkpoint.path, info)
    check_finite_weights(checkpoint.path, model)
    if placement:
        return model.eval()
    try:
        model.to(device).eval()
    except Exception as exc:
        if not is_oom(exc):
            raise
        raise UserError(f"{checkpoint.path}: out of memory moving the model to {device}; "
                        "fix: use dtype bfloat16 or a device with more memory") from exc
    return model


def _names(keys: Any, limit: int = 3) -> str:
    names = sorted(k[0] if isinstance(k, tuple) else str(k) for k in keys)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def check_loaded_weights(path: Path, info: dict[str, Any]) -> None:
    """Refuse a checkpoint whose files do not fill the architecture exactly (transformers' loading info).

    A missing or mismatched tensor would be randomly initialised and scored as if trained; an unexpected
    one means the files belong to another architecture. Tied output embeddings and buffers the model
    class declares ignorable are not reported by transformers, so they pass.

    Raises:
        UserError: naming the first tensors of each kind of mismatch.
    """
    problems = [f"{kind} {_names(info.get(key) or ())}" for kind, key in
                (("missing", "missing_keys"), ("unexpected", "unexpected_keys"), ("wrong shape", "mismatched_keys"))
                if info.get(key)]
    if info.get("error_msgs"):
        problems.append(str(info["error_msgs"][0]).splitlines()[0])
    if problems:
        raise UserError(f"{path}: the weight files do not match the architecture in config.json ({'; '.join(problems)}); "
                        "nothing is scored (transformers would fill such tensors randomly); fix: re-save the "
                        "checkpoint with model.save_pretrained() or fix config.json")


def check_finite_weights(path: Path, model: Any) -> None:
    """Refuse a model with a NaN or infinite parameter, naming the first such tensor.

    Raises:
        UserError: on the first non-finite parameter.
    """
    for name, param in model.named_parameters():
        if not param.is_floating_point() or param.numel() == 0 or param.device.type == "meta":
            continue  # a meta parameter is offloaded to disk by a device map: its values are not in memory
        low, high = torch.aminmax(param.detach())  # NaN propagates into both, inf into one; 20x faster than isfinite
        if not (bool(torch.isfinite(low)) and bool(torch.isfinite(high))):
            raise UserError(f"{path}: weight {name} holds NaN or infinite values; "
                            "fix: re-save the checkpoint from a healthy training state")


def load_model_and_tokenizer(checkpoint: Checkpoint, settings: ModelSettings) -> tuple[Any, Any]:
    """Load a checkpoint's model (eval mode, on its device) and tokenizer, offline and without remote code.

    Raises:
        UserError: Refused pickle, a dtype without kernels, unloadable tokenizer or weights, non-causal model.
    """
    enforce_offline()
    if checkpoint.fmt == "pickle" and not settings.allow_pickle:
        raise UserError(f"{checkpoint.path}: pickle weights can run code when loaded; "
                        "fix: convert them to safetensors, or pass --allow-pickle (allow_pickle=True in Python) "
                        "if you trust their source")
    device = resolve_device(settings.device)
    dtype = _torch_dtype(checkpoint, settings.dtype, device)
    _check_causal_config(checkpoint)
    model_source, tokenizer_source = _sources(checkpoint)
    tokenizer = _load_tokenizer(checkpoint, tokenizer_source)
    model = _load_model(checkpoint, model_source, dtype, device, _placement(settings, device))
    _check_causal(model, checkpoint.path)
    return model, tokenizer
