"""Property-based fuzzing of every reader of files other people write (``make fuzz``; a bounded run in the suite).

    .venv/bin/python tests/fuzz_readers.py [--examples 300] [--readers nir net pt config profile journal]
        [--seed 0] [--out runs/fuzz.json]

Readers: ``.nir`` (``read_nir`` + ``compile_graph``), lava-dl ``.net`` (``read_netx``), ``model.pt``
(``load_model``), run configs (``load_pipeline_config``), chip profiles (``load_profile``) and search journals
(``read_journal``). Hypothesis draws each input from valid seed files by HDF5-level edits (a deleted or retyped
dataset, arrays of any shape, dtype or size, NaN/inf, a renamed node type, edges to missing nodes, cycles, no
Input, external and soft links, virtual datasets, terabyte shapes), byte-level damage (truncation, flipped bytes)
and, for the text formats, mappings of known and unknown keys with values of every type.

Oracle, per example, in a worker process whose address space is capped at 1 GiB above what its imports already
take (torch alone maps ~3 GB) and with 10 s per example: the reader returns, or raises one of nasflow's named
errors (``NAMED``: documented exception classes, whose message names the file). Anything else (another exception,
a hang, a memory blow-up, the worker dying) is a failure, reported with its example. Prints per reader the
examples tried, the named errors seen by class, and the failures.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
READERS = ("nir", "net", "pt", "config", "profile", "journal")
TIMEOUT_S = 10.0
HEADROOM = 1024**3


# --------------------------------------------------------------------------------------------------- worker side


def _named() -> tuple[type[BaseException], ...]:
    from exporters.core.errors import NIRFormatError
    from exporters.netx import NetxFormatError
    from hwmodels.profiles import ProfileError
    from nasflow.config import ConfigError
    from nasflow.strategies.journal import JournalError
    from nasflow.train.checkpoint import CheckpointError

    return NIRFormatError, NetxFormatError, ProfileError, ConfigError, JournalError, CheckpointError


def _read(kind: str, path: str) -> None:
    if kind == "nir":
        from exporters.core.compile import compile_graph
        from exporters.nir_io import read_nir

        compile_graph(read_nir(path))
    elif kind == "net":
        from exporters.netx_import import read_netx

        read_netx(path)
    elif kind == "pt":
        from nasflow.models import load_model

        load_model(path)
    elif kind == "config":
        from nasflow.pipeline import load_pipeline_config

        load_pipeline_config(path)
    elif kind == "profile":
        from hwmodels.profiles import load_profile

        load_profile(path)
    elif kind == "journal":
        from nasflow.strategies.journal import read_journal

        read_journal(path)


def worker() -> None:
    """Read ``{"kind", "path"}`` lines from stdin, answer ``{"status", "type", "message"}`` lines on stdout."""
    import warnings

    warnings.simplefilter("ignore")
    named = _named()
    for kind in READERS:  # import every reader before capping the address space
        try:
            _read(kind, os.devnull)
        except BaseException:  # noqa: BLE001 - only the imports matter here
            pass
    used = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (used + HEADROOM, used + HEADROOM))
    out = sys.stdout
    sys.stdout = sys.stderr  # readers that print must not corrupt the protocol
    for line in sys.stdin:
        job = json.loads(line)
        try:
            _read(job["kind"], job["path"])
            res = {"status": "ok"}
        except named as err:
            name = Path(job["path"]).name
            res = {"status": "named" if name in str(err) or job["kind"] == "config" else "unnamed-file",
                   "type": type(err).__name__, "message": str(err)[:300]}
        except MemoryError:
            res = {"status": "memory", "type": "MemoryError", "message": ""}
        except BaseException as err:  # noqa: BLE001 - every other outcome is what the fuzzer looks for
            res = {"status": "crash", "type": type(err).__name__, "message": str(err)[:300]}
        out.write(json.dumps(res) + "\n")
        out.flush()


class Pool:
    """One capped worker process, restarted after a hang or a death."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None

    def _start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)

    def run(self, kind: str, path: Path) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"kind": kind, "path": str(path)}) + "\n")
        self.proc.stdin.flush()
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        ready = sel.select(timeout=TIMEOUT_S + (60 if not hasattr(self, "_warm") else 0))
        sel.close()
        if not ready:
            self.close()
            return {"status": "timeout", "type": "timeout", "message": f"no answer in {TIMEOUT_S:g} s"}
        line = self.proc.stdout.readline()
        if not line:
            self.close()
            return {"status": "died", "type": "worker died", "message": "the reader killed its process"}
        self._warm = True
        return json.loads(line)

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
            self.__dict__.pop("_warm", None)


# --------------------------------------------------------------------------------------------------- generators


def _seeds(tmp: Path) -> dict[str, list[Path]]:
    """Valid files of every kind, the starting points of the edits."""
    import nir
    import numpy as np
    import torch

    from exporters.nir_export import to_nir
    from exporters.nir_io import write_nir
    from nasflow.models import create_model, save_model
    from nasflow.strategies.journal import Journal

    seeds: dict[str, list[Path]] = {k: [] for k in READERS}
    interop = ROOT / "examples" / "interop"
    seeds["nir"] += [interop / "lif_norse.nir", interop / "braille_noDelay_bias_zero.nir"]
    torch.manual_seed(0)
    model = create_model("autosnn", arch="SCB_k3,SRB_k3,skip,skip,skip", in_shape=(1, 8, 8), channels=2, steps=2)
    seeds["nir"].append(write_nir(tmp / "autosnn.nir", to_nir(model.eval())))
    rec = nir.NIRGraph(nodes={"in": nir.Input(input_type={"input": np.array([3])}),
                              "w": nir.Linear(weight=np.ones((3, 3))),
                              "n": nir.CubaLIF(tau_syn=np.ones(3), tau_mem=np.ones(3), r=np.ones(3),
                                               v_leak=np.zeros(3), v_threshold=np.ones(3), v_reset=np.zeros(3)),
                              "r": nir.Linear(weight=np.eye(3)), "d": nir.Delay(delay=np.full(3, 1e-3)),
                              "out": nir.Output(output_type={"output": np.array([3])})},
                       edges=[("in", "w"), ("w", "n"), ("n", "r"), ("r", "d"), ("d", "n"), ("n", "out")],
                       metadata={"dt": 1e-3})
    seeds["nir"].append(write_nir(tmp / "rec.nir", rec))
    import sysconfig

    tiny = Path(sysconfig.get_paths()["purelib"]) / "tests/lava/lib/dl/netx/tiny.net"
    seeds["net"].append(tiny)
    seeds["pt"].append(save_model(tmp / "model.pt", model, "autosnn"))
    (tmp / "run.yaml").write_text("autosnn:\n  evaluations: 20\n  budgets: {cores: 64}\nmodel:\n  steps: 4\n"
                                  "lava:\n  samples: 8\nseed: 1\n")
    seeds["config"].append(tmp / "run.yaml")
    seeds["profile"].append(ROOT / "hwmodels" / "chips" / "loihi.json")
    j = Journal(tmp / "journal.jsonl", {"journal_format": 2, "value_name": "accuracy", "space": "x"})
    j.record("a,b", 0, 0.5, {"spikes": 3.0})
    j.record("c,d", 1, 0.7, {"spikes": 4.0})
    seeds["journal"].append(tmp / "journal.jsonl")
    return seeds


def _array(rng: random.Random):
    import numpy as np

    kind = rng.choice(["float", "int", "bool", "nan", "inf", "empty", "string", "complex", "scalar", "big"])
    shape = tuple(rng.randint(0, 4) for _ in range(rng.randint(0, 4)))
    if kind == "float":
        return np.random.default_rng(rng.randint(0, 9)).normal(size=shape) * 10 ** rng.randint(-3, 6)
    if kind == "int":
        return np.full(shape, rng.randint(-2**40, 2**40), dtype=np.int64)
    if kind == "bool":
        return np.ones(shape, bool)
    if kind == "nan":
        return np.full(shape or (2,), np.nan)
    if kind == "inf":
        return np.full(shape or (2,), -np.inf)
    if kind == "empty":
        return np.zeros((0,))
    if kind == "string":
        return np.bytes_(rng.choice([b"LIF", b"", b"\xff\xfe", b"Input", b"x" * 300]))
    if kind == "complex":
        return np.ones(shape or (1,), complex)
    if kind == "scalar":
        return np.float64(rng.choice([0.0, -1.0, 1e308, 3.0]))
    return np.arange(rng.randint(1, 50000), dtype=np.float32)


def _hdf5_edit(path: Path, rng: random.Random) -> None:
    import h5py
    import numpy as np

    with h5py.File(path, "r+") as f:
        names: list[str] = []
        f.visit(names.append)
        for _ in range(rng.randint(1, 4)):
            if not names:
                break
            target = rng.choice(names)
            op = rng.choice(["delete", "replace", "replace", "type", "external", "soft", "huge", "virtual", "edges"])
            try:
                obj = f.get(target)
                if obj is None:
                    continue
                parent, leaf = target.rsplit("/", 1) if "/" in target else ("", target)
                grp = f[parent] if parent else f
                if op == "delete":
                    del grp[leaf]
                elif op == "replace" and isinstance(obj, h5py.Dataset):
                    del grp[leaf]
                    grp[leaf] = _array(rng)
                elif op == "type" and isinstance(obj, h5py.Group) and "type" in obj:
                    del obj["type"]
                    obj["type"] = np.bytes_(rng.choice(["LIF", "IF", "Conv2d", "NIRGraph", "Bogus", "Input",
                                                        "Output", "Delay", "Flatten", "CubaLI"]))
                elif op == "external":
                    del grp[leaf]
                    grp[leaf] = h5py.ExternalLink("/etc/hostname", "/x")
                elif op == "soft":
                    grp[leaf + "_s"] = h5py.SoftLink("/" + target)
                elif op == "huge" and isinstance(obj, h5py.Dataset):
                    del grp[leaf]
                    grp.create_dataset(leaf, shape=(2**18, 2**18), dtype="f8", chunks=(16, 16), compression="gzip")
                elif op == "virtual" and isinstance(obj, h5py.Dataset):
                    del grp[leaf]
                    layout = h5py.VirtualLayout(shape=(3,), dtype="f8")
                    layout[:] = h5py.VirtualSource("/nonexistent.h5", "d", shape=(3,))
                    grp.create_virtual_dataset(leaf, layout, fillvalue=0)
                elif op == "edges" and leaf == "edges" and isinstance(obj, h5py.Group):
                    src, dst = obj["src"][()], obj["dst"][()]
                    del obj["src"], obj["dst"]
                    src, dst = list(src), list(dst)
                    if src and rng.random() < 0.5:  # a cycle or a dangling edge
                        src.append(dst[-1])
                        dst.append(rng.choice([src[0], b"missing"]))
                    elif src:
                        src.pop(rng.randrange(len(src)))
                        dst.pop(rng.randrange(len(dst)))
                    obj["src"], obj["dst"] = np.array(src, dtype=object).astype("S"), np.array(dst).astype("S")
            except (KeyError, ValueError, TypeError, OSError, RuntimeError):
                continue


def _bytes_edit(data: bytes, rng: random.Random) -> bytes:
    data = bytearray(data)
    op = rng.choice(["truncate", "flip", "flip", "splice"])
    if op == "truncate" or not data:
        return bytes(data[: rng.randint(0, len(data))])
    if op == "flip":
        for _ in range(rng.randint(1, 20)):
            i = rng.randrange(len(data))
            data[i] = rng.randrange(256)
        return bytes(data)
    i = rng.randrange(len(data))
    return bytes(data[:i] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))) + data[i:])


_KEYS = ["autosnn", "model", "lava", "retrain", "data", "seed", "space", "snasnet", "search", "chip", "baseline",
         "evaluations", "budgets", "steps", "samples", "cores", "unknown", "dt", "device", "progress", "epochs"]


def _value(rng: random.Random, depth: int = 0):
    choices = [None, True, -1, 0, 10**30, 1.5, float("nan"), float("inf"), "", "x" * 200, "energy:loihi", [], [1, "a"]]
    if depth < 3:
        choices += [{rng.choice(_KEYS): _value(rng, depth + 1) for _ in range(rng.randint(0, 4))}] * 3
    return rng.choice(choices)


def _text_edit(kind: str, seed: Path, rng: random.Random) -> bytes:
    import yaml

    if rng.random() < 0.3:
        return _bytes_edit(seed.read_bytes(), rng)
    if kind == "config":
        doc = yaml.safe_load(seed.read_text())
        for _ in range(rng.randint(1, 4)):
            sec = rng.choice(_KEYS)
            doc[sec] = _value(rng) if rng.random() < 0.5 else {rng.choice(_KEYS): _value(rng)}
        return yaml.safe_dump(doc, allow_unicode=True).encode()
    if kind == "profile":
        doc = json.loads(seed.read_text())
        keys = list(doc)
        for _ in range(rng.randint(1, 4)):
            k = rng.choice(keys + _KEYS)
            if rng.random() < 0.3 and k in doc:
                del doc[k]
            else:
                doc[k] = _value(rng)
        return json.dumps(doc, allow_nan=True).encode()
    lines = seed.read_text().splitlines()
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(lines))
        row = json.loads(lines[i]) if lines[i].startswith("{") else {}
        row[rng.choice(["arch", "value", "costs", "type", "index", "journal_format", "x"])] = _value(rng)
        lines[i] = json.dumps(row, allow_nan=True)
    return ("\n".join(lines) + rng.choice(["\n", ""])).encode()


def make_example(kind: str, seeds: list[Path], rng: random.Random, tmp: Path, n: int) -> Path:
    """One fuzzed file of ``kind`` in ``tmp`` (the seed edited by ``rng``)."""
    seed = rng.choice(seeds)
    path = tmp / f"ex{n}{seed.suffix}"
    if kind in ("nir", "net"):
        shutil.copy(seed, path)
        if rng.random() < 0.75:
            _hdf5_edit(path, rng)
        else:
            path.write_bytes(_bytes_edit(seed.read_bytes(), rng))
    elif kind == "pt":
        if rng.random() < 0.6:
            path.write_bytes(_bytes_edit(seed.read_bytes(), rng))
        else:
            import torch

            torch.save(rng.choice([{"kind": "model", "state_dict": {"x": torch.ones(2)}},
                                   {"kind": "model", "name": "autosnn", "config": _value(rng)},
                                   {"kind": rng.choice(["supernet", "model", 3])}, [1, 2],
                                   {"kind": "model", "name": "nope", "config": {}, "state_dict": {}}]), path)
    else:
        path.write_bytes(_text_edit(kind, seed, rng))
    return path


def _property(kind: str, row: dict, seeds: list[Path], pool: Pool, tmp: Path, seed: int, examples: int):
    """The hypothesis test of one reader: every drawn example through the capped worker, outcomes into ``row``."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    counter = iter(range(10**9))

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.integers(min_value=0, max_value=2**32 - 1))
    def one(r: int) -> None:
        path = make_example(kind, seeds, random.Random(r ^ seed), tmp, next(counter))
        res = pool.run(kind, path)
        row["tried"] += 1
        row["outcomes"][res["status"]] += 1
        if res["status"] == "named":
            row["named"][res["type"]] += 1
        elif res["status"] != "ok":
            keep = tmp.parent / f"nasflow-fuzz-failure-{kind}-{r}{path.suffix}"
            shutil.copy(path, keep)
            row["failures"].append({**res, "example": str(keep)})
        path.unlink(missing_ok=True)

    return one


def fuzz(readers: list[str], examples: int, seed: int, log=print) -> dict[str, dict]:
    """Run ``examples`` hypothesis examples per reader; returns per reader tried, outcomes and failures."""
    stats: dict[str, dict] = {}
    pool = Pool()
    with tempfile.TemporaryDirectory(prefix="nasflow-fuzz-") as tmp_name:
        tmp = Path(tmp_name)
        seeds = _seeds(tmp)
        try:
            for kind in readers:
                row = {"tried": 0, "outcomes": collections.Counter(), "named": collections.Counter(),
                       "failures": []}
                one = _property(kind, row, seeds[kind], pool, tmp, seed, examples)
                t0 = time.monotonic()
                one()
                row["seconds"] = round(time.monotonic() - t0, 1)
                stats[kind] = {**row, "outcomes": dict(row["outcomes"]), "named": dict(row["named"])}
                log(f"{kind:8s} {row['tried']:5d} tried in {row['seconds']:6.1f} s  outcomes {dict(row['outcomes'])}  "
                    f"named {dict(row['named'])}  failures {len(row['failures'])}")
                for fail in row["failures"][:5]:
                    log(f"    {fail['status']}: {fail['type']}: {fail['message'][:160]}  ({fail['example']})")
        finally:
            pool.close()
    return stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--examples", type=int, default=300)
    ap.add_argument("--readers", nargs="+", default=list(READERS), choices=READERS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.worker:
        worker()
        return
    stats = fuzz(args.readers, args.examples, args.seed)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(stats, indent=1) + "\n")
    bad = sum(len(s["failures"]) for s in stats.values())
    print(f"{sum(s['tried'] for s in stats.values())} examples, {bad} failures")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
