"""Ray as graphprune's scale-out engine (the optional `ray` extra; without it everything
runs in-process, as by default).

- Calibration statistics sharded over workers (`--ray ADDRESS`): one actor per shard
  holds one ONNX Runtime session of the model with its watched tensors exposed; batch i
  goes to shard i mod n, and the shards' statistics are merged in shard order (Chan's
  pairwise merge), so the result equals the single-process one to float rounding.
- Sweep points as Ray tasks (`graphprune sweep --ray`): graphprune.sweep.
- Latency pinned to a named machine (`--latency-on RESOURCE`): the measurement runs as a
  task that needs one unit of a custom Ray resource, which only the deployment machine
  declares (`ray start --resources='{"deploy": 1}'`); model files travel with the task.

`auto` connects to a running cluster and starts a local one where none runs. Workers
import graphprune, so it must be installed where they run; files (the model, a sweep's
folder) are read from the paths given, so a multi-machine sweep needs a shared folder.
"""

from __future__ import annotations

import os
import tempfile

from graphprune.errors import BadInput, first_line

IN_FLIGHT = 2  # batches queued per shard: the driver holds at most this many per worker


def ray_module():
    try:
        import ray
    except ImportError:
        raise BadInput("--ray needs Ray: pip install 'graphprune[ray]'") from None
    return ray


def connect(address: str):
    """Ray, initialised: `auto` (a running cluster, else a local one) or an address."""
    ray = ray_module()
    if ray.is_initialized():
        return ray
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local cluster needs no token file
    kw = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    try:
        if address == "auto":
            try:
                ray.init(address="auto", **kw)
            except ConnectionError:
                ray.init(**kw)
        else:
            ray.init(address=address, **kw)
    except Exception as e:  # noqa: BLE001 - Ray raises several types
        raise BadInput(f"--ray {address}: cannot connect to Ray ({first_line(e)})") from None
    return ray


def read_folder(folder: str) -> dict[str, bytes]:
    return {n: open(os.path.join(folder, n), "rb").read() for n in sorted(os.listdir(folder))}


def write_folder(files: dict[str, bytes], folder: str) -> None:
    for name, data in files.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)


def ship(path: str) -> dict[str, bytes]:
    """A model file and the external-data files beside it that it names."""
    from graphprune.saving import external_files

    folder = os.path.dirname(os.path.abspath(path))
    names = [os.path.basename(path), *external_files(path)]
    return {n: open(os.path.join(folder, n), "rb").read() for n in names}


# -- sharded calibration statistics --------------------------------------------------------
class _Shard:
    """One worker: a session of the exposed model and the statistics of its batches. The
    workers stay up between collections (a pipeline collects several times); `load`
    gives one a new model and fresh statistics."""

    def load(self, files, computed, requests, mask) -> None:
        from graphprune.activations import ChannelStats
        from graphprune.runtime import session

        self._tmp = tempfile.TemporaryDirectory()
        write_folder(files, self._tmp.name)
        self.sess = session(os.path.join(self._tmp.name, "model.onnx"))
        self.computed, self.requests, self.mask = computed, requests, mask
        self.stats = {n: ChannelStats() for n in sorted(requests)}
        self.unmasked: set = set()

    def add(self, feeds) -> str | None:
        import numpy as np

        from graphprune.activations import accumulate

        try:
            outs = dict(zip(self.computed, self.sess.run(self.computed, feeds))) if self.computed else {}
        except Exception as e:  # noqa: BLE001
            return f"calibration: ONNX Runtime cannot run the model on the calibration data ({first_line(e)})"
        keep = np.asarray(feeds[self.mask]) != 0 if self.mask and self.mask in feeds else None
        accumulate(self.stats, self.requests, outs, feeds, keep, self.unmasked)
        return None

    def result(self):
        out = (self.stats, self.unmasked)
        self.sess = self.stats = None
        self._tmp.cleanup()
        return out


_POOL: dict = {}  # (Ray job, shards) -> the shard actors, until release()


def release() -> None:
    """End the shard workers (they hold a CPU each); the pipeline calls this when its run ends."""
    ray = ray_module()
    for actors in _POOL.values():
        for a in actors:
            try:
                ray.kill(a)
            except Exception:  # noqa: BLE001 - a cluster already gone
                pass
    _POOL.clear()


def _shards(ray, n: int) -> list:
    key = (ray.get_runtime_context().get_job_id(), n)
    if key not in _POOL:
        actor = ray.remote(num_cpus=1)(_Shard)
        _POOL[key] = [actor.remote() for _ in range(n)]
    return _POOL[key]


def collect_sharded(model, requests, calib, computed, quiet: bool = False) -> dict:
    """graphprune.activations.collect over Ray workers (`calib.ray`: the address)."""
    from graphprune.activations import ChannelStats
    from graphprune.progress import Progress
    from graphprune.runtime import write_exposed

    ray = connect(calib.ray)
    free, calib = calib.batch_mode(model)
    with tempfile.TemporaryDirectory() as tmp:
        write_exposed(model, computed, "calibration", free, tmp)
        files = ray.put(read_folder(tmp))
    n = calib.ray_shards or max(1, int(ray.cluster_resources().get("CPU", 1)))
    shards = _shards(ray, n)
    ray.get([s.load.remote(files, computed, requests, calib.mask) for s in shards])
    pending: list = []
    progress = Progress("calibration", calib.n_samples, calib.quiet or quiet)
    try:
        for i, feeds in enumerate(calib.batches()):
            pending.append(shards[i % n].add.remote(feeds))
            progress.update(len(next(iter(feeds.values()))))
            if len(pending) >= IN_FLIGHT * n:
                done, pending = ray.wait(pending, num_returns=len(pending) - n)
                _check(ray.get(done))
        _check(ray.get(pending))
    finally:
        progress.close()
        results = ray.get([s.result.remote() for s in shards])
    stats = {name: ChannelStats() for name in sorted(requests)}
    for shard_stats, unmasked in results:  # shard order: the same merge on every run
        for name, st in shard_stats.items():
            stats[name].merge(st)
        calib.unmasked |= unmasked
    return stats


def _check(results) -> None:
    for r in results:
        if r:
            raise BadInput(r)


# -- latency on a named machine ------------------------------------------------------------
def _measure_remote(kind: str, files: list[dict[str, bytes]], args: tuple, kwargs: dict):
    from graphprune.latency import measure

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, f in enumerate(files):
            folder = os.path.join(tmp, str(i))
            os.makedirs(folder)
            write_folder(f, folder)
            paths.append(os.path.join(folder, next(iter(f))))
        return measure(kind, paths, *args, **kwargs)


def measure_on(resource: str, kind: str, paths: list[str], *args, **kwargs):
    """graphprune.latency.measure run on the machine that declares the Ray resource
    `resource` (the files go with the task)."""
    ray = ray_module()
    if not ray.is_initialized():
        raise BadInput("--latency-on needs --ray (the cluster whose machine declares the resource)")
    if ray.cluster_resources().get(resource, 0) < 1:
        raise BadInput(f"--latency-on {resource}: no machine of the Ray cluster declares that resource")
    task = ray.remote(num_cpus=0, resources={resource: 1})(_measure_remote)
    return ray.get(task.remote(kind, [ship(p) for p in paths], args, kwargs))
