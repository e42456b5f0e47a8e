"""Stand-ins for the CUDA libraries that PyPI's aarch64 torch wheel links, so ExecuTorch's runtime loads on a CPU.

ExecuTorch's Python runtime imports torch; PyPI's torch 2.13 aarch64 wheel is a CUDA 13 build,
and not all of its aarch64 CUDA wheels are on the index. No CUDA code runs in a bundle (the
program runs on XNNPACK; torch only holds the tensors), so each missing library is replaced
by a stub exporting the symbols torch and ExecuTorch import, every one returning an error.
Usage (host, as root): python3 bundle/cuda_stubs.py ROOT  -> ROOT/opt/cuda-stubs/*.so*
"""
from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

VENV_SITE = "opt/treefuse-venv/lib/python3.11/site-packages"
SYMBOL = re.compile(r"^\s*\d+:\s+\S+\s+\S+\s+(\w+)\s+(\w+)\s+\w+\s+(\w+)\s+(\S+)(?:\s+\((\d+)\))?")


def readelf(*args: str) -> str:
    return subprocess.run(["readelf", "-W", *args], capture_output=True, text=True, check=True).stdout


def shared_libraries(folder: Path) -> list[Path]:
    return [p for p in folder.glob("*.so*") if p.is_file() and not p.is_symlink()]


def main(root: Path) -> int:
    site = root / VENV_SITE
    users = [*shared_libraries(site / "torch" / "lib"), *shared_libraries(site / "executorch" / "lib"),
             *shared_libraries(site / "executorch" / "extension" / "pybindings")]
    system = [*shared_libraries(root / "lib" / "aarch64-linux-gnu"), *shared_libraries(root / "usr/lib/aarch64-linux-gnu")]
    present = {p.name for p in [*users, *system]} | {p.name for d in (site / "torch" / "lib", site / "executorch" / "lib",
                                                                       root / "lib" / "aarch64-linux-gnu")
                                                     for p in d.glob("*.so*")}
    needed = {m for lib in users for m in re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", readelf("-d", str(lib)))}
    missing = sorted(n for n in needed if n not in present)
    defined = {m.group(4).split("@")[0] for lib in [*users, *system]
               for m in map(SYMBOL.match, readelf("--dyn-syms", str(lib)).splitlines()) if m and m.group(3) != "UND"}
    version_file: dict[str, str] = {}  # symbol version -> the library file that must define it
    wanted: dict[str, tuple[str, str | None]] = {}  # symbol -> (type, version)
    for lib in users:
        current = None
        for line in readelf("-V", str(lib)).splitlines():
            if found := re.search(r"File: (\S+)", line):
                current = found.group(1)
            if (found := re.search(r"Name: (\S+)", line)) and current:
                version_file[found.group(1)] = current
        for m in map(SYMBOL.match, readelf("--dyn-syms", str(lib)).splitlines()):
            if m and m.group(3) == "UND" and m.group(2) != "WEAK":
                name, _, version = m.group(4).partition("@")
                if name not in defined:
                    wanted[name] = (m.group(1), version or None)
    unversioned = sorted(n for n, (_, v) in wanted.items() if v is None)
    out = root / "opt" / "cuda-stubs"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        for soname in missing:
            own = {n: t for n, (t, v) in wanted.items() if v and version_file.get(v) == soname}
            symbols = {**own, **{n: wanted[n][0] for n in unversioned}}
            source = Path(work) / f"{soname}.c"
            source.write_text("".join(f"char {n}[64];\n" if t == "OBJECT" else f"long {n}(void) {{ return 100; }}\n"
                                      for n, t in sorted(symbols.items())))
            versions = sorted({wanted[n][1] for n in own})
            nodes = [f"{v} {{ global: {' '.join(n + ';' for n in sorted(own) if wanted[n][1] == v)} }};" for v in versions]
            if nodes:  # symbols referenced without a version go into the first version node
                nodes[0] = nodes[0].replace("global: ", "global: " + " ".join(n + ";" for n in unversioned) + " ", 1)
            script = Path(work) / f"{soname}.map"
            script.write_text("\n".join(nodes or ["{ global: *; };"]) + "\n")
            subprocess.run(["aarch64-linux-gnu-gcc", "-shared", "-fPIC", "-w", "-o", str(out / soname),
                            f"-Wl,-soname,{soname}", f"-Wl,--version-script={script}", str(source)], check=True)
    print(f"cuda_stubs: {len(missing)} stand-in libraries in {out}: {', '.join(missing)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
