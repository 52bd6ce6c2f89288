"""Build ``model.tar.gz`` for a SageMaker endpoint, in the Hugging Face inference DLC layout.

::

    model.tar.gz
    ├── <weights>                 contents of model_dir (diffusers/transformers layout), if given
    ├── adapter/                  default LoRA adapter (sd_inpaint only)
    ├── adapters/<name>/          named LoRA adapters (sd_inpaint only)
    ├── ip_adapter/               IP-Adapter for garment reference images (sd_inpaint only)
    ├── refiner/                  SDXL refiner: model_index.json, unet/, scheduler/ (SDXL sd_inpaint only)
    ├── controlnet_depth/ ...     body controls (sd_inpaint, SD 1.5 / SDXL): controlnet_depth/,
    │                             depth_estimator/, controlnet_pose/, pose_estimator/, person_detector/
    └── code/
        ├── inference.py          from models/<kind>/code/
        ├── requirements.txt      only if models/<kind>/code/ has one (none do: see below)
        └── tryon/                vendored: __init__, core/ (errors, imaging, ...), handlers/

Archives are deterministic: entries sorted, fixed mtime/uid/gid/owner names, normalised
modes and a gzip header without name or time, so packaging the same inputs twice gives the
same bytes. Light module (standard library + :mod:`tryon.handlers.adapters`).

No kind ships a ``requirements.txt``: the serving image already has every library the
handlers use (``serving/image-requirements.txt``), and without the file the toolkit skips its
start-up ``pip install`` (faster cold starts, and endpoints in a VPC without internet start).
"""

from __future__ import annotations

import ast
import gzip
import json
import os
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import tryon
from tryon.core.contract import BODY_CONTROLS
from tryon.core.errors import RequestError
from tryon.handlers import HANDLER_MODULES, controls, ip_adapter, refiner
from tryon.handlers.adapters import DEFAULT_NAME, LORA_WEIGHT_NAME, NAME_PATTERN, NONE_NAME, weight_file

#: Only this kind serves LoRA adapters.
ADAPTER_KIND = "sd_inpaint"
#: tryon modules the handlers need; the import closure of handlers/ is added on top.
VENDORED_BASE = (
    "__init__.py",
    "core/__init__.py",
    "core/errors.py",
    "core/imaging.py",
    "core/validation.py",
    "handlers",
)
#: tryon parts that must never end up in an endpoint container.
NOT_VENDORED = frozenset({"aws", "cli", "local", "server", "training", "weights", "workflow"})
#: Names skipped everywhere: caches and hidden files (``.git``, ``.cache/huggingface``, ...).
SKIPPED_DIRS = frozenset({"__pycache__"})
#: mtime of every entry (SOURCE_DATE_EPOCH overrides it, as reproducible-build tools expect).
ARCHIVE_MTIME = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))

ProgressFn = Callable[[str, int], None]


class PackagingError(RequestError):
    """The archive cannot be built from these inputs: ``field`` names the input, the message says why.

    A :class:`~tryon.core.errors.RequestError`, so the CLI reports it as one line with exit code 2.
    """


@dataclass(frozen=True)
class ArchiveEntry:
    """One member of the archive: its name and, for files, where its bytes come from."""

    arcname: str
    source: Path | None  # None for a directory
    size: int = 0


def default_models_dir() -> Path:
    """The repository's ``models/`` folder (``TRYON_MODELS_DIR`` overrides it)."""
    env = os.environ.get("TRYON_MODELS_DIR")
    if env:
        return Path(env)
    return Path(tryon.__file__).resolve().parents[2] / "models"


def _visible(name: str) -> bool:
    return not name.startswith(".") and name not in SKIPPED_DIRS


def _walk_files(root: Path) -> Iterable[tuple[str, Path]]:
    """(relative posix path, path) of every visible file under ``root`` (symlinks followed)."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if _visible(d))
        for name in sorted(filenames):
            if _visible(name) and not name.endswith((".pyc", ".pyo")):
                path = Path(dirpath) / name
                yield path.relative_to(root).as_posix(), path


def _module_file(package_dir: Path, dotted: str) -> Path | None:
    """File of ``tryon.<dotted>`` under the package folder, or None if it is not a module there."""
    base = package_dir.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _tryon_imports(path: Path, package_dir: Path) -> set[str]:
    """Dotted names (relative to ``tryon``) of the tryon modules a file imports, lazily or not."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = path.relative_to(package_dir).with_suffix("").parts
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this module's package
                package = here[:-1]
                package = package[: len(package) - (node.level - 1)]
                module = ".".join(("tryon", *package, *(node.module.split(".") if node.module else ())))
            else:
                module = node.module or ""
            names = [module] + [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name == "tryon" or not name.startswith("tryon."):
                continue
            dotted = name.removeprefix("tryon.")
            if _module_file(package_dir, dotted) is not None:
                found.add(dotted)
    return found


def vendored_files(package_dir: Path | None = None) -> list[tuple[str, Path]]:
    """(path under ``code/``, source) of the tryon files an endpoint needs.

    The base set plus the import closure of every vendored module; a handler that imports a
    part that must stay out of containers (cli, server, workflow, training, ...) is an error.
    """
    package_dir = package_dir or Path(tryon.__file__).resolve().parent
    files: dict[str, Path] = {}
    todo: list[Path] = []
    for name in VENDORED_BASE:
        path = package_dir / name
        todo += [p for _, p in _walk_files(path)] if path.is_dir() else [path]
    while todo:
        path = todo.pop()
        rel = path.relative_to(package_dir).as_posix()
        if rel in files:
            continue
        files[rel] = path
        if path.suffix != ".py":  # data files next to the handlers travel as they are
            continue
        # every parent package needs its __init__.py
        for parent in Path(rel).parents:
            if parent != Path(".") and (package_dir / parent / "__init__.py").is_file():
                todo.append(package_dir / parent / "__init__.py")
        for dotted in _tryon_imports(path, package_dir):
            if dotted.split(".")[0] in NOT_VENDORED:
                raise PackagingError(
                    "code", f"{rel} imports tryon.{dotted}, which is not shipped to endpoints"
                )
            module = _module_file(package_dir, dotted)
            if module is not None:
                todo.append(module)
    return sorted((f"code/tryon/{rel}", path) for rel, path in files.items())


def _check_adapter(folder: Path, what: str) -> None:
    if not folder.is_dir():
        raise PackagingError(what, f"{folder} is not a folder")
    if weight_file(folder) is None:
        raise PackagingError(what, f"{folder} must hold {LORA_WEIGHT_NAME} or exactly one .safetensors file")


def _check_ip_adapter(folder: Path, kind: str, model_dir: Path | None) -> None:
    if kind != ADAPTER_KIND:
        raise PackagingError("ip_adapter_dir", f"IP-Adapters are only served by the {ADAPTER_KIND} endpoint")
    if not folder.is_dir():
        raise PackagingError("ip_adapter_dir", f"{folder} is not a folder")
    if model_dir is not None and ip_adapter.find(model_dir) is not None:
        raise PackagingError("ip_adapter_dir", f"{model_dir} already has an {ip_adapter.FOLDER}/ folder")
    try:
        ip_adapter.weight_file(folder)
    except ip_adapter.IPAdapterLayoutError as exc:
        raise PackagingError("ip_adapter_dir", str(exc)) from None


def _check_refiner(folder: Path, kind: str, model_dir: Path | None) -> None:
    field = "refiner_dir"
    if kind != ADAPTER_KIND:
        raise PackagingError(field, f"refiners are only served by the {ADAPTER_KIND} endpoint")
    try:
        refiner.check_folder(folder)
    except refiner.RefinerLayoutError as exc:
        raise PackagingError(field, str(exc)) from None
    index = model_dir / "model_index.json" if model_dir is not None else None
    if index is None or not index.is_file():
        raise PackagingError(
            field, "needs --model-dir with an SDXL base: the refiner shares its text encoder and VAE"
        )
    if not json.loads(index.read_text()).get("text_encoder_2"):
        raise PackagingError(field, f"{model_dir} is not an SDXL base; the refiner is for SDXL models only")
    if refiner.find(model_dir) is not None:
        raise PackagingError(field, f"{model_dir} already has a {refiner.FOLDER}/ folder")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _check_controls(control_dirs: Mapping[str, Path], kind: str, model_dir: Path | None) -> None:
    """The body-control folders (model-folder name -> folder) fit an SD 1.5 or SDXL base in ``model_dir``.

    Each is checked as the endpoint will load it: a ControlNet must fit the base's UNet and VAE, an
    estimator must have its image processor, and each control needs both its ControlNet and its
    estimator (given here or already in ``model_dir``).
    """
    if not control_dirs:
        return
    first = next(iter(control_dirs))
    unknown = sorted(set(control_dirs) - set(controls.FOLDERS))
    if unknown:
        raise PackagingError(
            unknown[0], f"is not a body-control folder; known: {', '.join(controls.FOLDERS)}"
        )
    if kind != ADAPTER_KIND:
        raise PackagingError(first, f"body controls are only served by the {ADAPTER_KIND} endpoint")
    index = _read_json(model_dir / "model_index.json") if model_dir is not None else {}
    unet = _read_json(model_dir / "unet" / "config.json") if model_dir is not None else {}
    if not index or "cross_attention_dim" not in unet:
        raise PackagingError(
            first,
            "needs --model-dir with an SD 1.5 or SDXL inpainting base (diffusers layout): the ControlNets "
            "must fit its UNet",
        )
    if controls.family_from(unet, two_text_encoders=bool(index.get("text_encoder_2"))) == "sd2":
        raise PackagingError(first, f"{model_dir} is an SD 2 inpainting base. {controls.SD2_REFUSAL}")
    vae = _read_json(model_dir / "vae" / "config.json")
    existing = controls.find(model_dir)
    for folder, path in control_dirs.items():
        if folder in existing:
            raise PackagingError(folder, f"{model_dir} already has a {folder}/ folder")
        config = _read_json(path / "config.json")
        if not path.is_dir() or not config:
            raise PackagingError(folder, f"{path} is not a model folder (no readable config.json)")
        if folder in controls.CONTROLNET_FOLDERS.values():
            if config.get("_class_name") != "ControlNetModel":
                raise PackagingError(folder, f"{path} is not a diffusers ControlNetModel folder")
            wrong = controls.misfits(config, unet, vae)
            if wrong:
                raise PackagingError(
                    folder, f"{path} is a ControlNet for another base than {model_dir}: {wrong}"
                )
        elif not (path / "preprocessor_config.json").is_file():
            raise PackagingError(
                folder, f"{path} has no preprocessor_config.json (the model's image processor)"
            )
    present = set(existing) | set(control_dirs)
    for control in BODY_CONTROLS:
        net, estimator = controls.CONTROLNET_FOLDERS[control], controls.ESTIMATOR_FOLDERS[control]
        if (net in present) != (estimator in present):
            given = net if net in control_dirs else estimator
            raise PackagingError(
                given,
                f"the {control} control needs both {controls.needed_folders(control)}: give --controlnet "
                f"{control}=DIR and --{control} DIR",
            )
    if controls.PERSON_DETECTOR_FOLDER in control_dirs and controls.ESTIMATOR_FOLDERS["pose"] not in present:
        raise PackagingError(
            controls.PERSON_DETECTOR_FOLDER, f"serves the pose control; add {controls.needed_folders('pose')}"
        )


def plan_archive(
    kind: str,
    *,
    model_dir: Path | None = None,
    adapter_dir: Path | None = None,
    named_adapters: Mapping[str, Path] | None = None,
    models_dir: Path | None = None,
    ip_adapter_dir: Path | None = None,
    refiner_dir: Path | None = None,
    control_dirs: Mapping[str, Path] | None = None,
) -> list[ArchiveEntry]:
    """Every member of the archive, sorted, with directories; raises PackagingError on bad input."""
    if kind not in HANDLER_MODULES:
        raise PackagingError("kind", f"{kind!r} is not a known kind; known: {', '.join(HANDLER_MODULES)}")
    named_adapters = dict(named_adapters or {})
    if (adapter_dir is not None or named_adapters) and kind != ADAPTER_KIND:
        field = "adapter_dir" if adapter_dir is not None else "named_adapters"
        raise PackagingError(field, f"adapters are only served by the {ADAPTER_KIND} endpoint, not {kind}")
    code_dir = (models_dir or default_models_dir()) / kind / "code"
    if not (code_dir / "inference.py").is_file():
        raise PackagingError(
            "models_dir",
            f"{code_dir / 'inference.py'} not found: package from a checkout of the repository "
            "(its models/ folder), or point TRYON_MODELS_DIR at one",
        )

    files: dict[str, Path] = {}

    def add(arcname: str, path: Path, origin: str) -> None:
        if arcname in files:
            raise PackagingError("archive", f"{arcname} comes from both {files[arcname]} and {origin}")
        files[arcname] = path

    if model_dir is not None:
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise PackagingError("model_dir", f"{model_dir} is not a folder")
        if (model_dir / "code").exists():
            raise PackagingError(
                "model_dir", f"{model_dir} has a code/ folder; the archive's code/ is generated"
            )
        for rel, path in _walk_files(model_dir):
            add(rel, path, f"model_dir {model_dir}")
    for rel, path in _walk_files(code_dir):
        add(f"code/{rel}", path, str(code_dir))
    for arcname, path in vendored_files():
        add(arcname, path, "the tryon package")
    if adapter_dir is not None:
        _check_adapter(Path(adapter_dir), "adapter_dir")
        for rel, path in _walk_files(Path(adapter_dir)):
            add(f"adapter/{rel}", path, f"adapter_dir {adapter_dir}")
    for name, folder in sorted(named_adapters.items()):
        if not NAME_PATTERN.fullmatch(name) or name in (DEFAULT_NAME, NONE_NAME):
            raise PackagingError(
                f"named_adapters.{name}",
                f"{name!r} is not a valid adapter name: use letters, digits, '_' and '-' (at most 64; "
                f"not {DEFAULT_NAME!r} or {NONE_NAME!r})",
            )
        _check_adapter(Path(folder), f"named_adapters.{name}")
        for rel, path in _walk_files(Path(folder)):
            add(f"adapters/{name}/{rel}", path, f"named adapter {name!r} ({folder})")
    if ip_adapter_dir is not None:
        _check_ip_adapter(Path(ip_adapter_dir), kind, model_dir)
        for rel, path in _walk_files(Path(ip_adapter_dir)):
            add(f"{ip_adapter.FOLDER}/{rel}", path, f"ip_adapter_dir {ip_adapter_dir}")
    if refiner_dir is not None:
        _check_refiner(Path(refiner_dir), kind, model_dir)
        for rel, path in _walk_files(Path(refiner_dir)):
            if rel.split("/", 1)[0] not in refiner.SHARED:  # the endpoint uses the base's
                add(f"{refiner.FOLDER}/{rel}", path, f"refiner_dir {refiner_dir}")
    control_dirs = {name: Path(folder) for name, folder in (control_dirs or {}).items()}
    _check_controls(control_dirs, kind, model_dir)
    for name, folder in sorted(control_dirs.items()):
        for rel, path in _walk_files(folder):
            add(f"{name}/{rel}", path, f"{name} {folder}")

    dirs = {parent.as_posix() for arcname in files for parent in Path(arcname).parents if parent != Path(".")}
    entries = [ArchiveEntry(d, None) for d in dirs]
    entries += [ArchiveEntry(a, p, p.stat().st_size) for a, p in files.items()]
    return sorted(entries, key=lambda e: e.arcname)


def _tarinfo(entry: ArchiveEntry) -> tarfile.TarInfo:
    info = tarfile.TarInfo(entry.arcname)
    info.mtime = ARCHIVE_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if entry.source is None:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.size = entry.size
        info.mode = 0o755 if os.access(entry.source, os.X_OK) else 0o644
    return info


def build_model_archive(
    kind: str,
    out_path: str | os.PathLike[str],
    *,
    model_dir: str | os.PathLike[str] | None = None,
    adapter_dir: str | os.PathLike[str] | None = None,
    named_adapters: Mapping[str, str | os.PathLike[str]] | None = None,
    models_dir: str | os.PathLike[str] | None = None,
    ip_adapter_dir: str | os.PathLike[str] | None = None,
    refiner_dir: str | os.PathLike[str] | None = None,
    control_dirs: Mapping[str, str | os.PathLike[str]] | None = None,
    compresslevel: int = 6,
    progress: ProgressFn | None = None,
) -> Path:
    """Write ``model.tar.gz`` for endpoint ``kind`` to ``out_path`` and return its path.

    ``model_dir``: weights, placed at the archive root (without it the handler falls back to
    ``HF_MODEL_ID`` or its hub id). ``adapter_dir`` / ``named_adapters``: LoRA adapters for
    sd_inpaint, into ``adapter/`` and ``adapters/<name>/``; ``ip_adapter_dir``: an IP-Adapter
    (weights + ``image_encoder/``) for garment reference images, into ``ip_adapter/``;
    ``refiner_dir``: an SDXL refiner for an SDXL ``model_dir``, into ``refiner/`` without the
    text encoder, tokenizer and VAE it shares with the base; ``control_dirs``: body-control folders
    by their name in the model folder (``controlnet_depth``, ``depth_estimator``, ``controlnet_pose``,
    ``pose_estimator``, ``person_detector``), checked against the base in ``model_dir``.
    ``progress(arcname, nbytes)`` is called after each file. The archive is written to a
    temporary file and renamed, so a failed build never leaves a partial archive behind.
    """
    if not 0 <= compresslevel <= 9:
        raise PackagingError("compresslevel", f"must be 0..9, got {compresslevel}")
    out = Path(out_path).resolve()
    if model_dir is not None and out.is_relative_to(Path(model_dir).resolve()):
        raise PackagingError(
            "out_path", f"{out} is inside model_dir {model_dir}; write the archive elsewhere"
        )
    entries = plan_archive(
        kind,
        model_dir=Path(model_dir) if model_dir is not None else None,
        adapter_dir=Path(adapter_dir) if adapter_dir is not None else None,
        named_adapters={k: Path(v) for k, v in (named_adapters or {}).items()},
        models_dir=Path(models_dir) if models_dir is not None else None,
        ip_adapter_dir=Path(ip_adapter_dir) if ip_adapter_dir is not None else None,
        refiner_dir=Path(refiner_dir) if refiner_dir is not None else None,
        control_dirs={k: Path(v) for k, v in (control_dirs or {}).items()},
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    try:
        with (
            os.fdopen(fd, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=compresslevel, mtime=0) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for entry in entries:
                info = _tarinfo(entry)
                if entry.source is None:
                    tar.addfile(info)
                    continue
                with entry.source.open("rb") as fh:
                    tar.addfile(info, fh)
                if progress is not None:
                    progress(entry.arcname, entry.size)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, out)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return out
