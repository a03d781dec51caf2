"""Cold init as deployed: each function's handler module imported from ``sam build`` output, read-only.

Lambda runs a function from its zip (``/var/task``) and its layers (``/opt``), both mounted read-only, with
the runtime's own boto3 (``/var/runtime``) behind them on ``sys.path``. Python cannot write bytecode there,
so whatever the build does not ship compiled is compiled again on every cold start. This measure builds
the template with ``sam build`` for this machine's architecture (into ``.aws-sam/bench``, rebuilt only
when the sources change), installs boto3 for python3.12 apart as the runtime's (compiled the way
``packaging/Makefile`` compiles the layer), checks every module there has its bytecode, then times in a
fresh python3.12 process per sample, with ``PYTHONDONTWRITEBYTECODE=1`` and the whole tree read-only (a
read-only bind mount in a private mount namespace where ``unshare`` allows it, ``chmod -R a-w``
otherwise), the import of each function's handler module: its init code runs at import.

The floor is ``import boto3`` + ``boto3.client("sqs")`` timed the same way, with the same ``sys.path``:
boto3 ships with the runtime, and any function that touches AWS pays for it once. Interpreter start-up is
the same for every process and is left out. One discarded round first (the page cache warm, as on a warm
Lambda host), then the processes run round-robin, so that drift on the machine touches every target alike.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import stat
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from bench.lambda_env import ROOT, TEMPLATE, function_code_uris, lambda_environment
from bench.report import Row, median

FUNCTIONS = ("on_contact", "on_deal_won", "payment_poller", "reconcile")
TARGET_RATIO = 1.0
BENCH_DIR = ROOT / ".aws-sam" / "bench"
#: What ``sam build`` reads: a change in any of these makes the bench build again.
BUILD_INPUTS = (TEMPLATE, ROOT / "packaging", ROOT / "layers" / "common", ROOT / "functions")
#: Flags word of a hash-based .pyc whose source is never checked (PEP 552): valid whatever the mtimes.
UNCHECKED_HASH = 0b01

_CHILD = """
import importlib, json, sys, time
started = time.perf_counter()
{body}
print(json.dumps({{"ms": (time.perf_counter() - started) * 1000, "boto3": "boto3" in sys.modules}}))
"""
_IMPORT_APP = 'importlib.import_module("app")'
_FLOOR = 'import boto3\nboto3.client("sqs")'
#: Runs its arguments with the bench tree bind-mounted read-only over itself, in a mount namespace of its own.
_READ_ONLY = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'


def lambda_architecture() -> str:
    """This machine's architecture, as Lambda names it (the bench imports compiled wheels, so it must match)."""
    machine = platform.machine().lower()
    return {"aarch64": "arm64", "arm64": "arm64", "x86_64": "x86_64", "amd64": "x86_64"}.get(machine, machine)


@cache
def python312() -> Path:
    """The runtime's interpreter: $PY312 (the Makefile sets it), else pyenv's newest 3.12, else python3.12."""
    found = [os.environ.get("PY312", "")]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found += [str(p) for p in sorted(pyenv.glob("3.12.*/bin/python3"), reverse=True)]
    found.append(shutil.which("python3.12") or "")
    for candidate in filter(None, found):
        if Path(candidate).is_file():
            return Path(candidate)
    raise RuntimeError("python3.12 (the Lambda runtime's version) is needed: install it, e.g. pyenv install 3.12")


def _sam() -> str:
    for candidate in (os.environ.get("SAM", ""), str(ROOT / ".tools" / "sam" / "bin" / "sam"), shutil.which("sam")):
        if candidate and Path(candidate).is_file():
            return candidate
    raise RuntimeError("sam is needed to build what Lambda runs: make tools")


def _run(command: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    completed = subprocess.run(  # noqa: S603 - sam, pip and compileall of the runtime's interpreter
        command, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=900
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} … failed:\n{(completed.stdout + completed.stderr)[-3000:]}")


def _files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            yield path


def _inputs_digest(architecture: str) -> str:
    digest = hashlib.sha256(f"{architecture}\n{python312()}\n".encode())
    for root in BUILD_INPUTS:
        for path in [root] if root.is_file() else _files(root):
            digest.update(f"{path.relative_to(ROOT)}\n".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _set_writable(root: Path, writable: bool) -> None:
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        path.chmod(mode | stat.S_IWUSR if writable else mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def build(architecture: str) -> Path:
    """``sam build`` for ``architecture`` into the bench directory (skipped while its inputs are unchanged)."""
    build_dir, stamp = BENCH_DIR / "build", BENCH_DIR / "build.sha256"
    digest = _inputs_digest(architecture)
    if stamp.is_file() and stamp.read_text() == digest and (build_dir / "template.yaml").is_file():
        return build_dir
    if BENCH_DIR.exists():
        _set_writable(BENCH_DIR, True)  # a chmod fallback run that was killed leaves it read-only
    stamp.unlink(missing_ok=True)
    env = {
        **os.environ,
        "PATH": f"{python312().parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "LAMBDA_ARCHITECTURE": architecture,
    }
    _run(
        [
            _sam(),
            "build",
            "--parallel",
            "--cached",
            "--template-file",
            str(TEMPLATE),
            "--build-dir",
            str(build_dir),
            "--cache-dir",
            str(BENCH_DIR / "cache"),
            "--parameter-overrides",
            f"Architecture={architecture}",
        ],
        cwd=ROOT,
        env=env,
    )
    stamp.write_text(digest)
    return build_dir


def runtime_boto3() -> Path:
    """boto3 for python3.12 in a directory of its own, compiled, as the Lambda runtime carries it. Same version
    as the project's tests use; installed once."""
    version = importlib.metadata.version("boto3")
    target, stamp = BENCH_DIR / "runtime" / "python", BENCH_DIR / "runtime" / "boto3.version"
    if stamp.is_file() and stamp.read_text() == version:
        return target
    if target.exists():
        _set_writable(target.parent, True)
        shutil.rmtree(target)
    python = str(python312())
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile"]
    _run([*pip, "--target", str(target), f"boto3=={version}"])
    _run([python, "-m", "compileall", "-q", "-f", "-j0", "--invalidation-mode", "unchecked-hash", str(target)])
    stamp.write_text(version)
    return target


def uncompiled(root: Path, magic: bytes, cache_tag: str) -> list[Path]:
    """The modules under ``root`` without bytecode the runtime loads as it is: a ``__pycache__`` .pyc for
    ``cache_tag`` ("cpython-312"), with the runtime's import ``magic``, hash-based and never checked against
    its source (so file mtimes do not matter)."""
    missing = []
    for source in sorted(root.rglob("*.py")):
        compiled = source.parent / "__pycache__" / f"{source.stem}.{cache_tag}.pyc"
        header = compiled.read_bytes()[:8] if compiled.is_file() else b""
        if header[:4] != magic or int.from_bytes(header[4:8], "little") != UNCHECKED_HASH:
            missing.append(source)
    return missing


@cache
def runtime_bytecode() -> tuple[bytes, str]:
    """python3.12's import magic and cache tag."""
    answer = subprocess.run(  # noqa: S603 - the runtime's interpreter
        [
            str(python312()),
            "-c",
            "import importlib.util as u, sys; print(u.MAGIC_NUMBER.hex(), sys.implementation.cache_tag)",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return bytes.fromhex(answer[0]), answer[1]


@cache
def read_only_mount_works() -> bool:
    """Whether this process may bind-mount the bench tree read-only in a mount namespace of its own."""
    probe = subprocess.run(  # noqa: S603
        ["unshare", "-m", "sh", "-c", _READ_ONLY, "sh", str(BENCH_DIR), "true"],  # noqa: S607
        capture_output=True,
        check=False,
    )
    return shutil.which("unshare") is not None and probe.returncode == 0


def _tree(root: Path) -> set[tuple[str, int]]:
    return {(str(p), p.stat().st_mtime_ns) for p in root.rglob("*") if not p.is_symlink()}


class ColdStart:
    """The built functions, the runtime's boto3, and how to time one cold import among them."""

    def __init__(self, architecture: str) -> None:
        self.build_dir = build(architecture)
        self.runtime = runtime_boto3()
        self.layer = self.build_dir / "CommonLayer" / "python"
        uris = function_code_uris()
        self.task = {name: self.build_dir / uris[f"functions/{name}"] for name in FUNCTIONS}
        roots = (self.layer, self.runtime, *self.task.values())
        missing = [path for root in roots for path in uncompiled(root, *runtime_bytecode())]
        if missing:
            shown = ", ".join(str(p.relative_to(BENCH_DIR)) for p in missing[:5])
            raise RuntimeError(f"{len(missing)} modules ship without unchecked-hash 3.12 bytecode: {shown}")
        self.mount = read_only_mount_works()

    def time_import(self, function: str | None) -> tuple[float, bool]:
        """Milliseconds one fresh process spends importing ``function``'s handler module (None: the boto3
        floor), and whether boto3 was imported by then."""
        task = self.task[function or FUNCTIONS[0]]
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
        env |= lambda_environment(
            {  # and what the Lambda service sets itself
                "LAMBDA_TASK_ROOT": str(task),
                "LAMBDA_RUNTIME_DIR": str(self.runtime),
                "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
                "AWS_LAMBDA_FUNCTION_NAME": task.name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
                "PYTHONPATH": os.pathsep.join(str(p) for p in (task, self.layer, self.runtime)),
                "PYTHONDONTWRITEBYTECODE": "1",
            }
        )
        # -S: no site-packages of the interpreter's own; sys.path is PYTHONPATH then the standard library.
        command = [str(python312()), "-S", "-c", _CHILD.format(body=_IMPORT_APP if function else _FLOOR)]
        if self.mount:
            command = ["unshare", "-m", "sh", "-c", _READ_ONLY, "sh", str(BENCH_DIR), *command]
        completed = subprocess.run(  # noqa: S603 - our own interpreter and code
            command, env=env, cwd=str(task), capture_output=True, text=True, check=False, timeout=120
        )
        if completed.returncode != 0:
            raise RuntimeError(f"cold import of {function or 'boto3'} failed:\n{completed.stderr[-2000:]}")
        answer = json.loads(completed.stdout.strip().splitlines()[-1])
        return float(answer["ms"]), bool(answer["boto3"])

    def how(self) -> str:
        read_only = "a read-only bind mount" if self.mount else "chmod -R a-w"
        return (
            f"sam build output ({self.build_dir.relative_to(ROOT)}, {platform.machine()}), bytecode shipped, "
            f"{read_only}, PYTHONDONTWRITEBYTECODE=1; the floor imports the runtime's boto3 from the same sys.path"
        )


def measure(runs: int = 5) -> list[Row]:
    """One row per function: median cold init vs the median boto3 floor, both over ``runs`` processes."""
    cold = ColdStart(lambda_architecture())
    before = _tree(BENCH_DIR)
    if not cold.mount:
        _set_writable(BENCH_DIR, False)
    try:
        targets: list[str | None] = [None, *FUNCTIONS]
        for target in targets:  # warm-up round, discarded
            cold.time_import(target)
        samples: dict[str | None, list[float]] = {target: [] for target in targets}
        imports_boto3: dict[str | None, bool] = {}
        for _ in range(runs):
            for target in targets:
                ms, imports_boto3[target] = cold.time_import(target)
                samples[target].append(ms)
    finally:
        if not cold.mount:
            _set_writable(BENCH_DIR, True)
    written = sorted(path for path, _ in _tree(BENCH_DIR) ^ before)
    if written:
        raise RuntimeError(f"the cold imports wrote into the read-only tree: {', '.join(written[:5])}")
    floor = median(samples[None])
    lazy = [function for function in FUNCTIONS if not imports_boto3[function]]
    notes = [cold.how()]
    if lazy:
        notes.append(
            f"{', '.join(lazy)} import no boto3 at init; their first call that touches AWS pays the floor then"
        )
    return [
        Row(
            f"cold init {function} (fresh process, median of {runs})",
            median(samples[function]),
            floor,
            "ms",
            target=TARGET_RATIO,
            bound="ratio",
            digits=0,
            note="; ".join(notes) if index == 0 else "",
        )
        for index, function in enumerate(FUNCTIONS)
    ]
