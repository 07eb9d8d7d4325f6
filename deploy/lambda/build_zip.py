"""Build the scaler's Lambda bundle: build/lambda/scaler.zip (`make lambda-zip`).

pip --target the `scaler` extra's dependencies, then drop what the Lambda never needs:
* boto3/botocore/s3transfer/jmespath: the Python Lambda runtime ships them;
* kubernetes' second, asyncio client (kubernetes/aio, ~68 MB) and the aiohttp stack only it uses;
  of the 68 lazily imported API-group modules (kubernetes/client/api, ~23 MB) all but AppsV1Api;
  tests, __pycache__ and *.pyi;
grpc stays even though the scaler uses transport="rest": google-api-core's gapic_v1 imports it.
python-dateutil is pinned < 3: botocore in the runtime refuses 4.x.

Prints the zipped and unzipped sizes; goals: < 25 MB zipped, < 150 MB unzipped.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# the Runtime in deploy/lambda/template.yaml (override: LAMBDA_PYTHON=3.x make lambda-zip)
LAMBDA_PYTHON = os.environ.get("LAMBDA_PYTHON", "3.12")
OUT = ROOT / "build" / "lambda"
REQUIREMENTS = [
    "kubernetes>=30",
    "google-cloud-container>=2.40",
    "google-auth>=2.29",
    "pydantic>=2.6",
    "pydantic-settings>=2.2",
    "PyYAML>=6",
    "python-dateutil>=2.8,<3",
]
# provided by the Lambda Python runtime (and pulled in again by kubernetes/google deps)
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath")
# `import kubernetes` imports its watch/stream/dynamic/utils/... subpackages, so those stay; the
# asyncio client (kubernetes/aio) and the aiohttp stack only it uses go.
DROP_DIRS = (
    "kubernetes/aio",
    "aiohttp",
    "aiohttp_retry",
    "aiohappyeyeballs",
    "aiosignal",
    "frozenlist",
    "multidict",
    "propcache",
    "yarl",
    "attr",
    "attrs",
    # optional at import time for what the handler uses (the import probe below proves it)
    "opentelemetry",
    "pycparser",
    "google/cloud/container_v1beta1",
)
DROP_SUFFIXES = (".pyc", ".pyi")  # stale ones; precompile_imported writes the ones that matter
DROP_DIR_NAMES = ("__pycache__", "tests", "test")


def tree_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def install(target: Path, python_version: str) -> None:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--target",
        str(target),
        "--platform",
        "manylinux2014_x86_64",
        "--implementation",
        "cp",
        "--python-version",
        python_version,
        "--only-binary=:all:",
        *REQUIREMENTS,
    ]
    subprocess.run(cmd, check=True)


KEEP_KUBERNETES_APIS = ("__init__.py", "apps_v1_api.py")
# PyYAML's optional C accelerator (2.7 MB): safe_load of a small targets file is pure Python
DROP_GLOBS = ("yaml/_yaml.*.so",)


def trim(target: Path) -> None:
    for entry in list(target.iterdir()):
        name = entry.name.split("-")[0].lower()
        if name in RUNTIME_PROVIDED or name in ("bin",):
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    for rel in DROP_DIRS:
        shutil.rmtree(target / rel, ignore_errors=True)
    # the generated API groups are imported lazily, one module each: keep only the scaler's
    for module in (target / "kubernetes" / "client" / "api").glob("*.py"):
        if module.name not in KEEP_KUBERNETES_APIS:
            module.unlink()
    for pattern in DROP_GLOBS:
        for path in target.glob(pattern):
            path.unlink()
    for path in sorted(target.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and path.name in DROP_DIR_NAMES:
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_file() and path.suffix in DROP_SUFFIXES:
            path.unlink()


# what one invocation imports (the handler imports lazily; this is the full set of a GKE run)
# What one invocation imports (the handler imports lazily; this is the full set of a GKE run).
# Run by an interpreter of the Lambda's Python version against the trimmed bundle plus boto3 only:
# it proves the trim kept everything, then writes bytecode for exactly the modules it imported.
IMPORT_PROBE = """
import importlib.util, py_compile, sys
import scaler.handler, scaler.runner, scaler.config, scaler.cluster, scaler.gke, scaler.auth
import scaler.queue, scaler.drain, scaler.state, scaler.policy
import kubernetes.client.api.apps_v1_api, kubernetes.client.api_client, kubernetes.config
import google.cloud.container_v1, google.auth.aws, google.auth.transport.requests
import google.oauth2.service_account, yaml, pydantic_settings
root = sys.argv[1]
files = [getattr(m, "__file__", None) or "" for m in list(sys.modules.values())]
files = [f for f in files if f.startswith(root) and f.endswith(".py")]
for source in files:
    # optimize=2 drops docstrings (the generated kubernetes/google clients are mostly docstrings),
    # written under the plain .pyc name the default interpreter loads; unchecked-hash pyc stay
    # valid whatever mtimes the zip extraction gives the sources
    py_compile.compile(source, cfile=importlib.util.cache_from_source(source), doraise=True,
                       optimize=2, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
print(len(files))
"""


def target_interpreter(python_version: str) -> str | None:
    """A working python of that version: this one, LAMBDA_PYTHON_BIN, PATH, or a pyenv install."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == python_version:
        return sys.executable
    candidates = [os.environ.get("LAMBDA_PYTHON_BIN"), shutil.which(f"python{python_version}")]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    pattern = f"{python_version}*/bin/python{python_version}"
    candidates += sorted(str(p) for p in pyenv.glob(pattern))
    for candidate in candidates:
        if not candidate:
            continue
        check = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
        )
        if check.returncode == 0 and check.stdout.strip() == python_version:
            return candidate
    return None


def probe_and_precompile(stage: Path, python_version: str) -> int | None:
    """Check the bundle imports and ship bytecode for the modules an invocation imports.

    /var/task is read-only, so without shipped .pyc every cold start recompiles them (seconds);
    .pyc for the whole tree would double its size. Needs a python of the Lambda's version; without
    one the bundle ships without bytecode (slower cold starts) and a warning says so.
    """
    interpreter = target_interpreter(python_version)
    if interpreter is None:
        print(
            f"warning: no python{python_version} here: bundle not import-checked, no bytecode",
            file=sys.stderr,
        )
        return None
    with tempfile.TemporaryDirectory() as runtime:
        # only what the Lambda runtime adds to the bundle: boto3 and its own dependencies
        for name in RUNTIME_PROVIDED:
            module = __import__(name)
            os.symlink(Path(module.__file__).parent, Path(runtime) / name)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env["PYTHONPATH"] = os.pathsep.join([str(stage), runtime])
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        result = subprocess.run(
            [interpreter, "-S", "-c", IMPORT_PROBE, str(stage)],
            cwd=stage,
            env=env,
            capture_output=True,
            text=True,
        )
    if result.returncode != 0:
        raise SystemExit(f"trimmed bundle cannot import the handler's needs:\n{result.stderr}")
    return int(result.stdout.strip().splitlines()[-1])


def copy_app(target: Path) -> None:
    src = ROOT / "scaler"
    dest = target / "scaler"
    shutil.copytree(
        src,
        dest,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "traces", "tracegen.py"),
    )


def write_zip(stage: Path, zip_path: Path) -> None:
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = zip_path.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for path in sorted(stage.rglob("*")):
            if path.is_file():
                info = zipfile.ZipInfo.from_file(path, path.relative_to(stage).as_posix())
                info.date_time = (2020, 1, 1, 0, 0, 0)  # reproducible bytes
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, path.read_bytes(), compresslevel=9)
    os.replace(tmp, zip_path)


def build(out_dir: Path = OUT, python_version: str = LAMBDA_PYTHON) -> tuple[Path, int, int]:
    stage = out_dir / "stage"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    install(stage, python_version)
    trim(stage)
    copy_app(stage)
    probe_and_precompile(stage, python_version)
    unzipped = tree_size(stage)
    zip_path = out_dir / "scaler.zip"
    write_zip(stage, zip_path)
    return zip_path, zip_path.stat().st_size, unzipped


MEASURE = """
import json, time
t0 = time.perf_counter()
import scaler.handler
t1 = time.perf_counter()
import scaler.runner, scaler.cluster, scaler.gke, scaler.auth, scaler.queue, scaler.drain
import kubernetes.client.api.apps_v1_api, kubernetes.config
import google.cloud.container_v1, google.auth.aws, google.oauth2.service_account
print(json.dumps([t1 - t0, time.perf_counter() - t0]))
"""


def measure_cold_import(
    zip_path: Path, python_version: str, runs: int = 5
) -> tuple[float, float] | None:
    """Unzip into a read-only dir (like /var/task) and time fresh-interpreter imports."""
    import json

    interpreter = target_interpreter(python_version)
    if interpreter is None:
        print(f"no python{python_version} here to measure with", file=sys.stderr)
        return None
    with tempfile.TemporaryDirectory() as tmp:
        task, runtime = Path(tmp) / "task", Path(tmp) / "runtime"
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(task)
        runtime.mkdir()
        for name in RUNTIME_PROVIDED:
            os.symlink(Path(__import__(name).__file__).parent, runtime / name)
        for path in [task, *task.rglob("*")]:
            if path.is_dir():
                path.chmod(0o555)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env["PYTHONPATH"] = os.pathsep.join([str(task), str(runtime)])
        samples = []
        for _ in range(runs):
            out = subprocess.run(
                [interpreter, "-S", "-c", MEASURE], cwd=tmp, env=env, check=True,
                capture_output=True, text=True,
            ).stdout
            samples.append(json.loads(out))
        for path in [task, *task.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
    handler = sorted(s[0] for s in samples)[len(samples) // 2]
    full = sorted(s[1] for s in samples)[len(samples) // 2]
    print(
        f"cold import (python{python_version}, median of {runs} fresh interpreters): "
        f"import scaler.handler {handler:.3f} s; everything a GKE run imports {full:.2f} s"
    )
    return handler, full


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--python-version",
        default=LAMBDA_PYTHON,
        help="the Lambda runtime's Python (wheels and bytecode are built for it)",
    )
    parser.add_argument(
        "--measure", action="store_true", help="also time cold imports from the built bundle"
    )
    args = parser.parse_args()
    zip_path, zipped, unzipped = build(args.out, args.python_version)
    mb = 1024 * 1024
    print(
        f"{zip_path} (python{args.python_version}): {zipped:,} bytes zipped "
        f"({zipped / mb:.1f} MiB), {unzipped:,} bytes unzipped ({unzipped / mb:.1f} MiB)"
    )
    ok = zipped < 25_000_000 and unzipped < 150_000_000
    if args.measure:
        imports = measure_cold_import(zip_path, args.python_version)
        sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
        from bench import results

        results.write("lambda-bundle", {
            "python": args.python_version, "zipped_bytes": zipped, "unzipped_bytes": unzipped,
            "zipped_mib": round(zipped / mb, 1), "unzipped_mib": round(unzipped / mb, 1),
            "handler_import_s": round(imports[0], 3) if imports else None,
            "gke_run_imports_s": round(imports[1], 2) if imports else None,
            "goal_zipped_bytes": 25_000_000, "goal_unzipped_bytes": 150_000_000,
        })
    if not ok:
        print("over the goals (< 25 MB zipped, < 150 MB unzipped)", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
