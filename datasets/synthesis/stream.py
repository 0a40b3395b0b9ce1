"""On-the-fly training data: new random crystals every epoch (``train.py --data_source stream``).

:class:`StructureStream` is a map-style dataset of the *training* split only (validation and test
stay fixed files). Design:

* **Slots.** N structure slots; slot i has a fixed space group ``sg_i`` for the whole run (drawn
  once from a profile: the Materials Project one of the built-in train split, or balanced), so
  labels, class counts and samplers stay valid across epochs. Epoch e fills slot i with a new
  crystal of ``sg_i``: job ``Job("train", e*N + i, sg_i, row, seed)``, its MP row drawn from the
  job's generator exactly as the file set's plan does (:func:`datasets.synthesis.plan.draw_job`),
  and a seed derived from the run seed (never the file set's seed 0).
* **Reuse.** The dataset has N·R items; item k shows slot k % N. Lattice augmentation in the
  collate (seeded by ``idx``) re-renders every reuse in its own strained cell.
* **Failures.** A job that fails (no structure, a crashed or hung worker) is tried again for the
  same slot with another seed; after ``max_tries`` the slot keeps the previous epoch's crystal.
  A slot is never empty and never mislabeled (every crystal passed spglib's check of its label).
* **Double buffering.** Epoch 0 is generated at construction (progress bar). ``set_epoch(e)``
  (the Trainer calls it on the training loader's dataset) makes epoch e's table current, waiting
  for it if needed, and starts epoch e+1 in a background thread that drives the engine's worker
  processes (``datasets.synthesis.engines``). Epoch e's table depends only on (seed, e) (except
  for slots that fell back to their previous crystal), so a resumed run sees the same crystals.
* **Cache** (``cache_dir``, ``--stream_cache``): each epoch's table is saved, and loaded instead of
  generated when present (``datasets.synthesis.stream_cache``): same items, bitwise, either way.
* **Pickling** drops the thread and the engine: DataLoader workers get the current table only.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from loguru import logger
from torch.utils.data import Dataset

from datasets.crystals import FamilyTable, StructureTable
from datasets.peaks import PeakTable
from datasets.synthesis.engines import build_engine
from datasets.synthesis.families import FAMILY_MIN_REL
from datasets.synthesis.jobs import JobRunner, empty_result
from datasets.synthesis.plan import Job, draw_job, group_totals, load_mp_table, rows_by_group, train_counts
from datasets.synthesis.reflections import G_MARGIN, form_factor_table
from datasets.synthesis.stream_cache import EpochCache, key_inputs
from utils.crystal import SG_TO_CS
from utils.errors import ConfigError

STREAM_SEED_SALT = 0x57E4  # stream jobs: a seed space of their own (the file set uses seed 0)
STAT_KEYS = ("generated", "failed", "retried", "hung", "lost", "crashed_workers", "fallback", "waited_s",
             "cached")


def stream_seed(run_seed: int, attempt: int) -> int:
    """The job seed of a slot's ``attempt``-th try (a 32-bit hash of (salt, run seed, attempt))."""
    return int(np.random.SeedSequence([STREAM_SEED_SALT, int(run_seed), int(attempt)]).generate_state(1)[0])


class StreamJob:
    """``JobRunner`` plus the reflection families of an accepted structure (picklable).

    Returns the runner's result dict with ``"families"`` added (``ok`` is False with the error
    when the sticks or the families cannot be derived). Sticks and families come from one
    enumeration of reflections with the rotations of the generator's spglib check
    (``JobRunner.run(job, families=...)``), equal to separate ``peaks_of_arrays`` and
    ``families_of_arrays`` calls (``tests/test_stream_job.py``).
    """

    def __init__(self, runner: JobRunner, wavelength: float, two_theta_max: float) -> None:
        self.runner, self.wavelength, self.two_theta_max = runner, float(wavelength), float(two_theta_max)

    def __call__(self, job: Job) -> dict:
        fam = {"wavelength": self.wavelength, "two_theta_max": self.two_theta_max, "g_margin": G_MARGIN,
               "min_rel": FAMILY_MIN_REL}
        out = self.runner.run(job, families=fam)
        if out["ok"]:
            out["families"]["sf"] = out["families"]["sf"].astype(np.float32)
        return out


def slot_groups(totals: np.ndarray, n: int, profile: str, seed: int, groups: list[int] | None = None
                ) -> np.ndarray:
    """(n,) 1-based space group of every slot, sorted.

    ``mp``: counts ∝ the MP profile (``train_counts`` at the scale whose total is n, at least one
    per present group, the remainder to the largest fractional parts); ``balanced``: equal per
    present group (remainder to seeded random groups). With fewer slots than present groups, n
    groups are drawn without replacement (∝ MP counts for ``mp``, uniformly for ``balanced``).
    """
    present = np.array([g for g in range(1, 231) if totals[g] > 0 and (groups is None or g in groups)])
    if len(present) == 0:
        raise ConfigError(f"stream: no space group with Materials Project structures in {groups}")
    rng = np.random.default_rng([STREAM_SEED_SALT, int(seed), 1])
    w = totals[present].astype(np.float64) if profile == "mp" else np.ones(len(present))
    if n < len(present):
        logger.warning(f"stream: {n} slots for {len(present)} space groups: {n} groups drawn, the others "
                       "absent from training (raise --stream_structures)")
        return np.sort(rng.choice(present, size=n, replace=False, p=w / w.sum()))
    if profile == "balanced":
        counts = np.full(len(present), n // len(present))
        counts[rng.permutation(len(present))[: n - counts.sum()]] += 1
    else:
        sub = np.zeros(231, np.int64)
        sub[present] = totals[present]
        lo, hi = 0.0, n / max(sub.sum(), 1)
        for _ in range(60):  # largest scale whose counts (each >= 1) do not exceed n
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if train_counts(sub, mid).sum() <= n else (lo, mid)
        counts = train_counts(sub, lo)[present]
        frac = lo * w - np.floor(lo * w)
        counts[np.argsort(-frac, kind="stable")[: n - counts.sum()]] += 1
    return np.repeat(present, counts)


class StructureStream(Dataset):
    """Training patterns of freshly generated crystals, a new set every epoch (module docstring).

    Item contract (as ``datasets.readers.peak_lists.PeakListDataset`` with families)::

        {"two_theta": (n,) float32, "intensity": (n,) float32, "y_sg": int, "y_cs": int, "idx": int,
         "hkl", "mult", "sf", "z", "ff", "cell"}   # reflection families, for lattice augmentation

    Args:
        table_path: pyxtal's Materials Project table (``structures.mp_table_path()``).
        n_structures: slots N (crystals per epoch).
        reuse: R, items per slot and epoch (length N·R).
        seed: run seed (jobs, slot groups).
        profile: ``"mp"`` or ``"balanced"`` (slot groups, :func:`slot_groups`).
        opts: ``JobRunner`` options (tol_factor, volume_factor, wavelength, two_theta_range,
            min_intensity).
        max_atoms: largest conventional cell sampled (as the file set).
        engine: ``datasets.synthesis.engines`` name; ``engine_kwargs`` its keyword arguments
            (default: one local worker *process*, ``{"workers": 1, "inline": False}``, so that
            generation neither competes with training for the GIL nor dies with a crashed job).
        max_tries: tries of a slot per epoch before it keeps its previous crystal.
        epochs: no epoch >= this is prefetched (None: always prefetch the next).
        groups: restrict the slots to these space groups (tests, quick runs).
        job_fn: the callable run per job (default ``StreamJob(JobRunner(table_path, opts), ...)``).
        progress: show a progress bar while training waits for a table.
        cache_dir: epoch cache folder (None: off), :mod:`datasets.synthesis.stream_cache`.
    """

    def __init__(self, table_path: str, n_structures: int = 2000, reuse: int = 4, seed: int = 0,
                 profile: str = "mp", opts: dict | None = None, max_atoms: int = 60, engine: str = "local",
                 engine_kwargs: dict | None = None, max_tries: int = 3, epochs: int | None = None,
                 groups: list[int] | None = None, job_fn: Callable[[Job], dict] | None = None,
                 progress: bool = True, cache_dir: str | None = None) -> None:
        if n_structures < 1 or reuse < 1 or max_tries < 1:
            raise ConfigError("stream: --stream_structures, --stream_reuse and max_tries must be >= 1")
        if profile not in ("mp", "balanced"):
            raise ConfigError(f"stream: unknown profile {profile!r} (mp, balanced)")
        self.opts = {"tol_factor": 0.9, "volume_factor": 1.2, "wavelength": 1.5406,
                     "two_theta_range": (5.0, 90.0), "min_intensity": 0.5, **(opts or {})}
        self.wavelength = float(self.opts["wavelength"])
        table = load_mp_table(table_path)
        self.n, self.reuse, self.seed = int(n_structures), int(reuse), int(seed)
        self.max_tries = int(max_tries)
        self.slot_sg = slot_groups(group_totals(table), self.n, profile, self.seed, groups)
        cand = rows_by_group(table, int(max_atoms))
        self._cand = {int(g): cand[int(g)] for g in np.unique(self.slot_sg)}
        self.job_fn = job_fn or StreamJob(JobRunner(table_path, self.opts), self.wavelength,
                                          float(self.opts["two_theta_range"][1]))
        self.cache = None if cache_dir is None else EpochCache(cache_dir, key_inputs(
            table_path, self.seed, self.n, profile, self.opts, max_atoms, groups, self.max_tries, self.job_fn,
            family_min_rel=FAMILY_MIN_REL, g_margin=G_MARGIN))
        self.engine_name = engine
        self.engine_kwargs = dict({"workers": 1, "inline": False} if engine_kwargs is None else engine_kwargs)
        self.epochs, self.progress = epochs, bool(progress)
        self.stats: dict[str, float] = dict.fromkeys(STAT_KEYS, 0)
        self.epoch_stats: dict[int, dict[str, float]] = {}
        self._engine: Any = None
        self._thread: threading.Thread | None = None
        self._next: dict[str, Any] = {}  # the background epoch: {"epoch", "table", "stats", "error", "stop"}
        self.epoch, self.table = 0, None
        t0, stats = time.perf_counter(), self._new_stats()
        # canonical: the table an uninterrupted run has (what the cache may hold), stream_cache
        self.table, self._canonical = self._obtain(0, None, True, stats, threading.Event(), bar=True)
        self._account(0, stats, time.perf_counter() - t0, waited=False)

    # ------------------------------------------------------------------ dataset
    def __len__(self) -> int:
        return self.n * self.reuse

    @property
    def labels(self) -> np.ndarray:
        """(N·R,) 0-based space-group labels: fixed for the whole run."""
        return np.tile(self.slot_sg.astype(np.int64) - 1, self.reuse)

    def __getitem__(self, k: int) -> dict[str, Any]:
        k = int(k)
        if not 0 <= k < len(self):
            raise IndexError(k)
        s = k % self.n
        tt, inten = self.table.peaks(s)
        sg0 = int(self.table.sg[s]) - 1
        item = {"two_theta": np.asarray(tt, np.float32), "intensity": np.asarray(inten, np.float32),
                "y_sg": sg0, "y_cs": int(SG_TO_CS[sg0]), "idx": k}
        item.update(self.table.families.item(s))
        return item

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.update(_engine=None, _thread=None, _next={}, job_fn=None)
        return state

    # ------------------------------------------------------------------ epochs
    def set_epoch(self, epoch: int) -> None:
        """Make epoch ``epoch``'s table current (waiting if needed) and start generating the next."""
        epoch = int(epoch)
        if epoch != self.epoch:
            t0 = time.perf_counter()
            if self._next.get("epoch") == epoch:
                self._thread.join()
                if self._next["error"] is not None:
                    raise self._next["error"]
                table, stats, canonical = self._next["table"], self._next["stats"], self._next["canonical"]
                gen_s = self._next.get("seconds")
            else:  # a jump (resume at epoch > 0): drop the prefetch, generate here
                self._stop_background()
                stats = self._new_stats()
                ok = self._canonical and epoch == self.epoch + 1
                table, canonical = self._obtain(epoch, self.table, ok, stats, threading.Event(), bar=True)
                gen_s = None
            self._next = {}
            waited = time.perf_counter() - t0
            self.table, self.epoch, self._canonical = table, epoch, canonical
            self._account(epoch, stats, waited, waited=True, gen_s=gen_s)
        self._prefetch(epoch + 1)

    def close(self) -> None:
        """Stop the background generation and its workers (idempotent)."""
        self._stop_background()
        if self._engine is not None and hasattr(self._engine, "close"):
            self._engine.close()
        self._engine = None

    def _prefetch(self, epoch: int) -> None:
        if (self.epochs is not None and epoch >= self.epochs) or self._next.get("epoch") == epoch:
            return
        self._stop_background()
        nxt = {"epoch": epoch, "table": None, "stats": self._new_stats(), "error": None,
               "stop": threading.Event()}

        previous, prev_ok = self.table, self._canonical and epoch == self.epoch + 1

        def run() -> None:
            t0 = time.perf_counter()
            try:
                got = self._obtain(epoch, previous, prev_ok, nxt["stats"], nxt["stop"], bar=False)
                nxt["table"], nxt["canonical"] = got
                nxt["seconds"] = time.perf_counter() - t0  # wall time beside training: the supply rate
            except BaseException as exc:  # re-raised in the training thread by set_epoch
                nxt["error"] = exc

        self._next = nxt
        self._thread = threading.Thread(target=run, name=f"structure-stream-{epoch}", daemon=True)
        self._thread.start()

    def _stop_background(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._next["stop"].set()
            self._thread.join()
        self._thread, self._next = None, {}

    # ------------------------------------------------------------------ generation
    @staticmethod
    def _new_stats() -> dict[str, float]:
        return dict.fromkeys(STAT_KEYS, 0)

    def _get_engine(self) -> Any:
        if self._engine is None:
            self._engine = build_engine(self.engine_name, **self.engine_kwargs)
        return self._engine

    def _imap(self, jobs: list[Job]):
        on_fail = lambda job, reason: {**empty_result(job, errors=reason), "reason": reason}  # noqa: E731
        return self._get_engine().imap_unordered(self.job_fn, jobs, on_fail=on_fail)

    def _obtain(self, epoch: int, previous: PeakTable | None, prev_ok: bool, stats: dict[str, float],
                stop: threading.Event, bar: bool) -> tuple[PeakTable, bool]:
        """(epoch ``epoch``'s table, whether canonical): from the cache, else generated (and cached
        when canonical: ``previous`` is epoch − 1's canonical table, or no slot fell back)."""
        table = None if self.cache is None else self.cache.load(epoch, self.slot_sg)
        if table is not None:
            stats["cached"] = 1
            return table, True
        table = self._generate(epoch, previous, stats, stop, bar)
        canonical = not stop.is_set() and (prev_ok or not stats["fallback"])
        if self.cache is not None and canonical:
            self.cache.save(epoch, table)
        return table, canonical

    def _generate(self, epoch: int, previous: PeakTable | None, stats: dict[str, float],
                  stop: threading.Event, bar: bool) -> PeakTable:
        """Epoch ``epoch``'s table: every slot tried up to ``max_tries`` times, else ``previous``."""
        from tqdm import tqdm

        results: list[dict | None] = [None] * self.n
        todo = list(range(self.n))
        tries = self.max_tries if previous is not None else self.max_tries * 4  # epoch 0: no fallback
        engine_before = dict(getattr(self._get_engine(), "stats", {}))
        pbar = tqdm(total=self.n, desc=f"stream epoch {epoch}", unit="st", file=sys.stderr,
                    disable=not (bar and self.progress), mininterval=2.0)
        try:
            for attempt in range(tries):
                if not todo or stop.is_set():
                    break
                if attempt:
                    stats["retried"] += len(todo)
                    logger.info(f"stream epoch {epoch}: retrying {len(todo)} slot(s) (try {attempt + 1})")
                seed = stream_seed(self.seed, attempt)
                jobs = [self._job(epoch, i, seed) for i in todo]
                failed = []
                for job, res in self._imap(jobs):
                    i = job.index - epoch * self.n
                    if res.get("ok") and "families" in res and int(res["sg"]) == int(self.slot_sg[i]):
                        results[i] = res
                        stats["generated"] += 1
                        pbar.update(1)
                    else:
                        failed.append(i)
                        stats["failed"] += 1
                        reason = str(res.get("reason", ""))
                        stats["hung"] += reason.startswith("timeout")
                        stats["lost"] += reason.startswith("lost")
                    if stop.is_set():
                        break
                todo = sorted(failed)
        finally:
            pbar.close()
            after = getattr(self._engine, "stats", {})
            key = "crashed_workers"
            stats[key] += after.get(key, 0) - engine_before.get(key, 0)
        if stop.is_set():
            return previous
        missing = [i for i in range(self.n) if results[i] is None]
        if missing and previous is None:
            raise RuntimeError(f"stream epoch {epoch}: slots {missing[:5]} (space groups "
                               f"{sorted({int(self.slot_sg[i]) for i in missing})}) failed {tries} times")
        if missing:
            stats["fallback"] += len(missing)
            groups = sorted({int(self.slot_sg[i]) for i in missing})
            logger.warning(f"stream epoch {epoch}: {len(missing)} slot(s) failed {tries} times and keep "
                           f"their previous crystal (space groups {groups})")
        return self._table(results, previous)

    def _job(self, epoch: int, i: int, seed: int) -> Job:
        g = int(self.slot_sg[i])
        return draw_job("train", epoch * self.n + i, g, self._cand[g], seed)

    def _table(self, results: list[dict | None], previous: PeakTable | None) -> PeakTable:
        """A PeakTable (sticks, structures, families, formulas) of one epoch's slot results."""
        tts, its, cells, fracs, zs, fams, formulas = [], [], [], [], [], [], []
        for i, r in enumerate(results):
            if r is None:  # fallback: the previous epoch's crystal of this slot
                tt, it = previous.peaks(i)
                cell, frac, z = previous.structures.structure(i)
                fam = _family_dict(previous.families, i)
                r = {"two_theta": tt, "intensity": it, "lattice": cell, "st_frac": frac, "st_z": z,
                     "families": fam, "formula": str(previous.meta["formula"][i])}
            tts.append(r["two_theta"])
            its.append(r["intensity"])
            cells.append(r["lattice"])
            fracs.append(np.asarray(r["st_frac"], np.float32).reshape(-1, 3))
            zs.append(np.asarray(r["st_z"]))
            fams.append(r["families"])
            formulas.append(r["formula"])
        table = PeakTable.from_lists(tts, its, self.slot_sg.tolist(), self.wavelength,
                                     meta={"formula": formulas})
        table.structures = StructureTable.from_lists(cells, fracs, zs)
        table.families = FamilyTable.from_lists(fams, form_factor_table())
        return table.validate("structure stream")

    def _account(self, epoch: int, stats: dict[str, float], seconds: float, waited: bool,
                 gen_s: float | None = None) -> None:
        stats = dict(stats)
        stats["waited_s"] = round(seconds, 2) if waited else 0.0
        stats["generation_s"] = round(seconds if not waited else (gen_s or 0.0), 2)
        self.epoch_stats[epoch] = stats
        for k in STAT_KEYS:
            self.stats[k] += stats[k]
        what = f"training waited {seconds:.1f} s" if waited else f"generated in {seconds:.1f} s"
        if gen_s is not None:
            what = f"training waited {seconds:.1f} s; generated in {gen_s:.1f} s beside training"
        if stats["cached"]:
            what = f"training waited {seconds:.1f} s; loaded from cache" if waited else \
                f"loaded from cache in {seconds:.1f} s"
        logger.info(f"stream epoch {epoch}: {self.n} crystals ({what}); generated {stats['generated']}, "
                    f"failed {stats['failed']}, retried {stats['retried']}, hung {stats['hung']}, "
                    f"crashed workers {stats['crashed_workers']}, kept previous {stats['fallback']}")


def _family_dict(fam: FamilyTable, i: int) -> dict[str, np.ndarray]:
    """Row ``i`` of a FamilyTable in ``FamilyTable.from_lists`` form (all element slots)."""
    a, b = fam.offsets[i], fam.offsets[i + 1]
    slots = np.flatnonzero(fam.z[i] > 0)
    return {"hkl": fam.hkl[a:b], "mult": fam.mult[a:b], "sf": fam.sf[a:b][:, slots], "z": fam.z[i, slots],
            "cell": fam.cell[i]}
